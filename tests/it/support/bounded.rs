//! Bounded waits: every wait in the suite has a limit, and running out of it fails the test
//! with a message saying what it waited for, instead of hanging CI.

use std::future::Future;
use std::time::{Duration, Instant};

/// Awaits `fut` for at most `limit`; panics naming `what` if it does not finish.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` (and the last value seen) if it never does.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(v) => return v,
            Err(seen) => last = seen,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}; last seen: {last}")
}
