//! A TCP relay between the client and PostgreSQL that counts round trips and can make each
//! one dearer.
//!
//! - **Counting**: a round trip is a *turn*: the client sends after the server last spoke (or
//!   first). Pipelined messages (a COPY's data, Bind+Execute+Sync) are one turn; sqlx's ping
//!   of a returned connection, a login's SCRAM exchange and a `COMMIT` are turns too. The
//!   harness counts them per operation instead of trusting a declared figure.
//! - **Delay** (test-only): every chunk the client sends waits a fixed time before it goes on,
//!   asleep as on a wire (1 ns timer slack, so the wake-up adds a few µs). It stands for a
//!   machine whose round trips cost more, references included. It was a busy wait once; with
//!   client and server placed apart, the relay's threads share the client's CPU, and the
//!   spinning took that CPU from the client, which no wire does (in `scripts/check-portability
//!   delay` at 73a81a3, the references moved beyond the model, every case read "time not
//!   judged", and no injected slowdown was caught).
//!
//! Plain threads and blocking sockets: the relay never competes with the runtime it measures,
//! and lives as long as its connections, whatever runtime made them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::perf::PerfError;
use crate::perf::measure::nap_precisely;

/// Environment variable (test-only): delay each message the client sends by this many µs.
pub const WIRE_DELAY_VAR: &str = "PGPERF_WIRE_DELAY_US";

#[derive(Debug, Default)]
struct Counters {
    turns: AtomicU64,
    stopped: AtomicBool,
}

/// A running relay. Stops accepting when dropped; open connections run until either side
/// closes them.
#[derive(Debug)]
pub struct Relay {
    local: SocketAddr,
    counters: Arc<Counters>,
}

impl Relay {
    /// Listens on an ephemeral loopback port and forwards every connection to `upstream`
    /// (`host:port`), delaying each client message by `delay`.
    pub fn start(upstream: &str, delay: Duration) -> std::io::Result<Self> {
        let upstream: SocketAddr = upstream.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "upstream has no address")
        })?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let local = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("pgperf-relay".into())
            .spawn(move || accept_loop(listener, upstream, delay, shared))?;
        Ok(Self { local, counters })
    }

    /// The relay's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Turns (round trips) seen on every connection since the last reset.
    pub fn turns(&self) -> u64 {
        self.counters.turns.load(Ordering::SeqCst)
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.counters.turns.store(0, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.counters.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.local, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, delay: Duration, c: Arc<Counters>) {
    for client in listener.incoming() {
        if c.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let client_spoke_last = Arc::new(AtomicBool::new(false));
        let (c2s_in, c2s_out) = (client.try_clone(), server.try_clone());
        let (Ok(c2s_in), Ok(c2s_out)) = (c2s_in, c2s_out) else {
            continue;
        };
        let (counters, last) = (Arc::clone(&c), Arc::clone(&client_spoke_last));
        let _ = std::thread::Builder::new()
            .name("pgperf-relay-c2s".into())
            .spawn(move || {
                pump(c2s_in, c2s_out, |_| {
                    if !last.swap(true, Ordering::SeqCst) {
                        counters.turns.fetch_add(1, Ordering::SeqCst);
                    }
                    if !delay.is_zero() {
                        nap_precisely(delay);
                    }
                })
            });
        let _ = std::thread::Builder::new()
            .name("pgperf-relay-s2c".into())
            .spawn(move || {
                pump(server, client, |_| {
                    client_spoke_last.store(false, Ordering::SeqCst);
                })
            });
    }
}

/// Copies `from` to `to` until either side closes, calling `on_chunk` before forwarding.
fn pump(mut from: TcpStream, mut to: TcpStream, mut on_chunk: impl FnMut(usize)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                on_chunk(n);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// The delay in `value` ([`WIRE_DELAY_VAR`]'s), if any; a malformed value is an error naming
/// the variable.
pub fn parse_delay(value: Option<&str>) -> Result<Option<Duration>, PerfError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(us) if us <= 100_000 => Ok(Some(Duration::from_micros(us))),
        _ => Err(PerfError::BadWireDelay {
            var: WIRE_DELAY_VAR,
            value: v.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server that answers each chunk it reads.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn exchange(s: &mut TcpStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }

    #[test]
    fn counts_one_turn_per_request_and_answer() {
        let relay = Relay::start(&echo().to_string(), Duration::ZERO).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", relay.port())).unwrap();
        for _ in 0..5 {
            exchange(&mut s, b"ping");
        }
        assert_eq!(relay.turns(), 5);
        relay.reset();
        exchange(&mut s, b"again");
        assert_eq!(relay.turns(), 1);
    }

    #[test]
    fn delays_each_client_message() {
        let relay = Relay::start(&echo().to_string(), Duration::from_millis(5)).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", relay.port())).unwrap();
        let started = Instant::now();
        for _ in 0..4 {
            exchange(&mut s, b"x");
        }
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
