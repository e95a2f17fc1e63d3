//! A name's words as SQL, for the statements that find candidates by words (resolution's
//! passes and search's first tier): text search queries over its words, the variants of its
//! two longest words, and the conditions that match them through the word and variant GIN
//! indexes (see the migrations `name_word_indexes` and `name_variant_indexes`).
//!
//! Each piece reads the normalized name as `q.norm` and is used in a `LATERAL` select list
//! whose result is named `w`. Normalized text holds only letters, digits and spaces, so no
//! word can be tsquery syntax.

use const_format::concatcp;

/// The words of `q.norm` of three or more characters, less the frequent ones (the table
/// `frequent_words`, see its migration) unless no other is left, as a text search query joined
/// by `$joiner` (`'acme' | 'bexum'`), or NULL when there are none.
macro_rules! query_words {
    ($joiner:expr) => {
        concatcp!(
            "to_tsquery('simple', NULLIF(array_to_string((
          SELECT coalesce(NULLIF(array_agg(w) FILTER (WHERE w <> ALL (f.words)), '{}'),
                          array_agg(w))
            FROM unnest(tsvector_to_array(to_tsvector('simple', q.norm))) AS w,
                 (SELECT ARRAY(SELECT word FROM frequent_words) AS words) f
           WHERE length(w) >= 3), '",
            $joiner,
            "'), ''))"
        )
    };
}

/// [`query_words!`] as an OR query (a candidate has one of the words), as `words`.
pub(crate) const ANY_WORD: &str = concatcp!(query_words!(" | "), " AS words");
/// [`query_words!`] as an AND query (a candidate has every word), as `words`.
pub(crate) const EVERY_WORD: &str = concatcp!(query_words!(" & "), " AS words");
/// The variants of the name's longest word (`v1`) and of its second longest (`v2`; the
/// longest again for a name of one word), words of three or more characters. It ends with its
/// own `FROM`, so it comes last in a select list.
pub(crate) const TWO_LONGEST: &str = "name_word_variants(l.w[1]) AS v1,
         name_word_variants(coalesce(l.w[2], l.w[1])) AS v2
    FROM (SELECT ARRAY(
            SELECT w FROM unnest(tsvector_to_array(to_tsvector('simple', q.norm))) AS w
             WHERE length(w) >= 3 ORDER BY length(w) DESC, w LIMIT 2) AS w) l";

/// The lowest similarity a candidate found by words may have: pg_trgm's
/// `similarity_threshold` (0.3 unless the session sets it), the threshold `%` applies, so
/// candidates found by words and by trigrams meet the same floor.
pub(crate) const MIN_SCORE: &str =
    "coalesce(nullif(current_setting('pg_trgm.similarity_threshold', true), '')::float8, 0.3)";

/// A name matches the query `w.words` (through the word GIN index on names).
pub(crate) const NAME_HAS_WORDS: &str = "to_tsvector('simple', normalized_name) @@ w.words";
/// The same on aliases.
pub(crate) const ALIAS_HAS_WORDS: &str = "to_tsvector('simple', normalized_alias) @@ w.words";

/// A name has a word within one edit of `w.v1` and one within one edit of `w.v2` (one scan of
/// the variant GIN index on names, two conditions).
pub(crate) const NAME_HAS_TWO_VARIANTS: &str = "name_word_variants(normalized_name) && w.v1 \
     AND name_word_variants(normalized_name) && w.v2";
/// The same on aliases.
pub(crate) const ALIAS_HAS_TWO_VARIANTS: &str = "name_word_variants(normalized_alias) && w.v1 \
     AND name_word_variants(normalized_alias) && w.v2";
