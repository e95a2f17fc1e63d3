//! The load profiles: their shapes (rate steps in an open model, or user stages with think
//! time in a closed one), request mixes and defaults sized for a 2-core machine.

use std::fmt;
use std::str::FromStr;

/// A profile's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// 20 s at 20 requests/s, the default mix (CI runs it).
    Smoke,
    /// 50 searches/s for 2 minutes, open model (the product target).
    Throughput,
    /// Users ramped to 500 then 1,000 with think time, held, ramped down.
    Load,
    /// The rate stepped up until a threshold breaks; reports the breaking point.
    Stress,
    /// A sudden 10x jump in rate (80/s to 800/s for 10 s) and back; reports the recovery
    /// time.
    Spike,
    /// A long hold (30 min); reports drift, RSS growth and connection churn.
    Soak,
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Smoke => "smoke",
            Self::Throughput => "throughput",
            Self::Load => "load",
            Self::Stress => "stress",
            Self::Spike => "spike",
            Self::Soak => "soak",
        };
        f.write_str(name)
    }
}

/// The request kinds of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `GET /search` for a popular query (a cache hit once stored).
    CachedSearch,
    /// `GET /search` for a unique query (a miss).
    UncachedSearch,
    /// `POST /resolve` with 10 names.
    Resolve,
    /// `GET /entities/{id}`.
    Entity,
    /// `GET /health/database`.
    Health,
    /// A write through the data layer, on the service's database: an entity or an alias
    /// inserted (each moves the search generation). Only when `pgperf load` starts the
    /// service, whose database it knows.
    Write,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Self::CachedSearch,
        Self::UncachedSearch,
        Self::Resolve,
        Self::Entity,
        Self::Health,
        Self::Write,
    ];

    /// The name in weights, reports and goose's metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::CachedSearch => "cached",
            Self::UncachedSearch => "uncached",
            Self::Resolve => "resolve",
            Self::Entity => "entity",
            Self::Health => "health",
            Self::Write => "write",
        }
    }

    /// Whether it is a search.
    pub fn is_search(self) -> bool {
        matches!(self, Self::CachedSearch | Self::UncachedSearch)
    }
}

/// Relative weights of the request kinds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Weights(pub Vec<(Kind, u32)>);

impl Weights {
    /// Whether the mix writes (it needs the service's database).
    pub fn writes(&self) -> bool {
        self.0.iter().any(|(k, w)| *k == Kind::Write && *w > 0)
    }

    /// Whether the mix sends popular queries, so that some searches must be cache hits.
    pub fn expects_hits(&self) -> bool {
        self.0
            .iter()
            .any(|(kind, weight)| *kind == Kind::CachedSearch && *weight > 0)
    }

    /// The default mix: mostly searches, some entity reads, resolution and health checks.
    pub fn default_mix() -> Self {
        Self(vec![
            (Kind::CachedSearch, 40),
            (Kind::UncachedSearch, 20),
            (Kind::Resolve, 10),
            (Kind::Entity, 20),
            (Kind::Health, 10),
        ])
    }

    /// Searches only (the throughput profile).
    pub fn searches() -> Self {
        Self(vec![(Kind::CachedSearch, 60), (Kind::UncachedSearch, 40)])
    }

    /// The kind for a draw in `0..total()`.
    pub fn pick(&self, draw: u32) -> Kind {
        let mut left = draw;
        for (kind, w) in &self.0 {
            if left < *w {
                return *kind;
            }
            left -= w;
        }
        self.0.last().map_or(Kind::Health, |(k, _)| *k)
    }

    /// The sum of the weights.
    pub fn total(&self) -> u32 {
        self.0.iter().map(|(_, w)| w).sum()
    }

    /// The share of searches in the mix.
    pub fn search_share(&self) -> f64 {
        let searches: u32 = self
            .0
            .iter()
            .filter(|(k, _)| k.is_search())
            .map(|(_, w)| w)
            .sum();
        f64::from(searches) / f64::from(self.total().max(1))
    }
}

impl FromStr for Weights {
    type Err = String;

