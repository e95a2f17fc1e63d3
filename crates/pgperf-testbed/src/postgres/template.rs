//! A migrated template database, and cheap per-user copies of it.
//!
//! Migrating takes hundreds of milliseconds; `CREATE DATABASE x TEMPLATE t` takes tens. So the
//! migrations run once per server (per migration set), and every test clones the result.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::ServerError;
use crate::db::{DatabaseUrl, DbError, PoolSettings, migrate, migrations_fingerprint};

/// Advisory-lock key serializing template creation across processes (nextest, parallel runs).
const TEMPLATE_LOCK_KEY: i64 = 0x7067_7065_7266; // "pgperf"

/// A database with every migration applied, ready to be cloned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    name: String,
}

/// Refuses names that would need quoting beyond `"..."`: we only build DDL from names we
/// generated, and check them here anyway.
fn checked(name: &str) -> Result<&str, ServerError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(DbError::invalid(
            "database name",
            format!("{name:?} must be 1-63 of [a-z0-9_]"),
        )
        .into())
    }
}

/// How long connecting, and each statement on an admin connection, may take. `CREATE
/// DATABASE` of a template copies a few MB: well under a second on any machine we run on.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for another process building the same template (migrations take well
/// under a second; a minute means the holder is stuck).
const LOCK_LIMIT: Duration = Duration::from_secs(60);

/// Runs `work` under [`STEP_LIMIT`], naming `step` if it passes.
async fn within<T>(
    step: &str,
    url: &DatabaseUrl,
    limit: Duration,
    work: impl Future<Output = Result<T, ServerError>>,
) -> Result<T, ServerError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(ServerError::Stalled {
            step: step.to_owned(),
            target: url.to_string(),
            after: limit,
            hint: String::new(),
        })
    })
}

/// An admin connection: connected within [`STEP_LIMIT`], with server-side `statement_timeout`
/// and `lock_timeout` so DDL blocked by another session fails instead of queueing for ever.
async fn admin(url: &DatabaseUrl) -> Result<PgConnection, ServerError> {
    let options = url.connect_options().options([
        ("statement_timeout", format!("{}ms", STEP_LIMIT.as_millis())),
        ("lock_timeout", format!("{}ms", STEP_LIMIT.as_millis())),
    ]);
    within("connecting", url, STEP_LIMIT, async {
        PgConnection::connect_with(&options)
            .await
            .map_err(|source| {
                DbError::Connect {
                    target: url.to_string(),
                    source,
                }
                .into()
            })
    })
    .await
}

/// Runs DDL whose only interpolated parts are database names that passed [`checked`], under
/// [`STEP_LIMIT`] (client side too: a paused server never fires `statement_timeout`).
async fn exec(conn: &mut PgConnection, url: &DatabaseUrl, sql: &str) -> Result<(), ServerError> {
    within(sql, url, STEP_LIMIT, async {
        conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_owned())))
            .await
            .map_err(DbError::from)?;
        Ok(())
    })
    .await
}

