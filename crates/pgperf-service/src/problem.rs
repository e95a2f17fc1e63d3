//! Error answers as `application/problem+json` (RFC 9457): a type, a title, the status, and a
//! detail naming what is wrong; bad input also names the field (`invalid_params`, the RFC's
//! own example extension).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;

/// What every 503 asks the client to wait before retrying, seconds.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// The media type of problem answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field the request got wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidParam {
    /// The field.
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The fields at fault, for bad input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

impl Problem {
    /// 400: `field` was refused for `reason`.
    pub fn bad_input(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            kind: "https://pgperf.dev/problems/invalid-input",
            title: "Invalid input",
            status: 400,
            detail: format!("invalid {field}: {reason}"),
            invalid_params: vec![InvalidParam {
                name: field.to_owned(),
                reason,
            }],
        }
    }

    /// 404: nothing at that address.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            kind: "https://pgperf.dev/problems/not-found",
            title: "Not found",
            status: 404,
            detail: detail.into(),
            invalid_params: Vec::new(),
        }
    }

    /// 401: the monitoring endpoints need the admin token.
    pub fn unauthorized() -> Self {
        Self {
            kind: "https://pgperf.dev/problems/unauthorized",
            title: "Unauthorized",
            status: 401,
            detail:
                "this endpoint needs the admin token: Authorization: Bearer <PGPERF_ADMIN_TOKEN>"
                    .to_owned(),
            invalid_params: Vec::new(),
        }
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self {
            kind: "https://pgperf.dev/problems/too-large",
            title: "Request body too large",
            status: 413,
            detail: format!("the request body is over the limit of {limit} bytes"),
            invalid_params: vec![InvalidParam {
                name: "body".to_owned(),
                reason: format!("over {limit} bytes"),
            }],
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self {
            kind: "https://pgperf.dev/problems/method-not-allowed",
            title: "Method not allowed",
            status: 405,
            detail: format!("{path} does not answer {method}"),
            invalid_params: Vec::new(),
        }
    }

    /// 503: the service cannot answer now.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            kind: "https://pgperf.dev/problems/unavailable",
            title: "Service unavailable",
            status: 503,
            detail: detail.into(),
            invalid_params: Vec::new(),
        }
    }

    /// 503: shed at once, the service being at its limit of requests in flight.
    pub fn overloaded() -> Self {
        Self {
            kind: "https://pgperf.dev/problems/overloaded",
            title: "Overloaded",
            status: 503,
            detail: "the service is at its limit of requests in flight; retry shortly".to_owned(),
            invalid_params: Vec::new(),
        }
    }

    /// The answer for a data-layer error: bad input is 400 naming the field, an unavailable
    /// database 503; anything else is 500 without internals (they are logged).
    pub fn from_db(e: &DbError) -> Self {
        match e {
            DbError::InvalidInput { field, reason } => Self::bad_input(field, reason.clone()),
            DbError::Timeout { .. } | DbError::Cancelled { .. } => Self::unavailable(
                "the database did not answer within the request's time; retry later",
            ),
            e if e.is_unavailable() => Self {
                kind: "https://pgperf.dev/problems/unavailable",
                title: "Database unavailable",
                status: 503,
                detail: "the database is unavailable; retry later".to_owned(),
                invalid_params: Vec::new(),
            },
            e => {
                tracing::error!("request failed: {e}");
                Self {
                    kind: "https://pgperf.dev/problems/internal",
                    title: "Internal error",
                    status: 500,
                    detail: "the request failed; the service's log has the cause".to_owned(),
                    invalid_params: Vec::new(),
                }
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
