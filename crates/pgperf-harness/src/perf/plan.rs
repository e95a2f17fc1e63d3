//! Plan guards: a hot query's plan, checked deterministically instead of by timing.
//!
//! [`explain`] runs `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of a statement with its
//! parameters bound and reads the plan into [`PlanFacts`]: its shape (one line per node: type,
//! index, relation, indented by depth), the indexes it uses, the relations it scans
//! sequentially, buffers touched and rows removed by filters. [`PlanCase::check`] holds the
//! facts to the case's rules: every expected index used (by name), no sequential scan of a
//! large table, buffers and removed rows under their bounds. A dropped or unusable index fails
//! with a message naming the query, the index and the plan node that replaced it, whatever the
//! timings say. The shapes are also kept in a committed file ([`ShapeFile`]), so a plan
//! change shows in the PR's diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;

use super::PerfError;
use super::baseline::Mode;
use crate::db::DbError;

/// A bound parameter of a statement under a plan guard.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `bigint`.
    Int(i64),
    /// `text`.
    Text(String),
    /// `text` that may be NULL.
    MaybeText(Option<String>),
    /// `float8` that may be NULL.
    MaybeFloat(Option<f64>),
    /// `text[]`.
    Texts(Vec<String>),
}

/// A hot query and the rules its plan must follow.
#[derive(Debug, Clone)]
pub struct PlanCase {
    /// Its name in the shape file and in messages, e.g. `search`.
    pub name: &'static str,
    /// The statement, exactly as the data layer runs it.
    pub sql: &'static str,
    /// Its parameters.
    pub params: Vec<Param>,
    /// Indexes the plan must use, by name.
    pub indexes: &'static [&'static str],
    /// The most shared buffers (hit + read) the whole plan may touch.
    pub max_buffers: u64,
    /// The most rows filters may discard after they were fetched.
    pub max_rows_removed: u64,
}

/// What a plan does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanFacts {
    /// One line per node, depth-first, indented two spaces per level.
    pub shape: Vec<String>,
    /// Indexes used, in plan order.
    pub indexes: Vec<String>,
    /// Relations read by a sequential scan.
    pub seq_scans: Vec<String>,
    /// Shared buffers hit and read by the whole plan.
    pub buffers: u64,
    /// Rows removed by filters and index rechecks, over all nodes and loops.
    pub rows_removed: u64,
}

/// A table is large (a sequential scan of it is a failure) above this many rows.
pub const LARGE_TABLE_ROWS: f64 = 1_000.0;

fn number(node: &Value, key: &str) -> u64 {
    node.get(key).and_then(Value::as_f64).unwrap_or(0.0) as u64
}

fn walk(node: &Value, depth: usize, facts: &mut PlanFacts) {
    let text = |key: &str| node.get(key).and_then(Value::as_str);
    let mut line = format!("{}{}", "  ".repeat(depth), text("Node Type").unwrap_or("?"));
    if let Some(index) = text("Index Name") {
        line.push_str(&format!(" using {index}"));
        facts.indexes.push(index.to_owned());
    }
    if let Some(relation) = text("Relation Name") {
        line.push_str(&format!(" on {relation}"));
        if text("Node Type") == Some("Seq Scan") {
            facts.seq_scans.push(relation.to_owned());
        }
    }
    facts.shape.push(line);
    let loops = number(node, "Actual Loops").max(1);
    facts.rows_removed += loops
        * (number(node, "Rows Removed by Filter") + number(node, "Rows Removed by Index Recheck"));
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(child, depth + 1, facts);
    }
}

/// Reads `EXPLAIN (FORMAT JSON)` output.
pub fn facts(explained: &Value) -> PlanFacts {
    let mut facts = PlanFacts::default();
    let Some(plan) = explained.get(0).and_then(|p| p.get("Plan")) else {
        return facts;
    };
    walk(plan, 0, &mut facts);
    facts.buffers = number(plan, "Shared Hit Blocks") + number(plan, "Shared Read Blocks");
    facts
}

