//! Nothing hangs: with the server paused (a container of the test's own, frozen so that it
//! accepts TCP connections and never answers), the CLI's commands and the fixtures fail
//! within their bounds, with a message naming what got no answer.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgperf::postgres::{Server, ServerError, Template};

use crate::support::bounded::within;
use crate::support::dedicated::Dedicated;

/// Pausing or unpausing a container: the engine answers in well under a second.
const DOCKER_LIMIT: Duration = Duration::from_secs(30);

async fn pause(server: &Dedicated) {
    let c = server.server.container().expect("a container");
    within(DOCKER_LIMIT, "docker pause", c.pause())
        .await
        .unwrap();
}

async fn unpause(server: &Dedicated) {
    let c = server.server.container().expect("a container");
    within(DOCKER_LIMIT, "docker unpause", c.unpause())
        .await
        .unwrap();
}

/// `pgperf` against `server`'s URL, stderr piped.
fn pgperf_against(server: &Dedicated, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(args)
        .env("PGPERF_DATABASE_URL", server.server.admin_url().expose())
        .env_remove("CI")
        .env_remove("PGPERF_INJECT_SLOWDOWN")
        .env("PGPERF_BASELINE", "new")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgperf")
}

/// Waits for `child` to exit within `limit` (killing it otherwise); its exit code, how long
/// it took from `since`, and the rest of its stderr.
fn finish(mut child: Child, limit: Duration, since: Instant) -> (Option<i32>, Duration, String) {
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    loop {
        if let Some(status) = child.try_wait().expect("waiting for pgperf") {
            let text = reader.join().unwrap_or_default();
            return (status.code(), since.elapsed(), text);
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!("pgperf still ran {limit:?} after the server was paused; stderr:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `child`'s stderr until a line contains `marker` (within `limit`); returns the lines.
fn read_until(child: &mut Child, marker: &str, limit: Duration) -> String {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_owned();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut seen = String::new();
        let mut buf = Vec::new();
        // Progress lines end without a newline until the case is done: read bytes.
        while reader.read_until(b']', &mut buf).is_ok_and(|n| n > 0) {
            seen.push_str(&String::from_utf8_lossy(&buf));
            buf.clear();
            if seen.contains(&wanted) {
                let _ = tx.send(Ok((seen, reader.into_inner())));
                return;
            }
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok((seen, stderr))) => {
            child.stderr = Some(stderr);
            seen
        }
        Ok(Err(seen)) => panic!("pgperf ended before printing {marker:?}:\n{seen}"),
        Err(_) => panic!("pgperf printed no {marker:?} within {limit:?}"),
    }
}

#[tokio::test]
async fn pgperf_run_fails_within_its_bound_when_the_server_freezes_mid_run() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("bench.json");
    let args = [
        "run",
        "--filter",
        "lookup",
        "--baseline",
        baseline.to_str().unwrap(),
        "--results",
        dir.path().to_str().unwrap(),
    ];
    let mut child = pgperf_against(&server, &args);
    read_until(&mut child, "[ 2/4]", Duration::from_secs(120));
    pause(&server).await;
    let paused_at = Instant::now();
    let (code, took, stderr) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(120), paused_at))
            .await
            .unwrap();
    unpause(&server).await;
    server.shutdown().await;

    eprintln!("pgperf run exited {took:?} after the pause");
    assert_eq!(code, Some(3), "{stderr}");
    // Bounds: an operation 10 s, or a step 15 s; the liveness probe 5 s; dropping the
    // database 10 s; closing the pool 5 s.
    assert!(
        took < Duration::from_secs(50),
        "took {took:?} after the pause:\n{stderr}"
    );
    assert!(stderr.contains("no answer within"), "{stderr}");
    assert!(
        stderr.contains("lookup.entity_by_id"),
        "the case is named:\n{stderr}"
    );
}

#[tokio::test]
async fn check_server_fails_within_its_bound_on_a_paused_server() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    pause(&server).await;
    let started = Instant::now();
    let child = pgperf_against(&server, &["check-server"]);
    let (code, took, stderr) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(60), started))
            .await
            .unwrap();
    unpause(&server).await;
    server.shutdown().await;

    eprintln!("pgperf check-server exited after {took:?}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}:\n{stderr}");
    assert!(
        stderr.contains("connecting on postgres://postgres:***@")
            && stderr.contains("got no answer within 10s"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_fixtures_fail_within_their_bounds_on_a_paused_server() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let template = Template::ensure(server.server.admin_url()).await.unwrap();
    let admin = server.server.admin_url().clone();
    pause(&server).await;

    let started = Instant::now();
    let ensured = within(
        Duration::from_secs(40),
        "Template::ensure",
        Template::ensure(&admin),
    )
    .await;
    let ensure_took = started.elapsed();
    let handle = Server::external(admin.clone());
    let started = Instant::now();
    let name = pgperf::postgres::database_name("hang");
    let cloned = within(
        Duration::from_secs(40),
        "clone_database",
        handle.clone_database(&template, &name),
    )
    .await;
    let clone_took = started.elapsed();
    let started = Instant::now();
    let pool = within(
        Duration::from_secs(40),
        "Db::connect",
        pgperf::db::Db::connect(&server.url, crate::support::database::test_settings()),
    )
    .await;
    let pool_took = started.elapsed();
    unpause(&server).await;
    server.shutdown().await;

    for (what, result, took) in [
        ("Template::ensure", ensured.map(drop), ensure_took),
        ("clone_database", cloned.map(drop), clone_took),
    ] {
        let e = result.expect_err(what);
        assert!(
            matches!(e, ServerError::Stalled { .. })
                && e.to_string().contains("no answer within 10s"),
            "{what}: {e}"
        );
        assert!(took < Duration::from_secs(15), "{what} took {took:?}");
    }
    let e = pool.expect_err("Db::connect");
    assert!(e.to_string().contains("did not complete within 10s"), "{e}");
    assert!(
        pool_took < Duration::from_secs(15),
        "Db::connect took {pool_took:?}"
    );
}
