//! `pgperf serve`: the HTTP API. On `PGPERF_DATABASE_URL`'s database (migrated first), or,
//! for local use, on a fresh migrated database in a container it starts (removed when the
//! process ends), optionally seeded with generated entities (`--seed 100k`).
//!
//! SIGINT or SIGTERM stops accepting connections, lets in-flight requests finish, closes the
//! pool and removes what the command started; a second signal stops at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use pgperf::db::{DatabaseUrl, Db, PoolSettings};
use pgperf::service::{AdminToken, Config, ConnectionLimits, ProcessCache, Thresholds};

use super::scale::parse_count;
use super::{Failure, with_workspace};

/// Options of `pgperf serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Load this many generated entities (with aliases) first, e.g. 100k; only into an empty
    /// database.
    #[arg(long, value_parser = parse_count)]
    pub seed: Option<u64>,
    /// The alert thresholds file of /health/database/detailed (default: the committed
    /// monitoring/thresholds.toml, built in).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// The longest a request may take, ms; past it the answer is 503.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// The largest request body accepted, bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// The pool's maximum number of connections.
    #[arg(long, default_value_t = 10)]
    pub max_connections: u32,
    /// A file holding the admin token the monitoring endpoints need (metrics, detailed,
    /// /metrics); otherwise PGPERF_ADMIN_TOKEN. Never a flag: argv is public in /proc.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the monitoring endpoints without a token on a non-loopback address.
    #[arg(long)]
    pub insecure_open_monitoring: bool,
    /// Data requests in flight at most; past it a request gets 503 with Retry-After at once.
    #[arg(long, default_value_t = Config::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Resolution batches in flight at most (keep it below --max-connections).
    #[arg(long, default_value_t = Config::default().resolve_in_flight)]
    pub resolve_in_flight: usize,
    /// Resolution batches that may wait for a slot (plus one), at most 1000; past them a batch
    /// gets 503 with Retry-After at once. 0: none wait.
    #[arg(long, default_value_t = Config::default().resolve_queue)]
    pub resolve_queue: usize,
    /// How long a cached search page may be served after a write that changes it, ms (0:
    /// every write invalidates the cache at once). Writes then move the cache's generation at
    /// most once per this time, so continuous ingestion does not empty the cache. Set on the
    /// database at start; at most an hour.
    #[arg(long, default_value_t = 10_000)]
    pub cache_max_staleness_ms: u64,
    /// Memory for search pages kept in this process, in front of the cache table, MiB (0:
    /// none). A page found there costs no database round trip, and may be served up to 4
    /// polls of the generation (--process-cache-refresh-ms) past --cache-max-staleness-ms.
    /// Off when --cache-max-staleness-ms is 0 (exact).
    #[arg(long, default_value_t = 64)]
    pub process_cache_mib: u64,
    /// How often the process cache polls the search generation, ms (on a connection of its
    /// own, beside the pool).
    #[arg(long, default_value_t = 250)]
    pub process_cache_refresh_ms: u64,
    /// Client connections open at most; at the cap new ones wait to be accepted.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_client_connections: usize,
    /// The longest a client may take to send a request's head, ms; also the longest a
    /// kept-alive connection may sit idle between requests. Past it the connection is closed.
    #[arg(long, default_value_t = ConnectionLimits::default().header_read_timeout.as_millis() as u64)]
    pub header_timeout_ms: u64,
}

/// The admin token from `--admin-token-file` or `PGPERF_ADMIN_TOKEN` (read here, at the
/// edge); none when neither is given. An empty, short or unreadable one is a usage error.
fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<AdminToken>> {
    let (text, source) = match &args.admin_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --admin-token-file {}", path.display()))?;
            (text, "--admin-token-file")
        }
        None => match std::env::var(ADMIN_TOKEN_VAR) {
            Ok(text) => (text, ADMIN_TOKEN_VAR),
            Err(_) => return Ok(None),
        },
    };
    AdminToken::new(&text)
        .map(Some)
        .map_err(|e| Failure::Usage(format!("{source}: {e}")).into())
}

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_VAR: &str = "PGPERF_ADMIN_TOKEN";

/// A non-loopback address without a token would open the monitoring endpoints to the
/// network: refused unless asked for by name.
fn check_exposure(args: &ServeArgs, token: Option<&AdminToken>) -> Result<(), Failure> {
    if args.bind.ip().is_loopback() || token.is_some() || args.insecure_open_monitoring {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "--bind {} is not a loopback address and no admin token is set: the monitoring \
         endpoints would be open to the network. Set {ADMIN_TOKEN_VAR} or --admin-token-file \
         (at least 32 bytes), or pass --insecure-open-monitoring",
        args.bind
    )))
}

/// The longest resolution queue `--resolve-queue` accepts: waiting batches hold their
/// requests' memory, and a long queue only turns shed batches into timed-out ones.
const MAX_RESOLVE_QUEUE: usize = 1_000;

fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let thresholds = match &args.thresholds {
        Some(path) => Thresholds::load(path)?,
        None => Thresholds::default(),
    };
    let limits = [
        args.request_timeout_ms as usize,
        args.body_limit,
        args.max_in_flight,
        args.resolve_in_flight,
        args.max_client_connections,
        args.header_timeout_ms as usize,
        args.process_cache_refresh_ms as usize,
    ];
    if limits.contains(&0) {
        return Err(Failure::Usage(
            "--request-timeout-ms, --body-limit, --max-in-flight, --resolve-in-flight, --max-client-connections, --header-timeout-ms and --process-cache-refresh-ms must be above zero".to_owned(),
        )
        .into());
    }
    if args.resolve_queue > MAX_RESOLVE_QUEUE {
        return Err(Failure::Usage(format!(
            "--resolve-queue must be at most {MAX_RESOLVE_QUEUE}"
        ))
        .into());
    }
    if args.cache_max_staleness_ms > 3_600_000 {
        return Err(Failure::Usage(
            "--cache-max-staleness-ms must be at most 3600000 (an hour)".to_owned(),
        )
        .into());
    }
    let admin_token = admin_token(args)?;
    check_exposure(args, admin_token.as_ref())?;
    Ok(Config {
        thresholds,
        admin_token,
        body_limit: args.body_limit,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_in_flight: args.max_in_flight,
        resolve_in_flight: args.resolve_in_flight,
        resolve_queue: args.resolve_queue,
        connections: ConnectionLimits {
            max_connections: args.max_client_connections,
            header_read_timeout: Duration::from_millis(args.header_timeout_ms),
        },
        process_cache: process_cache(args),
        ..Config::default()
    })
}

/// The process-local cache tier: none in exact mode or with no entries.
fn process_cache(args: &ServeArgs) -> Option<ProcessCache> {
    (args.cache_max_staleness_ms > 0 && args.process_cache_mib > 0).then(|| ProcessCache {
        max_bytes: args.process_cache_mib.saturating_mul(1024 * 1024),
        refresh: Duration::from_millis(args.process_cache_refresh_ms),
    })
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    // No statement outlives the longest request: the session's statement_timeout is the
    // request limit (resolution sets a shorter one per request, what is left of its time).
    let settings = PoolSettings {
        max_connections: args.max_connections,
        application_name: "pgperf-serve".to_owned(),
        statement_timeout: Some(config.request_timeout),
        query_timeout: config.request_timeout,
        ..PoolSettings::default()
    };
    // PGPERF_DATABASE_URL: here the database to serve, not a server to clone databases on.
    match pgperf_testbed::Settings::from_env()?.database_url {
        Some(url) => {
            let db = Db::connect(&url, settings).await?;
            pgperf::db::migrate(db.pool(), url.database()).await?;
            serve_on(&args, db, config, &url).await
        }
        None => {
            with_workspace("serve", async |ws| {
                let db = ws.pool(settings).await?;
                serve_on(&args, db, config, &ws.url).await
            })
            .await
        }
    }
}

async fn serve_on(
    args: &ServeArgs,
    db: Db,
    config: Config,
    url: &DatabaseUrl,
) -> anyhow::Result<()> {
    if let Some(n) = args.seed {
        seed(&db, n).await?;
    }
    let staleness = Duration::from_millis(args.cache_max_staleness_ms);
    pgperf::db::search_cache::set_max_staleness(&mut *db.acquire().await?, staleness).await?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("listening on {}", args.bind))?;
    let limits = config.connections;
    let router = pgperf::service::router_with(db.clone(), config)?;
    let stop = pgperf::postgres::cleanup::drain_on_signal();
    eprintln!(
        "pgperf: serving on http://{} (database {url}); Ctrl-C stops",
        listener.local_addr()?,
    );
    pgperf::service::serve(listener, router, db, limits, async {
        if let Ok(signal) = stop.await {
            eprintln!("pgperf: {signal}: draining in-flight requests");
        }
    })
    .await
    .context("serving HTTP")?;
    eprintln!("pgperf: stopped; the pool is closed");
    Ok(())
}

/// Loads `n` generated entities through the COPY path, into an empty database only.
async fn seed(db: &Db, n: u64) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?;
    let (present,): (i64,) = sqlx::query_as("SELECT count(*) FROM entities")
        .fetch_one(&mut *conn)
        .await?;
    if present > 0 {
        return Err(Failure::Usage(format!(
            "--seed loads only into an empty database; this one has {present} entities"
        ))
        .into());
    }
    let started = Instant::now();
    let loaded = pgperf::db::ingest::copy_entities(
        &mut conn,
        pgperf::dataset::entities(pgperf::dataset::SERVE_SEED, n),
    )
    .await?;
    pgperf::db::ingest::analyze_entities(&mut conn).await?;
    eprintln!(
        "pgperf: seeded {} entities and {} aliases in {:.1} s",
        loaded.entities,
        loaded.aliases,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
