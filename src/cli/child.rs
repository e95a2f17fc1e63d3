//! Child processes (pgbench, psql) that can neither hang the CLI nor outlive it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use pgperf::db::DatabaseUrl;

/// How long a child may take to connect (libpq's `PGCONNECT_TIMEOUT`, in seconds): a paused
/// or unreachable server fails the child instead of leaving it waiting.
const CONNECT_TIMEOUT_S: u32 = 10;

/// A client tool run against `url`: connection settings in libpq's variables (never on the
/// command line, where `ps` would show the password).
pub struct Child<'a> {
    /// The program (`pgbench`, `psql`).
    pub program: &'a str,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where it connects.
    pub url: &'a DatabaseUrl,
    /// How long it may run before it is killed.
    pub limit: Duration,
}

/// What a child printed, and how long it took.
#[derive(Debug)]
pub struct Finished {
    /// Standard output and standard error, in that order.
    pub text: String,
    /// Wall-clock time from spawn to exit.
    pub took: Duration,
}

impl Child<'_> {
    /// Runs the child to completion. It is killed when `limit` passes, and when this future
    /// is dropped (Ctrl-C, an error elsewhere): no pgbench keeps loading a server after us.
    pub async fn run(self) -> anyhow::Result<Finished> {
        let shown = format!("{} {}", self.program, self.args.join(" "));
        let started = Instant::now();
        let child = tokio::process::Command::new(self.program)
            .args(&self.args)
            .envs(self.url.libpq_env())
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_S.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.limit, child)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{shown} did not finish within {:?} and was killed; is the server at {} \
                     answering?",
                    self.limit,
                    self.url
                )
            })?
            .with_context(|| {
                format!(
                    "running {} (install the PostgreSQL client tools: apt-get install \
                     postgresql-client)",
                    self.program
                )
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("{shown} failed ({}): {}", out.status, text.trim());
        }
        Ok(Finished {
            text,
            took: started.elapsed(),
        })
    }
}
