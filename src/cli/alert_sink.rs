//! `pgperf alert-sink`: the webhook receiver Alertmanager notifies (`monitoring/alertmanager/
//! alertmanager.yml` sends to `127.0.0.1:9095/alerts`). Each notification becomes one JSON line
//! (standard output, or appended to `--log`), and, when a Slack-compatible incoming-webhook URL
//! is given, a message forwarded there: what fired or resolved, on which instance, with its
//! runbook. A notification that cannot be forwarded gets 502, so Alertmanager sends it again.
//!
//! The forward URL is a secret (it is the credential): it comes from a file or
//! `PGPERF_ALERT_FORWARD_URL`, never from argv, and is never printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// The environment variable that may hold the forward URL.
pub const FORWARD_URL_VAR: &str = "PGPERF_ALERT_FORWARD_URL";

/// The largest notification accepted, bytes (Alertmanager's hold a group's alerts).
const BODY_LIMIT: usize = 256 * 1024;

/// How long a forward may take before the notification is refused (and sent again).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `pgperf alert-sink`.
#[derive(Debug, clap::Args)]
pub struct AlertSinkArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9095")]
    pub bind: SocketAddr,
    /// Append each notification here, one JSON line each (default: standard output).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// A file holding a Slack-compatible incoming-webhook URL to forward notifications to;
    /// otherwise PGPERF_ALERT_FORWARD_URL. Never a flag: argv is public in /proc.
    #[arg(long)]
    pub forward_url_file: Option<PathBuf>,
}

/// Where notifications go.
struct Sink {
    log: Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    forward: Option<(reqwest::Client, String)>,
}

/// Runs the receiver until the process is stopped.
pub async fn run(args: AlertSinkArgs) -> anyhow::Result<()> {
    let sink = Arc::new(Sink {
        log: Mutex::new(open_log(args.log.as_ref()).await?),
        forward: forward_url(args.forward_url_file.as_ref())?
            .map(|url| (reqwest::Client::new(), url)),
    });
    let app = axum::Router::new()
        .route("/alerts", post(receive))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::clone(&sink));
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    eprintln!(
        "pgperf alert-sink: listening on http://{}/alerts{}",
        listener.local_addr()?,
        if sink.forward.is_some() {
            ", forwarding to the configured webhook"
        } else {
            ""
        }
    );
    // Each line is flushed as it is written: a signal (which ends the process) loses nothing.
    let limits = pgperf::service::ConnectionLimits::default();
    pgperf::service::accept_loop(listener, app, limits, std::future::pending()).await;
    Ok(())
}

async fn open_log(
    path: Option<&PathBuf>,
) -> anyhow::Result<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> {
    let Some(path) = path else {
        return Ok(Box::new(tokio::io::stdout()));
    };
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(file))
}

fn forward_url(file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    let url = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the forward URL from {}", path.display()))?,
        ),
        None => std::env::var(FORWARD_URL_VAR).ok(),
    };
    let Some(url) = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        anyhow::bail!(
            "the forward URL must start with https:// or http:// (not shown: it is a secret)"
        );
    }
    Ok(Some(url))
}

async fn receive(State(sink): State<Arc<Sink>>, body: String) -> (StatusCode, String) {
    let notification: Value = match serde_json::from_str(&body) {
        Ok(v @ Value::Object(_)) if v["alerts"].is_array() => v,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "expected an Alertmanager webhook notification (a JSON object with alerts)".into(),
            );
        }
    };
    let text = message(&notification);
    let forwarded = match &sink.forward {
        None => None,
        Some((client, url)) => Some(forward(client, url, &text).await),
    };
    let line = json!({
        "received_at": chrono::Utc::now().to_rfc3339(),
        "text": text,
        "forwarded": forwarded.as_ref().map(Result::is_ok),
        "notification": notification,
    });
    if let Err(e) = append(&sink, &line).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("log: {e}"));
    }
    match forwarded {
        Some(Err(e)) => (StatusCode::BAD_GATEWAY, e),
        _ => (StatusCode::OK, "logged".into()),
    }
}

async fn append(sink: &Sink, line: &Value) -> std::io::Result<()> {
    let mut log = sink.log.lock().await;
    log.write_all(format!("{line}\n").as_bytes()).await?;
    log.flush().await
}

/// The message a person reads: one line per alert, what, where, and the runbook.
pub fn message(notification: &Value) -> String {
    let alerts = notification["alerts"].as_array().into_iter().flatten();
    alerts
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or("?").to_owned();
            let note = |k: &str| a["annotations"][k].as_str().unwrap_or("").to_owned();
            format!(
                "[{}] {} on {}: {} (runbook: {})",
                a["status"].as_str().unwrap_or("?").to_uppercase(),
                label("alertname"),
                label("instance"),
                note("summary"),
                note("runbook_url"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn forward(client: &reqwest::Client, url: &str, text: &str) -> Result<(), String> {
    let sent = client
        .post(url)
        .timeout(FORWARD_TIMEOUT)
        .json(&json!({ "text": text }))
        .send()
        .await;
    // Neither the URL nor reqwest's error (which names it) is shown: the URL is the secret.
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("forwarding: the webhook answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("forwarding: no answer in {FORWARD_TIMEOUT:?}")),
        Err(_) => Err("forwarding: the webhook could not be reached".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_the_alert_the_instance_and_the_runbook() {
        let n = json!({"alerts": [{
            "status": "firing",
            "labels": {"alertname": "PgperfDatabaseDown", "instance": "10.0.0.7:8080"},
            "annotations": {"summary": "the database is unreachable",
                            "runbook_url": "docs/runbooks/database-down.md"}
        }]});
        assert_eq!(
            message(&n),
            "[FIRING] PgperfDatabaseDown on 10.0.0.7:8080: the database is unreachable \
             (runbook: docs/runbooks/database-down.md)"
        );
    }
}
