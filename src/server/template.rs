//! A migrated template database, and cheap per-user copies of it.
//!
//! Migrating takes hundreds of milliseconds; `CREATE DATABASE x TEMPLATE t` takes tens. So the
//! migrations run once per server (per migration set), and every test clones the result.

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

async fn admin(url: &DatabaseUrl) -> Result<PgConnection, ServerError> {
    PgConnection::connect_with(&url.connect_options())
        .await
        .map_err(|source| {
            DbError::Connect {
                target: url.to_string(),
                source,
            }
            .into()
        })
}

/// Runs DDL whose only interpolated parts are database names that passed [`checked`].
async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), ServerError> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_owned())))
        .await
        .map_err(DbError::from)?;
    Ok(())
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
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .execute(&mut conn)
            .await
            .map_err(DbError::from)?;
        let result = Self::create_if_missing(&mut conn, admin_url, &name).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        result.map(|()| Self { name })
    }

    async fn create_if_missing(
        conn: &mut PgConnection,
        admin_url: &DatabaseUrl,
        name: &str,
    ) -> Result<(), ServerError> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .map_err(DbError::from)?;
        if exists {
            return Ok(());
        }
        let building = checked(&format!("{name}_building"))?.to_owned();
        exec(
            conn,
            &format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#),
        )
        .await?;
        exec(conn, &format!(r#"CREATE DATABASE "{building}""#)).await?;
        if let Err(e) = migrate_database(&admin_url.with_database(&building)).await {
            let _ = exec(
                conn,
                &format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#),
            )
            .await;
            return Err(e);
        }
        exec(
            conn,
            &format!(
                r#"ALTER DATABASE "{building}" RENAME TO "{}""#,
                checked(name)?
            ),
        )
        .await?;
        exec(
            conn,
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
    let result = exec(&mut conn, &sql).await;
    let _ = conn.close().await;
    result.map(|()| admin_url.with_database(name))
}

pub(super) async fn drop_database(admin_url: &DatabaseUrl, name: &str) -> Result<(), ServerError> {
    let name = checked(name)?;
    let mut conn = admin(admin_url).await?;
    let result = exec(
        &mut conn,
        &format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
    )
    .await;
    let _ = conn.close().await;
    result
}
