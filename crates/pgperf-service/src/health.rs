//! The database health endpoints and `/metrics`.
//!
//! The metrics, detailed and Prometheus endpoints read in-memory figures plus one cheap query
//! on the database's statistics views ([`SERVER_STATS`]), run on a connection of its own
//! (outside the pool, so a saturated pool is reported, not suffered) and shared for
//! [`STATS_MAX_AGE`] ([`SharedCheck`]): a scrape storm cannot load the database.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::AppState;
pub use super::shared_check::DATABASE_CHECK_TIMEOUT;
use super::shared_check::{Reading, SharedCheck, Sharing};
use super::telemetry::{Operation, Telemetry, WindowSummary};
use super::thresholds::{Limits, Status, Thresholds};
use crate::db::latency::ms_of_us;
use crate::db::{DbError, PoolSnapshot};

/// How long the monitor's figures are reused.
pub const STATS_MAX_AGE: Duration = Duration::from_secs(1);

/// The media type of health responses (IETF health check draft).
pub const HEALTH_JSON: &str = "application/health+json";

/// The monitor's one query: this database's counters and its connections by state.
const SERVER_STATS: &str = "
SELECT d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.deadlocks, d.temp_bytes,
       coalesce((SELECT json_object_agg(state, n)::text
                   FROM (SELECT coalesce(a.state, 'unknown') AS state, count(*) AS n
                           FROM pg_stat_activity a
                          WHERE a.datname = current_database()
                          GROUP BY 1) s), '{}') AS connections,
       coalesce((SELECT extract(epoch FROM max(clock_timestamp() - a.query_start))::float8
                   FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.state = 'active'
                    AND a.pid <> pg_backend_pid()), 0) AS oldest_query_s,
       (SELECT count(*) FROM search_cache) AS cache_entries
  FROM pg_stat_database d
 WHERE d.datname = current_database()";

/// The database's own figures (pg_stat_database, pg_stat_activity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStats {
    /// Transactions committed.
    pub commits: i64,
    /// Transactions rolled back.
    pub rollbacks: i64,
    /// Buffer hits over hits and reads (1 when nothing was read yet).
    pub buffer_hit_ratio: f64,
    /// Deadlocks detected.
    pub deadlocks: i64,
    /// Bytes written to temporary files.
    pub temp_bytes: i64,
    /// Connections to this database by state (`active`, `idle`, `idle in transaction`, ...).
    pub connections: BTreeMap<String, i64>,
    /// Age of the oldest statement running now, other than the monitor's, seconds.
    pub oldest_query_s: f64,
    /// Rows in the search cache (held to the service's `cache_max_entries` by the purge).
    pub cache_entries: i64,
}

/// The server's statistics, shared for [`STATS_MAX_AGE`] (a background refresh past half of
/// it), not metered: the monitoring endpoints' one query. Its connection is its own, so it
/// still reports the server while the service stops.
pub(crate) fn server_stats() -> SharedCheck<ServerStats> {
    let sharing = Sharing {
        max_age: STATS_MAX_AGE,
        refresh_after: STATS_MAX_AGE / 2,
        metered_as: None,
        fails_when_stopping: false,
    };
    SharedCheck::new(|c| query(c).boxed(), sharing)
}

/// The `SELECT 1` behind `/health/database`, shared for [`CHECK_MAX_AGE`] (a background
/// refresh past [`CHECK_REFRESH_AFTER`]), metered as [`Operation::HealthCheck`]: a flood of
/// probes costs the database nothing, and a database saturated by other work (a resolution
/// flood) does not slow the probes' answers. It fails once the service is stopping.
pub(crate) fn select_1() -> SharedCheck<()> {
    let sharing = Sharing {
        max_age: CHECK_MAX_AGE,
        refresh_after: CHECK_REFRESH_AFTER,
        metered_as: Some(Operation::HealthCheck),
        fails_when_stopping: true,
    };
    SharedCheck::new(
        |c| {
            async move {
                sqlx::query("SELECT 1").execute(c).await?;
                Ok(())
            }
            .boxed()
        },
        sharing,
    )
}

async fn query(c: &mut PgConnection) -> Result<ServerStats, DbError> {
    let row: (i64, i64, i64, i64, i64, i64, String, f64, i64) =
        sqlx::query_as(SERVER_STATS).fetch_one(c).await?;
    let (commits, rollbacks, hit, read, deadlocks, temp_bytes, connections, oldest, entries) = row;
    Ok(ServerStats {
        commits,
        rollbacks,
        buffer_hit_ratio: if hit + read == 0 {
            1.0
        } else {
            hit as f64 / (hit + read) as f64
        },
        deadlocks,
        temp_bytes,
        connections: serde_json::from_str(&connections).unwrap_or_default(),
        oldest_query_s: oldest,
        cache_entries: entries,
    })
}

