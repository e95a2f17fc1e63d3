//! `pgperf abuse --target URL`: the hostile-client checks of `tests/it/hostile.rs` and
//! `tests/it/connections.rs`, aimed at a running service, with the product's bounds:
//!
//! - a 100,000-character name is refused (400 naming `names[0].name`) within 50 ms, and with
//!   20 such requests in flight `/health/live` keeps a p99 of at most 10 ms;
//! - 12 concurrent 1,000-name junk batches, repeated for `--flood-seconds`: `/health/database`
//!   answers 200 every time with a p99 of at most 50 ms, a cached `/search` keeps a p99 of at
//!   most 50 ms, every shed request is a 503 with `Retry-After` within 100 ms, and 1 s after
//!   the flood no statement is running;
//! - after `--keys` distinct search keys, the search cache holds no more than its cap;
//! - 1,000 requests with invented methods add no metric series;
//! - beside `--idle-connections` idle connections a normal client keeps a p99 of at most
//!   50 ms, and the idle connections are closed at the header timeout.
//!
//! The latencies are measured by a client on a thread and runtime of its own; the hostile
//! clients run on threads at the lowest CPU priority, and their bodies are serialized once: on
//! a small machine the checker's own work would otherwise show up as the service's latency.
//!
//! The checks that read the monitoring endpoints need the admin token (the same rules as
//! `pgperf load`); without it they say "not checked". Exit code 1 when a check fails.

use std::time::{Duration, Instant};

use pgperf::db::latency::Ms;
use rand::Rng;
use serde_json::{Value, json};

use super::target::Target;
use super::{Failure, scale::parse_count};

/// Options of `pgperf abuse`.
#[derive(Debug, clap::Args)]
pub struct AbuseArgs {
    /// The service to try, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub target: String,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// The environment variable that holds the admin token (see `pgperf load --help`).
    #[arg(long)]
    pub admin_token_env: Option<String>,
    /// How long the batch flood lasts, seconds.
    #[arg(long, default_value_t = 60)]
    pub flood_seconds: u64,
    /// Distinct search keys to send.
    #[arg(long, default_value = "100k", value_parser = parse_count)]
    pub keys: u64,
    /// Idle connections to hold open.
    #[arg(long, default_value_t = 500)]
    pub idle_connections: usize,
    /// The target's header timeout, ms (`serve --header-timeout-ms`): idle connections must be
    /// closed within it plus 5 s.
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
}

/// One check's outcome.
#[derive(Debug)]
struct Check {
    name: &'static str,
    bound: &'static str,
    measured: String,
    /// None: not checked (`measured` says why).
    passed: Option<bool>,
}

impl Check {
    fn new(name: &'static str, bound: &'static str, measured: String, passed: bool) -> Self {
        Self {
            name,
            bound,
            measured,
            passed: Some(passed),
        }
    }

    fn not_checked(name: &'static str, bound: &'static str, why: &str) -> Self {
        Self {
            name,
            bound,
            measured: format!("not checked: {why}"),
            passed: None,
        }
    }
}

/// Runs every check and prints the table; fails when one failed.
pub async fn run(args: AbuseArgs) -> anyhow::Result<()> {
    let target = Target::parse(
        &args.target,
        args.allow_remote,
        args.admin_token_env.as_deref(),
    )?;
    super::serve_bench::raise_fd_limit();
    let mut checks = Vec::new();
    checks.extend(huge_name(&target).await?);
    checks.extend(flood(&target, Duration::from_secs(args.flood_seconds)).await?);
    checks.push(distinct_keys(&target, args.keys).await?);
    checks.push(invented_methods(&target).await?);
    let timeout = Duration::from_millis(args.header_timeout_ms);
    checks.extend(idle_connections(&target, args.idle_connections, timeout).await?);
    print(&checks);
    let failed = checks.iter().filter(|c| c.passed == Some(false)).count();
    if failed > 0 {
        return Err(
            Failure::Regressed(format!("{failed} of {} checks failed", checks.len())).into(),
        );
    }
    Ok(())
}

