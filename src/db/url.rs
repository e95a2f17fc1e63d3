//! A validated PostgreSQL URL that never prints its password.

use std::{fmt, str::FromStr};

use sqlx::postgres::PgConnectOptions;

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The text is not a URL at all.
    #[error(
        "malformed database URL {shown}: {reason}; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    Malformed {
        /// The URL with any password replaced by `***`.
        shown: String,
        /// What the parser said.
        reason: String,
    },
    /// The URL is well formed but is not a PostgreSQL one, or lacks a part we need.
    #[error("unsupported database URL {shown}: {reason}")]
    Unsupported {
        /// The URL with any password replaced by `***`.
        shown: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A `postgres://` URL, checked at the edge. `Display` and `Debug` redact the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

impl DatabaseUrl {
    /// Parses and checks a URL: scheme `postgres` or `postgresql`, and a host.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = url::Url::parse(text).map_err(|e| UrlError::Malformed {
            shown: redact_text(text),
            reason: e.to_string(),
        })?;
        let unsupported = |reason: &str| UrlError::Unsupported {
            shown: redact(&url),
            reason: reason.to_owned(),
        };
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(unsupported(
                "the scheme must be postgres:// or postgresql://",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(unsupported("the URL names no host"));
        }
        PgConnectOptions::from_str(url.as_str()).map_err(|e| unsupported(&e.to_string()))?;
        Ok(Self(url))
    }

    /// The same server with another database name.
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(&format!("/{name}"));
        Self(url)
    }

    /// The same URL aimed at another host and port (a relay in front of the server).
    pub fn via(&self, host: &str, port: u16) -> Result<Self, UrlError> {
        let mut url = self.0.clone();
        let refused = |reason: &str| UrlError::Unsupported {
            shown: redact(&self.0),
            reason: reason.to_owned(),
        };
        url.set_host(Some(host))
            .map_err(|e| refused(&format!("host {host:?}: {e}")))?;
        url.set_port(Some(port))
            .map_err(|()| refused("this URL cannot have a port"))?;
        Ok(Self(url))
    }

    /// The database name in the path (`postgres` when the path is empty).
    pub fn database(&self) -> &str {
        match self.0.path().trim_start_matches('/') {
            "" => "postgres",
            name => name,
        }
    }

    /// Connection options for sqlx.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.0.as_str()).expect("validated in DatabaseUrl::parse")
    }

    /// The full URL, password included. Never log it; use `Display` for that.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) for
    /// running `psql` or `pgbench` against this URL without a password in their arguments.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut env = vec![
            (
                "PGHOST",
                self.0
                    .host_str()
                    .unwrap_or("localhost")
                    .trim_matches(['[', ']'])
                    .to_owned(),
            ),
            ("PGPORT", self.0.port().unwrap_or(5432).to_string()),
            ("PGDATABASE", self.database().to_owned()),
        ];
        if !self.0.username().is_empty() {
            env.push(("PGUSER", decode(self.0.username())));
        }
        if let Some(p) = self.0.password() {
            env.push(("PGPASSWORD", decode(p)));
        }
        env
    }

    /// Host and port, for messages.
    pub fn host_port(&self) -> String {
        format!(
            "{}:{}",
            self.0.host_str().unwrap_or("?"),
            self.0.port().unwrap_or(5432)
        )
    }
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    let query: Vec<(String, String)> = shown
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("password") {
                "***".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !query.is_empty() {
        shown.query_pairs_mut().clear().extend_pairs(query);
    }
    shown.to_string()
}

/// Redacts a text that may not parse as a URL: anything between `://user:` and `@` goes.
pub fn redact_text(text: &str) -> String {
    if let Ok(url) = url::Url::parse(text) {
        return redact(&url);
    }
    match (text.find("://"), text.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &text[start + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &text[..start + 3],
                    &userinfo[..colon],
                    &text[at..]
                ),
                None => text.to_owned(),
            }
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_never_show_the_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.local:5433/main").unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db.local:5433/main");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.database(), "main");
    }

    #[test]
    fn a_password_in_the_query_is_redacted_too() {
        let url =
            DatabaseUrl::parse("postgres://db.local/main?password=s3cret&sslmode=disable").unwrap();
        assert!(!url.to_string().contains("s3cret"), "{url}");
    }

    #[test]
    fn a_malformed_url_is_refused_with_the_expected_form_and_no_password() {
        let err = DatabaseUrl::parse("postgres://app:s3cret@:notaport/db").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn another_scheme_is_refused() {
        let err = DatabaseUrl::parse("mysql://app@localhost/db").unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn libpq_env_decodes_user_and_password() {
        let url = DatabaseUrl::parse("postgres://app%40x:p%2Bw%20d@h:5433/db").unwrap();
        let env = url.libpq_env();
        assert!(
            env.contains(&("PGUSER", "app@x".into()))
                && env.contains(&("PGPASSWORD", "p+w d".into())),
            "{env:?}"
        );
        assert!(
            env.contains(&("PGPORT", "5433".into())) && env.contains(&("PGDATABASE", "db".into()))
        );
    }

    #[test]
    fn with_database_keeps_the_server_and_credentials() {
        let url = DatabaseUrl::parse("postgres://app:pw@h:1/a")
            .unwrap()
            .with_database("b");
        assert_eq!(url.expose(), "postgres://app:pw@h:1/b");
    }
}
