//! # pgperf-service
//!
//! The HTTP API (axum) over the data layer ([`pgperf_db`]); it depends on nothing of the
//! test bed or the measuring harness.
//!
//! - `GET /health/live`: the process answers; no database involved, so a liveness probe never
//!   restarts the service because its database is down.
//! - `GET /health/database`: `SELECT 1` within [`DATABASE_CHECK_TIMEOUT`], a passing one
//!   shared for [`CHECK_MAX_AGE`]: 200 with the latency and age, or 503 with the reason (never
//!   a URL, host or password).
//! - `GET /health/database/metrics`: the pool, the database operations of the window, the
//!   search cache and the database's own figures, as JSON.
//! - `GET /health/database/detailed`: `application/health+json` (IETF health check draft),
//!   one check per measurement against [`Thresholds`]; 503 when a check fails.
//! - `GET /metrics`: the Prometheus text exposition.
//! - `GET /entities/{id}`, `GET /search?q=&kind=&limit=&cursor=` (the `x-cache` header says
//!   `hit` or `miss`), `POST /resolve` with `{"names": [{"name": ..., "kind": ...}]}`.
//!
//! With an admin token configured, the three monitoring endpoints need it as a bearer token.
//! Every request runs under a time limit and a body limit; errors are
//! `application/problem+json` (RFC 9457) naming what is wrong.

#![warn(clippy::too_many_lines)]

pub(crate) use pgperf_db as db;

mod api;
mod connections;
mod health;
mod problem;
mod shared_check;
pub mod telemetry;
pub mod thresholds;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::limit::{ConcurrencyLimitLayer, GlobalConcurrencyLimitLayer};
use tower::util::{Either, MapErrLayer};

use crate::db::process_cache::ProcessTier;
use crate::db::search_cache::{DEFAULT_TTL, SearchCache};
use crate::db::{Db, DbError, MeteredConnection};

pub use connections::{ConnectionLimits, accept_loop};
pub use health::{
    CHECK_MAX_AGE, CHECK_REFRESH_AFTER, DATABASE_CHECK_TIMEOUT, HEALTH_JSON, STATS_MAX_AGE,
};
pub use problem::{PROBLEM_JSON, Problem};
pub use telemetry::{Operation, Telemetry};
pub use thresholds::{Thresholds, ThresholdsError};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The alert thresholds of the detailed health endpoint.
    pub thresholds: Thresholds,
    /// The bearer token the monitoring endpoints need; none: they are open.
    pub admin_token: Option<AdminToken>,
    /// The largest request body accepted, bytes.
    pub body_limit: usize,
    /// The longest a request may take; past it the answer is 503.
    pub request_timeout: Duration,
    /// How long a cached search page lives.
    pub cache_ttl: Duration,
    /// Data requests (entities, search, resolution) in flight at most; past it a request is
    /// shed at once: 503 with `Retry-After`, never a queue.
    pub max_in_flight: usize,
    /// Resolution batches in flight at most (below the pool's size, so batches cannot take
    /// every connection); past it a batch waits in [`Config::resolve_queue`]. The default, 2,
    /// is one batch per core of the machine kind it was measured on: with 4, the stress
    /// profile broke at the same rate with twice the latency, and the liveness probe missed
    /// its bound under huge names (docs/results/2026-12-02-hostile.md).
    pub resolve_in_flight: usize,
    /// The queue of resolution batches waiting for a slot, in arrival order (tower's
    /// `Buffer` of this size, whose worker holds one batch more: up to this many plus one
    /// wait); a batch past it is shed. 0: none wait, a batch past the slots is shed at once.
    /// Two slots without a queue shed about one batch in five at half their capacity (a loss
    /// system); a short queue absorbs those bursts, and bounds the wait to a few batches' time
    /// over the slots. A batch whose client went away is dropped from the queue unrun.
    pub resolve_queue: usize,
    /// The most search cache entries kept: a purge every [`UPKEEP_EVERY`] deletes expired
    /// entries, then those closest to expiry beyond this.
    pub cache_max_entries: u64,
    /// The connection cap and the header-read (and idle) timeout.
    pub connections: ConnectionLimits,
    /// The process-local search cache tier, off by default: it serves pages up to
    /// [`ProcessCache::max_age`] after the database's readers stopped serving them.
    pub process_cache: Option<ProcessCache>,
}

/// The process-local tier of the search cache ([`pgperf_db::process_cache`]): a cached search
/// answered from memory, with no database round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCache {
    /// The most bytes of pages kept (see [`ProcessTier::new`]).
    pub max_bytes: u64,
    /// How often the search generation is polled, on a connection of its own.
    pub refresh: Duration,
}

impl ProcessCache {
    /// How old the last poll may be while the tier serves (4 polls): the most a page is
    /// served after the database's own readers stopped serving it.
    pub fn max_age(&self) -> Duration {
        self.refresh * 4
    }
}

/// How much sooner than the request's limit the server stops a request's statements.
pub const STATEMENT_MARGIN: Duration = Duration::from_millis(250);

