//! The run's one PostgreSQL server: started on first use, shared by every test, removed at
//! process exit (also when tests failed or panicked). Tests each have their own tokio
//! runtime, so the server is started on a runtime of its own and only its URL is shared.

use std::sync::OnceLock;

use pgperf::db::DatabaseUrl;
use pgperf::perf::wire::Relay;
use pgperf::server::{Server, Template};
use sqlx::Connection;

/// What every test needs to reach the shared server.
#[derive(Debug)]
pub struct Shared {
    /// Admin URL (database `postgres`).
    pub admin: DatabaseUrl,
    /// The migrated template to clone.
    pub template: Template,
    /// Whether the server is a container of ours (false for PGPERF_DATABASE_URL).
    pub is_container: bool,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static CONTAINER_ID: OnceLock<String> = OnceLock::new();
/// Containers tests started for themselves: removed at exit too, in case a panicking test
/// could not remove its own.
static OTHERS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// On an external server (PGPERF_DATABASE_URL): its admin URL and the databases this process
/// made, dropped at exit.
static EXTERNAL_ADMIN: OnceLock<DatabaseUrl> = OnceLock::new();
static EXTERNAL_DATABASES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// Test databases on an external server older than this are a dead run's leftovers.
const STALE_HOURS: u64 = 24;

/// Registers a test database for dropping at process exit (external servers only: a
/// container of ours goes away whole).
pub fn register_database(name: &str) {
    if EXTERNAL_ADMIN.get().is_some()
        && let Ok(mut v) = EXTERNAL_DATABASES.lock()
    {
        v.push(name.to_owned());
    }
}

/// Registers a test's own container for removal at process exit.
pub fn register_for_cleanup(id: &str) {
    if let Ok(mut v) = OTHERS.lock() {
        v.push(id.to_owned());
    }
}

/// The shared server, started on first call. Panics with the bring-up error (which names the
/// remedy) if there is none, so every test fails with the same clear message.
pub fn shared() -> &'static Shared {
    let result = SHARED.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(start()).map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("starting the shared server panicked".to_owned()))
    });
    match result {
        Ok(shared) => shared,
        Err(e) => panic!("no PostgreSQL server for the tests: {e}"),
    }
}

/// Test-only: `docker update` arguments applied to the run's container once it is up
/// (`--cpus 1`, `--cpuset-cpus 1`, ...), to reproduce another machine's make-up on this one.
const CONTAINER_UPDATE_VAR: &str = "PGPERF_CONTAINER_UPDATE";

/// The relay that delays every client message (`PGPERF_WIRE_DELAY_US`), kept for the run.
static DELAY_RELAY: OnceLock<Relay> = OnceLock::new();

fn update_container(id: &str) -> anyhow::Result<()> {
    let Ok(args) = std::env::var(CONTAINER_UPDATE_VAR) else {
        return Ok(());
    };
    let args: Vec<&str> = args.split_whitespace().collect();
    if args.is_empty() {
        return Ok(());
    }
    let out = std::process::Command::new("docker")
        .arg("update")
        .args(&args)
        .arg(id)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{CONTAINER_UPDATE_VAR}: docker update {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// With `PGPERF_WIRE_DELAY_US` set, every connection goes through a relay that delays each
/// client message: the admin URL returned is the relay's.
fn delayed(admin: DatabaseUrl) -> anyhow::Result<DatabaseUrl> {
    let Some(delay) = pgperf::perf::wire::delay_from_env().map_err(anyhow::Error::msg)? else {
        return Ok(admin);
    };
    let relay = Relay::start(&admin.host_port(), delay)?;
    let via = admin.via("127.0.0.1", relay.port())?;
    let _ = DELAY_RELAY.set(relay);
    eprintln!("pgperf: every client message is delayed by {delay:?} (PGPERF_WIRE_DELAY_US)");
    Ok(via)
}

async fn start() -> anyhow::Result<Shared> {
    remove_leftover_containers();
    let server = Server::from_env().await?;
    let is_container = server.container_id().is_some();
    if let Some(id) = server.container_id() {
        let _ = CONTAINER_ID.set(id.to_owned());
        update_container(id)?;
    }
    let admin = delayed(server.admin_url().clone())?;
    let template = Template::ensure(&admin).await?;
    if !is_container {
        let _ = EXTERNAL_ADMIN.set(admin.clone());
        drop_stale_databases(&server).await;
    }
    // The container must outlive this runtime; `remove_shared_container` removes it at exit.
    std::mem::forget(server);
    Ok(Shared {
        admin,
        template,
        is_container,
    })
}

/// Drops test databases that a run killed before its exit hook left on an external server
/// (their names carry the hour they were made: `pgperf_t_<hour>_<pid>_<n>`).
async fn drop_stale_databases(server: &Server) {
    let now_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600)
        .unwrap_or(0);
    let Ok(mut conn) =
        sqlx::PgConnection::connect_with(&server.admin_url().connect_options()).await
    else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 'pgperf\_t\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let _ = conn.close().await;
    for name in names {
        let hour = name
            .strip_prefix("pgperf_t_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|h| h.parse::<u64>().ok());
        if hour.is_some_and(|h| h + STALE_HOURS < now_hour) {
            let _ = server.drop_database(&name).await;
        }
    }
}

/// Drops this process's databases on an external server; bounded, so exit never hangs.
fn drop_external_databases() {
    let (Some(admin), Ok(names)) = (EXTERNAL_ADMIN.get(), EXTERNAL_DATABASES.lock()) else {
        return;
    };
    if names.is_empty() {
        return;
    }
    let (admin, names) = (admin.clone(), names.clone());
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let server = Server::external(admin);
            let all = async {
                for name in &names {
                    let _ = server.drop_database(name).await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(20), all).await;
        });
    })
    .join();
}

/// Removes containers of ours whose owning process is gone (a run killed by Ctrl-C).
fn remove_leftover_containers() {
    let label = pgperf::server::OWNER_LABEL;
    let Ok(out) = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{label}\"}}}}"),
        ])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((id, pid)) = line.split_once(' ')
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", id])
                .output();
        }
    }
}

/// At process exit, after every test ran (passed, failed or panicked), remove the container
/// (or, on an external server, drop the databases this run made).
#[dtor::dtor(unsafe)]
fn remove_shared_container() {
    if std::env::var("TESTCONTAINERS_COMMAND").as_deref() == Ok("keep") {
        return;
    }
    drop_external_databases();
    let mut ids: Vec<String> = OTHERS.lock().map(|v| v.clone()).unwrap_or_default();
    ids.extend(CONTAINER_ID.get().cloned());
    if ids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", "-v"])
        .args(&ids)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
