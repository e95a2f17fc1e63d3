//! Skips that show. A test that cannot run where the suite runs (no container engine behind
//! PGPERF_DATABASE_URL, a server that trusts every password) calls [`skip`] and returns; at the
//! end of the run every skip is listed on standard error, outside libtest's capture, so a green
//! run never hides what it left out (and with `CI` set, as a warning annotation).

use std::io::Write as _;
use std::sync::Mutex;

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records that the current test is skipped, and why.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipped: {reason}");
    if let Ok(mut list) = SKIPPED.lock() {
        list.push(format!("{test}: {reason}"));
    }
}

#[dtor::dtor(unsafe)]
fn list_skips_at_exit() {
    let Ok(list) = SKIPPED.lock() else {
        return;
    };
    if list.is_empty() {
        return;
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "\n{} test(s) skipped:", list.len());
    for s in list.iter() {
        let _ = writeln!(err, "  - {s}");
    }
    if std::env::var_os("CI").is_some() {
        let _ = writeln!(
            err,
            "::warning title=tests skipped::{} test(s) skipped: {}",
            list.len(),
            list.join("; ")
        );
    }
}
