//! Entity resolution: which canonical entity an incoming name is, by fuzzy matching.
//!
//! A name (with its kind) is normalized as stored names are, and compared with the
//! normalized names and aliases of entities of that kind. Candidates are found in up to four
//! passes, each later one only for the names the earlier ones left unsettled:
//!
//! 0. **Every word** ([`RESOLVE_BY_EVERY_WORD`]): entities whose normalized name or alias has
//!    every word (three characters or more) of the name, through the word GIN indexes. A name
//!    spelled as stored meets its entity among a handful of candidates here. Only a match
//!    settles a name in this pass; any other goes on to the next.
//! 1. **Shared words** ([`RESOLVE_BY_WORDS`]): entities whose normalized name or alias has a
//!    word of the name. At a million entities a word of a generated name is in 300-600 names,
//!    so this pass brings hundreds of candidates a name, each scored, which is why the pass
//!    before it comes first (see docs/results for the figures). From here on, a name is
//!    settled at the review threshold.
//! 2. **Two words' variants** ([`RESOLVE_BY_TWO_VARIANTS`]): entities with a word within one
//!    edit of the name's longest word and one within one edit of its second longest (they
//!    share a "word variant": the word, or the word with one letter deleted), through the
//!    variant GIN indexes: names whose every word is misspelled once. So few entities meet
//!    both conditions that this pass has no similarity floor (below). A pass by one shared
//!    variant of any word, which this one replaced, brought hundreds of candidates a name at
//!    a million entities, and changed no answer on the labelled sets once this one ran.
//! 3. **Trigrams** ([`RESOLVE_BY_TRIGRAMS`]): `%` through the trigram GIN indexes, for what is
//!    left (words two or more edits away, short words, names with no entity at all).
//!
//! Words that more than 0.2 % of the names share ("street" in an address) are left out of the
//! two word passes unless a name has no other: they would bring thousands of candidates and tell
//! none apart. They are listed in the table `frequent_words`, which
//! [`ingest::analyze_entities`](super::ingest::analyze_entities) fills from ANALYZE's
//! statistics of the word indexes.
//!
//! Posting lists of words and variants hold a few names, those of common trigrams a tenth of
//! them: at a million entities a trigram scan costs 25-37 ms per name, the other passes well
//! under a millisecond. Exact words come first because variants collide more (a batch of
//! 1 000 at 100 000 entities: 0.5 s by words, 0.75 s by variants).
//!
//! A candidate needs a trigram similarity of at least pg_trgm's `similarity_threshold` (the
//! pool sets 0.45, see [`PoolSettings`](super::PoolSettings)) in every pass but the one by two
//! words' variants. Each pass keeps
//! the [`PRESELECTED`] most similar entities per name (an entity's best name or alias); each
//! is then scored word by word ([`name_score`]: a misspelled word still resembles its
//! original, another word does not), and the top [`CANDIDATES`] by that score (then id) are
//! returned, with a decision from two thresholds:
//!
//! - score >= `matched`: [`Decision::Match`], link to the top candidate;
//! - score >= `review`: [`Decision::Review`], a person should look;
//! - otherwise (or no candidate): [`Decision::New`], create an entity.
//!
//! A batch resolves up to [`MAX_BATCH`] names in one statement per pass (the names as rows,
//! from the function `resolution_names`, which lets a connection keep each pass's generic
//! plan, see its migrations; and a `LATERAL` subquery with `LIMIT`); a single name is a
//! batch of one, so both give the same answers by construction (and a test checks it). The
//! index conditions sit behind `OFFSET 0` so that the kind filter cannot be pushed into the
//! scan: with it, the planner read a quarter of the entities through the kind index and
//! filtered them by similarity (a plan guard caught it: 169 000 buffers for 100 names).

use const_format::concatcp;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::name_score::name_score;
use super::name_words::{
    ALIAS_HAS_TWO_VARIANTS, ALIAS_HAS_WORDS, ANY_WORD, EVERY_WORD, MIN_SCORE,
    NAME_HAS_TWO_VARIANTS, NAME_HAS_WORDS, TWO_LONGEST,
};
use super::{DbError, EntityKind, normalize_name};

/// Candidates returned per name.
pub const CANDIDATES: i64 = 5;
/// Candidates per name the statements return, by trigram similarity, for the word-by-word
/// score to rank (the best by one need not be the best by the other).
pub const PRESELECTED: i64 = 10;
/// The most names one batch may hold.
pub const MAX_BATCH: usize = 1_000;