    /// `cached=40,uncached=20,resolve=10,entity=20,health=10` (kinds left out weigh 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected kind=weight"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "{name:?} is not a request kind (cached, uncached, resolve, entity, health, write)"
                    )
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            if out.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{name:?} is given twice"));
            }
            out.push((kind, weight));
        }
        let w = Self(out);
        if w.total() == 0 {
            return Err("the weights add up to 0: give at least one kind a weight".to_owned());
        }
        Ok(w)
    }
}

/// One step of an open-model schedule: a rate held for a time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Step {
    /// How long, seconds.
    pub secs: f64,
    /// Requests per second.
    pub rate: f64,
}

/// One stage of a closed-model plan: ramp (linearly) to `users` over `secs`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stage {
    /// Users at the end of the stage.
    pub users: usize,
    /// How long, seconds.
    pub secs: f64,
}

/// How a profile loads the service.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Shape {
    /// Open model: requests start on a schedule whatever the earlier ones do, spread over
    /// `users` virtual users each keeping its own cadence.
    Rate {
        /// The schedule.
        steps: Vec<Step>,
        /// Virtual users sharing the rate.
        users: usize,
    },
    /// Closed model (k6's virtual users): each user sends a request, waits for it, thinks.
    Users {
        /// The stages.
        stages: Vec<Stage>,
        /// Think time between a user's requests, seconds (uniform in the range).
        think: (f64, f64),
    },
}

impl Shape {
    /// The whole run, seconds.
    pub fn secs(&self) -> f64 {
        match self {
            Self::Rate { steps, .. } => steps.iter().map(|s| s.secs).sum(),
            Self::Users { stages, .. } => stages.iter().map(|s| s.secs).sum(),
        }
    }

    /// Where each step or stage ends, seconds from the start.
    pub fn segment_ends(&self) -> Vec<f64> {
        let secs: Vec<f64> = match self {
            Self::Rate { steps, .. } => steps.iter().map(|s| s.secs).collect(),
            Self::Users { stages, .. } => stages.iter().map(|s| s.secs).collect(),
        };
        secs.iter()
            .scan(0.0, |end, s| {
                *end += s;
                Some(*end)
            })
            .collect()
    }

    /// When arrival `k` (from 0) is due, seconds into the run: the time at which the
    /// schedule's cumulative rate reaches `k` (open model); `None` past the end.
    pub fn arrival_time(&self, k: u64) -> Option<f64> {
        let Self::Rate { steps, .. } = self else {
            return None;
        };
        let (mut from, mut before) = (0.0, 0.0);
        let k = k as f64;
        for s in steps {
            let here = s.rate * s.secs;
            if k < before + here {
                return Some(from + (k - before) / s.rate);
            }
            from += s.secs;
            before += here;
        }
        None
    }

    /// Goose's test plan: `users,duration;...` (whole seconds, rounded up).
    pub fn test_plan(&self) -> String {
        let ms = |s: f64| format!("{}s", s.ceil().max(1.0) as u64);
        match self {
            Self::Rate { users, .. } => {
                format!("{users},1s;{users},{};0,0s", ms(self.secs()))
            }
            Self::Users { stages, .. } => stages
                .iter()
                .map(|s| format!("{},{}", s.users, ms(s.secs)))
                .collect::<Vec<_>>()
                .join(";"),
        }
    }

    /// The most users the plan runs at once.
    pub fn max_users(&self) -> usize {
        match self {
            Self::Rate { users, .. } => *users,
            Self::Users { stages, .. } => stages.iter().map(|s| s.users).max().unwrap_or(0),
        }
    }
}

/// A profile ready to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    /// Its name.
    pub name: ProfileName,
    /// Its shape, scaled.
    pub shape: Shape,
    /// The mix.
    pub weights: Weights,
    /// Searches per second the run must achieve (throughput).
    pub target_searches_per_s: Option<f64>,
    /// The time scale applied to the defaults.
    pub time_scale: f64,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Virtual users (open model: users sharing the rate; closed: the peak, stages scaled).
    pub users: Option<usize>,
    /// The peak rate (open model), other steps scaled alike.
    pub rate: Option<f64>,
    /// The main hold's length, seconds (before the time scale).
    pub duration: Option<f64>,
    /// Multiplies every duration.
    pub time_scale: Option<f64>,
    /// The mix.
    pub weights: Option<Weights>,
}

