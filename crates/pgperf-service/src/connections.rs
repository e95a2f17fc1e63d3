//! The accept loop: hyper's HTTP/1.1 connections with a header-read timeout and a connection
//! cap, and a graceful stop.
//!
//! `axum::serve` sets neither: hyper's header-read timeout needs a timer it does not give, so
//! a client could hold a connection open forever by sending nothing, or one byte at a time, and
//! nothing limited how many such connections a process keeps.
//!
//! - **Header-read timeout** ([`ConnectionLimits::header_read_timeout`]): hyper arms it when it
//!   starts waiting for a request's head and disarms it when the head is complete. It starts
//!   both on a new connection and after each response on a kept-alive one, so the same limit is
//!   also the longest a connection may sit idle between requests: at it, the connection is
//!   closed. A request's body and handling are bounded separately (the body limit, and
//!   [`super::Config::request_timeout`]).
//! - **Connection cap** ([`ConnectionLimits::max_connections`]): at the cap the loop stops
//!   accepting; new connections wait in the kernel's backlog until one closes (at the latest
//!   when an idle one reaches the timeout). Requests in flight have their own limits.
//!
//! HTTP/1.1 only: the service's clients (probes, reqwest, goose) speak it, and hyper-util's
//! HTTP/1-or-2 detection reads the first bytes with no timeout at all, so a silent client
//! would escape the header-read timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many connections the service keeps and how long it waits for a request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most (every state: reading, in a request, idle).
    pub max_connections: usize,
    /// The longest from waiting for a request's head to having all of it: for a new
    /// connection, for the next request on a kept-alive one (the idle timeout), and for a
    /// client that sends its headers slowly.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// 4,096 connections (serve-bench holds 1,000 kept-alive connections beside its other
    /// clients), and 10 s to send a request's head or sit idle between requests.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// Checks the limits are usable; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("the connection cap must be at least 1".into());
        }
        if self.header_read_timeout.is_zero() {
            return Err("the header-read timeout must be above zero".into());
        }
        Ok(())
    }
}

/// How long to wait after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, closes idle connections, and waits for the requests in flight.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let builder = http_builder(limits);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let next = next_connection(&listener, &permits);
        let (stream, permit) = tokio::select! {
            next = next => next,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // An error here is the client's (a reset, a timed-out head): nothing to report.
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// hyper's HTTP/1.1 builder, with a timer (without one, hyper ignores its timeouts).
fn http_builder(limits: ConnectionLimits) -> Builder {
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
}

/// The next accepted connection, once a place under the cap is free.
async fn next_connection(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Small responses go out at once rather than after Nagle's delay.
                let _ = stream.set_nodelay(true);
                return (stream, permit);
            }
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
