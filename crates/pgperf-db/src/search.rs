//! Search over entities by free text: names and aliases, by trigram similarity and full-text
//! match, with filters, a limit and keyset pagination.
//!
//! The query is normalized exactly as stored names are ([`normalize_name`]), so "ACME, Inc."
//! finds "Acme". Candidates are found in two tiers, in one statement:
//!
//! 1. **By words**, through the word and variant GIN indexes: entities whose name
//!    or an alias contains every word of the query (full text), or whose name or alias has a
//!    word of the query (three characters or more, less the frequent ones, as resolution
//!    uses them), or has words within one edit of the query's two longest words. Those found
//!    by one word or by variants must be trigram-similar to the query, at least pg_trgm's
//!    `similarity_threshold` (the pool sets 0.45, see [`PoolSettings`](super::PoolSettings)).
//! 2. **By trigrams** (`%`, through the trigram GIN indexes), only when the first tier keeps
//!    no entity (after the kind and source filters): no word of the query is in a name or
//!    alias, and its two longest words are not both within one edit of one's words (a word
//!    misspelled twice, words too short to index).
//!
//! At a million entities the posting lists of common trigrams hold a tenth of the names, so
//! the trigram scans cost 20-80 ms a query; words and variants cost a few milliseconds. The
//! price: once words find an entity, a name that only resembles the query by trigrams is not
//! listed. On 1 000 labelled queries at a million entities, the entity each query was made
//! from was on the first page (10 hits) for 918 of them with both tiers run every time, and
//! for the same 918 with the second tier as a fallback (docs/search-and-resolution.md).
//!
//! An entity's score is
//!
//! ```text
//! score = 0.85 * best similarity (name or alias) + 0.15 * (name contains every query word)
//! ```
//!
//! rounded to 6 decimals, so the order (score, then id) is total and deterministic and a page's
//! last (score, id) is an exact cursor for the next page. Values are always bound, never built
//! into the SQL; `%` and `_` in a query are ordinary characters (no `LIKE` is involved, and
//! normalization turns them into spaces).

use const_format::concatcp;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::name_words::{
    ALIAS_HAS_TWO_VARIANTS, ALIAS_HAS_WORDS, ANY_WORD, MIN_SCORE, NAME_HAS_TWO_VARIANTS,
    NAME_HAS_WORDS, TWO_LONGEST,
};
use super::{DbError, EntityKind, normalize_name};

/// The longest query accepted, in characters (names are at most 500; a search is shorter).
pub const MAX_QUERY_CHARS: usize = 200;
/// The most hits a page may ask for.
pub const MAX_LIMIT: u32 = 100;
/// The fewest letters or digits a query needs: one character would make every name with a
/// word starting with it a candidate.
pub const MIN_QUERY_CHARS: usize = 2;

/// Where a page ends: the last hit's score and id. The next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last hit's score.
    pub score: f64,
    /// The last hit's id.
    pub id: i64,
}

/// A search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Free text, as the user typed it.
    pub text: String,
    /// Only entities of this kind.
    pub kind: Option<EntityKind>,
    /// Only entities with a source record from this source.
    pub source: Option<String>,
    /// Hits per page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<Cursor>,
}

impl SearchRequest {
    /// A first page of up to `limit` hits for `text`, without filters.
    pub fn new(text: impl Into<String>, limit: u32) -> Self {
        Self {
            text: text.into(),
            kind: None,
            source: None,
            limit,
            after: None,
        }
    }

    /// The normalized query, or `None` when the text has no letter or digit (an empty
    /// result, not an error). Refuses what would be slow or meaningless, naming the field.
    pub fn normalized(&self) -> Result<Option<String>, DbError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(DbError::invalid(
                "limit",
                format!("{} is not between 1 and {MAX_LIMIT}", self.limit),
            ));
        }
        let chars = self.text.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(DbError::invalid(
                "query",
                format!("{chars} characters; at most {MAX_QUERY_CHARS}"),
            ));
        }
        if let Some(source) = &self.source
            && !valid_source(source)
        {
            return Err(DbError::invalid(
                "source",
                format!("{source:?} is not a source name (a-z, 0-9, '_', '.', '-')"),
            ));
        }
        let normalized = normalize_name(&self.text);
        if normalized.is_empty() {
            return Ok(None);
        }
        if normalized.chars().filter(|c| c.is_alphanumeric()).count() < MIN_QUERY_CHARS {
            return Err(DbError::invalid(
                "query",
                format!("needs at least {MIN_QUERY_CHARS} letters or digits"),
            ));
        }
        Ok(Some(normalized))
    }
}

