//! Deterministic, realistic test data: entities with aliases, and source records that refer
//! to them with the spelling noise real sources have. The same seed gives the same data on
//! every machine (ChaCha8), and records are generated lazily, so a million of them never sit
//! in memory at once.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::db::{EntityKind, NewEntity, NewSourceRecord};

pub mod febrl;
pub mod labelled;

/// Dataset sizes used by tests (`#[case]` tables) and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 000 records.
    Small,
    /// 100 000 records.
    Medium,
    /// 1 000 000 records.
    Large,
}

impl Size {
    /// Number of source records.
    pub fn records(self) -> u64 {
        match self {
            Self::Small => 1_000,
            Self::Medium => 100_000,
            Self::Large => 1_000_000,
        }
    }
}

const SYLLABLES: &[&str] = &[
    "ac", "me", "glo", "bex", "ini", "tech", "um", "bre", "lla", "vor", "tex", "sol", "ar", "nex",
    "ium", "cor", "da", "lin", "qua", "ro", "zen", "kai", "mor", "pha", "sty", "gri", "fen", "wal",
    "dor", "hul", "jex", "ost", "pry", "quin", "ras", "sib", "tur", "ulm", "vek", "wyn", "xal",
    "yor", "zim", "bok", "cey", "dru", "ep", "fal", "gun", "hax", "il", "jo", "kru", "lom", "mip",
    "nor", "oz", "pel", "rim", "sav",
];
const SUFFIXES: &[&str] = &["Inc.", "Ltd", "GmbH", "LLC", "S.A.", "plc", "Corp.", ""];
const SOURCES: &[&str] = &["crm", "erp", "registry", "web"];
const COUNTRIES: &[&str] = &["DE", "FR", "GB", "US", "ES", "IT", "NL", "SE"];

fn word(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(2..=3);
    let mut w: String = (0..n)
        .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
        .collect();
    if let Some(first) = w.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    w
}

/// The name of entity `i` (deterministic per seed and index).
pub fn entity_name(seed: u64, i: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let suffix = SUFFIXES[rng.random_range(0..SUFFIXES.len())];
    format!("{} {} {suffix}", word(&mut rng), word(&mut rng))
        .trim_end()
        .to_owned()
}

/// The seed of the entities `pgperf serve --seed` generates, which the tools aimed at a
/// service (`pgperf load`, `pgperf serve-bench`) use too, so that their queries find them.
pub const SERVE_SEED: u64 = 42;

/// Popular search query `i` of the dataset: the first word of an entity's name, which many
/// names share (many hits, one cache entry each). The cached part of the load profiles and
/// of serve-bench.
pub fn popular_query(seed: u64, i: u64) -> String {
    let name = entity_name(seed, i * 7 + 1);
    name.split_whitespace().next().unwrap_or("acme").to_owned()
}

/// A noisy spelling of entity `i`'s name: without its last word (usually the legal form),
/// upper-cased. What a client searches for, or a source sends, for an entity it knows.
pub fn noisy_name(seed: u64, i: u64) -> String {
    let name = entity_name(seed, i);
    name.rsplit_once(' ')
        .map_or(name.as_str(), |(head, _)| head)
        .to_uppercase()
}

/// The kind of entity `i` (the kind [`entity`] gives it).
pub fn entity_kind(seed: u64, i: u64) -> EntityKind {
    draw_kind(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(i)))
}

/// 70 % organizations, the rest spread over every kind.
fn draw_kind(rng: &mut ChaCha8Rng) -> EntityKind {
    if rng.random_bool(0.7) {
        EntityKind::Organization
    } else {
        EntityKind::ALL[rng.random_range(0..4)]
    }
}

