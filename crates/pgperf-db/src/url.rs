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
            shown: redact_text(text),
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
        remember_passwords(&url);
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

/// Passwords of the URLs this process parsed (a container's random one among them): the log
/// writer masks them wherever they appear, e.g. in a Docker client's request log.
static KNOWN_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Secrets shorter than this are not masked by value (they would mask ordinary words); the
/// patterns of [`redact_text`] still mask them in URLs and `password=` pairs.
const SHORTEST_MASKED: usize = 6;

/// Remembers a password so that [`mask_known_secrets`] masks it (done for every parsed URL;
/// call it for a secret that is logged before it is part of one).
pub fn remember_secret(secret: &str) {
    if secret.len() < SHORTEST_MASKED {
        return;
    }
    let mut known = KNOWN_SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
    }
}

/// Remembers a URL's password and any `...password=` query value, as written (percent-encoded)
/// and decoded.
fn remember_passwords(url: &url::Url) {
    let in_query = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.to_ascii_lowercase()
                .ends_with("password")
                .then_some(value)
        });
    for raw in url.password().into_iter().chain(in_query) {
        remember_secret(raw);
        let plus_as_space = raw.replace('+', " ");
        for form in [raw, plus_as_space.as_str()] {
            if let Ok(decoded) = percent_encoding::percent_decode_str(form).decode_utf8() {
                remember_secret(&decoded);
            }
        }
    }
}

/// `text` with every password this process knows replaced by `***`: for log lines, which
/// may carry one anywhere (`POSTGRES_PASSWORD=...` in a container's environment).
pub fn mask_known_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let known = KNOWN_SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = std::borrow::Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    out
}

/// Redacts a text that may not parse as a URL (a typo'd URL, a libpq key/value string): the
/// password of a `user:password@` part, and the value of every key ending in `password`
/// (`password=`, `?password=`, `&sslpassword=`, quoted or not), whatever else is broken.
pub fn redact_text(text: &str) -> String {
    // A text without `//` after its scheme (`postgres:user:secret@host`) parses as a URL with
    // no authority, whose "path" would be shown as it is.
    if let Ok(url) = url::Url::parse(text)
        && !url.cannot_be_a_base()
    {
        return redact(&url);
    }
    mask_password_values(&mask_userinfo(text))
}

