//! The service's connections against clients that hold them: silent, slow or idle clients
//! are closed at the header-read timeout, the connection cap holds, and a normal client is
//! served beside hundreds of idle connections. Raw TCP for the hostile side, real HTTP.

use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pgperf::service::{Config, ConnectionLimits};

use crate::support::TestDb;
use crate::support::service::Running;

/// A service whose connections time out after `timeout`, with at most `cap` of them.
async fn start(t: &TestDb, cap: usize, timeout: Duration) -> Running {
    let config = Config {
        connections: ConnectionLimits {
            max_connections: cap,
            header_read_timeout: timeout,
        },
        ..Config::default()
    };
    Running::start(t.db.clone(), config).await
}

async fn connect(s: &Running) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or 10 s pass): what it sent, and when it
/// closed, from `since`.
async fn until_closed(stream: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    (String::from_utf8_lossy(&got).into_owned(), since.elapsed())
}

#[tokio::test]
async fn a_silent_client_and_a_slow_head_are_closed_at_the_header_timeout() {
    let t = TestDb::new().await;
    let timeout = Duration::from_millis(600);
    let s = start(&t, 64, timeout).await;
    let started = Instant::now();
    let mut silent = connect(&s).await;
    let mut slow = connect(&s).await;
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: pgperf\r\n")
        .await
        .unwrap();

    let normal = reqwest::get(s.url("/health/live")).await.unwrap().status();
    let (silent_got, silent_after) = until_closed(&mut silent, started).await;
    let (slow_got, slow_after) = until_closed(&mut slow, started).await;

    assert_eq!(normal.as_u16(), 200);
    for (got, after) in [(silent_got, silent_after), (slow_got, slow_after)] {
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(
            after >= timeout - Duration::from_millis(100) && after < timeout * 5,
            "closed after {after:?}, the timeout is {timeout:?}"
        );
    }
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_for_the_timeout() {
    let t = TestDb::new().await;
    let timeout = Duration::from_millis(600);
    let s = start(&t, 64, timeout).await;
    let mut client = connect(&s).await;

    client
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: pgperf\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    client.read_exact(&mut first).await.unwrap();
    let answered = Instant::now();
    let (_, idle_for) = until_closed(&mut client, answered).await;

    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        idle_for >= timeout - Duration::from_millis(100) && idle_for < timeout * 5,
        "closed after {idle_for:?} idle, the timeout is {timeout:?}"
    );
}

#[tokio::test]
async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let t = TestDb::new().await;
    let timeout = Duration::from_millis(1_000);
    let s = start(&t, 2, timeout).await;
    let held = [connect(&s).await, connect(&s).await];
    // Both are accepted (and their timers armed) before the next client comes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = reqwest::get(s.url("/health/live")).await.unwrap().status();
    let waited = started.elapsed();

    assert_eq!(status.as_u16(), 200);
    assert!(
        waited >= Duration::from_millis(500) && waited < timeout * 5,
        "served after {waited:?}: with the cap of 2 taken it waits for an idle connection's \
         timeout ({timeout:?} from its start)"
    );
    drop(held);
}

#[tokio::test]
async fn five_hundred_idle_connections_do_not_stop_a_normal_client() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let mut idle = Vec::with_capacity(500);
    for _ in 0..500 {
        idle.push(connect(&s).await);
    }
    let client = reqwest::Client::new();

    let mut took = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        let status = client
            .get(s.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status();
        took.push(started.elapsed());
        assert_eq!(status.as_u16(), 200);
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];

    eprintln!("/health/live beside 500 idle connections: p99 {p99:?} (debug build)");
    // The product's bound is 50 ms (measured in a release build, docs/service.md); a debug
    // build on a busy CI machine is held to 4x that.
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
    drop(idle);
}