/// `source_records.source`'s rule (`^[a-z0-9][a-z0-9_.-]{0,63}$`), checked before querying.
fn valid_source(s: &str) -> bool {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// Query text arriving as bytes (an HTTP body, a file): invalid UTF-8 is refused, naming the
/// byte offset, instead of being searched for mangled.
pub fn text_from_bytes(bytes: &[u8]) -> Result<String, DbError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        DbError::invalid(
            "query",
            format!("not valid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        )
    })
}

/// One hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SearchHit {
    /// The entity's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The name or alias that matched best.
    pub matched: String,
    /// The score (see the module documentation), 0 to 1.
    pub score: f64,
}

/// A page of hits, best first, and the cursor of the next page (`None` on the last one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// The hits.
    pub hits: Vec<SearchHit>,
    /// Where the next page starts, when this one is full.
    pub next: Option<Cursor>,
}

/// One candidate branch of the first tier: entities (by `$id`) whose `$text` (a name or an
/// alias, shown as `$via`) in `$table` meets `$cond` (a condition on the lateral `w` of
/// [`SEARCH`]), kept at a similarity of at least the trigram threshold. The condition sits
/// behind `OFFSET 0`, so similarity is computed once per row the index returns.
macro_rules! floored {
    ($id:expr, $text:expr, $via:expr, $table:expr, $cond:expr) => {
        concatcp!(
            "SELECT id, sim, via FROM (
        SELECT ",
            $id,
            " AS id, similarity(",
            $text,
            ", $1) AS sim, ",
            $via,
            " AS via
          FROM ",
            $table,
            ", w WHERE ",
            $cond,
            " OFFSET 0) m
     WHERE m.sim >= ",
            MIN_SCORE
        )
    };
}

/// [`floored!`] on names (`$name`, a condition on entities) and on aliases (`$alias`).
macro_rules! on_names_and_aliases {
    ($name:expr, $alias:expr) => {
        concatcp!(
            floored!("id", "normalized_name", "name", "entities", $name),
            r"
    UNION ALL
    ",
            floored!(
                "entity_id",
                "normalized_alias",
                "alias",
                "entity_aliases",
                $alias
            )
        )
    };
}

/// Whether the entity `b.id` passes the request's filters (`$2` kind, `$3` source).
const KEPT: &str = "($2::text IS NULL OR EXISTS (
               SELECT 1 FROM entities k WHERE k.id = b.id AND k.kind = $2))
       AND ($3::text IS NULL OR EXISTS (
               SELECT 1 FROM source_records r WHERE r.entity_id = b.id AND r.source = $3))";