/// Users for an open-model schedule: each paces itself at most twice a second at the peak,
/// so a request may take up to 0.5 s before its user falls behind.
fn users_for(steps: &[Step]) -> usize {
    let peak = steps.iter().map(|s| s.rate).fold(0.0, f64::max);
    ((peak / 2.0).ceil() as usize).clamp(10, 1_000)
}

/// A profile's steps (open model) or stages (closed model), and its default time scale.
fn defaults(name: ProfileName) -> (Vec<Step>, Vec<Stage>, f64) {
    let step = |secs: f64, rate: f64| Step { secs, rate };
    let stage = |users, secs| Stage { users, secs };
    match name {
        ProfileName::Smoke => (vec![step(20.0, 20.0)], vec![], 1.0),
        ProfileName::Throughput => (vec![step(120.0, 50.0)], vec![], 1.0),
        // The seed's 2m/5m/2m/5m/2m, a quarter as long by default on this machine.
        ProfileName::Load => (
            vec![],
            vec![
                stage(500, 120.0),
                stage(500, 300.0),
                stage(1_000, 120.0),
                stage(1_000, 300.0),
                stage(0, 120.0),
            ],
            0.25,
        ),
        ProfileName::Stress => (
            [
                25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1_000.0, 1_300.0,
            ]
            .into_iter()
            .map(|r| step(15.0, r))
            .collect(),
            vec![],
            1.0,
        ),
        // 10x, from a comfortable rate to beyond this machine's breaking point (600/s).
        ProfileName::Spike => (
            vec![step(20.0, 80.0), step(10.0, 800.0), step(40.0, 80.0)],
            vec![],
            1.0,
        ),
        ProfileName::Soak => (vec![step(1_800.0, 30.0)], vec![], 1.0),
    }
}

impl Profile {
    /// The profile `name` with `o` applied.
    pub fn build(name: ProfileName, o: &Overrides) -> Result<Self, String> {
        let (mut steps, mut stages, default_scale) = defaults(name);
        let scale = o.time_scale.unwrap_or(default_scale);
        if !(scale.is_finite() && scale > 0.0 && scale <= 100.0) {
            return Err(format!(
                "--time-scale {scale}: must be above 0 and at most 100"
            ));
        }
        if let Some(d) = o.duration {
            set_duration(name, d, &mut steps, &mut stages)?;
        }
        if let Some(r) = o.rate {
            set_peak_rate(name, r, &mut steps)?;
        }
        steps.iter_mut().for_each(|s| s.secs *= scale);
        stages.iter_mut().for_each(|s| s.secs *= scale);
        let check_users = |u: usize| match u {
            0 | 5_001.. => Err(format!("--users {u}: must be from 1 to 5000")),
            u => Ok(u),
        };
        let users = o.users.map(check_users).transpose()?;
        let shape = if name == ProfileName::Load {
            if let Some(u) = users {
                let peak = stages.iter().map(|s| s.users).max().unwrap_or(1);
                stages.iter_mut().for_each(|s| s.users = s.users * u / peak);
            }
            Shape::Users {
                stages,
                think: (2.0, 4.0),
            }
        } else {
            let users = users.unwrap_or_else(|| users_for(&steps));
            Shape::Rate { steps, users }
        };
        let weights = o.weights.clone().unwrap_or_else(|| match name {
            ProfileName::Throughput => Weights::searches(),
            _ => Weights::default_mix(),
        });
        let target_searches_per_s = match (&shape, name) {
            (Shape::Rate { steps, .. }, ProfileName::Throughput) => {
                Some(steps[0].rate * weights.search_share())
            }
            _ => None,
        };
        Ok(Self {
            name,
            shape,
            weights,
            target_searches_per_s,
            time_scale: scale,
        })
    }
}

