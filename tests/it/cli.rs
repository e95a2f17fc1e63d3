//! The command line as a user runs it: usage errors (exit 2) that name what is wrong, before
//! any work is done, and no password in debug logs. Exit 1 for a regressed case is tested with
//! the timed tests (`timing::exit_codes`), since it holds the timing gate.

use std::process::{Command, Output};

use crate::support::gate;

/// Runs the built `pgperf` as CI does, with `env` set on top.
pub(crate) fn pgperf(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgperf"));
    cmd.args(args)
        .env("CI", "true")
        .env_remove("PGPERF_INJECT_SLOWDOWN")
        .env_remove("PGPERF_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running pgperf")
}

/// What a run printed to standard error.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_filter_that_matches_no_case_is_a_usage_error_naming_the_cases() {
    let out = pgperf(&["run", "--filter", "no-such-case"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("matches no case") && err.contains("lookup.select_1"),
        "{err}"
    );
    assert!(
        !err.contains("starting PostgreSQL"),
        "no server before the check: {err}"
    );
}

#[test]
fn zero_rounds_an_out_of_range_scale_and_a_queue_past_its_bound_are_usage_errors() {
    for args in [
        &["ingest-bench", "--rounds", "0"][..],
        &["compare-pgbench", "--scale", "0"],
        &["compare-pgbench", "--scale", "5000"],
        &["compare-pgbench", "--clients", "1,0"],
        &["serve", "--resolve-queue", "1001"],
    ] {
        let out = pgperf(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(args[1]), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn serving_beyond_loopback_without_a_token_or_with_a_short_one_is_a_usage_error() {
    let open = pgperf(&["serve", "--bind", "0.0.0.0:0"], &[]);
    let short = pgperf(
        &["serve", "--bind", "127.0.0.1:0"],
        &[("PGPERF_ADMIN_TOKEN", "too-short")],
    );
    let flag = pgperf(&["serve", "--admin-token", "x".repeat(40).as_str()], &[]);

    assert_eq!(open.status.code(), Some(2), "{}", stderr(&open));
    assert!(
        stderr(&open).contains("--bind 0.0.0.0:0")
            && stderr(&open).contains("--insecure-open-monitoring"),
        "{}",
        stderr(&open)
    );
    assert_eq!(short.status.code(), Some(2), "{}", stderr(&short));
    assert!(stderr(&short).contains("at least 32"), "{}", stderr(&short));
    assert!(
        !stderr(&short).contains("too-short"),
        "the token is never shown"
    );
    assert_eq!(
        flag.status.code(),
        Some(2),
        "no token flag: {}",
        stderr(&flag)
    );
    for out in [&open, &short] {
        assert!(
            !stderr(out).contains("starting PostgreSQL"),
            "{}",
            stderr(out)
        );
    }
}

#[tokio::test]
async fn debug_logging_never_prints_the_containers_password() {
    if !crate::support::shared::shared().is_container() {
        crate::support::skip::skip("needs a Docker engine (PGPERF_DATABASE_URL is set)");
        return;
    }
    let _gate = gate::shared().await;
    let out = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_pgperf"))
            .arg("check-server")
            .env_remove("PGPERF_DATABASE_URL")
            .env("PGPERF_LOG", "debug")
            .output()
            .expect("running pgperf")
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The Docker client logs the container's environment at debug level: it is there, masked.
    let shown: Vec<&str> = err
        .match_indices("POSTGRES_PASSWORD=")
        .map(|(i, _)| &err[i..])
        .collect();
    assert!(
        !shown.is_empty(),
        "no container environment in the debug log:\n{err}"
    );
    for rest in shown {
        assert!(
            rest.starts_with("POSTGRES_PASSWORD=***"),
            "{}",
            &rest[..rest.len().min(60)]
        );
    }
}
