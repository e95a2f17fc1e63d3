//! A running service that a command aims at (`pgperf load --target`, `pgperf abuse --target`):
//! an http(s) URL on this machine unless the user allows a remote one, and the admin token of
//! its monitoring endpoints under the same rules for every command.

use std::net::ToSocketAddrs;

use super::Failure;

/// A checked target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL without a trailing `/` (paths are appended to it).
    pub base: String,
    /// The admin token to send to its monitoring endpoints, if any.
    pub token: Option<String>,
}

impl Target {
    /// Checks `target` and finds its token: only http(s); a loopback address unless
    /// `allow_remote`; the token from the variable `token_env` names (a loopback target reads
    /// `PGPERF_ADMIN_TOKEN` by default), never in clear text off this machine.
    pub fn parse(
        target: &str,
        allow_remote: bool,
        token_env: Option<&str>,
    ) -> Result<Self, Failure> {
        let url = url::Url::parse(target)
            .map_err(|e| Failure::Usage(format!("--target {target:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::Usage(format!(
                "--target {target:?}: an http:// or https:// URL"
            )));
        }
        if !allow_remote && !is_loopback(&url) {
            return Err(Failure::Usage(format!(
                "--target {target:?} is not a loopback address: aim at this machine only, unless \
                 --allow-remote is given (aim at staging deliberately, never by accident)"
            )));
        }
        Ok(Self {
            base: target.trim_end_matches('/').to_owned(),
            token: admin_token(&url, token_env)?,
        })
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The token to send to `url`'s monitoring endpoints. Never a flag's value (argv is public in
/// /proc); never in clear text off this machine; never implied for a remote target.
fn admin_token(url: &url::Url, token_env: Option<&str>) -> Result<Option<String>, Failure> {
    let loopback = is_loopback(url);
    let name = match (token_env, loopback) {
        (Some(name), _) => name,
        (None, true) => "PGPERF_ADMIN_TOKEN",
        (None, false) => return Ok(None),
    };
    let token = std::env::var(name).ok().filter(|t| !t.is_empty());
    if token_env.is_some() && token.is_none() {
        return Err(Failure::Usage(format!(
            "--admin-token-env {name}: that variable is not set"
        )));
    }
    if token.is_some() && !loopback && url.scheme() != "https" {
        return Err(Failure::Usage(format!(
            "--admin-token-env {name}: the token would cross the network in clear text; aim at an https:// target"
        )));
    }
    Ok(token)
}

/// Whether `url`'s host resolves to loopback addresses only.
pub fn is_loopback(url: &url::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(80);
    match (host.trim_matches(['[', ']']), port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}