/// Candidates scored between two yields to the runtime (see `candidates_of`).
const SCORE_CHUNK: usize = 64;

/// The longest name resolved, in characters, before and after normalization: the schema's own
/// limit on a stored name, so no entity's name is longer than any name compared with it.
pub const MAX_NAME_CHARS: usize = 500;

/// The most characters (normalized) one batch may carry altogether: scoring compares every
/// candidate word by word (edit distance, quadratic in word length), so a batch's client CPU
/// is bounded by this, not by the name count alone. 1 000 names of 100 characters fit (a
/// FEBRL record's name and address take 50-80).
pub const MAX_BATCH_CHARS: usize = 100_000;

/// `text` normalized, or why it is refused: over [`MAX_NAME_CHARS`] as given (refused before
/// any normalizing, so a huge name costs a count of its characters) or once normalized (a
/// compatibility character can decompose into many).
pub fn normalize_within_limit(text: &str) -> Result<String, String> {
    let raw = text.chars().count();
    if raw > MAX_NAME_CHARS {
        return Err(format!("{raw} characters; at most {MAX_NAME_CHARS}"));
    }
    let norm = normalize_name(text);
    let chars = norm.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{raw} characters ({chars} normalized); at most {MAX_NAME_CHARS}"
        ));
    }
    Ok(norm)
}

/// Checks a batch before any database work: the name count, each name's length before and
/// after normalization (an error names `names[i].name`), and the batch's character budget.
/// Returns the normalized names.
pub fn validate_batch(names: &[NameToResolve]) -> Result<Vec<String>, DbError> {
    if names.len() > MAX_BATCH {
        return Err(DbError::invalid(
            "names",
            format!("{} names in one batch; at most {MAX_BATCH}", names.len()),
        ));
    }
    let mut total = 0;
    let mut normalized = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let norm = normalize_within_limit(&n.name)
            .map_err(|why| DbError::invalid(format!("names[{i}].name"), why))?;
        total += norm.chars().count();
        normalized.push(norm);
    }
    if total > MAX_BATCH_CHARS {
        return Err(DbError::invalid(
            "names",
            format!("{total} characters in one batch (normalized); at most {MAX_BATCH_CHARS}"),
        ));
    }
    Ok(normalized)
}

/// The two thresholds of a decision, on the word-by-word score. The defaults come from the
/// accuracy evaluation (`pgperf accuracy`, README): match at 0.75 has the best F1 over the
/// generated labelled set (0.980) and the four FEBRL sets (0.988-0.995) together; review at
/// 0.45 keeps 98.9 % of the generated set's true entities among the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: a match.
    pub matched: f64,
    /// At or above (and below `matched`): to review.
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            matched: 0.75,
            review: 0.45,
        }
    }
}

impl Thresholds {
    /// Checks `0 < review <= matched <= 1`, naming the field.
    pub fn validate(&self) -> Result<(), DbError> {
        if !(self.matched > 0.0 && self.matched <= 1.0) {
            return Err(DbError::invalid("matched", "must be above 0 and at most 1"));
        }
        if !(self.review > 0.0 && self.review <= self.matched) {
            return Err(DbError::invalid(
                "review",
                "must be above 0 and at most `matched`",
            ));
        }
        Ok(())
    }

    /// The decision for a best score (`None`: no candidate at all).
    pub fn decide(&self, best: Option<f64>) -> Decision {
        match best {
            Some(s) if s >= self.matched => Decision::Match,
            Some(s) if s >= self.review => Decision::Review,
            _ => Decision::New,
        }
    }
}

/// What to do with a resolved name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The top candidate is this entity.
    Match,
    /// Perhaps the top candidate: a person should decide.
    Review,
    /// No entity is close enough: create one.
    New,
}

/// A name to resolve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameToResolve {
    /// The name as received.
    pub name: String,
    /// The kind of entity it names (only entities of that kind are candidates).
    pub kind: EntityKind,
}

/// A candidate entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The entity's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The name or alias that matched best (by trigram similarity).
    pub matched: String,
    /// Trigram similarity of the normalized name and `matched`, 0 to 1 (how the candidate
    /// was found).
    pub similarity: f64,
    /// The word-by-word score of the normalized name and `matched`
    /// ([`name_score`](super::name_score::name_score)), 0 to 1: what candidates are ranked
    /// and decided by.
    pub score: f64,
}