/// Explains (and runs) `case`'s statement with its parameters.
pub async fn explain(conn: &mut PgConnection, case: &PlanCase) -> Result<PlanFacts, DbError> {
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", case.sql);
    let mut query = sqlx::query_scalar::<_, Value>(sqlx::AssertSqlSafe(sql));
    for p in &case.params {
        query = match p {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.clone()),
            Param::MaybeText(v) => query.bind(v.clone()),
            Param::MaybeFloat(v) => query.bind(*v),
            Param::Texts(v) => query.bind(v.clone()),
        };
    }
    Ok(facts(&query.fetch_one(conn).await?))
}

/// Rows in each table the plan scans sequentially, for the large-table rule.
pub async fn table_rows(conn: &mut PgConnection, tables: &[String]) -> Result<Vec<f64>, DbError> {
    let rows: Vec<f32> = sqlx::query_scalar(
        "SELECT c.reltuples FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
         JOIN pg_class c ON c.relname = t.name AND c.relkind = 'r' ORDER BY t.n",
    )
    .bind(tables)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(f64::from).collect())
}

impl PlanCase {
    /// Every rule the plan breaks, each naming the query, the index or table, and the plan.
    /// `rows` are the row counts of `facts.seq_scans`' tables, in order.
    pub fn check(&self, facts: &PlanFacts, rows: &[f64]) -> Vec<String> {
        let plan = facts.shape.join("\n    ");
        let mut broken = Vec::new();
        for index in self.indexes {
            if !facts.indexes.iter().any(|i| i == index) {
                let instead = facts
                    .shape
                    .iter()
                    .find(|l| l.contains("Seq Scan") || l.contains("Index"))
                    .map_or("(no scan node)".to_owned(), |l| l.trim().to_owned());
                broken.push(format!(
                    "plan guard {}: index {index} is not used (instead: {instead}); was it \
                     dropped, or made unusable by a changed expression or operator class? Plan:\n    {plan}",
                    self.name
                ));
            }
        }
        for (table, n) in facts.seq_scans.iter().zip(rows) {
            if *n > LARGE_TABLE_ROWS {
                broken.push(format!(
                    "plan guard {}: Seq Scan on {table} ({n:.0} rows); the query must reach it \
                     through an index. Plan:\n    {plan}",
                    self.name
                ));
            }
        }
        if facts.buffers > self.max_buffers {
            broken.push(format!(
                "plan guard {}: {} shared buffers touched, bound {}. Plan:\n    {plan}",
                self.name, facts.buffers, self.max_buffers
            ));
        }
        if facts.rows_removed > self.max_rows_removed {
            broken.push(format!(
                "plan guard {}: {} rows fetched then removed by filters, bound {}. Plan:\n    {plan}",
                self.name, facts.rows_removed, self.max_rows_removed
            ));
        }
        broken
    }
}

/// The committed plan shapes: `{ "case": ["Limit", "  Index Scan using ... on ..."] }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShapeFile(pub BTreeMap<String, Vec<String>>);