/// How often the service purges the search cache and drains the metrics recorder.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs as long as the router: purges the search cache to its cap and runs the metrics
/// recorder's upkeep, so that neither the table nor the histograms grow without bound.
/// Dropping it (with the last clone of the router's state) stops the task.
struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Background {
    fn start(db: Db, telemetry: Arc<Telemetry>, max_entries: u64) -> Self {
        Self(vec![tokio::spawn(async move {
            let start = tokio::time::Instant::now() + UPKEEP_EVERY;
            let mut tick = tokio::time::interval_at(start, UPKEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                telemetry.upkeep();
                // Housekeeping never queues for a connection: with none idle, the requests
                // have the pool, and the purge waits for the next tick.
                let Some(mut c) = db.pool().try_acquire() else {
                    continue;
                };
                let purge = SearchCache::purge(&mut c, max_entries);
                match tokio::time::timeout(UPKEEP_EVERY, purge).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("purging the search cache failed: {e}"),
                    Err(_) => tracing::warn!("purging the search cache took over {UPKEEP_EVERY:?}"),
                }
            }
        })])
    }

    /// Also polls the search generation for `tier` every `refresh`, on a connection of its
    /// own (a busy pool must not turn the tier off); a failed poll drops that connection, and
    /// the tier stops serving once its last poll is too old.
    fn poll(&mut self, db: Db, tier: Arc<ProcessTier>, refresh: Duration) {
        self.0.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut conn = None;
            loop {
                tick.tick().await;
                match tokio::time::timeout(refresh, poll_once(&db, &tier, &mut conn)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!("polling the search generation failed: {e}"),
                    Err(_) => {
                        tracing::debug!("polling the search generation took over {refresh:?}")
                    }
                }
            }
        }));
    }
}

/// One poll of the search generation on `conn`, opened first when there is none; a failed
/// poll leaves none (the connection may be broken), and so does a poll cut short by a timeout.
async fn poll_once(
    db: &Db,
    tier: &ProcessTier,
    conn: &mut Option<sqlx::PgConnection>,
) -> Result<(), DbError> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => db.connect_one().await?,
    };
    tier.poll(&mut c).await?;
    *conn = Some(c);
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            admin_token: None,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            cache_ttl: DEFAULT_TTL,
            max_in_flight: 64,
            resolve_in_flight: 2,
            resolve_queue: 4,
            cache_max_entries: 10_000,
            connections: ConnectionLimits::default(),
            process_cache: None,
        }
    }
}

/// The shortest admin token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 32;

/// The bearer token of the monitoring endpoints: at least [`MIN_TOKEN_BYTES`] bytes, compared
/// in constant time, and never shown (`Debug` prints `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token of at least [`MIN_TOKEN_BYTES`] bytes (surrounding white space removed, so a
    /// token file's final newline does not count); the error says what is wrong, not the token.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the admin token has {} bytes; at least {MIN_TOKEN_BYTES} are needed \
                 (for example: openssl rand -hex 32)",
                token.len()
            ));
        }
        Ok(Self(token.to_owned()))
    }

    fn matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    db: Db,
    cache: Arc<SearchCache>,
    tier: Option<Arc<ProcessTier>>,
    telemetry: Arc<Telemetry>,
    monitor: Arc<shared_check::SharedCheck<health::ServerStats>>,
    probe: Arc<shared_check::SharedCheck<()>>,
    config: Arc<Config>,
    _background: Arc<Background>,
}

impl AppState {
    /// A pool connection, its wait timed (and a timeout counted for the health checks).
    async fn acquire(&self) -> Result<MeteredConnection, DbError> {
        let started = Instant::now();
        let result = self.db.acquire().await;
        self.telemetry.observe(
            "pgperf_pool_acquire_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        if let Err(DbError::Unavailable {
            source: sqlx::Error::PoolTimedOut,
        }) = &result
        {
            self.telemetry.acquire_timeouts.count(1);
        }
        result
    }

    /// Sets the transaction's `statement_timeout` to what is left of the request's time (less
    /// [`STATEMENT_MARGIN`]), so the server stops a statement before the request gives up on
    /// it: no statement outlives its request.
    async fn stop_before_the_request(
        &self,
        tx: &mut sqlx::PgConnection,
        started: Instant,
    ) -> Result<(), DbError> {
        let left = self
            .config
            .request_timeout
            .saturating_sub(started.elapsed())
            .saturating_sub(STATEMENT_MARGIN);
        let ms = left.as_millis().max(1).to_string();
        sqlx::query("SELECT set_config('statement_timeout', $1, true)")
            .bind(ms)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Search cache hits and misses since the service started.
    fn cache_totals(&self) -> (u64, u64) {
        let c = self.cache.counts();
        let memory = self.tier.as_ref().map_or(0, |t| t.hits());
        (c.hits + memory, c.misses)
    }
}