fn health(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HEALTH_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// `GET /health/live`.
pub async fn live() -> Response {
    health(StatusCode::OK, json!({ "status": "pass" }))
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// A passing database check at most this old answers `GET /health/database` at once.
pub const CHECK_MAX_AGE: Duration = STATS_MAX_AGE;

/// A passing check older than this is still answered, and the next one starts in the
/// background: a probe every few hundred ms never waits on the database.
pub const CHECK_REFRESH_AFTER: Duration = Duration::from_millis(250);

/// `GET /health/database`: the latest `SELECT 1` on a connection of its own ([`select_1`]),
/// each within [`DATABASE_CHECK_TIMEOUT`]: its latency and its age.
pub async fn database(State(state): State<AppState>) -> Response {
    let c = state.probe.reading(&state.db, &state.telemetry).await;
    match c.result {
        Ok(()) => health(
            StatusCode::OK,
            json!({
                "status": "pass",
                "latency_ms": round3(c.took.as_secs_f64() * 1e3),
                "age_ms": round3(c.at.elapsed().as_secs_f64() * 1e3),
            }),
        ),
        Err(why) => health(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "fail", "reason": why }),
        ),
    }
}

fn window_json(w: &WindowSummary) -> Value {
    json!({
        "count": w.count,
        "errors": w.errors,
        "timeouts": w.timeouts,
        "p50_ms": w.p50_ms,
        "p95_ms": w.p95_ms,
        "p99_ms": w.p99_ms,
    })
}

fn pool_json(p: &PoolSnapshot, timeouts_in_window: u64) -> Value {
    json!({
        "total": p.total,
        "idle": p.idle,
        "active": p.in_use,
        "pending": p.waiting,
        "max": p.max_connections,
        "utilization": utilization(p),
        "acquired": p.acquired,
        "timeouts": p.acquire_timeouts,
        "timeouts_in_window": timeouts_in_window,
        "acquire_errors": p.acquire_errors,
        "created": p.created,
        "closed": p.closed,
        "acquire_time_ms": {
            "p50": ms_of_us(p.acquire_time.p50_us as f64),
            "p95": ms_of_us(p.acquire_time.p95_us as f64),
            "p99": ms_of_us(p.acquire_time.p99_us as f64),
            "max": ms_of_us(p.acquire_time.max_us as f64),
        },
        "usage_time_ms": {
            "p50": ms_of_us(p.usage_time.p50_us as f64),
            "p95": ms_of_us(p.usage_time.p95_us as f64),
            "p99": ms_of_us(p.usage_time.p99_us as f64),
            "max": ms_of_us(p.usage_time.max_us as f64),
        },
    })
}

fn utilization(p: &PoolSnapshot) -> f64 {
    if p.max_connections == 0 {
        0.0
    } else {
        round3(f64::from(p.in_use) / f64::from(p.max_connections))
    }
}

fn cache_json(hits: u64, misses: u64, entries: Option<i64>, max_entries: u64) -> Value {
    let lookups = hits + misses;
    json!({
        "entries": entries,
        "max_entries": max_entries,
        "hits": hits,
        "misses": misses,
        "hit_ratio": if lookups == 0 { Value::Null } else { json!(round3(hits as f64 / lookups as f64)) },
    })
}

fn server_json(r: &Reading<ServerStats>) -> Value {
    match &r.result {
        Ok(s) => json!({
            "status": "up",
            "response_ms": round3(r.took.as_secs_f64() * 1e3),
            "commits": s.commits,
            "rollbacks": s.rollbacks,
            "buffer_hit_ratio": round3(s.buffer_hit_ratio),
            "deadlocks": s.deadlocks,
            "temp_bytes": s.temp_bytes,
            "connections": s.connections,
            "oldest_query_s": round3(s.oldest_query_s),
        }),
        Err(why) => json!({ "status": "down", "reason": why }),
    }
}

