//! Bringing up servers and databases: isolation between tests, and errors that name the
//! remedy (unreachable server, wrong credentials, missing image, no engine).

use std::time::Duration;

use pgperf::db::{DatabaseUrl, Db, DbError, PoolSettings};
use pgperf::postgres::{ContainerOptions, Server, ServerError};

use crate::support::{TestDb, database::test_settings, shared::shared};

fn quick() -> PoolSettings {
    PoolSettings {
        acquire_timeout: Duration::from_secs(3),
        ..test_settings()
    }
}

#[tokio::test]
async fn each_test_database_is_its_own() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    sqlx::query("CREATE TABLE only_in_a (x int)")
        .execute(a.db.pool())
        .await
        .unwrap();

    let in_b: bool = sqlx::query_scalar("SELECT to_regclass('only_in_a') IS NOT NULL")
        .fetch_one(b.db.pool())
        .await
        .unwrap();

    assert_ne!(a.url.database(), b.url.database());
    assert!(
        !in_b,
        "a table created in one test database is visible in another"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_server_and_never_the_password() {
    let url = DatabaseUrl::parse("postgres://app:hunter2@127.0.0.1:1/nothing").unwrap();

    let err = Db::connect(&url, quick()).await.unwrap_err();

    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("check the URL"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "the password leaked: {msg}");
}

/// The shared server's admin URL with `wrong-password` as its password, set through the URL's
/// own API (the URL may have no password at all: trust auth, `.pgpass`, `PGPASSWORD`).
fn with_wrong_password() -> DatabaseUrl {
    let mut url = url::Url::parse(shared().admin.expose()).unwrap();
    url.set_password(Some("wrong-password")).unwrap();
    DatabaseUrl::parse(url.as_str()).unwrap()
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_such() {
    let url = with_wrong_password();
    assert!(!url.to_string().contains("wrong-password"), "{url}");

    let err = match Db::connect(&url, quick()).await {
        Ok(db) => {
            db.close().await;
            crate::support::skip::skip(
                "the server accepts any password (trust authentication), so a wrong one cannot \
                 be refused",
            );
            return;
        }
        Err(e) => e,
    };

    let msg = err.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(
        !msg.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"),
        "the password leaked: {msg}"
    );
}

#[test]
fn a_url_without_slashes_is_refused_without_showing_its_password() {
    let err =
        DatabaseUrl::parse("postgres:postgres:wrong-password@127.0.0.1:5432/postgres").unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password"), "{shown}");
    assert!(shown.contains("postgres:***@127.0.0.1"), "{shown}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let url = shared().admin.with_database("no_such_database");

    let err = Db::connect(&url, quick()).await.unwrap_err();

    assert!(
        err.to_string()
            .contains("\"no_such_database\" does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_image_says_how_to_build_one() {
    if !shared().is_container() {
        crate::support::skip::skip("PGPERF_DATABASE_URL is set, no container engine in use");
        return;
    }
    let options = ContainerOptions {
        name: "pgperf-local/does-not-exist".into(),
        tag: "0".into(),
        host_port: None,
        startup_timeout: Duration::from_secs(30),
        data_on_tmpfs: true,
        stat_statements: true,
        durable: false,
        settings: Vec::new(),
    };

    let err = Server::start_container(options).await.unwrap_err();

    assert!(matches!(err, ServerError::ImageMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("scripts/ensure-pg-image.sh"),
        "{err}"
    );
}

#[test]
fn the_cli_says_what_to_do_when_no_engine_answers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(["check-server"])
        .env_remove("PGPERF_DATABASE_URL")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {:?}, stderr {stderr}",
        out.status
    );
    assert!(
        stderr.contains("no Docker engine answers") && stderr.contains("scripts/ensure-docker.sh"),
        "{stderr}"
    );
}

#[test]
fn the_cli_rejects_a_malformed_url_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgperf"))
        .args(["check-server"])
        .env("PGPERF_DATABASE_URL", "postgres://app:hunter2@/db:x")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("PGPERF_DATABASE_URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}
