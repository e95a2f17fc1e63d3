//! An alert reaches a person: the committed monitoring files, run by a real Prometheus and a
//! real Alertmanager (Debian's, from scripts/monitoring-tools), scrape the API service and
//! notify `pgperf alert-sink`.
//! - The database is stopped: `PgperfDatabaseDown` must arrive, naming the instance and a
//!   runbook that exists; started again: the resolved notification must arrive.
//! - Search is made slow by a trial trigger in the database: the search latency SLO's
//!   burn-rate alert must arrive, and must not before the trigger.
//!
//! Only what a test cannot wait for is shortened (scrape and evaluation every second,
//! Alertmanager's group wait and interval); the rules are the committed ones, `for: 1m`
//! included, so the database-down notification is due about 62 s after the stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::service::monitoring_tool;
use crate::support::database::TestDb;
use crate::support::dedicated::{Dedicated, free_port};
use crate::support::service::{Running, get};

/// Where Debian's Alertmanager reads its default notification templates.
const ALERTMANAGER_TEMPLATES: &str = "/usr/share/prometheus/alertmanager/default.tmpl";

/// The longest the database-down notification may take after the stop.
const NOTIFY_WITHIN: Duration = Duration::from_secs(90);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(program)
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    Proc(child)
}

/// The committed file with each `(from, to)` replaced; every `from` must occur.
fn adapted(path: &str, changes: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(root().join(path)).unwrap();
    for (from, to) in changes {
        assert!(text.contains(from), "{path} no longer has {from:?}");
        text = text.replace(from, to);
    }
    text
}

struct Stack {
    sink_log: PathBuf,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

/// Starts alert-sink, Alertmanager and Prometheus for a service at `target`.
fn start_stack(target: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (sink, am, prom) = (free_port(), free_port(), free_port());
    let sink_log = dir.path().join("notifications.jsonl");
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        adapted(
            "monitoring/alertmanager/alertmanager.yml",
            &[
                ("127.0.0.1:9095", format!("127.0.0.1:{sink}")),
                ("group_wait: 30s", "group_wait: 1s".into()),
                ("group_wait: 10s", "group_wait: 1s".into()),
                ("group_interval: 5m", "group_interval: 2s".into()),
            ],
        ),
    )
    .unwrap();
    let prom_config = dir.path().join("prometheus.yml");
    let rules = root().join("monitoring/prometheus/alerts.yml");
    std::fs::write(
        &prom_config,
        adapted(
            "monitoring/prometheus/prometheus.yml",
            &[
                ("scrape_interval: 15s", "scrape_interval: 1s".into()),
                ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
                ("- alerts.yml", format!("- {}", rules.display())),
                ("127.0.0.1:9093", format!("127.0.0.1:{am}")),
                ("127.0.0.1:8080", target.to_owned()),
            ],
        ),
    )
    .unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let procs = vec![
        spawn(
            Path::new(env!("CARGO_BIN_EXE_pgperf")),
            &[
                "alert-sink".into(),
                "--bind".into(),
                format!("127.0.0.1:{sink}"),
                "--log".into(),
                sink_log.display().to_string(),
            ],
            &dir.path().join("sink.log"),
        ),
        spawn(
            &monitoring_tool("alertmanager"),
            &[
                format!("--config.file={}", am_config.display()),
                format!("--storage.path={}", d("am-data")),
                format!("--web.listen-address=127.0.0.1:{am}"),
                "--cluster.listen-address=".into(),
            ],
            &dir.path().join("alertmanager.log"),
        ),
        spawn(
            &monitoring_tool("prometheus"),
            &[
                format!("--config.file={}", prom_config.display()),
                format!("--storage.tsdb.path={}", d("prom-data")),
                format!("--web.listen-address=127.0.0.1:{prom}"),
            ],
            &dir.path().join("prometheus.log"),
        ),
    ];
    Stack {
        sink_log,
        _procs: procs,
        _dir: dir,
    }
}