/// The answer for one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
    /// The decision for the top candidate.
    pub decision: Decision,
}

impl Resolution {
    /// The entity to link to, when the decision is a match.
    pub fn matched(&self) -> Option<&Candidate> {
        (self.decision == Decision::Match)
            .then(|| self.candidates.first())
            .flatten()
    }
}

/// The batch resolution statement around what a name's conditions need (`$lateral`, the
/// select list of the lateral `w`), a candidate condition on names (`$name`) and on aliases
/// (`$alias`), and the lowest similarity a candidate may have (`$min`).
macro_rules! resolve_statement {
    ($lateral:expr, $name:expr, $alias:expr, $min:expr) => {
        concatcp!(
            r"
SELECT q.n, c.id, c.name, c.matched, c.score
  FROM resolution_names($1::text[], $2::text[]) AS q(norm, kind, n)
  CROSS JOIN LATERAL (SELECT ",
            $lateral,
            r") w
  CROSS JOIN LATERAL (
      SELECT id, name, matched, score FROM (
          SELECT DISTINCT ON (id) id, name, matched, score FROM (
              SELECT m.id, m.name, m.name AS matched, m.score FROM (
                  SELECT id, name, kind,
                         round(similarity(normalized_name, q.norm)::numeric, 6)::float8 AS score
                    FROM entities WHERE ",
            $name,
            r"
                  OFFSET 0
              ) m
               WHERE m.kind = q.kind AND m.score >= ",
            $min,
            r"
              UNION ALL
              SELECT m.entity_id, e.name, m.alias, m.score FROM (
                  SELECT entity_id, alias,
                         round(similarity(normalized_alias, q.norm)::numeric, 6)::float8 AS score
                    FROM entity_aliases WHERE ",
            $alias,
            r"
                  OFFSET 0
              ) m
              CROSS JOIN LATERAL (
                  SELECT name, kind FROM entities WHERE id = m.entity_id) e
               WHERE e.kind = q.kind AND m.score >= ",
            $min,
            r"
          ) all_matches
          ORDER BY id, score DESC, matched
      ) best
      ORDER BY score DESC, id
      LIMIT $3
  ) c
 ORDER BY q.n, c.score DESC, c.id"
        )
    };
}

/// Resolution's first pass: candidates share a word (three or more characters) with the
/// name, through the word GIN indexes (`$1` normalized names, `$2` kinds, `$3` candidates per
/// name). Public for plan guards.
pub const RESOLVE_BY_WORDS: &str =
    resolve_statement!(ANY_WORD, NAME_HAS_WORDS, ALIAS_HAS_WORDS, MIN_SCORE);

/// Resolution's last pass, for names the others left below the review threshold: candidates
/// are trigram-similar (`%`) through the trigram GIN indexes. Same parameters.
pub const RESOLVE_BY_TRIGRAMS: &str = resolve_statement!(
    ANY_WORD,
    "normalized_name % q.norm",
    "normalized_alias % q.norm",
    MIN_SCORE
);

/// Resolution's pass before the first: candidates have every word of the name (less the frequent
/// ones), so a name spelled as stored meets its entity among a handful of candidates, not the
/// hundreds the first pass's OR brings. Only a match settles a name here. Same parameters.
pub const RESOLVE_BY_EVERY_WORD: &str =
    resolve_statement!(EVERY_WORD, NAME_HAS_WORDS, ALIAS_HAS_WORDS, MIN_SCORE);

/// Resolution's second pass, for names the first left below the review threshold:
/// candidates have a word within one edit of the name's longest word AND one within one edit
/// of its second longest, through the variant GIN indexes (one scan, two conditions), so a
/// name with both words misspelled meets its entity among a handful of candidates, not the
/// hundreds that share one variant. Those few need no similarity floor: the word-by-word score
/// decides ("ilacstdy druevk" and "ilacsty druvek" are 0.41 similar by trigrams). Same
/// parameters.
pub const RESOLVE_BY_TWO_VARIANTS: &str = resolve_statement!(
    TWO_LONGEST,
    NAME_HAS_TWO_VARIANTS,
    ALIAS_HAS_TWO_VARIANTS,
    "0"
);

/// A pass of resolution: its statement, and the names it runs for, by their decision so far.
struct Pass {
    label: &'static str,
    statement: &'static str,
    runs_for: fn(Decision) -> bool,
}

/// The passes in order: each takes the names the earlier ones left unsettled (see the module
/// documentation).
const PASSES: [Pass; 4] = [
    Pass {
        label: "every word",
        statement: RESOLVE_BY_EVERY_WORD,
        runs_for: |_| true,
    },
    Pass {
        label: "words",
        statement: RESOLVE_BY_WORDS,
        runs_for: |d| d != Decision::Match,
    },
    Pass {
        label: "two variants",
        statement: RESOLVE_BY_TWO_VARIANTS,
        runs_for: |d| d == Decision::New,
    },
    Pass {
        label: "trigrams",
        statement: RESOLVE_BY_TRIGRAMS,
        runs_for: |d| d == Decision::New,
    },
];

/// Resolves one name (a batch of one: see [`resolve_batch`]).
pub async fn resolve(
    conn: &mut PgConnection,
    name: &NameToResolve,
    thresholds: Thresholds,
) -> Result<Resolution, DbError> {
    let mut all = resolve_batch(conn, std::slice::from_ref(name), thresholds).await?;
    Ok(all.pop().expect("one answer per name"))
}

/// Resolves up to [`MAX_BATCH`] names, one statement per pass; the answers are in the names'
/// order. A name without any letter or digit has no candidate (decision `New`).
pub async fn resolve_batch(
    conn: &mut PgConnection,
    names: &[NameToResolve],
    thresholds: Thresholds,
) -> Result<Vec<Resolution>, DbError> {
    thresholds.validate()?;
    let normalized = validate_batch(names)?;
    let kinds: Vec<&str> = names.iter().map(|n| n.kind.as_str()).collect();
    let mut candidates: Vec<Vec<Candidate>> = vec![Vec::new(); names.len()];
    for pass in PASSES {
        let unsettled: Vec<usize> = (0..names.len())
            .filter(|&i| {
                (pass.runs_for)(thresholds.decide(candidates[i].first().map(|c| c.score)))
                    && !normalized[i].is_empty()
            })
            .collect();
        if unsettled.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let norms: Vec<String> = unsettled.iter().map(|&i| normalized[i].clone()).collect();
        let kinds: Vec<&str> = unsettled.iter().map(|&i| kinds[i]).collect();
        let found = candidates_of(conn, pass.statement, &norms, &kinds).await?;
        tracing::debug!(pass = pass.label, names = norms.len(), elapsed = ?started.elapsed());
        for (i, more) in unsettled.into_iter().zip(found) {
            merge(&mut candidates[i], more);
        }
    }
    Ok(candidates
        .into_iter()
        .map(|candidates| Resolution {
            decision: thresholds.decide(candidates.first().map(|c| c.score)),
            candidates,
        })
        .collect())
}

/// Resolves up to [`MAX_BATCH`] names over several connections at once, a contiguous share of
/// the names on each, and answers in the names' order: the answers of [`resolve_batch`]
/// (each name's passes depend on that name alone), sooner where the server has a core per
/// connection. For bulk jobs on an otherwise idle server; a caller that serves many batches
/// at once gains nothing from it and ties up more connections. No connection: an error.
pub async fn resolve_batch_on<C>(
    conns: &mut [C],
    names: &[NameToResolve],
    thresholds: Thresholds,
) -> Result<Vec<Resolution>, DbError>
where
    C: std::ops::DerefMut<Target = PgConnection>,
{
    if conns.is_empty() {
        return Err(DbError::invalid("connections", "at least one is needed"));
    }
    thresholds.validate()?;
    validate_batch(names)?;
    let share = names.len().div_ceil(conns.len()).max(1);
    let answers = futures::future::try_join_all(
        conns
            .iter_mut()
            .zip(names.chunks(share))
            .map(|(c, part)| resolve_batch(c, part, thresholds)),
    )
    .await?;
    Ok(answers.into_iter().flatten().collect())
}

/// Adds a later pass's candidates to a name's (an entity found twice keeps its better
/// score), best first (score, then id), at most [`CANDIDATES`].
fn merge(list: &mut Vec<Candidate>, more: Vec<Candidate>) {
    for c in more {
        match list.iter_mut().find(|e| e.id == c.id) {
            Some(e) if c.score > e.score => *e = c,
            Some(_) => {}
            None => list.push(c),
        }
    }
    rank(list);
}

/// Best first (score, then id), at most [`CANDIDATES`].
fn rank(list: &mut Vec<Candidate>) {
    list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    list.truncate(CANDIDATES as usize);
}

/// Runs one pass over the names; candidates per name, in the names' order.
async fn candidates_of(
    conn: &mut PgConnection,
    statement: &'static str,
    normalized: &[String],
    kinds: &[&str],
) -> Result<Vec<Vec<Candidate>>, DbError> {
    let mut candidates: Vec<Vec<Candidate>> = vec![Vec::new(); normalized.len()];
    if normalized.is_empty() {
        return Ok(candidates);
    }
    let rows: Vec<(i64, i64, String, String, f64)> = sqlx::query_as(statement)
        .bind(normalized)
        .bind(kinds)
        .bind(PRESELECTED)
        .fetch_all(conn)
        .await?;
    // Scoring is CPU work on the caller's thread: in chunks, yielding between them, so a
    // large batch neither holds a runtime worker for long nor outlives a caller that gave up
    // (dropping the future stops it at the next chunk).
    for (i, (n, id, name, matched, similarity)) in rows.into_iter().enumerate() {
        if i > 0 && i % SCORE_CHUNK == 0 {
            tokio::task::yield_now().await;
        }
        let slot = usize::try_from(n - 1).expect("ordinality starts at 1");
        let score = name_score(&normalized[slot], &normalize_name(&matched));
        candidates[slot].push(Candidate {
            id,
            name,
            matched,
            similarity,
            score,
        });
    }
    candidates.iter_mut().for_each(rank);
    Ok(candidates)
}

/// Links source record `record_id` to the entity `resolution` matched, with its score;
/// returns the updated record, or `None` (nothing written) when the decision is not a match.
pub async fn link_if_matched(
    conn: &mut PgConnection,
    record_id: i64,
    resolution: &Resolution,
) -> Result<Option<super::SourceRecord>, DbError> {
    let Some(top) = resolution.matched() else {
        return Ok(None);
    };
    let record = super::repo::records::link(conn, record_id, top.id, top.score as f32).await?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: String) -> NameToResolve {
        NameToResolve {
            name,
            kind: crate::EntityKind::Organization,
        }
    }

    #[test]
    fn a_name_over_the_limit_is_refused_by_its_position() {
        let names = vec![named("acme".into()), named("x".repeat(MAX_NAME_CHARS + 1))];
        let e = validate_batch(&names).unwrap_err();
        assert!(e.to_string().contains("names[1].name"), "{e}");
        let ok = vec![named("y".repeat(MAX_NAME_CHARS))];
        assert_eq!(
            validate_batch(&ok).unwrap()[0].chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn a_huge_name_is_refused_on_its_length_as_given() {
        let e = normalize_within_limit(&"x".repeat(100_000)).unwrap_err();
        assert_eq!(e, "100000 characters; at most 500");
    }

    #[test]
    fn a_name_that_grows_past_the_limit_when_normalized_is_refused() {
        // U+FDFA decomposes (NFKD) into 18 characters.
        let e = validate_batch(&[named("\u{FDFA}".repeat(100))]).unwrap_err();
        assert!(e.to_string().contains("names[0].name"), "{e}");
    }

    #[test]
    fn a_batch_over_its_character_budget_is_refused() {
        let names: Vec<_> = (0..300).map(|_| named("z".repeat(400))).collect();
        let e = validate_batch(&names).unwrap_err();
        assert!(e.to_string().contains("at most 100000"), "{e}");
    }

    #[test]
    fn decisions_follow_the_two_thresholds() {
        let t = Thresholds {
            matched: 0.8,
            review: 0.5,
        };
        assert_eq!(t.decide(Some(0.8)), Decision::Match);
        assert_eq!(t.decide(Some(0.79)), Decision::Review);
        assert_eq!(t.decide(Some(0.5)), Decision::Review);
        assert_eq!(t.decide(Some(0.49)), Decision::New);
        assert_eq!(t.decide(None), Decision::New);
    }

    #[test]
    fn thresholds_that_make_no_sense_are_refused() {
        for (matched, review) in [
            (0.0, 0.0),
            (1.2, 0.5),
            (0.5, 0.6),
            (0.8, 0.0),
            (f64::NAN, 0.5),
        ] {
            let t = Thresholds { matched, review };
            assert!(t.validate().is_err(), "{t:?}");
        }
        assert!(Thresholds::default().validate().is_ok());
    }
}
