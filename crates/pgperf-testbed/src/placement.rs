//! Where the client and the server run while cases are timed.
//!
//! On a host of our kind, a `SELECT 1` round trip took 13 µs when the client thread and the
//! backend met on one core, and 65-90 µs when they ran on two (waking the other core is the
//! price). Which of the two a batch of operations got changed from one batch to the next, and
//! differed between the case and the references measured beside it, so a bare round trip read
//! x0.17 to x2.61 of its expectation on unchanged code (docs/results/2026-12-02-sensitivity.md).
//!
//! [`Apart`] removes the choice: the client process on the first CPU and the server's container
//! on the others, so every round trip crosses cores, as it does between an application and
//! its database in production. It is undone when dropped. It applies only where this process
//! decides the placement: a container of ours, on two CPUs or more, with no placement given
//! already (`PGPERF_CONTAINER_UPDATE`, or a CPU list set with `taskset`).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use crate::postgres::{ServerError, docker_update};

/// Whether timed runs place the client and the server apart (`PGPERF_PLACEMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The client on CPU 0, the server's container on the other CPUs (the default).
    #[default]
    Apart,
    /// Wherever the operating system puts them.
    AsIs,
}

/// The client on CPU 0 and the container on the others, until dropped.
#[derive(Debug)]
pub struct Apart {
    container: String,
    client_cpus: libc::cpu_set_t,
    cpus: usize,
}

/// What [`Apart::place`] does when other processes keep a CPU busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Leave the client and the server where the OS puts them: placed apart, the server would
    /// share its core with that work while the client had one to itself, which a single run's
    /// references do not see (`ingest.copy_1k` read x1.53 of its expectation on unchanged
    /// code with `yes` on the server's core).
    StayAsIs,
    /// Place them anyway: right where both sides of a comparison run alike (`pgperf ab`).
    PlaceAnyway,
}

/// Other processes' CPU use, in CPUs, at or above which [`WhenBusy::StayAsIs`] applies.
const BUSY_CPUS: f64 = 0.5;
/// How long other processes' CPU use is watched before placing.
const BUSY_WINDOW: Duration = Duration::from_millis(300);

/// What [`Apart::place`] did.
#[derive(Debug)]
pub enum Placed {
    /// Placed apart until the value is dropped.
    Apart(Apart),
    /// Left as it was, for this reason.
    AsIs(String),
}

impl Placed {
    /// A line for the run's log.
    pub fn describe(&self) -> String {
        match self {
            Placed::Apart(a) => format!(
                "timed with the client on CPU 0 and the server on CPUs {} (PGPERF_PLACEMENT=as-is to leave them)",
                server_cpus(a.cpus)
            ),
            Placed::AsIs(why) => format!("client and server placed by the OS: {why}"),
        }
    }
}

impl Apart {
    /// Places this process and `container` apart when `placement` asks for it and nothing
    /// else placed them; `container_update` is the run's own `docker update` arguments.
    pub fn place(
        placement: Placement,
        container: Option<&str>,
        container_update: &str,
        when_busy: WhenBusy,
    ) -> Result<Placed, ServerError> {
        let cpus = online_cpus();
        let client_cpus = client_affinity().map_err(affinity_error)?;
        let target = Target {
            placement,
            container,
            container_update,
            cpus,
            client_cpus: cpu_count(&client_cpus),
        };
        let id = match target.container_to_place(when_busy) {
            Ok(id) => id,
            Err(why) => return Ok(Placed::AsIs(why)),
        };
        docker_update(id, &format!("--cpuset-cpus {}", server_cpus(cpus)))?;
        let apart = Apart {
            container: id.to_owned(),
            client_cpus,
            cpus,
        };
        set_client_affinity(&only_cpu_0()).map_err(affinity_error)?;
        Ok(Placed::Apart(apart))
    }
}

/// What [`Apart::place`] was asked to place, on a host of `cpus`.
struct Target<'a> {
    placement: Placement,
    container: Option<&'a str>,
    container_update: &'a str,
    cpus: usize,
    /// How many CPUs this process may use now.
    client_cpus: usize,
}

