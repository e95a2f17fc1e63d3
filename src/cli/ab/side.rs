//! The driver's handle on one worker process: spawn it, check its protocol, ask and wait.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use pgperf::db::DatabaseUrl;

use super::protocol::{PROTOCOL, Reply, Request, SERVER_URL_VAR};

/// How long one request may take: a batch is a fraction of a second, a seed tens of seconds;
/// only a worker that hangs reaches this.
const REQUEST_LIMIT: Duration = Duration::from_secs(300);

/// A running worker.
pub struct Side {
    /// "base" or "head".
    pub label: &'static str,
    /// The cases its build knows.
    pub cases: Vec<String>,
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Side {
    /// Starts `binary ab-worker` on the server at `admin`, its standard error into `log`.
    pub async fn spawn(
        label: &'static str,
        binary: &Path,
        admin: &DatabaseUrl,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("ab-worker")
            .env(SERVER_URL_VAR, admin.expose())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {label} worker {}", binary.display()))?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut side = Self {
            label,
            cases: Vec::new(),
            child,
            input,
            output,
        };
        match side.read().await {
            Ok(Reply::Hello { protocol, cases }) if protocol == PROTOCOL => side.cases = cases,
            Ok(Reply::Hello { protocol, .. }) => bail!(
                "the {label} build speaks protocol {protocol}, this one {PROTOCOL}: \
                 compare revisions of one protocol"
            ),
            _ => bail!(
                "the {label} build has no `pgperf ab-worker` (it predates pgperf ab): choose a \
                 base at or after the commit that added it"
            ),
        }
        Ok(side)
    }

    async fn read(&mut self) -> anyhow::Result<Reply> {
        let line = tokio::time::timeout(REQUEST_LIMIT, self.output.next_line())
            .await
            .with_context(|| {
                format!(
                    "the {} worker gave no answer in {REQUEST_LIMIT:?}",
                    self.label
                )
            })??
            .with_context(|| format!("the {} worker exited", self.label))?;
        serde_json::from_str(&line).with_context(|| format!("a reply of the {} worker", self.label))
    }

    /// Sends `request` and waits for the reply; a `Failed` reply is an error.
    pub async fn ask(&mut self, request: &Request) -> anyhow::Result<Reply> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.input.write_all(line.as_bytes()).await?;
        self.input.flush().await?;
        match self.read().await? {
            Reply::Failed { message } => bail!("{} side: {message}", self.label),
            reply => Ok(reply),
        }
    }

    /// Tells the worker to drop its database and exit, and waits for it (bounded).
    pub async fn quit(mut self) {
        let _ = self.input.write_all(b"\"quit\"\n").await;
        let _ = self.input.flush().await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