/// Entity `i`: its kind, name and attributes, and up to two aliases (deterministic per seed
/// and index).
pub fn entity(seed: u64, i: u64) -> (NewEntity, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i));
    let name = entity_name(seed, i);
    let kind = draw_kind(&mut rng);
    let first_word = name.split(' ').next().unwrap_or("X");
    let aliases = (0..rng.random_range(0..=2))
        .map(|a| format!("{first_word} {}", a + 1))
        .collect();
    let attributes = json!({
        "country": COUNTRIES[rng.random_range(0..COUNTRIES.len())],
        "founded": rng.random_range(1900..2025)
    });
    (
        NewEntity {
            kind,
            name,
            attributes,
        },
        aliases,
    )
}

/// `count` entities (0 to count - 1), each with up to two aliases.
pub fn entities(seed: u64, count: u64) -> impl Iterator<Item = (NewEntity, Vec<String>)> {
    (0..count).map(move |i| entity(seed, i))
}

/// Introduces the noise of real sources: case changes, dropped suffixes, a swapped letter.
fn noisy(rng: &mut ChaCha8Rng, name: &str) -> String {
    match rng.random_range(0..4) {
        0 => name.to_uppercase(),
        1 => name
            .rsplit_once(' ')
            .map_or(name, |(head, _)| head)
            .to_owned(),
        2 => {
            let mut chars: Vec<char> = name.chars().collect();
            if chars.len() > 3 {
                let at = rng.random_range(1..chars.len() - 1);
                chars.swap(at, at + 1);
            }
            chars.into_iter().collect()
        }
        _ => name.to_owned(),
    }
}

/// `count` source records referring (by name, with noise) to `entity_count` entities.
/// Record `i` has external id `{source}-{i:08}` and payload field `n = i`, so a loaded table
/// can be checked by count and `sum(n)`.
pub fn records(seed: u64, count: u64, entity_count: u64) -> impl Iterator<Item = NewSourceRecord> {
    let entity_count = entity_count.max(1);
    (0..count).map(move |i| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(i));
        let source = SOURCES[(i % SOURCES.len() as u64) as usize];
        let entity = entity_name(seed, rng.random_range(0..entity_count));
        let name = noisy(&mut rng, &entity);
        NewSourceRecord {
            source: source.to_owned(),
            external_id: format!("{source}-{i:08}"),
            payload: json!({ "n": i, "name": name, "country": COUNTRIES[rng.random_range(0..COUNTRIES.len())], "amount": rng.random_range(0..1_000_000) }),
            entity_id: None,
            match_score: None,
        }
    })
}

/// The checksum [`records`] gives for `count` rows: (count, sum of n) — compare with
/// `SELECT count(*), sum((payload->>'n')::bigint) FROM source_records`.
pub fn records_checksum(count: u64) -> (i64, i64) {
    let n = count as i64;
    (n, n * (n - 1) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let a: Vec<_> = records(7, 50, 10).collect();
        let b: Vec<_> = records(7, 50, 10).collect();
        assert_eq!(a, b);
        assert_ne!(a, records(8, 50, 10).collect::<Vec<_>>());
    }

    #[test]
    fn every_generated_row_is_valid() {
        assert!(records(1, 2_000, 100).all(|r| r.validate().is_ok()));
        assert!(entities(1, 500).all(|(e, _)| e.validate().is_ok()));
    }

    #[test]
    fn a_noisy_name_and_a_kind_are_those_of_the_entity() {
        for i in 0..200 {
            let (entity, _) = entity(5, i);
            assert_eq!(entity_kind(5, i), entity.kind, "entity {i}");
            let noisy = noisy_name(5, i);
            assert!(
                entity.name.to_uppercase().starts_with(&noisy),
                "{noisy:?} of {entity:?}"
            );
            assert!(noisy.len() < entity.name.len(), "{noisy:?} of {entity:?}");
        }
    }

    #[test]
    fn external_ids_are_unique_per_source() {
        let mut keys: Vec<_> = records(3, 5_000, 10)
            .map(|r| (r.source, r.external_id))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 5_000);
    }
}