impl Stack {
    /// Every alert the sink has logged so far, and the log's text.
    fn received(&self) -> (Vec<Value>, String) {
        let text = std::fs::read_to_string(&self.sink_log).unwrap_or_default();
        let alerts = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|n| {
                n["notification"]["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        (alerts, text)
    }

    /// The first notification of `alert` with `status`, polled until `limit`; the logs of the
    /// stack in the panic message otherwise.
    async fn notification(&self, alert: &str, status: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (alerts, text) = self.received();
            let found = alerts
                .into_iter()
                .find(|a| a["labels"]["alertname"] == alert && a["status"] == status);
            if let Some(a) = found {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} {alert} notification within {limit:?}; notifications so far:\n{text}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn logs(&self) -> String {
        ["sink.log", "alertmanager.log", "prometheus.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self._dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {f} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_reaches_the_alert_sink_with_its_instance_and_runbook_then_resolves() {
    if !alertmanager_can_run() {
        return;
    }
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let db = server.pool(pgperf::db::PoolSettings::default()).await;
    let service = Running::start(db, pgperf::service::Config::default()).await;
    let target = service.base.trim_start_matches("http://").to_owned();
    let stack = start_stack(&target);
    // Let Prometheus scrape a healthy service first, so the alert's `for` starts at the stop.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let container = server.server.container().unwrap();
    container.stop().await.unwrap();
    let stopped = Instant::now();
    let firing = stack
        .notification("PgperfDatabaseDown", "firing", NOTIFY_WITHIN)
        .await;
    let took = stopped.elapsed();
    eprintln!(
        "PgperfDatabaseDown reached the sink {:.1} s after the stop",
        took.as_secs_f64()
    );
    assert_names_instance_and_runbook(&firing, &target);

    container.start().await.unwrap();
    let restarted = Instant::now();
    stack
        .notification("PgperfDatabaseDown", "resolved", NOTIFY_WITHIN)
        .await;
    eprintln!(
        "the resolved notification arrived {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    server.shutdown().await;
}

/// Debian's Alertmanager needs its templates; without them the test is skipped, visibly.
fn alertmanager_can_run() -> bool {
    let found = Path::new(ALERTMANAGER_TEMPLATES).is_file();
    if !found {
        crate::support::skip::skip(&format!(
            "Debian's Alertmanager needs {ALERTMANAGER_TEMPLATES} (scripts/monitoring-tools puts it \
             there as root or with passwordless sudo)"
        ));
    }
    found
}

fn assert_names_instance_and_runbook(alert: &Value, instance: &str) {
    assert_eq!(alert["labels"]["instance"], instance, "{alert}");
    let runbook = alert["annotations"]["runbook_url"].as_str().unwrap();
    assert!(
        root().join(runbook).is_file(),
        "runbook {runbook} does not exist"
    );
}

/// Sends searches one after another until dropped: the same query (cached after the first)
/// when `distinct` is false, a new one each time (a cache miss, so a store) otherwise.
fn search_traffic(base: String, distinct: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0u64.. {
            let q = if distinct {
                format!("trial{i}")
            } else {
                "trial".into()
            };
            let sent = client
                .get(format!("{base}/search?q={q}&limit=5"))
                .send()
                .await;
            let status = sent.map(|r| r.status().as_u16()).unwrap_or(0);
            assert_eq!(status, 200, "search {q} answered {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Stops search traffic; a failed search (a panic in its task) fails the test.
async fn stop(traffic: tokio::task::JoinHandle<()>) {
    traffic.abort();
    if let Err(e) = traffic.await {
        assert!(e.is_cancelled(), "search traffic failed: {e}");
    }
}

/// A trial trigger that makes every stored search page, so every uncached search, slow.
async fn make_search_slow(db: &pgperf::db::Db) {
    // 0.6 s a store: over the search latency SLO's 0.4 s.
    for statement in [
        "CREATE FUNCTION slow_search_store() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(0.6); RETURN NEW; END $$",
        "CREATE TRIGGER slow_search_store BEFORE INSERT ON search_cache \
         FOR EACH ROW EXECUTE FUNCTION slow_search_store()",
    ] {
        sqlx::query(statement).execute(db.pool()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_searches_fire_the_search_latency_burn_rate_alert_with_its_instance_and_runbook() {
    const ALERT: &str = "PgperfSearchLatencyBudgetBurn";
    if !alertmanager_can_run() {
        return;
    }
    let t = TestDb::new().await;
    let service = Running::start(t.db.clone(), pgperf::service::Config::default()).await;
    // The pool's first connection and the page's first store happen before any scrape, so
    // that every search Prometheus sees in the fast phase is a cached one.
    let (status, _, _) = get(&service.url("/search?q=trial&limit=5")).await;
    assert_eq!(status, 200);
    let target = service.base.trim_start_matches("http://").to_owned();
    let stack = start_stack(&target);

    // Fast (cached) searches first: scraped and evaluated for 10 s, they must not fire it.
    let fast = search_traffic(service.base.clone(), false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop(fast).await;
    let (alerts, text) = stack.received();
    assert!(
        !alerts.iter().any(|a| a["labels"]["alertname"] == ALERT),
        "{ALERT} fired while searches were fast:\n{text}"
    );

    make_search_slow(&t.db).await;
    let slowed = Instant::now();
    let slow = search_traffic(service.base.clone(), true);
    let firing = stack.notification(ALERT, "firing", NOTIFY_WITHIN).await;
    stop(slow).await;
    eprintln!(
        "{ALERT} reached the sink {:.1} s after search was made slow",
        slowed.elapsed().as_secs_f64()
    );
    assert_names_instance_and_runbook(&firing, &target);
    assert_eq!(firing["labels"]["slo"], "search_latency", "{firing}");
}