impl<'a> Target<'a> {
    /// The container to place, or why nothing is placed.
    fn container_to_place(&self, when_busy: WhenBusy) -> Result<&'a str, String> {
        let id = match (self.placement, self.container) {
            (Placement::AsIs, _) => return Err("PGPERF_PLACEMENT=as-is".into()),
            (_, None) => return Err("the server is not a container of ours".into()),
            (_, Some(id)) => id,
        };
        if !self.container_update.trim().is_empty() {
            return Err("PGPERF_CONTAINER_UPDATE places it".into());
        }
        if self.cpus < 2 {
            return Err("one CPU".into());
        }
        if self.client_cpus < self.cpus {
            return Err("the client's CPUs are set (taskset)".into());
        }
        if when_busy == WhenBusy::StayAsIs {
            let busy = others_cpu_use(id, BUSY_WINDOW);
            if busy >= BUSY_CPUS {
                return Err(format!(
                    "other processes keep {busy:.1} CPUs busy, and the server would share a core with them"
                ));
            }
        }
        Ok(id)
    }
}

/// CPUs' worth of time used over `window` by processes other than this one and those of
/// `container` (found by its id in their cgroup).
fn others_cpu_use(container: &str, window: Duration) -> f64 {
    let before = others_ticks(container);
    std::thread::sleep(window);
    let after = others_ticks(container);
    let used: u64 = after
        .iter()
        .filter_map(|(pid, t)| Some(t.saturating_sub(*before.get(pid)?)))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    used as f64 / hz / window.as_secs_f64()
}

/// CPU time (clock ticks) of each process but this one and those of `container`.
fn others_ticks(container: &str) -> HashMap<u32, u64> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && !in_cgroup_of(pid, container))
        .filter_map(|pid| Some((pid, process_ticks(pid)?)))
        .collect()
}

fn in_cgroup_of(pid: u32, container: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(container))
}

/// User and system time of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name's closing parenthesis start with field 3.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// The server's CPUs on a host of `cpus`: all but the first.
fn server_cpus(cpus: usize) -> String {
    match cpus {
        0..=2 => "1".to_owned(),
        n => format!("1-{}", n - 1),
    }
}

impl Drop for Apart {
    fn drop(&mut self) {
        let _ = set_client_affinity(&self.client_cpus);
        let _ = docker_update(
            &self.container,
            &format!("--cpuset-cpus 0-{}", self.cpus - 1),
        );
    }
}

fn affinity_error(e: io::Error) -> ServerError {
    ServerError::Placement(e.to_string())
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

fn cpu_count(set: &libc::cpu_set_t) -> usize {
    // SAFETY: `set` is a valid, initialized cpu_set_t.
    usize::try_from(unsafe { libc::CPU_COUNT(set) }).unwrap_or(0)
}

fn only_cpu_0() -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        set
    }
}

/// The calling thread's CPU list (every thread of ours has the same).
fn client_affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is valid; the size passed is its own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Sets the CPU list of every thread of this process (threads started later inherit it from
/// the thread that starts them).
fn set_client_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Ok(tid) = entry?.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
        let err = io::Error::last_os_error();
        // A thread that ended since the listing (ESRCH) needs no placing.
        if rc != 0 && err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_placed_when_asked_not_to_or_when_the_server_is_not_ours() {
        let place = |p, c, u| Apart::place(p, c, u, WhenBusy::StayAsIs).unwrap();
        let as_is = place(Placement::AsIs, Some("c"), "");
        assert!(matches!(as_is, Placed::AsIs(why) if why == "PGPERF_PLACEMENT=as-is"));
        let external = place(Placement::Apart, None, "");
        assert!(matches!(external, Placed::AsIs(why) if why.contains("not a container")));
        let given = place(Placement::Apart, Some("c"), "--cpus 1");
        assert!(matches!(given, Placed::AsIs(why) if why.contains("PGPERF_CONTAINER_UPDATE")));
    }

    #[test]
    fn a_process_hogging_a_cpu_is_seen_and_this_one_is_not() {
        let mut hog = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh");
        let seen = others_cpu_use("no-such-container", Duration::from_millis(300));
        let _ = hog.kill();
        let _ = hog.wait();
        assert!(seen >= BUSY_CPUS, "a busy loop read as {seen:.2} CPUs");
        let others = others_ticks("no-such-container");
        assert!(!others.contains_key(&std::process::id()));
        assert!(others.contains_key(&1), "pid 1 is another process");
    }

    #[test]
    fn the_server_gets_every_cpu_but_the_first() {
        assert_eq!(server_cpus(2), "1");
        assert_eq!(server_cpus(4), "1-3");
    }
}