/// `--duration`: the length of the profile's main part (the held stages, the spike, every
/// stress step, or the one step).
fn set_duration(
    name: ProfileName,
    d: f64,
    steps: &mut [Step],
    stages: &mut [Stage],
) -> Result<(), String> {
    if !(d.is_finite() && d >= 1.0) {
        return Err(format!("--duration {d}: must be at least 1 second"));
    }
    match name {
        ProfileName::Load => {
            stages[1].secs = d;
            stages[3].secs = d;
        }
        ProfileName::Spike => steps[1].secs = d,
        ProfileName::Stress => steps.iter_mut().for_each(|s| s.secs = d),
        _ => steps[0].secs = d,
    }
    Ok(())
}

/// `--rate`: the peak step's rate; the other steps keep their proportion to it.
fn set_peak_rate(name: ProfileName, r: f64, steps: &mut [Step]) -> Result<(), String> {
    if !(r.is_finite() && r > 0.0 && r <= 10_000.0) {
        return Err(format!("--rate {r}: must be above 0 and at most 10000"));
    }
    if name == ProfileName::Load {
        return Err(
            "--rate does not apply to the load profile (a closed model: use --users)".to_owned(),
        );
    }
    let peak = steps.iter().map(|s| s.rate).fold(0.0, f64::max);
    steps.iter_mut().for_each(|s| s.rate *= r / peak);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_pick_in_proportion() {
        let w: Weights = "cached=3,health=1".parse().unwrap();
        assert_eq!(
            (0..4).map(|d| w.pick(d)).collect::<Vec<_>>(),
            [
                Kind::CachedSearch,
                Kind::CachedSearch,
                Kind::CachedSearch,
                Kind::Health
            ]
        );
        assert_eq!(w.search_share(), 0.75);
        assert!(!w.writes());
        let mixed: Weights = "cached=54,uncached=36,write=10".parse().unwrap();
        assert!(mixed.writes());
        assert_eq!(mixed.pick(95), Kind::Write);
        assert_eq!(mixed.search_share(), 0.9);
        for (bad, why) in [
            ("cached", "expected kind=weight"),
            ("robots=1", "is not a request kind"),
            ("cached=x", "whole number"),
            ("cached=0", "add up to 0"),
            ("cached=1,cached=2", "given twice"),
        ] {
            let e = bad.parse::<Weights>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn profiles_scale_and_override() {
        let smoke = Profile::build(ProfileName::Smoke, &Overrides::default()).unwrap();
        assert_eq!(smoke.shape.secs(), 20.0);
        assert_eq!(smoke.shape.test_plan(), "10,1s;10,20s;0,0s");
        let load = Profile::build(ProfileName::Load, &Overrides::default()).unwrap();
        assert_eq!(load.shape.secs(), 240.0);
        assert_eq!(load.shape.max_users(), 1_000);
        assert_eq!(
            load.shape.test_plan(),
            "500,30s;500,75s;1000,30s;1000,75s;0,30s"
        );
        let t = Profile::build(
            ProfileName::Throughput,
            &Overrides {
                rate: Some(80.0),
                duration: Some(10.0),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(t.target_searches_per_s, Some(80.0));
        assert_eq!(t.shape.secs(), 10.0);
        assert_eq!(
            [0, 1, 799, 800].map(|k| t.shape.arrival_time(k)),
            [Some(0.0), Some(0.0125), Some(9.9875), None]
        );
        let spike = Profile::build(ProfileName::Spike, &Overrides::default()).unwrap();
        assert_eq!(spike.shape.segment_ends(), [20.0, 30.0, 70.0]);
        // 1 600 arrivals in the first 20 s at 80/s, then 800/s.
        assert_eq!(
            [1_599, 1_600, 1_601].map(|k| spike.shape.arrival_time(k)),
            [Some(1_599.0 / 80.0), Some(20.0), Some(20.0 + 1.0 / 800.0)]
        );
        assert!(
            Profile::build(
                ProfileName::Load,
                &Overrides {
                    rate: Some(5.0),
                    ..Overrides::default()
                }
            )
            .is_err()
        );
        assert!(
            Profile::build(
                ProfileName::Smoke,
                &Overrides {
                    time_scale: Some(0.0),
                    ..Overrides::default()
                }
            )
            .is_err()
        );
    }
}
