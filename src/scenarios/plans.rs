//! The hot queries under plan guards, with parameters that fit the scenario data ([`super::seed`]
//! and the source records of [`plan_records`]).

use super::seed::{ENTITIES, SEED};
use crate::dataset;
use crate::db::repo::{entities, records};
use crate::db::{normalize_name, resolve, search};
use crate::perf::plan::{Param, PlanCase};

/// Source records the plan test loads (through COPY) next to the seeded entities, spread over
/// the dataset's four sources...
pub const PLAN_RECORDS: u64 = 50_000;
/// ... plus this many from [`RARE_SOURCE`]: paging through a rare source is where the
/// `(source, id)` index matters (a common one is as well served by the primary key in order).
pub const RARE_RECORDS: u64 = 200;
/// The rare source.
pub const RARE_SOURCE: &str = "rare-feed";

/// The source records the plan test loads: [`PLAN_RECORDS`] of the dataset, then
/// [`RARE_RECORDS`] of [`RARE_SOURCE`].
pub fn plan_records() -> impl Iterator<Item = crate::db::NewSourceRecord> {
    let rare = dataset::records(SEED + 1, RARE_RECORDS, ENTITIES).map(|mut r| {
        r.source = RARE_SOURCE.to_owned();
        r
    });
    dataset::records(SEED, PLAN_RECORDS, ENTITIES).chain(rare)
}

/// A noisy query for the `i`-th seeded entity: its name without its last word, upper-cased
/// (as the timed trigram case searches).
pub fn noisy_name(i: u64) -> String {
    let name = dataset::entity_name(SEED, i % ENTITIES);
    name.rsplit_once(' ')
        .map_or(name.as_str(), |(head, _)| head)
        .to_uppercase()
}

/// The hot queries: primary-key lookup, a page of a kind, search, resolution of one name and
/// of a batch of 100, a page of a source's records. Each names the indexes it must use and
/// bounds the buffers it may touch and the rows filters may discard. The bounds are about
/// three times what the plans touched on the scenario data when they were set (search 1 190
/// buffers and 100 rows removed, one resolution 1 002 and 102, a batch of 100 107 230 and
/// 32 300), so a plan that reads a table instead of an index overshoots them by far (without
/// the trigram index, search removed 20 006 rows), while a few more rows do not.
pub fn plan_cases() -> Vec<PlanCase> {
    let org = || "organization".to_owned();
    let query = normalize_name(&noisy_name(4_242));
    let batch: Vec<String> = (0..100)
        .map(|i| normalize_name(&noisy_name(i * 97)))
        .collect();
    vec![
        PlanCase {
            name: "entity_by_id",
            sql: entities::GET,
            params: vec![Param::Int(12_345)],
            indexes: &["entities_pkey"],
            max_buffers: 12,
            max_rows_removed: 0,
        },
        PlanCase {
            name: "list_page_of_kind",
            sql: entities::LIST_OF_KIND,
            params: vec![Param::Text(org()), Param::Int(5_000), Param::Int(50)],
            // Organizations are common: the primary key in order, filtered, is as good a plan
            // as `entities_kind_id_idx` (the planner picks either); the bounds hold both.
            indexes: &[],
            max_buffers: 60,
            max_rows_removed: 500,
        },
        PlanCase {
            name: "search",
            sql: search::SEARCH,
            params: vec![
                Param::Text(query.clone()),
                Param::MaybeText(None),
                Param::MaybeText(None),
                Param::MaybeFloat(None),
                Param::Int(0),
                Param::Int(20),
            ],
            indexes: &[
                "entities_normalized_name_trgm_idx",
                "entity_aliases_normalized_alias_trgm_idx",
                "entities_search_vector_idx",
            ],
            max_buffers: 3_600,
            max_rows_removed: 1_000,
        },
        PlanCase {
            name: "resolve_one",
            sql: resolve::RESOLVE,
            params: vec![
                Param::Texts(vec![query]),
                Param::Texts(vec![org()]),
                Param::Int(resolve::CANDIDATES),
            ],
            indexes: &[
                "entities_normalized_name_trgm_idx",
                "entity_aliases_normalized_alias_trgm_idx",
            ],
            max_buffers: 3_000,
            max_rows_removed: 1_000,
        },
        PlanCase {
            name: "resolve_batch_100",
            sql: resolve::RESOLVE,
            params: vec![
                Param::Texts(batch),
                Param::Texts(vec![org(); 100]),
                Param::Int(resolve::CANDIDATES),
            ],
            indexes: &[
                "entities_normalized_name_trgm_idx",
                "entity_aliases_normalized_alias_trgm_idx",
            ],
            max_buffers: 320_000,
            max_rows_removed: 100_000,
        },
        PlanCase {
            name: "records_of_source",
            sql: records::LIST_OF_SOURCE,
            params: vec![
                Param::Text(RARE_SOURCE.to_owned()),
                Param::Int(0),
                Param::Int(50),
            ],
            indexes: &["source_records_source_id_idx"],
            max_buffers: 60,
            max_rows_removed: 0,
        },
    ]
}
