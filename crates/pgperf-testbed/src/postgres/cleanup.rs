//! What this process must remove if it is interrupted: its containers, its databases on an
//! external server and its large temporary files.
//!
//! [`Server`](super::Server) records what it creates here and forgets what it removes, so at
//! any moment the registry holds exactly what is still to clean. [`clean_up_now`] removes it
//! all within a bounded time; [`on_signals`] runs it on SIGINT or SIGTERM and exits, so Ctrl-C
//! of `pgperf run` or of `cargo test` leaves nothing behind. (SIGKILL cannot be caught: the
//! next run's sweep removes what a killed run left, see [`super::owner`].)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use crate::db::DatabaseUrl;

/// How long dropping a killed run's databases may take in all.
const DROP_LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Registry {
    containers: Vec<String>,
    databases: Vec<(DatabaseUrl, String)>,
    files: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    containers: Vec::new(),
    databases: Vec::new(),
    files: Vec::new(),
});

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// Remembers a container to remove if the run is interrupted.
pub fn track_container(id: &str) {
    with(|r| r.containers.push(id.to_owned()));
}

/// Forgets a container that was removed.
pub fn forget_container(id: &str) {
    with(|r| r.containers.retain(|c| c != id));
}

/// Remembers a database made on an external server (reached through `admin`).
pub fn track_database(admin: &DatabaseUrl, name: &str) {
    with(|r| r.databases.push((admin.clone(), name.to_owned())));
}

/// Forgets a database that was dropped.
pub fn forget_database(name: &str) {
    with(|r| r.databases.retain(|(_, n)| n != name));
}

/// Remembers a temporary file to delete if the run is interrupted.
pub fn track_file(path: &Path) {
    with(|r| r.files.push(path.to_owned()));
}

/// Forgets a temporary file that was deleted.
pub fn forget_file(path: &Path) {
    with(|r| r.files.retain(|f| f != path));
}

/// Removes everything still tracked: containers (`docker rm -f -v`), databases (each dropped
/// with `FORCE`, all within [`DROP_LIMIT`]) and files. Safe to call from any thread, with or
/// without a tokio runtime, more than once.
pub fn clean_up_now() {
    let (containers, databases, files) = with(|r| {
        (
            std::mem::take(&mut r.containers),
            std::mem::take(&mut r.databases),
            std::mem::take(&mut r.files),
        )
    });
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    if !databases.is_empty() {
        drop_databases(databases);
    }
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        let _ = super::owner::docker(&args);
    }
}

/// Drops databases on a thread with a runtime of its own (the caller may be inside one).
fn drop_databases(databases: Vec<(DatabaseUrl, String)>) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let all = async {
                for (admin, name) in &databases {
                    let _ = super::template::drop_database(admin, name).await;
                }
            };
            let _ = tokio::time::timeout(DROP_LIMIT, all).await;
        });
    })
    .join();
}

/// The signal being handled (0 while none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// If a signal arrived, waits for its clean-up to end the process (with 128 + its number);
/// returns at once otherwise. Call it before exiting on an error: the clean-up makes the
/// run's work fail (its container is gone), and exiting with that error would cut the
/// clean-up short and hide the signal.
pub fn wait_if_interrupted() {
    let number = INTERRUPTED.load(Ordering::SeqCst);
    if number == 0 {
        return;
    }
    std::thread::sleep(DROP_LIMIT + Duration::from_secs(40));
    std::process::exit(128 + number);
}

/// Where the first signal goes when a command drains before it ends (`pgperf serve`).
static DRAIN: Mutex<Option<tokio::sync::oneshot::Sender<&'static str>>> = Mutex::new(None);

/// How long a draining command has, after the first signal, to end by itself before the
/// clean-up runs and the process exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Hands the first SIGINT or SIGTERM to the caller instead of exiting: the receiver gets the
/// signal's name, and the command finishes its work and cleans up by itself. A second signal,
/// or [`DRAIN_LIMIT`] without the process ending, cleans up and exits as [`on_signals`] does.
pub fn drain_on_signal() -> tokio::sync::oneshot::Receiver<&'static str> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Ok(mut slot) = DRAIN.lock() {
        *slot = Some(tx);
    }
    rx
}

/// On the first SIGINT or SIGTERM: says so on stderr, runs [`clean_up_now`] and exits with
/// 128 + the signal's number (130, 143), as a shell reports a process killed by it. Installed
/// once per process; later calls do nothing.
pub fn on_signals() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("pgperf-signals".to_owned())
            .spawn(move || wait_for_signal(&tx))
            .expect("a signal thread");
        // Handlers are in place once the thread says so: a signal from then on is ours.
        let _ = rx.recv_timeout(Duration::from_secs(5));
    });
}

fn wait_for_signal(ready: &std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let code = rt.block_on(async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return None;
        };
        let _ = ready.send(());
        let first = tokio::select! {
            _ = int.recv() => (libc::SIGINT, "SIGINT"),
            _ = term.recv() => (libc::SIGTERM, "SIGTERM"),
        };
        let drain = DRAIN.lock().ok().and_then(|mut d| d.take());
        let Some(drain) = drain else {
            return Some(first);
        };
        eprintln!(
            "pgperf: {} received: finishing in-flight work (a second signal stops at once)",
            first.1
        );
        let _ = drain.send(first.1);
        tokio::select! {
            _ = int.recv() => Some((libc::SIGINT, "SIGINT")),
            _ = term.recv() => Some((libc::SIGTERM, "SIGTERM")),
            _ = tokio::time::sleep(DRAIN_LIMIT) => Some(first),
        }
    });
    let Some((number, name)) = code else {
        return;
    };
    INTERRUPTED.store(number, Ordering::SeqCst);
    eprintln!("pgperf: {name} received: removing this run's containers, databases and files");
    clean_up_now();
    std::process::exit(128 + number);
}
