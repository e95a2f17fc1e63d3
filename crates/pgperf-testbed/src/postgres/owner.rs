//! Who owns what a run leaves on the engine or the server, and how leftovers are told apart
//! from the work of runs still alive.
//!
//! Every container pgperf starts carries labels naming its run: the owning process (pid and
//! start time, so a reused pid is not mistaken for the owner), the host (so a run on another
//! machine sharing the engine, or a remote `DOCKER_HOST`, is never judged by this host's
//! process table), a random run id and when it started. [`sweep_dead_containers`] removes
//! only containers whose owner is provably gone: same host, process no longer there. Those of
//! other hosts are removed only when older than [`STALE_AFTER`].
//!
//! Database names made on an external server carry the hour they were made and the run id
//! ([`database_name`]), so leftovers of killed runs are dropped by age and two runs never
//! collide, whatever their pids.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Label with the owning process's pid (the only label of older pgperf versions).
pub const OWNER_LABEL: &str = "org.pgperf.owner";
/// Label with the owning process's start: boot id and start time in clock ticks.
pub const PROCESS_LABEL: &str = "org.pgperf.process";
/// Label with the identity of the host that started the container.
pub const HOST_LABEL: &str = "org.pgperf.host";
/// Label with the run's random id.
pub const RUN_LABEL: &str = "org.pgperf.run";
/// Label with the Unix time (seconds) the container was started.
pub const STARTED_LABEL: &str = "org.pgperf.started";

/// Leftovers older than this are removed whoever made them (a run never lasts a day).
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How long a `docker` command of the sweep may take before it is killed.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

/// This process's identity, as written on its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The process id.
    pub pid: u32,
    /// Boot id and start time of the process (`""` where /proc does not say).
    pub process: String,
    /// The host's identity.
    pub host: String,
    /// A random id of this run (8 hex digits).
    pub run: String,
    /// Unix seconds when this process first asked.
    pub started: u64,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Boot id and start time (field 22 of `/proc/PID/stat`) of a process, if it exists.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start = after_name.split_whitespace().nth(19)?;
    let boot = read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    Some(format!("{boot}:{start}"))
}

/// The host's identity: its machine id if it has one, and its hostname.
fn host_identity() -> String {
    let machine = read_trimmed("/etc/machine-id")
        .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
        .unwrap_or_default();
    let name = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".to_owned());
    let machine: String = machine.chars().take(12).collect();
    format!("{name}-{machine}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                process: process_start(pid).unwrap_or_default(),
                host: host_identity(),
                run: format!("{:08x}", rand::rng().random::<u32>()),
                started: unix_now(),
            }
        })
    }

    /// The labels a container of this run carries.
    pub fn labels(&self) -> [(&'static str, String); 5] {
        [
            (OWNER_LABEL, self.pid.to_string()),
            (PROCESS_LABEL, self.process.clone()),
            (HOST_LABEL, self.host.clone()),
            (RUN_LABEL, self.run.clone()),
            (STARTED_LABEL, unix_now().to_string()),
        ]
    }
}

/// What the sweep knows of a container from its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// Container id.
    pub id: String,
    /// `org.pgperf.owner`.
    pub pid: Option<u32>,
    /// `org.pgperf.process` (empty on older containers).
    pub process: String,
    /// `org.pgperf.host` (empty on older containers).
    pub host: String,
    /// `org.pgperf.started`.
    pub started: Option<u64>,
}

/// Whether the sweep may remove a container: its owner ran on this host and is gone (the pid
/// is free, or now belongs to a process started at another time), or it is older than
/// [`STALE_AFTER`]. A container of another host is never judged by this host's processes.
/// Containers of older versions (no host label) are judged by their pid alone, as before.
pub fn is_leftover(
    c: &Labelled,
    me: &Owner,
    now: u64,
    start_of: impl Fn(u32) -> Option<String>,
) -> bool {
    if c.started
        .is_some_and(|s| now.saturating_sub(s) > STALE_AFTER.as_secs())
    {
        return true;
    }
    let Some(pid) = c.pid else {
        return false;
    };
    if !c.host.is_empty() && c.host != me.host {
        return false;
    }
    match start_of(pid) {
        None => true,
        Some(now_start) => !c.process.is_empty() && now_start != c.process,
    }
}

/// Runs `docker` with `args`, killed after [`DOCKER_TIMEOUT`]; its stdout, or `None` when it
/// failed, was not found or took too long.
pub fn docker(args: &[&str]) -> Option<String> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + DOCKER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
                }
                return status.success().then_some(out);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Removes pgperf containers left by dead runs of this host, and stale ones of any host.
/// Returns the ids removed. Bounded: a hung engine costs at most two docker timeouts.
pub fn sweep_dead_containers() -> Vec<String> {
    let format = format!(
        "{{{{.ID}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}\t{{{{.Label \"{PROCESS_LABEL}\"}}}}\t\
         {{{{.Label \"{HOST_LABEL}\"}}}}\t{{{{.Label \"{STARTED_LABEL}\"}}}}"
    );
    let filter = format!("label={OWNER_LABEL}");
    let Some(out) = docker(&["ps", "-a", "--filter", &filter, "--format", &format]) else {
        return Vec::new();
    };
    let (me, now) = (Owner::current(), unix_now());
    let dead: Vec<String> = out
        .lines()
        .filter_map(parse_line)
        .filter(|c| is_leftover(c, me, now, process_start))
        .map(|c| c.id)
        .collect();
    if !dead.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(dead.iter().map(String::as_str));
        let _ = docker(&args);
    }
    dead
}

