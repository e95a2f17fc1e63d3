//! `pgperf load` as a user runs it, shortened: a smoke run against the service it starts
//! passes and writes its files; the same run held to a threshold it cannot meet exits 1 naming
//! the threshold and the measured value; a remote target is refused, and a token goes to one
//! only when named and over https; `pgperf history` shows
//! the runs.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::gate;

fn pgperf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(args)
        .env_remove("PGPERF_DATABASE_URL")
        .env_remove("PGPERF_ADMIN_TOKEN")
        .env_remove("PGPERF_TEST_UNSET_TOKEN")
        .env(
            "PGPERF_TEST_LOAD_TOKEN",
            "a-token-of-forty-bytes-for-the-test-only",
        )
        .output()
        .expect("running pgperf")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_short_smoke_run_passes_then_an_impossible_threshold_fails_it_by_name() {
    if !crate::support::shared::shared().is_container() {
        crate::support::skip::skip(
            "the load tool starts PostgreSQL in a container of its own (PGPERF_DATABASE_URL is set)",
        );
        return;
    }
    // The run loads both cores: held shared, the gate keeps every timed test out meanwhile.
    let _gate = gate::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("smoke");
    let history = dir.path().join("history.jsonl");
    let (out_s, history_s) = (out_dir.to_str().unwrap(), history.to_str().unwrap());
    let short = [
        "load",
        "--profile",
        "smoke",
        "--duration",
        "6",
        "--entities",
        "2k",
        "--out",
        out_s,
        "--history",
        history_s,
    ];

    let passed = pgperf(&short);
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let requests = summary["requests"].as_u64().unwrap();
    assert!((100..=140).contains(&requests), "20/s for 6 s: {requests}");
    assert_eq!(summary["error_rate"], 0.0, "{summary}");
    assert_eq!(summary["breaches"], serde_json::json!([]));
    assert!(
        summary["kinds"]["cached_search"]["ok"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        report.contains("smoke — PASSED") && report.contains("Every threshold held"),
        "{report}"
    );
    for svg in ["latency.svg", "rps.svg", "pool.svg"] {
        let body = std::fs::read_to_string(out_dir.join(svg)).unwrap();
        assert!(
            body.starts_with("<svg") && body.contains("<polyline"),
            "{svg}"
        );
    }

    let strict = dir.path().join("strict.toml");
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("load/thresholds.toml"),
    )
    .unwrap();
    std::fs::write(&strict, committed.replace("p50_ms = 400", "p50_ms = 0.001")).unwrap();
    let mut strict_args = short.to_vec();
    strict_args.extend(["--thresholds", strict.to_str().unwrap()]);
    let failed = pgperf(&strict_args);
    let said = text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{said}");
    assert!(
        said.contains("smoke — FAILED")
            && said.contains("cached search p50 ")
            && said.contains("> 0.001 ms"),
        "{said}"
    );

    let trend = pgperf(&[
        "history",
        "--file",
        history_s,
        "--plot",
        dir.path().join("h.svg").to_str().unwrap(),
    ]);
    let table = text(&trend);
    assert_eq!(trend.status.code(), Some(0), "{table}");
    assert_eq!(table.matches("| smoke |").count(), 2, "{table}");
    assert!(
        table.contains("passed") && table.contains("FAILED"),
        "{table}"
    );
}

#[test]
fn a_remote_target_needs_allow_remote_and_bad_options_are_named() {
    for (args, says) in [
        (
            &[
                "load",
                "--profile",
                "smoke",
                "--target",
                "http://192.0.2.1:8080",
            ][..],
            "not a loopback address",
        ),
        (
            &["load", "--profile", "smoke", "--target", "ftp://127.0.0.1/"],
            "http:// or https://",
        ),
        (
            &["load", "--profile", "load", "--rate", "5"],
            "--rate does not apply",
        ),
        (
            &["load", "--profile", "smoke", "--weights", "robots=1"],
            "is not a request kind",
        ),
        (
            &["load", "--profile", "smoke", "--time-scale", "0"],
            "--time-scale",
        ),
        (
            &[
                "load",
                "--profile",
                "smoke",
                "--target",
                "http://192.0.2.1:8080",
                "--allow-remote",
                "--admin-token-env",
                "PGPERF_TEST_LOAD_TOKEN",
            ],
            "the token would cross the network in clear text",
        ),
        (
            &[
                "load",
                "--profile",
                "smoke",
                "--target",
                "https://192.0.2.1",
                "--allow-remote",
                "--admin-token-env",
                "PGPERF_TEST_UNSET_TOKEN",
            ],
            "PGPERF_TEST_UNSET_TOKEN: that variable is not set",
        ),
    ] {
        let out = pgperf(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("starting PostgreSQL"),
            "no server before the check"
        );
    }
}