fn print(checks: &[Check]) {
    println!("| check | bound | measured | verdict |\n|---|---|---|---|");
    for c in checks {
        let verdict = match c.passed {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "not checked",
        };
        println!("| {} | {} | {} | {verdict} |", c.name, c.bound, c.measured);
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The p99 of `took` (the largest when there are fewer than 100).
fn p99(took: &mut [Duration]) -> Duration {
    took.sort();
    took.get((took.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

fn batch(names: impl IntoIterator<Item = String>) -> Value {
    let names: Vec<Value> = names
        .into_iter()
        .map(|n| json!({ "name": n, "kind": "organization" }))
        .collect();
    json!({ "names": names })
}

/// `n` sequential GETs of `path`: every status and the p99.
async fn probe(t: &Target, path: &str, n: usize) -> (Vec<u16>, Duration) {
    let url = t.url(path);
    apart(move |c| async move {
        let (mut statuses, mut took) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let (status, t) = timed_get(&c, &url).await;
            took.push(t);
            statuses.push(status);
        }
        (statuses, p99(&mut took))
    })
    .await
}

/// One GET: its status (0 when no answer came) and how long it took.
async fn timed_get(c: &reqwest::Client, url: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = c.get(url).send().await.map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// Runs a measuring client on a thread and runtime of its own, so that what it measures is
/// the service, not the wait behind this process's own flood tasks on the shared runtime.
async fn apart<F, Fut, T>(measure: F) -> T
where
    F: FnOnce(reqwest::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the measuring client");
        let client = client().expect("an HTTP client");
        let _ = tx.send(runtime.block_on(measure(client)));
    });
    rx.await.expect("the measuring thread answers")
}

/// The hostile clients' runtime: its threads run at the lowest CPU priority (nice 19), as an
/// attacker on another machine would; on a small machine the checker's own sending would
/// otherwise be counted against the service's latency. The measuring client ([`apart`]) keeps
/// its priority, and so does the service.
struct Attackers(Option<tokio::runtime::Runtime>);

impl Attackers {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(|| {
                // On Linux the nice value is per thread: who = 0 is the calling thread.
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            })
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("a live runtime").spawn(work)
    }
}

impl Drop for Attackers {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A JSON body serialized once, to be sent many times without the flood's own CPU cost.
fn json_body(value: &Value) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(value).expect("JSON serializes"))
}

/// POSTs `body` (JSON) to `url`.
fn post_json(c: &reqwest::Client, url: &str, body: &bytes::Bytes) -> reqwest::RequestBuilder {
    c.post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.clone())
}

async fn huge_name(t: &Target) -> anyhow::Result<Vec<Check>> {
    let c = client()?;
    let body = batch(["x".repeat(100_000)]);
    let started = Instant::now();
    let response = c.post(t.url("/resolve")).json(&body).send().await?;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let named = answer["invalid_params"][0]["name"] == "names[0].name";
    let refused = Check::new(
        "a 100,000-character name",
        "400 naming names[0].name, <= 50 ms",
        format!(
            "{status} naming {}, {}",
            answer["invalid_params"][0]["name"],
            Ms::of(took)
        ),
        status == 400 && named && took <= Duration::from_millis(50),
    );
    let stop = Instant::now() + Duration::from_secs(5);
    let body = json_body(&body);
    let attackers = Attackers::new()?;
    let senders: Vec<_> = (0..20)
        .map(|_| {
            let (c, url, body) = (c.clone(), t.url("/resolve"), body.clone());
            attackers.spawn(async move {
                while Instant::now() < stop {
                    let _ = post_json(&c, &url, &body).send().await;
                }
            })
        })
        .collect();
    let (statuses, live_p99) = probe(t, "/health/live", 200).await;
    senders.into_iter().for_each(|s| s.abort());
    let live = Check::new(
        "/health/live with 20 huge names in flight",
        "all 200, p99 <= 10 ms",
        format!("p99 {}", Ms::of(live_p99)),
        statuses.iter().all(|s| *s == 200) && live_p99 <= Duration::from_millis(10),
    );
    Ok(vec![refused, live])
}