/// Where the text starts with `scheme://`, the index after it.
fn after_scheme(text: &str) -> Option<usize> {
    let (scheme, _) = text.split_once("://")?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    is_scheme.then_some(scheme.len() + 3)
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`.
fn mask_userinfo(text: &str) -> String {
    let Some(start) = after_scheme(text) else {
        return mask_bare_userinfo(text);
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &text[..start], &rest[..colon], &rest[at..]),
        None => text.to_owned(),
    }
}

/// Without `scheme://`: in `[scheme:]user:secret@host...`, what lies between the last `:` and
/// the first `@` (before any `/`) becomes `***`.
fn mask_bare_userinfo(text: &str) -> String {
    let head_end = text.find('/').unwrap_or(text.len());
    let Some(at) = text[..head_end].find('@') else {
        return text.to_owned();
    };
    match text[..at].rfind(':') {
        Some(colon) => format!("{}:***{}", &text[..colon], &text[at..]),
        None => text.to_owned(),
    }
}

/// Every `...password=value` (case-insensitive key) gets `***` for its value. A value ends at
/// its closing quote when quoted, else at white space, and in a URL-like text also at `&` or
/// `#` (in a libpq key/value string those belong to the value).
fn mask_password_values(text: &str) -> String {
    let url_like = after_scheme(text).is_some();
    let ends = |c: char| c.is_whitespace() || (url_like && (c == '&' || c == '#'));
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        let after = text[key_end..].trim_start();
        let eq = key_end + (text[key_end..].len() - after.len());
        if !after.starts_with('=') {
            out.push_str(&text[i..key_end]);
            i = key_end;
            continue;
        }
        let value_start = eq + 1 + (after[1..].len() - after[1..].trim_start().len());
        let value = &text[value_start..];
        let value_len = match value.chars().next() {
            Some(q @ ('\'' | '"')) => value[1..].find(q).map_or(value.len(), |end| end + 2),
            _ => value.find(ends).unwrap_or(value.len()),
        };
        out.push_str(&text[i..value_start]);
        out.push_str("***");
        i = value_start + value_len;
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_parsed_urls_password_is_masked_anywhere_in_a_log_line() {
        DatabaseUrl::parse("postgres://app:Zq%2Fsecret9@db:5432/app").unwrap();
        let line = r#"{"Env":["POSTGRES_PASSWORD=Zq/secret9","X=Zq%2Fsecret9"]}"#;
        assert_eq!(
            mask_known_secrets(line),
            r#"{"Env":["POSTGRES_PASSWORD=***","X=***"]}"#
        );
        assert_eq!(mask_known_secrets("nothing here"), "nothing here");
    }

    /// A connection string in one of the forms users write (or mistype), with `secret` as its
    /// password (percent-encoded where the form is a URL).
    fn connection_string(form: usize, user: &str, secret: &str, host: &str, db: &str) -> String {
        let enc = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC);
        match form {
            0 => format!("postgres://{user}:{enc}@{host}:5432/{db}"),
            1 => format!("postgres://{user}@{host}/{db}?sslmode=disable&password={enc}"),
            2 => format!("postgres://{user}:{enc}@{host}:notaport/{db}"),
            3 => format!("postgres://{host}:bad/{db}?password={enc}&x=1"),
            4 => format!("host={host} user={user} password={secret} dbname={db}"),
            5 => format!("postgresql://{user}:{enc}@{host}/{db}?sslmode=bogus"),
            6 => format!("mysql://{user}:{enc}@{host}/{db}"),
            _ => format!("postgres:{user}:{enc}@{host}:5432/{db}"),
        }
    }

    proptest! {
        #[test]
        fn no_password_appears_in_anything_shown(
            form in 0usize..8,
            user in "[a-z][a-z0-9_]{0,10}",
            secret in "Zq[A-Za-z0-9!$%^*()+,=&#:@/-]{6,16}",
            host in "[a-z]{1,8}(\\.[a-z]{1,5})?",
            db in "[a-z_]{1,10}",
        ) {
            let text = connection_string(form, &user, &secret, &host, &db);
            let enc = percent_encoding::utf8_percent_encode(&secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
            let mut shown = vec![redact_text(&text)];
            match DatabaseUrl::parse(&text) {
                Ok(url) => {
                    shown.push(url.to_string());
                    shown.push(format!("{url:?}"));
                    shown.push(url.with_database("other db/../x").to_string());
                    shown.push(url.host_port());
                    // A log line carrying the password anywhere (an engine's request log).
                    let line = format!("{{\"Env\":[\"PGPASSWORD={secret}\"]}} {enc} {text}");
                    shown.push(mask_known_secrets(&line).into_owned());
                }
                Err(e) => {
                    shown.push(e.to_string());
                    shown.push(format!("{e:?}"));
                }
            }
            for s in shown {
                prop_assert!(!s.contains(&secret) && !s.contains(&enc), "{text} showed {s}");
            }
        }
    }

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
    fn text_that_does_not_parse_never_shows_a_password() {
        for (text, secret) in [
            ("postgres://app:s3cret@host:notaport/db", "s3cret"),
            (
                "postgres://host:notaport/db?password=s3cret&sslmode=x",
                "s3cret",
            ),
            ("postgres://host:bad/db?sslmode=x&PASSWORD=s3cret", "s3cret"),
            ("host=db user=app password=s3cret dbname=main", "s3cret"),
            ("host=db password = 's3 cret' dbname=main", "s3 cret"),
            ("host=db sslpassword=s3cret", "s3cret"),
            ("postgres://app:s3cr@t@host:x/db", "s3cr@t"),
        ] {
            let shown = redact_text(text);
            assert!(!shown.contains(secret), "{text} -> {shown}");
            assert!(shown.contains("***"), "{text} -> {shown}");
        }
        assert_eq!(
            redact_text("host=db passwordless=yes"),
            "host=db passwordless=yes"
        );
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