/// Takes the template lock, retrying `pg_try_advisory_lock` until [`LOCK_LIMIT`]; the error
/// names the process holding it.
async fn lock(conn: &mut PgConnection, url: &DatabaseUrl) -> Result<(), ServerError> {
    let deadline = tokio::time::Instant::now() + LOCK_LIMIT;
    loop {
        let step = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .fetch_one(&mut *conn);
        let got: bool = within("taking the template lock", url, STEP_LIMIT, async {
            step.await.map_err(|e| DbError::from(e).into())
        })
        .await?;
        if got {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let holder: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objid = ($1::bigint & 4294967295)::oid LIMIT 1",
            )
            .bind(TEMPLATE_LOCK_KEY)
            .fetch_optional(&mut *conn)
            .await
            .ok()
            .flatten();
            return Err(ServerError::Stalled {
                step: "waiting for the template lock".to_owned(),
                target: url.to_string(),
                after: LOCK_LIMIT,
                hint: format!(
                    "; server process {} holds it: another pgperf run is building the template, \
                     or is stuck doing so (pg_terminate_backend ends it)",
                    holder.map_or("(unknown)".to_owned(), |p| p.to_string())
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The names of every database on the server.
pub(super) async fn database_names(admin_url: &DatabaseUrl) -> Result<Vec<String>, ServerError> {
    let mut conn = admin(admin_url).await?;
    let names = within("listing databases", admin_url, STEP_LIMIT, async {
        sqlx::query_scalar("SELECT datname FROM pg_database")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| DbError::from(e).into())
    })
    .await;
    let _ = tokio::time::timeout(STEP_LIMIT, conn.close()).await;
    names
}

impl Template {
    /// The template's database name (`pgperf_tpl_` and the migrations' fingerprint).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the template for the current migrations on this server, creating it if needed.
    /// A template is published (renamed into place) only after every migration succeeded.
    pub async fn ensure(admin_url: &DatabaseUrl) -> Result<Self, ServerError> {
        let name = format!("pgperf_tpl_{}", migrations_fingerprint());
        let mut conn = admin(admin_url).await?;
        lock(&mut conn, admin_url).await?;
        let result = Self::create_if_missing(&mut conn, admin_url, &name).await;
        // Closing the session releases the lock too; unlock first to free it at once.
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .execute(&mut conn);
        let _ = tokio::time::timeout(STEP_LIMIT, unlock).await;
        let _ = tokio::time::timeout(STEP_LIMIT, conn.close()).await;
        result.map(|()| Self { name })
    }

    async fn create_if_missing(
        conn: &mut PgConnection,
        admin_url: &DatabaseUrl,
        name: &str,
    ) -> Result<(), ServerError> {
        let query =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut *conn);
        let exists: bool = within("looking for the template", admin_url, STEP_LIMIT, async {
            query.await.map_err(|e| DbError::from(e).into())
        })
        .await?;
        if exists {
            return Ok(());
        }
        let building = checked(&format!("{name}_building"))?.to_owned();
        let drop_building = format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#);
        exec(conn, admin_url, &drop_building).await?;
        exec(conn, admin_url, &format!(r#"CREATE DATABASE "{building}""#)).await?;
        let migrated = within(
            "applying the migrations",
            admin_url,
            STEP_LIMIT,
            migrate_database(&admin_url.with_database(&building)),
        )
        .await;
        if let Err(e) = migrated {
            let _ = exec(conn, admin_url, &drop_building).await;
            return Err(e);
        }
        exec(
            conn,
            admin_url,
            &format!(
                r#"ALTER DATABASE "{building}" RENAME TO "{}""#,
                checked(name)?
            ),
        )
        .await?;
        exec(
            conn,
            admin_url,
            &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE true"#),
        )
        .await
    }
}

async fn migrate_database(url: &DatabaseUrl) -> Result<(), ServerError> {
    let settings = PoolSettings {
        max_connections: 1,
        min_connections: 0,
        ..PoolSettings::default()
    };
    let db = crate::db::Db::connect(url, settings).await?;
    let result = migrate(db.pool(), url.database()).await;
    db.close().await;
    Ok(result?)
}

pub(super) async fn clone_database(
    admin_url: &DatabaseUrl,
    template: &Template,
    name: &str,
) -> Result<DatabaseUrl, ServerError> {
    let name = checked(name)?;
    let mut conn = admin(admin_url).await?;
    let sql = format!(
        r#"CREATE DATABASE "{name}" TEMPLATE "{}""#,
        checked(&template.name)?
    );
    let result = exec(&mut conn, admin_url, &sql).await;
    let _ = tokio::time::timeout(STEP_LIMIT, conn.close()).await;
    result.map(|()| admin_url.with_database(name))
}

pub(super) async fn drop_database(admin_url: &DatabaseUrl, name: &str) -> Result<(), ServerError> {
    let name = checked(name)?;
    let mut conn = admin(admin_url).await?;
    let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
    let result = exec(&mut conn, admin_url, &sql).await;
    let _ = tokio::time::timeout(STEP_LIMIT, conn.close()).await;
    result
}