fn parse_line(line: &str) -> Option<Labelled> {
    let mut f = line.split('\t');
    let id = f.next()?.trim().to_owned();
    let field = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|v| *v != "<no value>")
            .unwrap_or("")
            .to_owned()
    };
    let (pid, process, host, started) = (
        field(f.next()),
        field(f.next()),
        field(f.next()),
        field(f.next()),
    );
    (!id.is_empty()).then(|| Labelled {
        id,
        pid: pid.parse().ok(),
        process,
        host,
        started: started.parse().ok(),
    })
}

/// Prefix of every database pgperf makes (templates included).
pub const DATABASE_PREFIX: &str = "pgperf_";

/// A new database name for `purpose` (1-12 of `[a-z]`): `pgperf_<purpose>_<hour>_<run>_<n>`.
/// The hour lets a later run drop it by age if this one is killed; the run id keeps two runs
/// apart even when a pid is reused.
pub fn database_name(purpose: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let me = Owner::current();
    format!(
        "{DATABASE_PREFIX}{purpose}_{}_{}_{n}",
        unix_now() / 3600,
        me.run
    )
}

/// Whether a database named by [`database_name`] is older than [`STALE_AFTER`]. Names of any
/// other shape (templates, other tools' databases) are never stale.
pub fn is_stale_database(name: &str, now: u64) -> bool {
    let Some(rest) = name.strip_prefix(DATABASE_PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    let [purpose, hour, run, n] = parts.as_slice() else {
        return false;
    };
    let shaped = !purpose.is_empty()
        && purpose.bytes().all(|b| b.is_ascii_lowercase())
        && run.len() == 8
        && run.bytes().all(|b| b.is_ascii_hexdigit())
        && n.parse::<u32>().is_ok();
    let age_hours = hour.parse::<u64>().map(|h| (now / 3600).saturating_sub(h));
    shaped && age_hours.is_ok_and(|h| h * 3600 > STALE_AFTER.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            pid: 10,
            process: "boot:100".to_owned(),
            host: "here-abc".to_owned(),
            run: "0badc0de".to_owned(),
            started: 1_000_000,
        }
    }

    fn container(pid: u32, process: &str, host: &str, started: u64) -> Labelled {
        Labelled {
            id: "c".to_owned(),
            pid: Some(pid),
            process: process.to_owned(),
            host: host.to_owned(),
            started: Some(started),
        }
    }

    #[test]
    fn a_container_of_a_live_run_is_kept_and_of_a_dead_one_removed() {
        let now = 1_000_100;
        let alive = |pid: u32| (pid == 20).then(|| "boot:200".to_owned());
        assert!(!is_leftover(
            &container(20, "boot:200", "here-abc", now),
            &me(),
            now,
            alive
        ));
        assert!(is_leftover(
            &container(21, "boot:210", "here-abc", now),
            &me(),
            now,
            alive
        ));
    }

    #[test]
    fn a_reused_pid_does_not_keep_a_dead_runs_container() {
        let now = 1_000_100;
        let reused = |_pid: u32| Some("boot:999".to_owned());
        assert!(is_leftover(
            &container(20, "boot:200", "here-abc", now),
            &me(),
            now,
            reused
        ));
    }

    #[test]
    fn another_hosts_container_is_kept_until_it_is_stale() {
        let now = 1_000_100;
        let nobody = |_pid: u32| None;
        assert!(!is_leftover(
            &container(20, "b:1", "there-xyz", now),
            &me(),
            now,
            nobody
        ));
        let old = now - STALE_AFTER.as_secs() - 1;
        assert!(is_leftover(
            &container(20, "b:1", "there-xyz", old),
            &me(),
            now,
            nobody
        ));
    }

    #[test]
    fn sweep_lines_parse_with_and_without_the_new_labels() {
        let new = parse_line("abc\t12\tboot:5\thost-1\t1700000000").unwrap();
        assert_eq!(
            (new.pid, new.host.as_str(), new.started),
            (Some(12), "host-1", Some(1_700_000_000))
        );
        let old = parse_line("def\t13\t<no value>\t<no value>\t<no value>").unwrap();
        assert_eq!(
            (old.pid, old.host.as_str(), old.started),
            (Some(13), "", None)
        );
    }

    #[test]
    fn database_names_are_unique_and_dropped_only_when_stale() {
        let (a, b) = (database_name("t"), database_name("t"));
        assert_ne!(a, b);
        assert!(a.len() <= 63 && a.starts_with("pgperf_t_"), "{a}");
        let now = unix_now();
        assert!(!is_stale_database(&a, now));
        assert!(is_stale_database(&a, now + STALE_AFTER.as_secs() + 7200));
        for other in [
            "pgperf_tpl_0123456789abcdef",
            "postgres",
            "pgperf_t_12_x_1",
            "app_1_2_3",
        ] {
            assert!(
                !is_stale_database(other, now + 10 * STALE_AFTER.as_secs()),
                "{other}"
            );
        }
    }

    #[test]
    fn this_process_has_a_start_time_and_a_host() {
        let me = Owner::current();
        assert!(!me.process.is_empty() && !me.host.is_empty());
        assert_eq!(process_start(me.pid).as_deref(), Some(me.process.as_str()));
    }
}
