//! The HTTP API (axum) over the data layer. This first part serves the liveness probe, the
//! basic database health check, entity reads, search and resolution; the metrics and detailed
//! health endpoints follow (see the README's service section).
//!
//! - `GET /health/live`: the process answers; no database involved, so a liveness probe never
//!   restarts the service because its database is down.
//! - `GET /health/database`: `SELECT 1` within [`DATABASE_CHECK_TIMEOUT`]: 200 with the
//!   latency, or 503 with the reason (never a URL, host or password).
//! - `GET /entities/{id}`: one entity as JSON; a malformed id is 400 and an unknown one 404,
//!   both `application/problem+json` (RFC 9457) naming what is wrong.
//! - `GET /search?q=&kind=&limit=&cursor=`: a page of hits through the search cache; the
//!   `x-cache` header says `hit` or `miss`; `next` is the cursor of the following page.
//! - `POST /resolve` with `{"names": [{"name": ..., "kind": ...}]}` (up to 1 000): each
//!   name's candidates and decision, in order.

mod problem;

use std::time::{Duration, Instant};

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::db::repo::entities;
use crate::db::resolve::{NameToResolve, Thresholds, resolve_batch};
use crate::db::search::{Cursor, SearchRequest};
use crate::db::search_cache::{DEFAULT_TTL, SearchCache, Served};
use crate::db::{Db, DbError, EntityKind};

pub use problem::Problem;

/// How long `GET /health/database` waits for `SELECT 1`, acquiring a connection included.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The media type of health responses (IETF health check draft).
const HEALTH_JSON: &str = "application/health+json";

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    db: Db,
    cache: Arc<SearchCache>,
}

/// The service's routes over `db`.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/database", get(database))
        .route("/entities/{id}", get(entity))
        .route("/search", get(search))
        .route("/resolve", post(resolve))
        .with_state(AppState {
            db,
            cache: Arc::new(SearchCache::new(DEFAULT_TTL).expect("the default TTL is valid")),
        })
}

fn health(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HEALTH_JSON)],
        body.to_string(),
    )
        .into_response()
}

async fn live() -> Response {
    health(StatusCode::OK, json!({ "status": "pass" }))
}

/// Why the database check failed, in words that hold no address or secret.
fn reason(e: &DbError) -> &'static str {
    if e.is_unavailable() {
        "the database is unavailable"
    } else {
        "the check query failed"
    }
}

async fn database(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let check = async {
        let mut c = state.db.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *c).await?;
        Ok::<_, DbError>(())
    };
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => health(
            StatusCode::OK,
            json!({
                "status": "pass",
                "latency_ms": (started.elapsed().as_secs_f64() * 1e3 * 1e3).round() / 1e3,
            }),
        ),
        Ok(Err(e)) => {
            tracing::warn!("health check of the database failed: {e}");
            health(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "fail", "reason": reason(&e) }),
            )
        }
        Err(_) => health(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "fail",
                "reason": format!(
                    "no answer within {} ms",
                    DATABASE_CHECK_TIMEOUT.as_millis()
                ),
            }),
        ),
    }
}

async fn entity(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_input("id", format!("{id:?} is not an entity id (an integer)"))
            .into_response();
    };
    let found = async {
        let mut c = state.db.acquire().await?;
        entities::get(&mut c, id).await
    }
    .await;
    match found {
        Ok(e) => Json(e).into_response(),
        Err(DbError::NotFound { .. }) => {
            Problem::not_found(format!("no entity has id {id}")).into_response()
        }
        Err(e) => Problem::from_db(&e).into_response(),
    }
}

/// The query string of `GET /search`.
#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A cursor as the API writes it: `score,id` (the last hit's).
fn cursor_text(c: &Cursor) -> String {
    format!("{},{}", c.score, c.id)
}

fn parse_cursor(text: &str) -> Option<Cursor> {
    let (score, id) = text.split_once(',')?;
    let score: f64 = score.parse().ok()?;
    (score.is_finite()).then_some(())?;
    Some(Cursor {
        score,
        id: id.parse().ok()?,
    })
}

/// The search request in a query string, or the problem naming the bad parameter.
fn search_request(p: SearchParams) -> Result<SearchRequest, Problem> {
    let text =
        p.q.ok_or_else(|| Problem::bad_input("q", "is missing (the text to search for)"))?;
    let kind = p
        .kind
        .map(|k| EntityKind::parse(&k))
        .transpose()
        .map_err(|e| Problem::from_db(&e))?;
    let limit = match p.limit {
        None => 10,
        Some(l) => l
            .parse()
            .map_err(|_| Problem::bad_input("limit", format!("{l:?} is not a number")))?,
    };
    let after = match p.cursor {
        None => None,
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| {
            Problem::bad_input(
                "cursor",
                format!("{c:?} is not a cursor from a page's next"),
            )
        })?),
    };
    Ok(SearchRequest {
        text,
        kind,
        source: None,
        limit,
        after,
    })
}

async fn search(State(state): State<AppState>, Query(params): Query<SearchParams>) -> Response {
    let req = match search_request(params) {
        Ok(req) => req,
        Err(problem) => return problem.into_response(),
    };
    let answer = async {
        let mut c = state.db.acquire().await?;
        state.cache.search(&mut c, &req).await
    }
    .await;
    match answer {
        Ok((page, served)) => {
            let cache = match served {
                Served::Hit => "hit",
                Served::Miss => "miss",
            };
            let body = json!({
                "hits": page.hits,
                "next": page.next.as_ref().map(cursor_text),
            });
            ([("x-cache", cache)], Json(body)).into_response()
        }
        Err(e) => Problem::from_db(&e).into_response(),
    }
}

/// The body of `POST /resolve`.
#[derive(Debug, Deserialize)]
struct ResolveBody {
    names: Vec<NameToResolve>,
}

async fn resolve(
    State(state): State<AppState>,
    body: Result<Json<ResolveBody>, JsonRejection>,
) -> Response {
    let names = match body {
        Ok(Json(body)) => body.names,
        Err(rejection) => {
            return Problem::bad_input("body", rejection.body_text()).into_response();
        }
    };
    let answer = async {
        let mut c = state.db.acquire().await?;
        resolve_batch(&mut c, &names, Thresholds::default()).await
    }
    .await;
    match answer {
        Ok(resolutions) => Json(resolutions).into_response(),
        Err(e) => Problem::from_db(&e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nonsense_is_refused() {
        let c = Cursor {
            score: 0.911565,
            id: 42,
        };
        assert_eq!(parse_cursor(&cursor_text(&c)), Some(c));
        for bad in ["", "1", "x,1", "1,x", "NaN,1", "inf,3"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
