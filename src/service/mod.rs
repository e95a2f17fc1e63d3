//! The HTTP API (axum) over the data layer.
//!
//! - `GET /health/live`: the process answers; no database involved, so a liveness probe never
//!   restarts the service because its database is down.
//! - `GET /health/database`: `SELECT 1` within [`DATABASE_CHECK_TIMEOUT`]: 200 with the
//!   latency, or 503 with the reason (never a URL, host or password).
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

mod api;
mod health;
mod problem;
pub mod telemetry;
pub mod thresholds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

use crate::db::search_cache::{DEFAULT_TTL, SearchCache};
use crate::db::{Db, DbError, MeteredConnection};

pub use health::{DATABASE_CHECK_TIMEOUT, HEALTH_JSON, STATS_MAX_AGE};
pub use problem::{PROBLEM_JSON, Problem};
pub use telemetry::{Operation, Telemetry};
pub use thresholds::{Thresholds, ThresholdsError};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The alert thresholds of the detailed health endpoint.
    pub thresholds: Thresholds,
    /// The bearer token the monitoring endpoints need; none: they are open.
    pub admin_token: Option<String>,
    /// The largest request body accepted, bytes.
    pub body_limit: usize,
    /// The longest a request may take; past it the answer is 503.
    pub request_timeout: Duration,
    /// How long a cached search page lives.
    pub cache_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            admin_token: None,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            cache_ttl: DEFAULT_TTL,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    db: Db,
    cache: Arc<SearchCache>,
    telemetry: Arc<Telemetry>,
    monitor: Arc<health::Monitor>,
    config: Arc<Config>,
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

    /// Search cache hits and misses since the service started.
    fn cache_totals(&self) -> (u64, u64) {
        let c = self.cache.counts();
        (c.hits, c.misses)
    }
}

/// The service's routes over `db` with the default configuration.
pub fn router(db: Db) -> Router {
    router_with(db, Config::default()).expect("the default configuration is valid")
}

/// The service's routes over `db`; refuses a cache TTL out of range.
pub fn router_with(db: Db, config: Config) -> Result<Router, DbError> {
    let window = Duration::from_secs(config.thresholds.window_seconds);
    let state = AppState {
        db,
        cache: Arc::new(SearchCache::new(config.cache_ttl)?),
        telemetry: Arc::new(Telemetry::new(window)),
        monitor: Arc::new(health::Monitor::default()),
        config: Arc::new(config),
    };
    let admin = Router::new()
        .route("/health/database/metrics", get(health::metrics))
        .route("/health/database/detailed", get(health::detailed))
        .route("/metrics", get(health::prometheus))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_only));
    Ok(Router::new()
        .route("/health/live", get(health::live))
        .route("/health/database", get(health::database))
        .route("/entities/{id}", get(api::entity))
        .route("/search", get(api::search))
        .route("/resolve", post(api::resolve))
        .merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), timed))
        .with_state(state))
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
    let method = request.method().as_str().to_owned();
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
    response
}

/// The monitoring endpoints: with a token configured, `Authorization: Bearer <token>`,
/// compared in constant time.
async fn admin_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = state.config.admin_token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = Problem::unauthorized().into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pgperf monitoring\""),
    );
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (new connections are refused) and closes the pool.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    db: Db,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    db.close().await;
    served
}
