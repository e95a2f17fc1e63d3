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

use std::io;

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

/// What [`Apart::place`] did.
#[derive(Debug)]
pub enum Placed {
    /// Placed apart until the value is dropped.
    Apart(Apart),
    /// Left as it was, for this reason.
    AsIs(&'static str),
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
    ) -> Result<Placed, ServerError> {
        let cpus = online_cpus();
        let why = match (placement, container) {
            (Placement::AsIs, _) => Some("PGPERF_PLACEMENT=as-is"),
            (_, None) => Some("the server is not a container of ours"),
            _ if !container_update.trim().is_empty() => Some("PGPERF_CONTAINER_UPDATE places it"),
            _ if cpus < 2 => Some("one CPU"),
            _ => None,
        };
        let client_cpus = client_affinity().map_err(affinity_error)?;
        let why = why.or_else(|| {
            (cpu_count(&client_cpus) < cpus).then_some("the client's CPUs are set (taskset)")
        });
        if let (None, Some(id)) = (why, container) {
            docker_update(id, &format!("--cpuset-cpus {}", server_cpus(cpus)))?;
            let apart = Apart {
                container: id.to_owned(),
                client_cpus,
                cpus,
            };
            set_client_affinity(&only_cpu_0()).map_err(affinity_error)?;
            return Ok(Placed::Apart(apart));
        }
        Ok(Placed::AsIs(why.unwrap_or("not placed")))
    }
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
        let as_is = Apart::place(Placement::AsIs, Some("c"), "").unwrap();
        assert!(matches!(as_is, Placed::AsIs("PGPERF_PLACEMENT=as-is")));
        let external = Apart::place(Placement::Apart, None, "").unwrap();
        assert!(matches!(external, Placed::AsIs(why) if why.contains("not a container")));
        let given = Apart::place(Placement::Apart, Some("c"), "--cpus 1").unwrap();
        assert!(matches!(given, Placed::AsIs(why) if why.contains("PGPERF_CONTAINER_UPDATE")));
    }

    #[test]
    fn the_server_gets_every_cpu_but_the_first() {
        assert_eq!(server_cpus(2), "1");
        assert_eq!(server_cpus(4), "1-3");
    }
}
