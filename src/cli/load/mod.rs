//! `pgperf load --profile NAME`: load tests against the API service, with goose as the load
//! engine (Apache-2.0; k6 is AGPL and excluded by our dependency policy).
//!
//! By default the command starts the service itself (`pgperf serve`, a child process of its
//! own so that its CPU and memory can be watched) on a container database seeded with 100k
//! entities through the COPY path; `--target URL` aims at a running service instead (a
//! loopback address unless `--allow-remote`).
//!
//! Profiles follow k6's model: stages of users with think time (closed model) for `load`, and
//! open-model arrival rates everywhere a rate is the target: each virtual user keeps its own
//! schedule, and a request's latency counts from its scheduled start, so a slow server cannot
//! quietly lower the load or hide its slowness (coordinated omission). While the run goes, the
//! service's `/health/database/metrics` is sampled every second. Thresholds
//! (`load/thresholds.toml`) are checked at the end; the error rate also aborts the run early
//! (goose's killswitch). Ctrl-C stops the run, and the summary is still written.
//!
//! Output: a terminal summary; `summary.json`, `report.md`, `latency.svg`, `rps.svg` and
//! `pool.svg` in the run's directory; a line appended to the history file (`pgperf history`).

pub mod history;
pub mod profile;
pub mod record;
mod report;
mod thresholds;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use goose::prelude::*;
use rand::Rng;

use pgperf::dataset::{entity_kind, noisy_name};
use pgperf::db::repo::{aliases, entities};
use pgperf::db::{Db, DbError, EntityKind, NewEntity, PoolSettings};
use pgperf::scenarios::plans::encode;

use self::profile::{Kind, Overrides, Profile, ProfileName, Shape, Step, Weights};
use self::record::{ErrorCause, MetricsGap, Recorder, Sample, proc_stat};
use self::thresholds::LoadThresholds;
use super::scale::parse_count;
use super::target::Target;
use super::{Failure, with_workspace};

/// The dataset seed (`pgperf serve --seed`'s).
const SEED: u64 = pgperf::dataset::SERVE_SEED;
/// Popular queries of the cached searches.
const POPULAR: u64 = 20;
/// Names in a resolution request: noisy names of seeded entities, with their kinds, and one
/// new name (of no entity: a name the platform meets for the first time, which goes through
/// every pass).
const RESOLVE_BATCH: usize = 10;
/// The seed of the new names in resolution requests (no seeded entity has them).
const NEW_NAMES_SEED: u64 = SEED + 1;

/// Options of `pgperf load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The profile to run.
    #[arg(long, value_enum)]
    pub profile: ProfileName,
    /// A running service to aim at (e.g. http://127.0.0.1:8080); default: start one.
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Entities to seed (the started service), or the id range of a target's entities.
    #[arg(long, default_value = "100k", value_parser = parse_count)]
    pub entities: u64,
    /// The thresholds file (default: the committed load/thresholds.toml, built in).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Multiply every duration of the profile (load defaults to 0.25: 4 minutes).
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Virtual users (open model: users sharing the rate; load: the peak).
    #[arg(long)]
    pub users: Option<usize>,
    /// The peak rate, requests per second (open-model profiles).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The main hold's length, seconds (before the time scale).
    #[arg(long)]
    pub duration: Option<f64>,
    /// The request mix, e.g. cached=40,uncached=20,resolve=10,entity=20,health=10.
    #[arg(long)]
    pub weights: Option<Weights>,
    /// Where the run's files go (default target/pgperf/load/<profile>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The history file every run appends to.
    #[arg(long, default_value = "target/pgperf/load/history.jsonl")]
    pub history: PathBuf,
    /// The environment variable that holds the admin token of the target's monitoring
    /// endpoints (for a loopback target, PGPERF_ADMIN_TOKEN by default). A token goes to a
    /// non-loopback target only when named here, and only over https.
    #[arg(long)]
    pub admin_token_env: Option<String>,
}

/// What every virtual user shares.
struct RunState {
    started: Instant,
    shape: Shape,
    weights: Weights,
    entities: u64,
    /// The service's database, for the mix's writes (none against a target).
    writer: Option<Db>,
    recorder: Recorder,
    /// Open model: the next arrival to hand out.
    arrivals: AtomicU64,
    /// Where each step or stage ends, seconds into its schedule.
    segment_ends: Vec<f64>,
}

