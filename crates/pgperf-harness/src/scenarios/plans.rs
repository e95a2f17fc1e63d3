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
    dataset::noisy_name(SEED, i % ENTITIES)
}

/// A query-string value, percent-encoded (for the HTTP cases and the load tests).
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The hot queries: primary-key lookup, a page of a kind, search (a query words find, and one
/// only trigrams find), resolution of one name and of a batch of 100 (by shared words), one
/// name's every-word, two-variants and trigram passes, a page of a source's records. Each
/// names the indexes it must use and bounds the buffers it may touch and the rows filters may
/// discard. The bounds are about three times what the plans touched on the scenario data when
/// they were set (search by words 149 buffers and 9 rows removed, by its trigram tier 215 and
/// 1; one resolution 23 and 11, a batch of 100 2 006 and 600, the variant pass 165 and 60, the
/// trigram pass 89 and 15), so a plan that reads a table instead of an index overshoots them
/// by far (without the trigram index, search removed 19 999 rows), while a few more rows do
/// not.
pub fn plan_cases() -> Vec<PlanCase> {
    let mut cases = lookups();
    cases.extend(fuzzy());
    cases
}

/// Indexes resolution's first pass (shared words) needs.
const WORDS: &[&str] = &[
    "entities_normalized_name_words_idx",
    "entity_aliases_normalized_alias_words_idx",
];

/// Indexes resolution's second pass (shared word variants) needs.
const VARIANTS: &[&str] = &[
    "entities_normalized_name_variants_idx",
    "entity_aliases_normalized_alias_variants_idx",
];

/// Indexes every trigram match on entities needs.
const TRIGRAMS: &[&str] = &[
    "entities_normalized_name_trgm_idx",
    "entity_aliases_normalized_alias_trgm_idx",
];

fn org() -> String {
    "organization".to_owned()
}

/// Lookups by key: one entity, a page of a kind, a page of a rare source's records.
fn lookups() -> Vec<PlanCase> {
    let page = |name, sql, first: Param, after, indexes, max_rows_removed| PlanCase {
        name,
        sql,
        params: vec![first, Param::Int(after), Param::Int(50)],
        indexes,
        max_buffers: 60,
        max_rows_removed,
    };
    let rare = Param::Text(RARE_SOURCE.to_owned());
    vec![
        PlanCase {
            name: "entity_by_id",
            sql: entities::GET,
            params: vec![Param::Int(12_345)],
            indexes: &["entities_pkey"],
            max_buffers: 12,
            max_rows_removed: 0,
        },
        // Organizations are common: the primary key in order, filtered, is as good a plan as
        // `entities_kind_id_idx` (the planner picks either); the bounds hold both.
        page(
            "list_page_of_kind",
            entities::LIST_OF_KIND,
            Param::Text(org()),
            5_000,
            &[],
            500,
        ),
        page(
            "records_of_source",
            records::LIST_OF_SOURCE,
            rare,
            0,
            &["source_records_source_id_idx"],
            0,
        ),
    ]
}

/// Search and resolution: a noisy name, and a batch of 100 of them.
fn fuzzy() -> Vec<PlanCase> {
    let query = normalize_name(&noisy_name(4_242));
    let batch: Vec<String> = (0..100)
        .map(|i| normalize_name(&noisy_name(i * 97)))
        .collect();
    let resolve = |name, sql, names: Vec<String>, max_buffers, max_rows_removed| {
        let kinds = vec![org(); names.len()];
        let indexes = if sql == resolve::RESOLVE_BY_WORDS || sql == resolve::RESOLVE_BY_EVERY_WORD {
            WORDS
        } else if sql == resolve::RESOLVE_BY_TWO_VARIANTS {
            VARIANTS
        } else {
            TRIGRAMS
        };
        PlanCase {
            name,
            sql,
            params: vec![
                Param::Texts(names),
                Param::Texts(kinds),
                Param::Int(resolve::PRESELECTED),
            ],
            indexes,
            max_buffers,
            max_rows_removed,
        }
    };
    let (every_word, words, two_variants, trigrams) = (
        resolve::RESOLVE_BY_EVERY_WORD,
        resolve::RESOLVE_BY_WORDS,
        resolve::RESOLVE_BY_TWO_VARIANTS,
        resolve::RESOLVE_BY_TRIGRAMS,
    );
    vec![
        search_case("search", query.clone(), 450, 30),
        search_case("search_by_trigrams", misspelled_twice(&query), 650, 10),
        resolve(
            "resolve_every_word",
            every_word,
            vec![query.clone()],
            40,
            10,
        ),
        resolve("resolve_one", words, vec![query.clone()], 70, 35),
        resolve("resolve_batch_100", words, batch, 6_000, 1_800),
        resolve(
            "resolve_by_two_variants",
            two_variants,
            vec![query.clone()],
            300,
            10,
        ),
        resolve("resolve_by_trigrams", trigrams, vec![query], 270, 50),
    ]
}

/// The uncached search of one query, first page of 20. Its plan holds both tiers (the trigram
/// one behind a one-time filter), so it needs every index either reads.
fn search_case(
    name: &'static str,
    query: String,
    max_buffers: u64,
    max_rows_removed: u64,
) -> PlanCase {
    PlanCase {
        name,
        sql: search::SEARCH,
        params: vec![
            Param::Text(query),
            Param::MaybeText(None),
            Param::MaybeText(None),
            Param::MaybeFloat(None),
            Param::Int(0),
            Param::Int(20),
        ],
        indexes: &[
            "entities_search_vector_idx",
            "entities_normalized_name_words_idx",
            "entity_aliases_normalized_alias_words_idx",
            "entities_normalized_name_variants_idx",
            "entity_aliases_normalized_alias_variants_idx",
            "entities_normalized_name_trgm_idx",
            "entity_aliases_normalized_alias_trgm_idx",
        ],
        max_buffers,
        max_rows_removed,
    }
}

/// `name` with every word of four letters or more misspelled twice (its second and its
/// second-to-last letter doubled): no word or word variant of it is in a name, so a search
/// for it runs the trigram tier.
fn misspelled_twice(name: &str) -> String {
    let word = |w: &str| {
        let c: Vec<char> = w.chars().collect();
        if c.len() < 4 {
            return w.to_owned();
        }
        let n = c.len();
        c.iter()
            .enumerate()
            .flat_map(|(i, &ch)| {
                let twice = i == 1 || i == n - 2;
                std::iter::once(ch).chain(twice.then_some(ch))
            })
            .collect()
    };
    name.split(' ').map(word).collect::<Vec<_>>().join(" ")
}
