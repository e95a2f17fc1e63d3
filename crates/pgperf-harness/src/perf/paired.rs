//! Paired comparison of two builds measured side by side (tango-bench's method): the base and
//! the head run in alternation, round by round, on one machine at one time, so drift of the
//! machine hits both sides alike and cancels in each round's ratio. Pure maths: rounds in,
//! an estimate with its confidence interval and a verdict out.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One round: the same case measured once on each side (µs, a batch's p50 or mean latency).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The base's figure.
    pub base_us: f64,
    /// The head's figure.
    pub head_us: f64,
}

/// The rule that turns an estimate into a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// A case is slower only when the interval's lower bound is above this ratio (and
    /// faster only when its upper bound is below its inverse).
    pub threshold: f64,
    /// A case is slower only when the point estimate is at least this ratio too.
    pub min_effect: f64,
    /// The interval's two-sided confidence (0.98: each bound is a 99 % one-sided bound).
    pub confidence: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            threshold: 1.10,
            min_effect: 1.25,
            confidence: 0.98,
        }
    }
}

/// What a paired comparison found for one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The head is slower: the whole interval is above the threshold, the estimate at least
    /// the minimum effect.
    Slower,
    /// The head is faster: the whole interval is below the inverse of the threshold.
    Faster,
    /// Neither.
    Unchanged,
}

impl Change {
    /// Its label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Slower => "FAIL slower",
            Self::Faster => "faster",
            Self::Unchanged => "no change",
        }
    }
}

/// The ratio head / base, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The point estimate: the trimmed mean of the rounds' log ratios, as a ratio.
    pub ratio: f64,
    /// The interval's lower bound (a ratio).
    pub low: f64,
    /// The interval's upper bound (a ratio).
    pub high: f64,
    /// Rounds it rests on.
    pub rounds: usize,
    /// The verdict under the rule.
    pub change: Change,
}

/// Share of the rounds cut from each end before averaging: a round disturbed by something
/// else on the machine moves the estimate no more than its neighbours.
const TRIM: f64 = 0.2;
/// Bootstrap resamples; the seed is fixed, so the same rounds give the same interval.
const RESAMPLES: usize = 4_000;
const BOOTSTRAP_SEED: u64 = 0x7061_6972;

/// The trimmed mean of `values` (sorted in place).
fn trimmed_mean(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let cut = (values.len() as f64 * TRIM).floor() as usize;
    let kept = &values[cut..values.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Estimates head / base from `rounds` and judges it by `rule`; `None` with fewer than 3
/// usable rounds (a round with a zero or non-finite side is not usable).
pub fn estimate(rounds: &[Round], rule: &Rule) -> Option<Estimate> {
    let logs: Vec<f64> = rounds
        .iter()
        .filter(|r| r.base_us > 0.0 && r.head_us > 0.0)
        .map(|r| (r.head_us / r.base_us).ln())
        .filter(|d| d.is_finite())
        .collect();
    if logs.len() < 3 {
        return None;
    }
    let point = trimmed_mean(&mut logs.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut sample = vec![0.0; logs.len()];
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for s in &mut sample {
                *s = logs[rng.random_range(0..logs.len())];
            }
            trimmed_mean(&mut sample)
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - rule.confidence) / 2.0;
    let (low, high) = (quantile(&means, tail), quantile(&means, 1.0 - tail));
    let change = if low > rule.threshold.ln() && point >= rule.min_effect.ln() {
        Change::Slower
    } else if high < -rule.threshold.ln() {
        Change::Faster
    } else {
        Change::Unchanged
    };
    Some(Estimate {
        ratio: point.exp(),
        low: low.exp(),
        high: high.exp(),
        rounds: logs.len(),
        change,
    })
}

/// The median of one side's figures over the rounds (for the report).
pub fn side_median(rounds: &[Round], side: impl Fn(&Round) -> f64) -> f64 {
    let values: Vec<f64> = rounds.iter().map(side).collect();
    super::stats::median(&values).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds whose base wobbles by ±`noise` around 100 µs and whose head is `factor` times
    /// the base in each round, times its own wobble.
    fn rounds(n: usize, factor: f64, noise: f64) -> Vec<Round> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n)
            .map(|_| {
                let drift = 1.0 + rng.random_range(-0.5..0.5);
                let base = 100.0 * drift * (1.0 + rng.random_range(-noise..noise));
                let head = 100.0 * drift * factor * (1.0 + rng.random_range(-noise..noise));
                Round {
                    base_us: base,
                    head_us: head,
                }
            })
            .collect()
    }

    #[test]
    fn the_same_build_is_unchanged_despite_drift_between_rounds() {
        let e = estimate(&rounds(20, 1.0, 0.05), &Rule::default()).unwrap();
        assert_eq!(e.change, Change::Unchanged);
        assert!((0.95..1.05).contains(&e.ratio), "{e:?}");
        assert!(e.low < 1.0 && e.high > 1.0, "{e:?}");
    }

    #[test]
    fn a_one_and_a_quarter_slowdown_fails_with_its_ratio() {
        let e = estimate(&rounds(20, 1.3, 0.05), &Rule::default()).unwrap();
        assert_eq!(e.change, Change::Slower);
        assert!((1.25..1.35).contains(&e.ratio), "{e:?}");
        assert!(e.low > 1.10, "{e:?}");
    }

    #[test]
    fn a_small_but_certain_slowdown_below_the_minimum_effect_does_not_fail() {
        let e = estimate(&rounds(30, 1.15, 0.01), &Rule::default()).unwrap();
        assert!(e.low > 1.10, "{e:?}");
        assert_eq!(e.change, Change::Unchanged);
    }

    #[test]
    fn a_faster_head_is_reported_faster() {
        let e = estimate(&rounds(20, 0.6, 0.05), &Rule::default()).unwrap();
        assert_eq!(e.change, Change::Faster);
    }

    #[test]
    fn noise_wider_than_the_effect_gives_no_verdict() {
        let e = estimate(&rounds(6, 1.3, 0.6), &Rule::default()).unwrap();
        assert_eq!(e.change, Change::Unchanged, "{e:?}");
    }

    #[test]
    fn one_disturbed_round_does_not_make_a_failure() {
        let mut r = rounds(20, 1.0, 0.05);
        r[3].head_us *= 20.0;
        r[11].head_us *= 20.0;
        let e = estimate(&r, &Rule::default()).unwrap();
        assert_eq!(e.change, Change::Unchanged, "{e:?}");
    }

    #[test]
    fn too_few_usable_rounds_give_no_estimate() {
        let mut r = rounds(3, 1.0, 0.05);
        r[0].base_us = 0.0;
        assert_eq!(estimate(&r, &Rule::default()), None);
    }

    #[test]
    fn the_interval_is_the_same_for_the_same_rounds() {
        let r = rounds(15, 1.1, 0.1);
        assert_eq!(
            estimate(&r, &Rule::default()),
            estimate(&r, &Rule::default())
        );
    }
}
