//! One way to run the API service in a test: on a free port of 127.0.0.1, over real HTTP,
//! with helpers that read a response's status, media type and JSON body.

use pgperf::db::Db;
use pgperf::service::{Config, router_with, serve as serve_until};
use serde_json::Value;

/// A service on a free local port, stopped (gracefully) by [`Running::stop`].
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn start(db: Db, config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = config.connections;
        let router = router_with(db.clone(), config).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_until(listener, router, db, limits, async {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks for a graceful stop; the returned task ends when in-flight requests are done.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `db` with the default configuration; returns the base URL. The server lives as
/// long as the test's runtime.
pub async fn serve(db: Db) -> String {
    let running = Running::start(db, Config::default()).await;
    let base = running.base.clone();
    std::mem::forget(running.stop);
    base
}

/// Status, content type and JSON body of a response.
pub async fn parts(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, media, body)
}

/// Status, content type and JSON body of a GET.
pub async fn get(url: &str) -> (u16, String, Value) {
    parts(reqwest::get(url).await.unwrap()).await
}