/// `GET /health/database/metrics`: the pool, the operations of the window, the cache and the
/// database's own figures, as JSON.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let reading = state.monitor.reading(&state.db, &state.telemetry).await;
    let t = &state.telemetry;
    let pool = state.db.snapshot();
    let queries: serde_json::Map<String, Value> = Operation::ALL
        .iter()
        .map(|op| (op.name().to_owned(), window_json(&t.window(*op).summary())))
        .collect();
    let (hits, misses) = state.cache_totals();
    let body = json!({
        "window_seconds": state.config.thresholds.window_seconds,
        "pool": pool_json(&pool, t.acquire_timeouts.summary().count),
        "queries": queries,
        "search_cache": cache_json(
            hits,
            misses,
            reading.result.as_ref().ok().map(|s| s.cache_entries),
            state.config.cache_max_entries,
        ),
        "database": server_json(&reading),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// One check of the detailed report (the draft's check object, with its thresholds).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    component_type: &'static str,
    observed_value: Value,
    observed_unit: &'static str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    time: String,
}

/// `GET /health/database/detailed`: `application/health+json` (IETF health check draft); 503
/// when any check fails.
pub async fn detailed(State(state): State<AppState>) -> Response {
    let reading = state.monitor.reading(&state.db, &state.telemetry).await;
    let mut checks = Checks::new(&state.config.thresholds);
    checks.database(&reading);
    checks.pool(&state.db.snapshot(), &state.telemetry);
    checks.windows(&state.telemetry);
    let overall = checks.overall();
    let code = if overall == Status::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    health(
        code,
        json!({
            "status": overall,
            "description": "pgperf: the database as this service sees it",
            "checks": checks.by_name,
        }),
    )
}

/// The detailed report's checks, by the draft's `component:measurement` names.
struct Checks<'a> {
    th: &'a Thresholds,
    time: String,
    by_name: BTreeMap<&'static str, Vec<Check>>,
}

impl<'a> Checks<'a> {
    fn new(th: &'a Thresholds) -> Self {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Self {
            th,
            time,
            by_name: BTreeMap::new(),
        }
    }

    /// Adds one check; `threshold` is shown beside the value.
    fn add(
        &mut self,
        name: &'static str,
        (component_type, unit): (&'static str, &'static str),
        value: Value,
        (status, output): (Status, Option<String>),
        threshold: Option<&Limits>,
    ) {
        let check = Check {
            component_type,
            observed_value: value,
            observed_unit: unit,
            status,
            threshold: threshold.copied(),
            output,
            time: self.time.clone(),
        };
        self.by_name.insert(name, vec![check]);
    }

    /// Judged only with enough samples in the window; otherwise a pass saying so.
    fn judged(&self, samples: u64, verdict: impl FnOnce() -> Status) -> (Status, Option<String>) {
        if samples < self.th.min_samples {
            let few = format!(
                "{samples} samples in the window, fewer than {} to judge",
                self.th.min_samples
            );
            (Status::Pass, Some(few))
        } else {
            (verdict(), None)
        }
    }

    fn database(&mut self, reading: &Reading<ServerStats>) {
        let th = self.th;
        let up = reading.result.is_ok();
        let ms = reading.took.as_secs_f64() * 1e3;
        let state = if up { Status::Pass } else { Status::Fail };
        let error = reading.result.as_ref().err().cloned();
        let up_word = json!(if up { "up" } else { "down" });
        self.add(
            "database:connectivity",
            ("datastore", "state"),
            up_word,
            (state, error),
            None,
        );
        let status = if up {
            th.response_time_ms.above(ms)
        } else {
            Status::Fail
        };
        let limits = Some(&th.response_time_ms);
        self.add(
            "database:responseTime",
            ("datastore", "ms"),
            json!(round3(ms)),
            (status, None),
            limits,
        );
        if let Ok(s) = &reading.result {
            let status = th.long_running_query_s.above(s.oldest_query_s);
            let value = json!(round3(s.oldest_query_s));
            let limits = Some(&th.long_running_query_s);
            self.add(
                "database:longRunningQueries",
                ("datastore", "s"),
                value,
                (status, None),
                limits,
            );
        }
    }

    fn pool(&mut self, pool: &PoolSnapshot, t: &Telemetry) {
        let th = self.th;
        let u = utilization(pool);
        let in_use = format!(
            "{} of {} connections in use",
            pool.in_use, pool.max_connections
        );
        let status = (th.pool_utilization.above(u), Some(in_use));
        self.add(
            "pool:utilization",
            ("component", "ratio"),
            json!(u),
            status,
            Some(&th.pool_utilization),
        );
        let status = (th.pending_acquirers.above(f64::from(pool.waiting)), None);
        let limits = Some(&th.pending_acquirers);
        self.add(
            "pool:pendingAcquirers",
            ("component", "requests"),
            json!(pool.waiting),
            status,
            limits,
        );
        let timeouts = t.acquire_timeouts.summary().count;
        let status = (th.acquire_timeouts.above(timeouts as f64), None);
        let kind = ("component", "timeouts in window");
        self.add(
            "pool:acquireTimeouts",
            kind,
            json!(timeouts),
            status,
            Some(&th.acquire_timeouts),
        );
    }

    fn windows(&mut self, t: &Telemetry) {
        let th = self.th;
        let all = t.all_queries();
        let status = self.judged(all.count, || th.query_p95_ms.above(all.p95_ms));
        self.add(
            "queries:p95",
            ("component", "ms"),
            json!(all.p95_ms),
            status,
            Some(&th.query_p95_ms),
        );
        let cached = t.window(Operation::SearchCached).summary();
        let status = self.judged(cached.count, || {
            th.cached_search_p95_ms.above(cached.p95_ms)
        });
        let limits = Some(&th.cached_search_p95_ms);
        self.add(
            "search:cachedP95",
            ("component", "ms"),
            json!(cached.p95_ms),
            status,
            limits,
        );
        let (hits, misses) = (t.cache_hits.summary().count, t.cache_misses.summary().count);
        let ratio = share(hits, hits + misses);
        let status = self.judged(hits + misses, || th.cache_hit_ratio.below(ratio));
        let limits = Some(&th.cache_hit_ratio);
        self.add(
            "search:cacheHitRatio",
            ("component", "ratio"),
            json!(ratio),
            status,
            limits,
        );
        let http = t.http.summary();
        let rate = share(http.errors, http.count);
        let status = self.judged(http.count, || th.error_rate.above(rate));
        self.add(
            "http:errorRate",
            ("component", "ratio"),
            json!(rate),
            status,
            Some(&th.error_rate),
        );
    }

    /// The worst status of all checks.
    fn overall(&self) -> Status {
        let statuses = self.by_name.values().flatten().map(|c| c.status);
        statuses.max().unwrap_or(Status::Pass)
    }
}

