//! The guard's exit codes when it judges time: a case slowed past its baseline exits 1 naming
//! the case, and a slowdown injected into no case is a usage error (exit 2).

use std::process::{Command, Output};

use crate::cli::{pgperf, stderr};
use crate::support::{attempts, gate};

/// The case is a trigram search, mostly server CPU. It was `lookup.select_1`, a bare round trip,
/// until a CI run on a host whose round trips came in two modes (13 µs or 70 µs, a batch in one
/// of them): recorded in the fast mode, the 4x injection padded to 4x the fast mode while the
/// round-trip reference read the slow one, and the check read x0.92
/// (docs/results/2026-12-02-sensitivity.md).
#[tokio::test]
async fn a_regression_exits_1_naming_the_case_and_a_slowdown_of_no_case_exits_2() {
    let _alone = gate::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("bench.json");
    let baseline = baseline.to_str().unwrap();
    // Results in the test's own folder: target/pgperf holds the user's last `pgperf run`.
    let results = dir.path().to_str().unwrap();
    // On the run's server: a container of each run's own would add two starts to the time
    // every other test waits for this one.
    let server = crate::support::shared::shared().admin.expose();
    let run = &[
        "run",
        "--filter",
        "lookup.trigram_search",
        "--baseline",
        baseline,
        "--results",
        results,
    ];
    let record_then_slow = || async move {
        let out = Command::new(env!("CARGO_BIN_EXE_pgperf"))
            .args(run)
            .env_remove("CI")
            .env_remove("PGPERF_INJECT_SLOWDOWN")
            .env("PGPERF_BASELINE", "force")
            .env("PGPERF_DATABASE_URL", server)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "recording: {}", stderr(&out));
        pgperf(
            run,
            &[
                ("PGPERF_INJECT_SLOWDOWN", "lookup.trigram_search=4"),
                ("PGPERF_DATABASE_URL", server),
            ],
        )
    };
    let out = attempts::until_judged("a 4x slowdown", record_then_slow, |out: &Output| {
        let said = format!("{}{}", stderr(out), String::from_utf8_lossy(&out.stdout));
        if said.contains("time not judged") {
            vec!["lookup.trigram_search".to_owned()]
        } else {
            Vec::new()
        }
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("case lookup.trigram_search regressed"),
        "{}",
        stderr(&out)
    );

    let out = pgperf(run, &[("PGPERF_INJECT_SLOWDOWN", "lookup.no_such=3")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no case is named \"lookup.no_such\""),
        "{}",
        stderr(&out)
    );
}