/// Open model: the schedule starts this long after the run, once goose has launched every
/// user (its plan ramps them up in one second), so the first arrivals do not wait for users.
const LAUNCH: Duration = Duration::from_secs(1);

/// A request that starts this much after its scheduled time is counted late: every virtual
/// user was busy when it was due.
const LATE: Duration = Duration::from_millis(50);

impl RunState {
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The index of the step or stage at `t`.
    fn segment_at(&self, t: f64) -> usize {
        self.segment_ends
            .iter()
            .position(|end| t < *end)
            .unwrap_or(self.segment_ends.len().saturating_sub(1))
    }

    /// One iteration of a virtual user: wait for its turn, send one request of the mix.
    ///
    /// Open model: the schedule's arrivals are numbered, arrival k being due when the
    /// schedule's cumulative rate reaches k; each user takes the next number, sleeps until it
    /// is due and sends it (k6's arrival-rate executors work alike). A rate change applies at
    /// once, and an arrival no user was free for is sent late, its latency counted from when
    /// it was due.
    async fn iterate(&self, user: &mut GooseUser) -> TransactionResult {
        let scheduled = match &self.shape {
            Shape::Rate { .. } => {
                let k = self.arrivals.fetch_add(1, Ordering::Relaxed);
                let Some(due) = self.shape.arrival_time(k) else {
                    // Past the schedule's end: idle until goose stops the user.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Ok(());
                };
                let due = self.started + LAUNCH + Duration::from_secs_f64(due);
                if Instant::now() > due + LATE {
                    self.recorder.late();
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            Shape::Users { .. } => Instant::now(),
        };
        let kind = self
            .weights
            .pick(rand::rng().random_range(0..self.weights.total()));
        let offset = match self.shape {
            Shape::Rate { .. } => self.started + LAUNCH,
            Shape::Users { .. } => self.started,
        };
        let segment = self.segment_at(scheduled.saturating_duration_since(offset).as_secs_f64());
        let (outcome, served) = self.send(user, kind).await;
        let latency = scheduled.elapsed();
        self.recorder
            .record(served, segment, self.elapsed(), latency, outcome);
        if let Shape::Users { think, .. } = &self.shape {
            let secs = rand::rng().random_range(think.0..=think.1);
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
        Ok(())
    }

    /// A request of `kind` for a random entity: its path, its name in goose's figures, and
    /// its JSON body (a POST) or none (a GET); `None` for a write, which goes through the data
    /// layer, not HTTP. Everything random happens here: the generator may not live across an
    /// await.
    fn request(&self, kind: Kind) -> Option<(String, &'static str, Option<serde_json::Value>)> {
        let mut rng = rand::rng();
        let entities = self.entities.max(1);
        let mut entity = || rng.random_range(0..entities);
        let search = |q: String| format!("/search?limit=10&q={}", encode(&q));
        Some(match kind {
            Kind::CachedSearch => {
                let q = pgperf::dataset::popular_query(SEED, entity() % POPULAR);
                (search(q), "search", None)
            }
            Kind::UncachedSearch => (search(noisy_name(SEED, entity())), "search", None),
            Kind::Resolve => {
                let body = resolve_body(entity);
                ("/resolve".to_owned(), "/resolve", Some(body))
            }
            Kind::Entity => (
                format!("/entities/{}", entity() + 1),
                "/entities/{id}",
                None,
            ),
            Kind::Health => ("/health/database".to_owned(), "/health/database", None),
            Kind::Write => return None,
        })
    }

    /// Sends one request of `kind`; whether it succeeded (or why not), and the kind it turned
    /// out to be (a search is cached or not as the service's `x-cache` says).
    async fn send(&self, user: &mut GooseUser, kind: Kind) -> (Result<(), ErrorCause>, Kind) {
        let Some((path, name, body)) = self.request(kind) else {
            let written = self.write().await;
            return (written.then_some(()).ok_or(ErrorCause::Write), kind);
        };
        let response = match &body {
            Some(json) => user.post_json(&path, json).await,
            None => user.get_named(&path, name).await,
        };
        let Ok(Ok(r)) = response.map(|g| g.response) else {
            return (Err(ErrorCause::NoAnswer), kind);
        };
        let served = match r.headers().get("x-cache").map(|v| v.as_bytes()) {
            _ if !kind.is_search() => kind,
            Some(b"hit") => Kind::CachedSearch,
            _ => Kind::UncachedSearch,
        };
        let judged = judge(r.status(), r.headers().contains_key("retry-after"));
        let body = r.bytes().await;
        (
            judged.and(body.map(drop).map_err(|_| ErrorCause::NoAnswer)),
            served,
        )
    }

    /// One write on the service's database: an alias of a random entity or a new entity,
    /// half and half, with a noisy name. Whether it succeeded (an alias already there counts:
    /// the write was made, and refused by the data).
    async fn write(&self) -> bool {
        let Some(db) = &self.writer else {
            return false;
        };
        let (entity, name, alias) = {
            let mut rng = rand::rng();
            let entity = rng.random_range(0..self.entities.max(1));
            (
                entity,
                noisy_name(SEED, rng.random_range(0..self.entities.max(1))),
                rng.random_bool(0.5),
            )
        };
        let Ok(mut conn) = db.acquire().await else {
            return false;
        };
        let written = if alias {
            aliases::add(&mut conn, entity as i64 + 1, &name)
                .await
                .map(drop)
        } else {
            let new = NewEntity {
                kind: EntityKind::Organization,
                name,
                attributes: serde_json::json!({}),
            };
            entities::create(&mut conn, &new).await.map(drop)
        };
        matches!(written, Ok(()) | Err(DbError::UniqueViolation { .. }))
    }
}

/// The body of a resolution request: [`RESOLVE_BATCH`] names, each a noisy name of a random
/// entity (`entity()`) with its kind, but the last, which is new.
fn resolve_body(mut entity: impl FnMut() -> u64) -> serde_json::Value {
    let mut names: Vec<serde_json::Value> = (1..RESOLVE_BATCH)
        .map(|_| {
            let i = entity();
            serde_json::json!({"name": noisy_name(SEED, i), "kind": entity_kind(SEED, i)})
        })
        .collect();
    names.push(serde_json::json!({
        "name": noisy_name(NEW_NAMES_SEED, entity()),
        "kind": EntityKind::Organization,
    }));
    serde_json::json!({ "names": names })
}

/// The service `pgperf load` started: a child `pgperf serve` in a process group of its own
/// (so a terminal's Ctrl-C reaches the load test, which stops the service itself).
struct Child {
    process: std::process::Child,
    base: String,
}

impl Child {
    async fn start(
        url: &pgperf::db::DatabaseUrl,
        entities: u64,
        log: &std::path::Path,
    ) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--seed",
                &entities.to_string(),
            ])
            .env("PGPERF_DATABASE_URL", url.expose())
            .env_remove("PGPERF_ADMIN_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl in the child before exec; it only asks for SIGTERM when we die.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let process = command.spawn().context("starting pgperf serve")?;
        let child = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let limit = start_limit(entities);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = client
                .get(format!("{}/health/live", child.base))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(child);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "pgperf serve did not answer within {} s (seeding {entities} entities); see {}",
                    limit.as_secs(),
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGTERM (the service drains), then waits up to 15 s, then kills.
    async fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.process.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs a profile.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        users: args.users,
        rate: args.rate,
        duration: args.duration,
        time_scale: args.time_scale,
        weights: args.weights.clone(),
    };
    let profile = Profile::build(args.profile, &overrides).map_err(Failure::Usage)?;
    let thresholds = match &args.thresholds {
        Some(p) => LoadThresholds::load(p)?,
        None => LoadThresholds::default(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/pgperf/load/{}", profile.name)));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    super::serve_bench::raise_fd_limit();
    match &args.target {
        Some(_) if profile.weights.writes() => Err(Failure::Usage(
            "a mix with writes needs the service's database: leave out --target, and pgperf load starts the service".to_owned(),
        )
        .into()),
        Some(target) => {
            let token_env = args.admin_token_env.as_deref();
            let target = Target::parse(target, args.allow_remote, token_env)?;
            let (pid, writer, token) = (None, None, target.token);
            let service = Service { pid, token, writer };
            attack(&args, &profile, &thresholds, &out, &target.base, service).await
        }
        None => {
            with_workspace("load", async |ws| {
                eprintln!(
                    "pgperf: starting pgperf serve on a database seeded with {} entities (log: {})",
                    args.entities,
                    out.join("serve.log").display()
                );
                let child = Child::start(&ws.url, args.entities, &out.join("serve.log")).await?;
                let base = child.base.clone();
                let writer = if profile.weights.writes() {
                    let settings = PoolSettings {
                        max_connections: 2,
                        ..PoolSettings::default()
                    };
                    Some(Db::connect(&ws.url, settings).await?)
                } else {
                    None
                };
                let (pid, token) = (Some(child.pid()), None);
                let service = Service { pid, token, writer };
                let result = attack(&args, &profile, &thresholds, &out, &base, service).await;
                child.stop().await;
                result
            })
            .await
        }
    }
}

/// What the watcher shares with the run.
struct Watch {
    state: Arc<RunState>,
    base: String,
    token: Option<String>,
    pid: Option<u32>,
    thresholds: LoadThresholds,
    profile: Profile,
    done: AtomicBool,
    samples: Mutex<Vec<Sample>>,
    aborted: Mutex<Option<String>>,
    steps_judged: Mutex<Vec<report::StepVerdict>>,
}

/// Samples the service every second until `done`; aborts the run (goose's killswitch) when
/// the error rate over the last window passes the abort threshold, or a stress step breaks.
async fn watch(w: Arc<Watch>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let mut meter = ProcessMeter::default();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut judged_steps = 0usize;
    let bound = w.profile.shape.secs() + 120.0;
    while !w.done.load(Ordering::Relaxed) && w.state.elapsed() < bound {
        interval.tick().await;
        let t = w.state.elapsed();
        let mut sample = w.sample(&client, t).await;
        if let Some(pid) = w.pid {
            meter.read(pid, &mut sample);
        }
        if let Ok(mut s) = w.samples.lock() {
            s.push(sample);
        }
        if w.error_rate_aborts(t) {
            break;
        }
        // Stress: judge each step once it is over (with a second for its last responses).
        if w.profile.name == ProfileName::Stress {
            w.judge_ended_steps(t, &mut judged_steps);
        }
    }
}

/// The service process's CPU (from the change of its CPU ticks between readings) and RSS.
#[derive(Default)]
struct ProcessMeter {
    last_cpu: Option<(Instant, u64)>,
}

impl ProcessMeter {
    fn read(&mut self, pid: u32, sample: &mut Sample) {
        let Some((cpu, rss)) = proc_stat(pid) else {
            return;
        };
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let page_mib = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64 / 1_048_576.0;
        let now = Instant::now();
        if let Some((then, before)) = self.last_cpu {
            let secs = now.duration_since(then).as_secs_f64();
            sample.cpu_percent = Some((cpu - before) as f64 / ticks_per_s / secs * 100.0);
        }
        self.last_cpu = Some((now, cpu));
        sample.rss_mib = Some(rss as f64 * page_mib);
    }
}

impl Watch {
    /// The service's metrics at `t`, or the reason there are none.
    async fn sample(&self, client: &reqwest::Client, t: f64) -> Sample {
        let mut request = client.get(format!("{}/health/database/metrics", self.base));
        if let Some(tok) = &self.token {
            request = request.bearer_auth(tok);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                Ok(body) => Sample::from_metrics(t, &body),
                Err(_) => Sample::without_metrics(t, MetricsGap::NotJson),
            },
            Ok(r) => Sample::without_metrics(t, MetricsGap::Status(r.status().as_u16())),
            Err(_) => Sample::without_metrics(t, MetricsGap::NoAnswer),
        }
    }

    /// Stops the run when the error rate over the last window is above the abort threshold.
    fn error_rate_aborts(&self, t: f64) -> bool {
        let errors = &self.thresholds.errors;
        let window = errors.abort_window_s as usize;
        if t < window as f64 {
            return false;
        }
        let (n, e) = self.state.recorder.recent(window);
        if n < 20 || e as f64 / n as f64 <= errors.abort_rate {
            return false;
        }
        let reason = format!(
            "error rate {:.1} % over the last {window} s (abort threshold {:.1} %)",
            100.0 * e as f64 / n as f64,
            100.0 * errors.abort_rate
        );
        eprintln!("pgperf: aborting the run: {reason}");
        if let Ok(mut a) = self.aborted.lock() {
            a.get_or_insert(reason.clone());
        }
        goose::trigger_killswitch(&reason);
        true
    }

    /// Judges the stress steps that ended by `t` (a second after their last responses); the
    /// first that breaks a threshold stops the run.
    fn judge_ended_steps(&self, t: f64, judged: &mut usize) {
        let Shape::Rate { steps, .. } = &self.profile.shape else {
            return;
        };
        let launch = LAUNCH.as_secs_f64();
        let mut end = 0.0;
        for (i, s) in steps.iter().enumerate() {
            end += s.secs;
            if i != *judged || t < end + launch + 1.0 {
                continue;
            }
            let verdict = self.judge_step(i, s, end - s.secs + launch, t);
            eprintln!(
                "pgperf: stress step {:>5.0}/s: {}",
                s.rate,
                verdict.summary()
            );
            let broke = !verdict.breaches.is_empty();
            if let Ok(mut v) = self.steps_judged.lock() {
                v.push(verdict);
            }
            *judged += 1;
            if broke {
                goose::trigger_killswitch("stress: a step broke a threshold");
                self.done.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Step `i`'s verdict on its requests and the samples from `from` to `to`.
    fn judge_step(&self, i: usize, step: &Step, from: f64, to: f64) -> report::StepVerdict {
        let window: Vec<Sample> = self
            .samples
            .lock()
            .map(|all| {
                let within = all.iter().filter(|x| x.t >= from && x.t <= to);
                within.copied().collect()
            })
            .unwrap_or_default();
        let evidence = report::Evidence {
            samples: &window,
            expects_hits: self.profile.weights.expects_hits(),
        };
        let segment = self.state.recorder.segment(i);
        report::judge_step(i, step, &segment, &evidence, &self.thresholds)
    }
}

/// goose, set up to run `state`'s schedule against `base`: one scenario whose transaction
/// sends the next request of the mix.
fn goose_attack(
    state: Arc<RunState>,
    profile: &Profile,
    base: &str,
) -> anyhow::Result<Box<GooseAttack>> {
    let transaction: TransactionFunction = Arc::new(move |user| {
        let state = Arc::clone(&state);
        Box::pin(async move { state.iterate(user).await })
    });
    let scenario =
        scenario!("api").register_transaction(Transaction::new(transaction).set_name("request"));
    let mut config = goose::config::GooseConfiguration::default();
    config.quiet = 1;
    Ok(GooseAttack::initialize_with_config(config)
        .context("configuring goose")?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, base)?
        .set_default(GooseDefault::TestPlan, profile.shape.test_plan().as_str())?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::Timeout, "30")?)
}

/// Warns (and notes in the summary) where this run is worse than the history's last run of
/// the same profile.
fn compare_with_history(
    history: &std::path::Path,
    summary: &mut report::Summary,
) -> anyhow::Result<()> {
    if !history.exists() {
        return Ok(());
    }
    let previous = history::read(history)?;
    for warning in history::against_previous(&previous, &history::Entry::of(summary)) {
        eprintln!("pgperf: warning: {warning}");
        summary.notes.push(format!("warning: {warning}"));
    }
    Ok(())
}

/// The service under load, as far as the run can see it.
struct Service {
    /// Its process, when `pgperf load` started it (for CPU and RSS).
    pid: Option<u32>,
    /// The admin token of its monitoring endpoints.
    token: Option<String>,
    /// Its database, for the mix's writes.
    writer: Option<Db>,
}

async fn attack(
    args: &LoadArgs,
    profile: &Profile,
    thresholds: &LoadThresholds,
    out: &std::path::Path,
    base: &str,
    service: Service,
) -> anyhow::Result<()> {
    let Service { pid, token, writer } = service;
    let state = Arc::new(RunState {
        started: Instant::now(),
        shape: profile.shape.clone(),
        weights: profile.weights.clone(),
        entities: args.entities,
        writer,
        recorder: Recorder::default(),
        arrivals: AtomicU64::new(0),
        segment_ends: profile.shape.segment_ends(),
    });
    let attack = goose_attack(Arc::clone(&state), profile, base)?;

    let w = Arc::new(Watch {
        state: Arc::clone(&state),
        base: base.to_owned(),
        token,
        pid,
        thresholds: thresholds.clone(),
        profile: profile.clone(),
        done: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
        aborted: Mutex::new(None),
        steps_judged: Mutex::new(Vec::new()),
    });
    let watcher = tokio::spawn(watch(Arc::clone(&w)));
    eprintln!(
        "pgperf: load profile {} against {base}: {:.0} s, up to {} users, plan {}",
        profile.name,
        profile.shape.secs(),
        profile.shape.max_users(),
        profile.shape.test_plan()
    );
    // Goose stops at the end of its plan, on Ctrl-C (its own handler) or on the killswitch;
    // a plan that overruns by far is cut (every loop is bounded in time).
    let limit = Duration::from_secs_f64(profile.shape.secs() + 180.0);
    let metrics = tokio::time::timeout(limit, attack.execute()).await;
    w.done.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let goose = match metrics {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => anyhow::bail!("the load engine (goose) failed: {e:?}"),
        Err(_) => {
            eprintln!("pgperf: the run passed its time bound and was cut");
            None
        }
    };
    conclude(args, profile, thresholds, out, &w, goose.as_ref())
}

/// Summarizes and judges the run, compares it with the history, writes and prints the
/// report, and appends the run to the history; a broken threshold is a regression.
fn conclude(
    args: &LoadArgs,
    profile: &Profile,
    thresholds: &LoadThresholds,
    out: &std::path::Path,
    w: &Watch,
    goose: Option<&goose::metrics::GooseMetrics>,
) -> anyhow::Result<()> {
    let state = &w.state;
    let interrupted = goose::is_killswitch_triggered();
    goose::reset_killswitch();
    let samples = w.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let aborted = w.aborted.lock().ok().and_then(|a| a.clone());
    let steps = w.steps_judged.lock().map(|s| s.clone()).unwrap_or_default();
    let run = report::RunFacts {
        recorder: &state.recorder,
        samples: &samples,
        goose,
        aborted,
        interrupted,
        steps,
        seconds: state.elapsed(),
    };
    let mut summary = report::summarize(profile, thresholds, run);
    compare_with_history(&args.history, &mut summary)?;
    report::write(out, &summary, &state.recorder, &samples)?;
    history::append(&args.history, &summary)?;
    report::print(&summary, out);
    if summary.breaches.is_empty() {
        Ok(())
    } else {
        Err(Failure::Regressed(format!(
            "{} threshold(s) broken: {}",
            summary.breaches.len(),
            summary.breaches.join("; ")
        ))
        .into())
    }
}

/// Whether an answer with `status` succeeded. A 404 of an entity id beyond a target's data
/// is an answer, not a failure; a 503 with `Retry-After` is a request shed by the service.
fn judge(status: reqwest::StatusCode, retry_after: bool) -> Result<(), ErrorCause> {
    match status.as_u16() {
        _ if status.is_success() => Ok(()),
        404 => Ok(()),
        503 if retry_after => Err(ErrorCause::Shed),
        code => Err(ErrorCause::Status(code)),
    }
}

/// How long the started service may take to answer: 300 s, plus 1 s per 1,000 entities it
/// seeds. Seeding loads into indexed tables: 1M entities with their aliases took 239 s on a
/// 2-core machine, and the fixed 300 s ran out with the service's start.
fn start_limit(entities: u64) -> Duration {
    Duration::from_secs(300 + entities / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_request_holds_nine_seeded_entities_with_their_kinds_and_one_new_name() {
        let mut next = 100..;
        let body = resolve_body(|| next.next().unwrap());
        let names = body["names"].as_array().unwrap();
        assert_eq!(names.len(), RESOLVE_BATCH);
        for (i, name) in (100..).zip(&names[..RESOLVE_BATCH - 1]) {
            assert_eq!(name["name"], noisy_name(SEED, i));
            assert_eq!(name["kind"], serde_json::json!(entity_kind(SEED, i)));
        }
        assert_eq!(
            names[RESOLVE_BATCH - 1]["name"],
            noisy_name(NEW_NAMES_SEED, 109)
        );
    }
}