/// `$limit` with load shedding in front: a request past the limit is answered at once with
/// a 503 problem and `Retry-After`, instead of waiting in a queue.
macro_rules! shed {
    ($limit:expr) => {
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
            .layer(tower::load_shed::LoadShedLayer::new())
            .layer($limit)
    };
}

/// The service's routes over `db` with the default configuration.
pub fn router(db: Db) -> Router {
    router_with(db, Config::default()).expect("the default configuration is valid")
}

/// The service's routes over `db`; refuses a cache TTL out of range.
pub fn router_with(db: Db, config: Config) -> Result<Router, DbError> {
    let window = Duration::from_secs(config.thresholds.window_seconds);
    let telemetry = Arc::new(Telemetry::new(window));
    let mut background =
        Background::start(db.clone(), Arc::clone(&telemetry), config.cache_max_entries);
    let tier = config.process_cache.map(|p| {
        let tier = Arc::new(ProcessTier::new(p.max_bytes, config.cache_ttl, p.max_age()));
        background.poll(db.clone(), Arc::clone(&tier), p.refresh);
        tier
    });
    let state = AppState {
        db,
        cache: Arc::new(SearchCache::new(config.cache_ttl)?),
        tier,
        telemetry,
        _background: Arc::new(background),
        monitor: Arc::new(health::server_stats()),
        probe: Arc::new(health::select_1()),
        config: Arc::new(config),
    };
    let admin = Router::new()
        .route("/health/database/metrics", get(health::metrics))
        .route("/health/database/detailed", get(health::detailed))
        .route("/metrics", get(health::prometheus))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_only));
    // The data routes share one in-flight limit; resolution has its own, lower one, behind a
    // short queue. The health routes have none: a flood of data requests must not make them
    // fail.
    let resolve_queue = queue_layer(state.config.resolve_queue);
    let data = Router::new()
        .route("/entities/{id}", get(api::entity))
        .route("/search", get(api::search))
        .route(
            "/resolve",
            post(api::resolve).layer(shed!(
                tower::ServiceBuilder::new()
                    .layer(resolve_queue)
                    .layer(ConcurrencyLimitLayer::new(state.config.resolve_in_flight))
            )),
        )
        .route_layer(shed!(GlobalConcurrencyLimitLayer::new(
            state.config.max_in_flight
        )));
    Ok(Router::new()
        .route("/health/live", get(health::live))
        .route("/health/database", get(health::database))
        .merge(data)
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), timed))
        .with_state(state))
}

/// The error conversion of the queue-less branch of [`queue_layer`].
type BoxInfallible = fn(Infallible) -> BoxError;

/// The queue in front of a concurrency limit: tower's `Buffer` of `size` (its worker holds
/// one more request, so up to `size + 1` wait), or none for 0. Either way errors are boxed,
/// for [`shed!`].
fn queue_layer(size: usize) -> Either<BufferLayer<Request>, MapErrLayer<BoxInfallible>> {
    match size {
        0 => Either::Right(MapErrLayer::new(|never| match never {})),
        size => Either::Left(BufferLayer::new(size)),
    }
}

async fn overloaded(_: tower::BoxError) -> Response {
    Problem::overloaded().into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    Problem::method_not_allowed(request.method().as_str(), request.uri().path()).into_response()
}

async fn not_found(request: Request) -> Response {
    Problem::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// Every request: under the time limit, counted and timed per route (the matched pattern,
/// so ids do not make new series), and 5xx counted in the error window.
async fn timed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = metric_method(request.method()).to_owned();
    let started = Instant::now();
    let limit = state.config.request_timeout;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(r) => r,
        Err(_) => Problem::unavailable(format!(
            "the request took longer than its limit of {} ms",
            limit.as_millis()
        ))
        .into_response(),
    };
    let took = started.elapsed();
    let status = response.status();
    let t = &state.telemetry;
    t.observe(
        "pgperf_http_request_duration_seconds",
        &[("route", route.clone()), ("method", method.clone())],
        took.as_secs_f64(),
    );
    t.increment(
        "pgperf_http_requests_total",
        &[
            ("route", route),
            ("method", method),
            ("status", status.as_u16().to_string()),
        ],
        1,
    );
    let outcome = if status.is_server_error() {
        telemetry::Outcome::Error
    } else {
        telemetry::Outcome::Ok
    };
    t.http.record(took, outcome);
    let mut response = response;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A request's method as a metric label: one of a fixed set, so that invented methods make
/// no new series.
fn metric_method(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The monitoring endpoints: with a token configured, `Authorization: Bearer <token>`,
/// compared in constant time.
async fn admin_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = state.config.admin_token.as_ref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.matches(given) {
        return next.run(request).await;
    }
    let mut response = Problem::unauthorized().into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pgperf monitoring\""),
    );
    response
}

/// Serves `router` on `listener` within `limits` (see [`ConnectionLimits`]) until `shutdown`
/// resolves, then lets in-flight requests finish (new connections are refused) and closes the
/// pool.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    db: Db,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits.validate().map_err(std::io::Error::other)?;
    connections::accept_loop(listener, router, limits, shutdown).await;
    db.close().await;
    Ok(())
}