/// `part / whole` to three decimals; 0 when there is no whole.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round3(part as f64 / whole as f64)
    }
}

/// `GET /metrics`: the Prometheus text exposition, with the pool and database figures set
/// at scrape time.
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let reading = state.monitor.reading(&state.db, &state.telemetry).await;
    let t = &state.telemetry;
    pool_series(t, &state.db.snapshot());
    let (hits, misses) = state.cache_totals();
    let result = |r: &str| [("result", r.to_owned())];
    t.absolute("pgperf_search_cache_requests_total", &result("hit"), hits);
    t.absolute(
        "pgperf_search_cache_requests_total",
        &result("miss"),
        misses,
    );
    database_series(t, &reading);
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let headers = [(header::CONTENT_TYPE, content_type)];
    (StatusCode::OK, headers, t.render()).into_response()
}

/// No labels.
const NONE: &[(&str, String)] = &[];

/// A `state` label.
fn state_label(s: &str) -> [(&'static str, String); 1] {
    [("state", s.to_owned())]
}

/// The pool's series, set at scrape time.
fn pool_series(t: &Telemetry, p: &PoolSnapshot) {
    let idle = p.total.saturating_sub(p.in_use);
    t.gauge(
        "pgperf_pool_connections",
        &state_label("active"),
        f64::from(p.in_use),
    );
    t.gauge(
        "pgperf_pool_connections",
        &state_label("idle"),
        f64::from(idle),
    );
    t.gauge(
        "pgperf_pool_max_connections",
        NONE,
        f64::from(p.max_connections),
    );
    t.gauge("pgperf_pool_pending_acquirers", NONE, f64::from(p.waiting));
    t.absolute(
        "pgperf_pool_acquire_timeouts_total",
        NONE,
        p.acquire_timeouts,
    );
    t.absolute("pgperf_pool_acquires_total", NONE, p.acquired);
    t.absolute("pgperf_pool_connections_created_total", NONE, p.created);
}

/// The database's series from the monitor's reading; `pgperf_database_up` 0 when it failed.
fn database_series(t: &Telemetry, reading: &Reading<ServerStats>) {
    t.gauge(
        "pgperf_database_response_seconds",
        NONE,
        reading.took.as_secs_f64(),
    );
    let Ok(s) = &reading.result else {
        t.gauge("pgperf_database_up", NONE, 0.0);
        return;
    };
    t.gauge("pgperf_database_up", NONE, 1.0);
    let result = |r: &str| [("result", r.to_owned())];
    let count = |n: i64| n.max(0) as u64;
    let transactions = "pgperf_database_transactions_total";
    t.absolute(transactions, &result("commit"), count(s.commits));
    t.absolute(transactions, &result("rollback"), count(s.rollbacks));
    t.absolute("pgperf_database_deadlocks_total", NONE, count(s.deadlocks));
    t.gauge("pgperf_database_buffer_hit_ratio", NONE, s.buffer_hit_ratio);
    t.gauge(
        "pgperf_database_oldest_query_seconds",
        NONE,
        s.oldest_query_s,
    );
    for state in ["active", "idle", "idle in transaction"] {
        let n = s.connections.get(state).copied().unwrap_or(0);
        t.gauge("pgperf_database_connections", &state_label(state), n as f64);
    }
}
