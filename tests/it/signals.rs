//! Nothing leaks: `pgperf run` interrupted mid-run (SIGTERM as CI cancels a job, SIGINT as
//! Ctrl-C) removes its container, or on an external server drops its database, and exits
//! with 128 + the signal's number.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgperf::postgres::OWNER_LABEL;
use sqlx::Connection;

use crate::support::gate;
use crate::support::shared::shared;

/// Starts `pgperf run` on the lookup cases, waits until it measures its first case (so the
/// server is up and the database seeded) and returns it.
fn start_run(env: &[(&str, &str)], baseline: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(["run", "--filter", "lookup", "--baseline"])
        .arg(baseline)
        // Results beside the baseline: target/pgperf holds the user's last `pgperf run`.
        .arg("--results")
        .arg(baseline.parent().expect("a baseline in a folder"))
        .env_remove("CI")
        .env_remove("PGPERF_INJECT_SLOWDOWN")
        .env("PGPERF_BASELINE", "new")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgperf");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut seen = Vec::new();
        while reader.read_until(b']', &mut seen).is_ok_and(|n| n > 0) {
            if String::from_utf8_lossy(&seen).contains("[ 1/4]") {
                let _ = tx.send(());
                // Keep draining, so the child never blocks on a full pipe.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                return;
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!("pgperf run did not reach its first case within 120 s");
    }
    child
}

fn signal(child: &Child, number: i32) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, number) };
    assert_eq!(rc, 0, "kill({}, {number})", child.id());
}

fn wait(mut child: Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("pgperf did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn containers_of(pid: u32) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={OWNER_LABEL}={pid}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn sigterm_mid_run_removes_the_runs_container_and_exits_143() {
    if !shared().is_container() {
        crate::support::skip::skip("needs a Docker engine (PGPERF_DATABASE_URL is set)");
        return;
    }
    let _gate = gate::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let child = start_run(&[], &dir.path().join("bench.json"));
    let pid = child.id();
    assert_eq!(
        containers_of(pid).len(),
        1,
        "the run's container while it runs"
    );
    signal(&child, libc::SIGTERM);
    let code = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(143));
    assert_eq!(containers_of(pid), Vec::<String>::new(), "containers left");
}

async fn bench_databases(admin: &pgperf::db::DatabaseUrl) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect_with(&admin.connect_options())
        .await
        .unwrap();
    let names = sqlx::query_scalar(
        r"SELECT datname FROM pg_database WHERE datname LIKE 'pgperf\_bench\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    names
}

#[tokio::test]
async fn sigint_mid_run_on_an_external_server_drops_the_runs_database_and_exits_130() {
    let _gate = gate::shared().await;
    let admin = shared().admin.clone();
    let before = bench_databases(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let child = start_run(
        &[("PGPERF_DATABASE_URL", admin.expose())],
        &dir.path().join("bench.json"),
    );
    let during = bench_databases(&admin).await;
    assert_eq!(
        during.len(),
        before.len() + 1,
        "the run's database: {during:?}"
    );
    signal(&child, libc::SIGINT);
    let code = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(130));
    assert_eq!(bench_databases(&admin).await, before, "databases left");
}
