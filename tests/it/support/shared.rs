//! The run's one PostgreSQL server: started on first use, shared by every test, removed at
//! process exit (also when tests failed or panicked). Tests each have their own tokio
//! runtime, so the server is started on a runtime of its own and only its URL is shared.

use std::sync::OnceLock;

use pgperf::db::DatabaseUrl;
use pgperf::perf::wire::Relay;
use pgperf::postgres::{Server, Template, cleanup};

/// What every test needs to reach the shared server.
#[derive(Debug)]
pub struct Shared {
    /// Admin URL (database `postgres`).
    pub admin: DatabaseUrl,
    /// The migrated template to clone.
    pub template: Template,
    /// The container's id, when it is ours.
    pub container_id: Option<String>,
    /// Where the server comes from, as read at start.
    pub testbed: pgperf_testbed::Settings,
}

impl Shared {
    /// Whether the server is a container of ours (false for PGPERF_DATABASE_URL).
    pub fn is_container(&self) -> bool {
        self.container_id.is_some()
    }
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

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

/// The relay that delays every client message (`PGPERF_WIRE_DELAY_US`), kept for the run.
static DELAY_RELAY: OnceLock<Relay> = OnceLock::new();

/// With `PGPERF_WIRE_DELAY_US` set, every connection goes through a relay that delays each
/// client message: the admin URL returned is the relay's.
fn delayed(admin: DatabaseUrl) -> anyhow::Result<DatabaseUrl> {
    let Some(delay) = pgperf_harness::Settings::from_env()?.wire_delay else {
        return Ok(admin);
    };
    let relay = Relay::start(&admin.host_port(), delay)?;
    let via = admin.via("127.0.0.1", relay.port())?;
    let _ = DELAY_RELAY.set(relay);
    eprintln!("pgperf: every client message is delayed by {delay:?} (PGPERF_WIRE_DELAY_US)");
    Ok(via)
}

/// Starts the server. What the run creates (this container, the tests' own, databases on an
/// external server) is tracked by `pgperf::postgres::cleanup`: removed at exit, and on SIGINT
/// or SIGTERM (Ctrl-C of `cargo test`) before the process ends.
async fn start() -> anyhow::Result<Shared> {
    cleanup::on_signals();
    let testbed = pgperf_testbed::Settings::from_env()?;
    let server = Server::start(&testbed, &[]).await?;
    let container_id = server.container_id().map(str::to_owned);
    server.update_container(&testbed.container_update)?;
    let admin = delayed(server.admin_url().clone())?;
    let template = Template::ensure(&admin).await?;
    if container_id.is_none() {
        server.drop_stale_databases().await;
    }
    // The container must outlive this runtime; `clean_up_at_exit` removes it.
    std::mem::forget(server);
    Ok(Shared {
        admin,
        template,
        container_id,
        testbed,
    })
}

/// At process exit, after every test ran (passed, failed or panicked), remove the containers
/// (or, on an external server, drop the databases) this run made.
#[dtor::dtor(unsafe)]
fn clean_up_at_exit() {
    if std::env::var("TESTCONTAINERS_COMMAND").as_deref() == Ok("keep") {
        return;
    }
    cleanup::clean_up_now();
}
