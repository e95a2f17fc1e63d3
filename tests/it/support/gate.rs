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

/// Held while a test runs; released on drop.
#[derive(Debug)]
pub struct Gate(#[allow(dead_code)] File);

/// Holds the gate shared: any number of ordinary tests at once, none while a measurement runs.
pub async fn shared() -> Gate {
    tokio::task::spawn_blocking(|| {
        let f = open();
        f.lock_shared().expect("shared lock on the timing gate");
        Gate(f)
    })
    .await
    .expect("gate task")
}

/// Holds the gate exclusively: waits until no other test runs, then keeps them out.
pub async fn exclusive() -> Gate {
    tokio::task::spawn_blocking(|| {
        let f = open();
        f.lock().expect("exclusive lock on the timing gate");
        Gate(f)
    })
    .await
    .expect("gate task")
}

/// Holds the gate exclusively if no other test holds it at all, without waiting.
pub fn try_exclusive() -> Option<Gate> {
    let f = open();
    f.try_lock().ok().map(|()| Gate(f))
}