impl ShapeFile {
    /// Loads the file (empty when it does not exist).
    pub fn load(path: &Path) -> Result<Self, PerfError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| PerfError::Malformed {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(PerfError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Compares `shapes` with the file: in [`Mode::Check`] a new or changed shape is a failure
    /// (with both shapes and the command that accepts it); in writing modes the file is
    /// updated (`new` adds missing cases only). Returns the failures.
    pub fn hold(
        path: &PathBuf,
        shapes: &BTreeMap<String, Vec<String>>,
        mode: Mode,
    ) -> Result<Vec<String>, PerfError> {
        let mut file = Self::load(path)?;
        let mut failures = Vec::new();
        let mut changed = false;
        for (case, shape) in shapes {
            let recorded = file.0.get(case);
            if recorded == Some(shape) {
                continue;
            }
            let may_write = match mode {
                Mode::Check => false,
                Mode::RecordNew => recorded.is_none(),
                Mode::Update | Mode::Force => true,
            };
            if may_write {
                file.0.insert(case.clone(), shape.clone());
                changed = true;
                continue;
            }
            failures.push(format!(
                "plan guard {case}: the plan's shape changed from\n    {}\nto\n    {}\nIf the \
                 change is intended, accept it with `PGPERF_BASELINE=update scripts/test` and \
                 commit {} with a note in the PR",
                recorded.map_or("(not recorded)".to_owned(), |r| r.join("\n    ")),
                shape.join("\n    "),
                path.display()
            ));
        }
        if changed {
            let mut text = serde_json::to_string_pretty(&file).expect("shapes serialize");
            text.push('\n');
            std::fs::write(path, text).map_err(|source| PerfError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn explained() -> Value {
        json!([{"Plan": {
            "Node Type": "Limit", "Shared Hit Blocks": 7, "Shared Read Blocks": 1,
            "Plans": [{
                "Node Type": "Bitmap Heap Scan", "Relation Name": "entities",
                "Rows Removed by Index Recheck": 3, "Actual Loops": 2,
                "Plans": [{"Node Type": "Bitmap Index Scan",
                           "Index Name": "entities_normalized_name_trgm_idx"}]
            }, {"Node Type": "Seq Scan", "Relation Name": "kinds", "Rows Removed by Filter": 4}]
        }}])
    }

    fn case() -> PlanCase {
        PlanCase {
            name: "search",
            sql: "SELECT 1",
            params: vec![],
            indexes: &["entities_normalized_name_trgm_idx"],
            max_buffers: 100,
            max_rows_removed: 100,
        }
    }

    #[test]
    fn a_plan_reads_into_its_shape_indexes_scans_and_costs() {
        let f = facts(&explained());
        assert_eq!(
            f.shape,
            vec![
                "Limit",
                "  Bitmap Heap Scan on entities",
                "    Bitmap Index Scan using entities_normalized_name_trgm_idx",
                "  Seq Scan on kinds",
            ]
        );
        assert_eq!(f.indexes, vec!["entities_normalized_name_trgm_idx"]);
        assert_eq!(f.seq_scans, vec!["kinds"]);
        assert_eq!((f.buffers, f.rows_removed), (8, 10));
        assert_eq!(case().check(&f, &[3.0]), Vec::<String>::new());
    }

    #[test]
    fn a_missing_index_a_large_seq_scan_and_costs_over_bound_are_named() {
        let mut f = facts(&explained());
        f.indexes.clear();
        f.shape[2] = "    Seq Scan on entities".into();
        let tight = PlanCase {
            max_buffers: 5,
            max_rows_removed: 5,
            ..case()
        };
        let broken = tight.check(&f, &[20_000.0]).join("\n");
        assert!(
            broken.contains("plan guard search: index entities_normalized_name_trgm_idx is not used (instead: Seq Scan on entities)"),
            "{broken}"
        );
        assert!(
            broken.contains("Seq Scan on kinds (20000 rows)"),
            "{broken}"
        );
        assert!(
            broken.contains("8 shared buffers touched, bound 5"),
            "{broken}"
        );
        assert!(
            broken.contains("10 rows fetched then removed by filters, bound 5"),
            "{broken}"
        );
    }

    #[test]
    fn shapes_are_checked_recorded_and_updated_as_the_mode_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.json");
        let mut shapes = BTreeMap::new();
        shapes.insert("q".to_owned(), vec!["Limit".to_owned()]);
        let missing = ShapeFile::hold(&path, &shapes, Mode::Check).unwrap();
        assert!(missing[0].contains("(not recorded)"), "{missing:?}");
        assert!(
            ShapeFile::hold(&path, &shapes, Mode::RecordNew)
                .unwrap()
                .is_empty()
        );
        shapes.insert("q".to_owned(), vec!["Seq Scan on entities".to_owned()]);
        let changed = ShapeFile::hold(&path, &shapes, Mode::RecordNew).unwrap();
        assert!(
            changed[0].contains("changed from\n    Limit\nto\n    Seq Scan on entities"),
            "{changed:?}"
        );
        assert!(
            ShapeFile::hold(&path, &shapes, Mode::Update)
                .unwrap()
                .is_empty()
        );
        assert!(
            ShapeFile::hold(&path, &shapes, Mode::Check)
                .unwrap()
                .is_empty()
        );
    }
}