/// The search statement (`$1` normalized query, `$2` kind, `$3` source, `$4`/`$5` cursor
/// score and id, `$6` limit), public for plan guards. The first tier (`by_words`) reads only
/// word and variant indexes; the trigram branches run only when it keeps no entity (a one-time
/// filter: their scans are never started otherwise).
pub const SEARCH: &str = concatcp!(
    r"
WITH w AS (
    SELECT w.* FROM (SELECT $1::text AS norm) q
     CROSS JOIN LATERAL (SELECT ",
    ANY_WORD,
    ", ",
    TWO_LONGEST,
    r") w
),
by_words AS (
    SELECT id, similarity(normalized_name, $1) AS sim, name AS via
      FROM entities WHERE search_vector @@ plainto_tsquery('simple', $1)
    UNION ALL
    SELECT entity_id, similarity(normalized_alias, $1), alias
      FROM entity_aliases
     WHERE to_tsvector('simple', normalized_alias) @@ plainto_tsquery('simple', $1)
    UNION ALL
    ",
    on_names_and_aliases!(NAME_HAS_WORDS, ALIAS_HAS_WORDS),
    r"
    UNION ALL
    ",
    on_names_and_aliases!(NAME_HAS_TWO_VARIANTS, ALIAS_HAS_TWO_VARIANTS),
    r"
),
matched AS (
    SELECT id, sim, via FROM by_words
    UNION ALL
    SELECT id, similarity(normalized_name, $1), name
      FROM entities
     WHERE normalized_name % $1 AND NOT EXISTS (SELECT 1 FROM by_words b WHERE ",
    KEPT,
    r")
    UNION ALL
    SELECT entity_id, similarity(normalized_alias, $1), alias
      FROM entity_aliases
     WHERE normalized_alias % $1 AND NOT EXISTS (SELECT 1 FROM by_words b WHERE ",
    KEPT,
    r")
),
best AS (
    SELECT DISTINCT ON (id) id, sim, via FROM matched ORDER BY id, sim DESC, via
),
scored AS (
    SELECT b.id, e.kind, e.name, b.via AS matched,
           round((0.85 * b.sim
                  + 0.15 * (e.search_vector @@ plainto_tsquery('simple', $1))::int)::numeric, 6)
               ::float8 AS score
      FROM best b
     CROSS JOIN LATERAL (
           SELECT kind, name, search_vector FROM entities WHERE id = b.id) e
     WHERE ",
    KEPT,
    r"
)
SELECT id, kind, name, matched, score FROM scored
 WHERE $4::float8 IS NULL OR score < $4 OR (score = $4 AND id > $5)
 ORDER BY score DESC, id
 LIMIT $6"
);

/// Runs a search. An empty or punctuation-only query gives an empty page; an over-long
/// query, a limit outside 1..=100, a one-letter query or a malformed source name give
/// [`DbError::InvalidInput`] before anything is sent.
pub async fn search(conn: &mut PgConnection, req: &SearchRequest) -> Result<SearchPage, DbError> {
    let Some(normalized) = req.normalized()? else {
        return Ok(SearchPage {
            hits: Vec::new(),
            next: None,
        });
    };
    let hits: Vec<SearchHit> = sqlx::query_as(SEARCH)
        .bind(&normalized)
        .bind(req.kind.map(EntityKind::as_str))
        .bind(req.source.as_deref())
        .bind(req.after.map(|c| c.score))
        .bind(req.after.map_or(0, |c| c.id))
        .bind(i64::from(req.limit))
        .fetch_all(conn)
        .await?;
    Ok(SearchPage::of(hits, req.limit))
}

impl SearchPage {
    /// A page of `hits` for a request of `limit`: a full page has a next one.
    pub fn of(hits: Vec<SearchHit>, limit: u32) -> Self {
        let full = hits.len() == limit as usize;
        let next = hits.last().filter(|_| full).map(|h| Cursor {
            score: h.score,
            id: h.id,
        });
        Self { hits, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(req: &SearchRequest) -> String {
        match req.normalized() {
            Err(DbError::InvalidInput { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{req:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn bad_queries_are_refused_naming_the_field_or_give_nothing() {
        assert_eq!(
            refused(&SearchRequest::new("acme", 0)),
            "limit: 0 is not between 1 and 100"
        );
        assert!(refused(&SearchRequest::new("acme", 1_000_000)).starts_with("limit: 1000000"));
        let long = "a".repeat(10_000);
        assert_eq!(
            refused(&SearchRequest::new(long, 10)),
            "query: 10000 characters; at most 200"
        );
        assert_eq!(
            refused(&SearchRequest::new("x", 10)),
            "query: needs at least 2 letters or digits"
        );
        let mut bad_source = SearchRequest::new("acme", 10);
        bad_source.source = Some("Bad Source'; --".into());
        assert!(refused(&bad_source).starts_with("source: "));
        for nothing in ["", "   ", "?!%_ ...", "%%", "__"] {
            assert_eq!(
                SearchRequest::new(nothing, 10).normalized().unwrap(),
                None,
                "{nothing:?}"
            );
        }
        assert_eq!(
            SearchRequest::new("ACME, Inc.", 10)
                .normalized()
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            SearchRequest::new("50%_off", 10)
                .normalized()
                .unwrap()
                .as_deref(),
            Some("50 off")
        );
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_offset() {
        let err = text_from_bytes(b"acme \xff corp").unwrap_err().to_string();
        assert!(err.contains("not valid UTF-8 at byte 5"), "{err}");
        assert_eq!(text_from_bytes("Zoë".as_bytes()).unwrap(), "Zoë");
    }
}
