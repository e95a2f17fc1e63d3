//! The timing gate: timed measurements run alone. Every test holds the gate shared while it
//! runs; a measurement takes it exclusively, so no other test (thread or, under nextest,
//! process) loads the 2 cores while samples are taken. A file lock works across both.

use std::fs::File;
use std::path::PathBuf;

fn lock_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgperf-timing.lock")
}

fn open() -> File {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path())
        .unwrap_or_else(|e| panic!("cannot open the timing gate {}: {e}", lock_path().display()))
}

/// How long a test waits for the gate. The longest test takes about a minute; ten means a
/// test or another process holding the gate is stuck.
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Takes the lock with `try_lock` until [`WAIT_LIMIT`] passes, then panics naming the file.
fn take(kind: &str, try_lock: impl Fn(&File) -> Result<(), std::fs::TryLockError>) -> Gate {
    let f = open();
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    loop {
        match try_lock(&f) {
            Ok(()) => return Gate(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => panic!(
                "waited {WAIT_LIMIT:?} for the timing gate ({kind}), {}: a test holding it is \
                 stuck, or another cargo test of this checkout is running",
                lock_path().display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                panic!("cannot lock the timing gate {}: {e}", lock_path().display())
            }
        }
    }
}

/// Held while a test runs; released on drop.
#[derive(Debug)]
pub struct Gate(#[allow(dead_code)] File);

/// Holds the gate shared: any number of ordinary tests at once, none while a measurement runs.
pub async fn shared() -> Gate {
    tokio::task::spawn_blocking(|| take("shared", File::try_lock_shared))
        .await
        .expect("gate task")
}

/// Holds the gate exclusively: waits until no other test runs, then keeps them out.
pub async fn exclusive() -> Gate {
    tokio::task::spawn_blocking(|| take("exclusive", File::try_lock))
        .await
        .expect("gate task")
}

/// The gate held exclusively, with the client and the shared server placed apart
/// (`pgperf_testbed::placement`) until dropped: what a test that times cases holds.
#[derive(Debug)]
pub struct Timed {
    placed: pgperf_testbed::placement::Placed,
    _gate: Gate,
}

impl Timed {
    /// Whether the client and the server were placed apart (not left as they were).
    pub fn is_apart(&self) -> bool {
        matches!(self.placed, pgperf_testbed::placement::Placed::Apart(_))
    }
}

/// Holds the gate exclusively and places the client and the server apart, so that every
/// round trip of the timed cases crosses cores, as when the baselines were recorded.
pub async fn timed() -> Timed {
    let gate = exclusive().await;
    let shared = super::shared::shared();
    let placed = pgperf_testbed::placement::Apart::place(
        shared.testbed.placement,
        shared.container_id.as_deref(),
        &shared.testbed.container_update,
        pgperf_testbed::placement::WhenBusy::StayAsIs,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("timing: {}", placed.describe());
    Timed {
        placed,
        _gate: gate,
    }
}

/// Holds the gate exclusively if no other test holds it at all, without waiting.
pub fn try_exclusive() -> Option<Gate> {
    let f = open();
    f.try_lock().ok().map(|()| Gate(f))
}
