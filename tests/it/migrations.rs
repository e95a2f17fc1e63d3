//! The M01 schema: migrations apply to an empty database, re-applying is a no-op, and the
//! catalog holds exactly the tables, constraints and indexes we mean to have.

use pretty_assertions::assert_eq;
use sqlx::PgPool;

use pgperf::db::{Db, DbError, MIGRATOR, migrate, migrate_with};
use pgperf::postgres::Server;

use crate::support::{TestDb, database::test_settings, shared::shared, test_db};

async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (table, constraint, type, definition) of every constraint but NOT NULL ones.
async fn constraints(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           AND conrelid::regclass::text <> '_sqlx_migrations'
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (index, definition) of every index on our tables.
async fn indexes(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The NOT NULL columns of a table.
async fn not_null_columns(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = $1 AND is_nullable = 'NO' ORDER BY 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn owned<const N: usize>(rows: [(&str, &str); N]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A database made from template1 (no migrations), so the migrations run on an empty one.
async fn empty_database() -> (Server, String, Db) {
    let shared = shared();
    let server = Server::external(shared.admin.clone());
    let name = pgperf::postgres::database_name("empty");
    if !shared.is_container() {
        pgperf::postgres::cleanup::track_database(&shared.admin, &name);
    }
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&shared.admin.connect_options())
            .await
            .unwrap();
    let ddl = sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#));
    sqlx::Executor::execute(&mut admin, sqlx::raw_sql(ddl))
        .await
        .unwrap();
    let db = Db::connect(&shared.admin.with_database(&name), test_settings())
        .await
        .unwrap();
    (server, name, db)
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_as_a_no_op() {
    let _gate = crate::support::gate::shared().await;
    let (server, name, db) = empty_database().await;
    assert_eq!(tables(db.pool()).await, Vec::<String>::new());

    migrate(db.pool(), &name)
        .await
        .expect("first run applies every migration");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let schema = (
        tables(db.pool()).await,
        constraints(db.pool()).await,
        indexes(db.pool()).await,
    );

    migrate(db.pool(), &name)
        .await
        .expect("second run is a no-op");
    let applied_again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .unwrap();

    assert_eq!(applied as usize, MIGRATOR.iter().count());
    assert_eq!(applied_again, applied);
    assert_eq!(
        (
            tables(db.pool()).await,
            constraints(db.pool()).await,
            indexes(db.pool()).await
        ),
        schema
    );
    db.close().await;
    server.drop_database(&name).await.unwrap();
}

#[rstest::rstest]
#[tokio::test]
async fn the_schema_has_the_m01_tables(#[future(awt)] test_db: TestDb) {
    assert_eq!(
        tables(test_db.db.pool()).await,
        [
            "bulk_load_decisions",
            "entities",
            "entity_aliases",
            "frequent_words",
            "search_cache",
            "search_generation",
            "source_records"
        ]
    );
}

#[rstest::rstest]
#[tokio::test]
async fn every_index_the_queries_need_is_there(#[future(awt)] test_db: TestDb) {
    let expected = owned([
        (
            "bulk_load_decisions_pkey",
            "CREATE UNIQUE INDEX bulk_load_decisions_pkey ON public.bulk_load_decisions USING btree (load_id)",
        ),
        (
            "entities_kind_id_idx",
            "CREATE INDEX entities_kind_id_idx ON public.entities USING btree (kind, id)",
        ),
        (
            "entities_normalized_name_trgm_idx",
            "CREATE INDEX entities_normalized_name_trgm_idx ON public.entities USING gin (normalized_name gin_trgm_ops)",
        ),
        (
            "entities_normalized_name_variants_idx",
            "CREATE INDEX entities_normalized_name_variants_idx ON public.entities USING gin (name_word_variants(normalized_name))",
        ),
        (
            "entities_normalized_name_words_idx",
            "CREATE INDEX entities_normalized_name_words_idx ON public.entities USING gin (to_tsvector('simple'::regconfig, normalized_name))",
        ),
        (
            "entities_pkey",
            "CREATE UNIQUE INDEX entities_pkey ON public.entities USING btree (id)",
        ),
        (
            "entities_search_vector_idx",
            "CREATE INDEX entities_search_vector_idx ON public.entities USING gin (search_vector)",
        ),
        (
            "entity_aliases_entity_id_normalized_alias_key",
            "CREATE UNIQUE INDEX entity_aliases_entity_id_normalized_alias_key ON public.entity_aliases USING btree (entity_id, normalized_alias)",
        ),
        (
            "entity_aliases_normalized_alias_trgm_idx",
            "CREATE INDEX entity_aliases_normalized_alias_trgm_idx ON public.entity_aliases USING gin (normalized_alias gin_trgm_ops)",
        ),
        (
            "entity_aliases_normalized_alias_variants_idx",
            "CREATE INDEX entity_aliases_normalized_alias_variants_idx ON public.entity_aliases USING gin (name_word_variants(normalized_alias))",
        ),
        (
            "entity_aliases_normalized_alias_words_idx",
            "CREATE INDEX entity_aliases_normalized_alias_words_idx ON public.entity_aliases USING gin (to_tsvector('simple'::regconfig, normalized_alias))",
        ),
        (
            "entity_aliases_pkey",
            "CREATE UNIQUE INDEX entity_aliases_pkey ON public.entity_aliases USING btree (id)",
        ),
        (
            "frequent_words_pkey",
            "CREATE UNIQUE INDEX frequent_words_pkey ON public.frequent_words USING btree (word)",
        ),
        (
            "search_cache_expires_at_idx",
            "CREATE INDEX search_cache_expires_at_idx ON public.search_cache USING btree (expires_at)",
        ),
        (
            "search_cache_pkey",
            "CREATE UNIQUE INDEX search_cache_pkey ON public.search_cache USING btree (query_key)",
        ),
        (
            "search_generation_pkey",
            "CREATE UNIQUE INDEX search_generation_pkey ON public.search_generation USING btree (singleton)",
        ),
        (
            "source_records_entity_id_idx",
            "CREATE INDEX source_records_entity_id_idx ON public.source_records USING btree (entity_id) WHERE (entity_id IS NOT NULL)",
        ),
        (
            "source_records_pkey",
            "CREATE UNIQUE INDEX source_records_pkey ON public.source_records USING btree (id)",
        ),
        (
            "source_records_source_external_id_key",
            "CREATE UNIQUE INDEX source_records_source_external_id_key ON public.source_records USING btree (source, external_id)",
        ),
        (
            "source_records_source_id_idx",
            "CREATE INDEX source_records_source_id_idx ON public.source_records USING btree (source, id)",
        ),
    ]);
    assert_eq!(indexes(test_db.db.pool()).await, expected);
}

#[rstest::rstest]
#[tokio::test]
async fn foreign_keys_cascade_aliases_and_unlink_records(#[future(awt)] test_db: TestDb) {
    let fks: Vec<(String, String, String)> = constraints(test_db.db.pool())
        .await
        .into_iter()
        .filter(|(_, _, def)| def.starts_with("FOREIGN KEY"))
        .collect();
    let expected: Vec<(String, String, String)> = [
        (
            "entity_aliases",
            "entity_aliases_entity_id_fkey",
            "FOREIGN KEY (entity_id) REFERENCES entities(id) ON DELETE CASCADE",
        ),
        (
            "source_records",
            "source_records_entity_id_fkey",
            "FOREIGN KEY (entity_id) REFERENCES entities(id) ON DELETE SET NULL",
        ),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(fks, expected);
}

#[rstest::rstest]
#[tokio::test]
async fn check_and_unique_constraints_guard_every_table(#[future(awt)] test_db: TestDb) {
    let names: Vec<String> = constraints(test_db.db.pool())
        .await
        .into_iter()
        .filter(|(_, _, def)| def.starts_with("CHECK") || def.starts_with("UNIQUE"))
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "bulk_load_decisions_load_id_check",
            "entities_attributes_check",
            "entities_kind_check",
            "entities_name_check",
            "entities_normalized_name_check",
            "entities_updated_after_created_check",
            "entities_version_check",
            "entity_aliases_alias_check",
            "entity_aliases_entity_id_normalized_alias_key",
            "entity_aliases_normalized_alias_check",
            "frequent_words_share_check",
            "frequent_words_word_check",
            "search_cache_expiry_check",
            "search_cache_hit_count_check",
            "search_cache_query_key_check",
            "search_cache_results_check",
            "search_generation_max_staleness_check",
            "search_generation_singleton_check",
            "source_records_external_id_check",
            "source_records_match_score_check",
            "source_records_payload_check",
            "source_records_source_check",
            "source_records_source_external_id_key",
        ]
    );
    assert_eq!(
        not_null_columns(test_db.db.pool(), "source_records").await,
        ["external_id", "id", "ingested_at", "payload", "source"]
    );
}

#[tokio::test]
async fn a_failing_migration_names_the_database_and_the_migration() {
    let _gate = crate::support::gate::shared().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_broken.sql"),
        "CREATE TABLE broken (id int REFERENCES nowhere (id));",
    )
    .unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let (server, name, db) = empty_database().await;

    let err = migrate_with(&migrator, db.pool(), &name).await.unwrap_err();

    assert!(matches!(err, DbError::Migration { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("nowhere") && msg.contains("add a new one"),
        "{msg}"
    );
    db.close().await;
    server.drop_database(&name).await.unwrap();
}