/// 1,000 junk names: random words that match nothing well, so every pass does its full work.
fn junk_batch() -> Value {
    let mut rng = rand::rng();
    batch((0..1_000).map(|_| {
        (0..3)
            .map(|_| {
                (0..rng.random_range(5..10))
                    .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }))
}

/// What the flooders saw: shed answers (time, and whether `Retry-After` was there), batches
/// answered, and batches that ran out of their time (503 too, but not shed).
#[derive(Default)]
struct FloodSeen {
    shed: Vec<(Duration, bool)>,
    answered: usize,
    timed_out: usize,
}

/// The problem type of a shed request (`Problem::overloaded`).
const OVERLOADED: &str = "https://pgperf.dev/problems/overloaded";

/// Sends junk batches to `url` until `until`: back to back (a flooder), or one every `every`
/// (the sampler, whose shed answers are timed at normal priority).
async fn flooder(
    c: reqwest::Client,
    url: String,
    until: Instant,
    every: Option<Duration>,
) -> FloodSeen {
    // A few distinct batches, serialized once and cycled: the flood's cost is the service's.
    let batches: Vec<bytes::Bytes> = (0..4).map(|_| json_body(&junk_batch())).collect();
    let mut tick = every.map(tokio::time::interval);
    let mut seen = FloodSeen::default();
    for body in batches.iter().cycle() {
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        if Instant::now() >= until {
            break;
        }
        let started = Instant::now();
        let Ok(r) = post_json(&c, &url, body).send().await else {
            seen.timed_out += 1;
            continue;
        };
        let retry = r.headers().contains_key("retry-after");
        let status = r.status().as_u16();
        let kind = r.json::<Value>().await.map(|b| b["type"] == OVERLOADED);
        match (status, kind) {
            (503, Ok(true)) => seen.shed.push((started.elapsed(), retry)),
            (503, _) => seen.timed_out += 1,
            _ => seen.answered += 1,
        }
    }
    seen
}

/// GETs `url` every `every` until `until`, from a thread of its own ([`apart`]): statuses
/// and latencies.
async fn pace(url: String, every: Duration, until: Instant) -> Vec<(u16, Duration)> {
    apart(move |c| async move {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(every);
        while Instant::now() < until {
            tick.tick().await;
            out.push(timed_get(&c, &url).await);
        }
        out
    })
    .await
}

async fn flood(t: &Target, length: Duration) -> anyhow::Result<Vec<Check>> {
    let c = client()?;
    let cached = t.url("/search?q=acme%20holdings&limit=10");
    c.get(&cached).send().await?;
    let until = Instant::now() + length;
    let attackers = Attackers::new()?;
    let flooders: Vec<_> = (0..12)
        .map(|_| attackers.spawn(flooder(c.clone(), t.url("/resolve"), until, None)))
        .collect();
    let every = Some(Duration::from_millis(100));
    let url = t.url("/resolve");
    let sampler = tokio::spawn(apart(move |c| flooder(c, url, until, every)));
    let health = tokio::spawn(pace(
        t.url("/health/database"),
        Duration::from_millis(100),
        until,
    ));
    let search = tokio::spawn(pace(cached, Duration::from_millis(50), until));
    let mut seen = FloodSeen::default();
    for f in flooders {
        let s = f.await?;
        seen.shed.extend(s.shed);
        seen.answered += s.answered;
        seen.timed_out += s.timed_out;
    }
    let (health, search, sampled) = (health.await?, search.await?, sampler.await?);
    let mut checks = vec![
        paced("/health/database during the flood", &health),
        paced("cached /search during the flood", &search),
        shed_check(&seen, &sampled),
    ];
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    checks.push(statements_left(t, &c).await);
    Ok(checks)
}

fn paced(name: &'static str, seen: &[(u16, Duration)]) -> Check {
    let bad = seen.iter().filter(|(s, _)| *s != 200).count();
    let mut took: Vec<Duration> = seen.iter().map(|(_, d)| *d).collect();
    let p99 = p99(&mut took);
    Check::new(
        name,
        "all 200, p99 <= 50 ms",
        format!(
            "{} requests, {bad} not 200, p99 {}",
            seen.len(),
            Ms::of(p99)
        ),
        !seen.is_empty() && bad == 0 && p99 <= Duration::from_millis(50),
    )
}

/// Every shed batch (the flooders' and the sampler's) carries `Retry-After`; the sampler's,
/// timed at normal priority, each came within 100 ms.
fn shed_check(flood: &FloodSeen, sampled: &FloodSeen) -> Check {
    let all = flood.shed.iter().chain(&sampled.shed);
    let without = all.filter(|(_, retry)| !retry).count();
    let slowest = sampled
        .shed
        .iter()
        .map(|(d, _)| *d)
        .max()
        .unwrap_or_default();
    Check::new(
        "shed batches",
        "503 with Retry-After, each <= 100 ms",
        format!(
            "{} shed ({without} without Retry-After); sampled every 100 ms: {} shed, slowest {}; \
             {} answered, {} out of time",
            flood.shed.len() + sampled.shed.len(),
            sampled.shed.len(),
            Ms::of(slowest),
            flood.answered + sampled.answered,
            flood.timed_out + sampled.timed_out
        ),
        without == 0 && !sampled.shed.is_empty() && slowest <= Duration::from_millis(100),
    )
}

/// The target's `/health/database/metrics`, or why it could not be read.
async fn metrics(t: &Target, c: &reqwest::Client) -> Result<Value, String> {
    let mut request = c.get(t.url("/health/database/metrics"));
    if let Some(token) = &t.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 => response.json().await.map_err(|e| e.to_string()),
        401 => Err("401 from /health/database/metrics; set PGPERF_ADMIN_TOKEN".into()),
        other => Err(format!("{other} from /health/database/metrics")),
    }
}

async fn statements_left(t: &Target, c: &reqwest::Client) -> Check {
    let (name, bound) = ("statements 1 s after the flood", "none running");
    match metrics(t, c).await {
        // The monitor's own statement is the one active connection allowed.
        Ok(m) => {
            let active = m["database"]["connections"]["active"].as_i64().unwrap_or(0);
            let oldest = m["database"]["oldest_query_s"].as_f64().unwrap_or(0.0);
            Check::new(
                name,
                bound,
                format!("{} other active, oldest {oldest:.3} s", (active - 1).max(0)),
                active <= 1,
            )
        }
        Err(why) => Check::not_checked(name, bound, &why),
    }
}

async fn distinct_keys(t: &Target, keys: u64) -> anyhow::Result<Check> {
    let c = client()?;
    let run: u32 = rand::rng().random();
    let senders: Vec<_> = (0..8u64)
        .map(|w| {
            let (c, base) = (c.clone(), t.url("/search?limit=10&q=k"));
            tokio::spawn(async move {
                for i in (w..keys).step_by(8) {
                    let _ = c.get(format!("{base}{run:x}q{i:x}")).send().await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await?;
    }
    // The purge runs every 5 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (name, bound) = ("search cache after distinct keys", "rows <= the cap");
    Ok(match metrics(t, &c).await {
        Ok(m) => {
            let (rows, cap) = (
                &m["search_cache"]["entries"],
                &m["search_cache"]["max_entries"],
            );
            let held = rows.as_i64().zip(cap.as_i64()).is_some_and(|(r, c)| r <= c);
            Check::new(
                name,
                bound,
                format!("{keys} keys sent: {rows} rows, cap {cap}"),
                held,
            )
        }
        Err(why) => Check::not_checked(name, bound, &why),
    })
}

/// The `pgperf_http_*` series of a `/metrics` scrape (names and labels).
async fn http_series(t: &Target, c: &reqwest::Client) -> Result<Vec<String>, String> {
    let mut request = c.get(t.url("/metrics"));
    if let Some(token) = &t.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!(
            "{} from /metrics; set PGPERF_ADMIN_TOKEN",
            response.status()
        ));
    }
    let text = response.text().await.map_err(|e| e.to_string())?;
    let mut series: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("pgperf_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .filter(|s| !s.contains("_bucket{") && !s.contains("quantile="))
        .collect();
    series.sort();
    Ok(series)
}

async fn invented(t: &Target, c: &reqwest::Client, from: usize, to: usize) {
    for i in from..to {
        let method = reqwest::Method::from_bytes(format!("XM{i}").as_bytes()).expect("a token");
        let _ = c.request(method, t.url("/search?q=acme")).send().await;
    }
}

async fn invented_methods(t: &Target) -> anyhow::Result<Check> {
    let c = client()?;
    let (name, bound) = ("1,000 invented methods", "no new metric series");
    // The first few may add the one series every unknown method maps to, and the first scrape
    // adds the series of `/metrics` itself.
    invented(t, &c, 0, 10).await;
    let _ = http_series(t, &c).await;
    let before = match http_series(t, &c).await {
        Ok(s) => s,
        Err(why) => return Ok(Check::not_checked(name, bound, &why)),
    };
    invented(t, &c, 10, 1_010).await;
    let after = http_series(t, &c).await.unwrap_or_default();
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    Ok(Check::new(
        name,
        bound,
        format!("{} series before, {} new", before.len(), new.len()),
        new.is_empty() && !after.is_empty(),
    ))
}

async fn idle_connections(t: &Target, n: usize, timeout: Duration) -> anyhow::Result<Vec<Check>> {
    let addr = t
        .base
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(tokio::net::TcpStream::connect(addr).await?);
    }
    let (statuses, p99) = probe(t, "/health/live", 200).await;
    let normal = Check::new(
        "a normal client beside idle connections",
        "all 200, p99 <= 50 ms",
        format!("{n} idle: p99 {}", Ms::of(p99)),
        statuses.iter().all(|s| *s == 200) && p99 <= Duration::from_millis(50),
    );
    let deadline = opened + timeout + Duration::from_secs(5);
    let closes = idle.into_iter().map(|s| closed_by(s, deadline));
    let closed = futures::future::join_all(closes).await;
    let (count, last) = (
        closed.iter().flatten().count(),
        closed.iter().flatten().max(),
    );
    let at_timeout = Check::new(
        "idle connections closed at the header timeout",
        "all, within the timeout + 5 s",
        format!(
            "{count} of {n} closed, the last {} after opening",
            last.map_or("-".into(), |d| Ms::of(*d - opened).to_string())
        ),
        count == n,
    );
    Ok(vec![normal, at_timeout])
}

/// When the server closed `stream` (it sends nothing first), if before `deadline`.
async fn closed_by(mut stream: tokio::net::TcpStream, deadline: Instant) -> Option<Instant> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let until = tokio::time::Instant::from_std(deadline);
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}
