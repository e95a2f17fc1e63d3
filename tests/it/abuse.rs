//! `pgperf abuse --target` against a real service: every check runs and reports, the
//! deterministic ones pass, and a service that breaks a bound makes the command fail naming
//! the check. The latency bounds are the product's, for a release build on an idle machine;
//! here (a debug build sharing two cores with the checks) they are printed, not asserted.

use std::time::Duration;

use pretty_assertions::assert_eq;

use pgperf::service::{AdminToken, Config, ConnectionLimits};

use crate::support::TestDb;
use crate::support::service::Running;

const TOKEN: &str = "abuse-test-token-0123456789abcdef0123";

/// Runs `pgperf abuse` at `s`: its exit code and the verdict of each check, by name.
async fn abuse(s: &Running, args: &[&str]) -> (Option<i32>, Vec<(String, String)>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(["abuse", "--target", &s.base])
        .args(args)
        .env("PGPERF_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .expect("running pgperf abuse");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let verdicts = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| check"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells[0].trim_start_matches("| ").to_owned();
            let verdict = cells[cells.len() - 1].trim_end_matches(" |").to_owned();
            (name, verdict)
        })
        .collect();
    (out.status.code(), verdicts)
}

fn config(header_timeout: Duration) -> Config {
    Config {
        admin_token: Some(AdminToken::new(TOKEN).unwrap()),
        cache_max_entries: 50,
        connections: ConnectionLimits {
            header_read_timeout: header_timeout,
            ..ConnectionLimits::default()
        },
        ..Config::default()
    }
}

/// The checks whose outcome does not depend on the machine's speed.
const DETERMINISTIC: [&str; 4] = [
    "statements 1 s after the flood",
    "search cache after distinct keys",
    "1,000 invented methods",
    "idle connections closed at the header timeout",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_runs_and_the_deterministic_ones_pass() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), config(Duration::from_secs(1))).await;
    let args = [
        "--flood-seconds",
        "3",
        "--keys",
        "300",
        "--idle-connections",
        "50",
        "--header-timeout-ms",
        "1000",
    ];

    let (code, verdicts) = abuse(&s, &args).await;

    assert_eq!(verdicts.len(), 10, "{verdicts:?}");
    for name in DETERMINISTIC {
        let verdict = verdicts.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert_eq!(
            verdict.map(String::as_str),
            Some("pass"),
            "{name}: {verdicts:?}"
        );
    }
    let failed = verdicts.iter().any(|(_, v)| v == "FAIL");
    assert_eq!(code, Some(if failed { 1 } else { 0 }), "{verdicts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_keeps_idle_connections_too_long_fails_naming_the_check() {
    let t = TestDb::new().await;
    // The service keeps idle connections 10 s; the check expects them closed by 1 s + 5 s.
    let s = Running::start(t.db.clone(), config(Duration::from_secs(10))).await;
    let args = [
        "--flood-seconds",
        "1",
        "--keys",
        "10",
        "--idle-connections",
        "5",
        "--header-timeout-ms",
        "1000",
    ];

    let (code, verdicts) = abuse(&s, &args).await;

    let idle = verdicts
        .iter()
        .find(|(n, _)| n == "idle connections closed at the header timeout");
    assert_eq!(idle.map(|(_, v)| v.as_str()), Some("FAIL"), "{verdicts:?}");
    assert_eq!(code, Some(1));
}
