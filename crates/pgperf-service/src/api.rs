//! The data endpoints: entities, search (through the search cache) and resolution. Each
//! database call runs under the pool's `query_timeout` and is timed per operation.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::telemetry::{Operation, Outcome};
use super::{AppState, Problem};
use crate::db::repo::entities;
use crate::db::resolve::{
    NameToResolve, Thresholds, normalize_within_limit, resolve_batch, validate_batch,
};
use crate::db::search::{Cursor, SearchPage, SearchRequest};
use crate::db::search_cache::Served;
use crate::db::{DbError, EntityKind};

/// How a data-layer result counts in the metrics.
fn outcome<T>(r: &Result<T, DbError>) -> Outcome {
    match r {
        Ok(_) | Err(DbError::NotFound { .. }) | Err(DbError::InvalidInput { .. }) => Outcome::Ok,
        Err(DbError::Timeout { .. }) | Err(DbError::Cancelled { .. }) => Outcome::Timeout,
        Err(_) => Outcome::Error,
    }
}

pub(super) async fn entity(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::bad_input("id", rejection.body_text()).into_response(),
    };
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_input("id", format!("{id:?} is not an entity id (an integer)"))
            .into_response();
    };
    let started = Instant::now();
    let found = state
        .db
        .bounded(async {
            let mut c = state.acquire().await?;
            entities::get(&mut c, id).await
        })
        .await;
    state
        .telemetry
        .query(Operation::GetEntity, started.elapsed(), outcome(&found));
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
pub(super) struct SearchParams {
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
    normalize_within_limit(&text).map_err(|why| Problem::bad_input("q", why))?;
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

pub(super) async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return Problem::bad_input("query", rejection.body_text()).into_response();
        }
    };
    let req = match search_request(params) {
        Ok(req) => req,
        Err(problem) => return problem.into_response(),
    };
    let started = Instant::now();
    let slot = match state.tier.as_deref().map(|tier| tier.get(&req)) {
        Some(Ok(page)) => {
            return answer_search(&state, started, Ok((page, Served::Hit)), "process");
        }
        Some(Err(slot)) => Some(slot),
        None => None,
    };
    let answer = state
        .db
        .bounded(async {
            let mut c = state.acquire().await?;
            state.cache.search(&mut c, &req).await
        })
        .await;
    if let (Some(tier), Some(slot), Ok((page, _))) = (state.tier.as_deref(), slot, &answer) {
        tier.put(slot, page);
    }
    answer_search(&state, started, answer, "table")
}

/// The answer to a search, timed and counted: `x-cache` says whether the page was cached,
/// and for a hit `x-cache-tier` says where (`process`: memory, no database round trip;
/// `table`: the search cache table).
fn answer_search(
    state: &AppState,
    started: Instant,
    answer: Result<(SearchPage, Served), DbError>,
    tier: &'static str,
) -> Response {
    let op = match &answer {
        Ok((_, Served::Hit)) => Operation::SearchCached,
        _ => Operation::SearchUncached,
    };
    state
        .telemetry
        .query(op, started.elapsed(), outcome(&answer));
    match answer {
        Ok((page, served)) => {
            let body = Json(json!({
                "hits": page.hits,
                "next": page.next.as_ref().map(cursor_text),
            }));
            match served {
                Served::Hit => {
                    state.telemetry.cache_hits.count(1);
                    ([("x-cache", "hit"), ("x-cache-tier", tier)], body).into_response()
                }
                Served::Miss => {
                    state.telemetry.cache_misses.count(1);
                    ([("x-cache", "miss")], body).into_response()
                }
            }
        }
        Err(e) => Problem::from_db(&e).into_response(),
    }
}

/// The body of `POST /resolve`.
#[derive(Debug, Deserialize)]
pub(super) struct ResolveBody {
    names: Vec<NameToResolve>,
}

pub(super) async fn resolve(
    State(state): State<AppState>,
    body: Result<Json<ResolveBody>, JsonRejection>,
) -> Response {
    let names = match body {
        Ok(Json(body)) => body.names,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Problem::too_large(state.config.body_limit).into_response();
        }
        Err(rejection) => {
            return Problem::bad_input("body", rejection.body_text()).into_response();
        }
    };
    // Before any connection is taken: a bad batch costs no pool slot and no database work.
    if let Err(e) = validate_batch(&names) {
        return Problem::from_db(&e).into_response();
    }
    let started = Instant::now();
    let answer = state
        .db
        .bounded(async {
            let mut c = state.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            state.stop_before_the_request(&mut tx, started).await?;
            let resolved = resolve_batch(&mut tx, &names, Thresholds::default()).await?;
            tx.commit().await?;
            Ok(resolved)
        })
        .await;
    state
        .telemetry
        .query(Operation::Resolve, started.elapsed(), outcome(&answer));
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
