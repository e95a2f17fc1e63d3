//! How alike two normalized names are, word by word: the score resolution decides on.
//!
//! Trigram similarity of whole strings (pg_trgm) finds candidates fast, through an index,
//! but decides poorly: a one-letter typo in a two-word name ("glotech bexnum" for "glotech
//! bexum") and another entity's name sharing one of the two words ("glotech vormor") land
//! close together (about 0.6 and 0.5). Compared word by word, the misspelled word still
//! resembles its original (edit similarity 0.83) while the replaced one does not, so the two
//! fall far apart (0.93 against 0.59).
//!
//! The score: every word of each name is paired with its most similar word in the other,
//! and the pair's similarity is weighted by the word's length; the score is the weighted
//! mean over the words of both names (so extra words on either side lower it). Word
//! similarity is 1 - (Damerau-Levenshtein distance / length of the longer word); a single
//! letter that is the initial of the other word ("g" and "glotech") counts [`INITIAL`].
//! Word order does not matter. Words split or joined differently ("glo tech" and "glotech")
//! would pair badly, so the score is at least the edit similarity of the two names with
//! their spaces removed.

/// The similarity of an initial to a word it begins.
pub const INITIAL: f64 = 0.8;

/// Similarity of two words, 0 to 1.
fn word_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    let initial = |short: &str, long: &str| short.chars().count() == 1 && long.starts_with(short);
    if initial(a, b) || initial(b, a) {
        return INITIAL;
    }
    strsim::normalized_damerau_levenshtein(a, b)
}

/// The length-weighted sum of each word's best similarity in `other`, and the total weight.
fn one_way(words: &[&str], other: &[&str]) -> (f64, f64) {
    words.iter().fold((0.0, 0.0), |(sum, weight), w| {
        let len = w.chars().count() as f64;
        let best = other
            .iter()
            .map(|o| word_similarity(w, o))
            .fold(0.0, f64::max);
        (sum + len * best, weight + len)
    })
}

/// The word-by-word score of two normalized names (see the module documentation), 0 to 1,
/// rounded to 6 decimals. Two empty names score 0.
pub fn name_score(a: &str, b: &str) -> f64 {
    let wa: Vec<&str> = a.split_whitespace().collect();
    let wb: Vec<&str> = b.split_whitespace().collect();
    let (sa, wa_weight) = one_way(&wa, &wb);
    let (sb, wb_weight) = one_way(&wb, &wa);
    let weight = wa_weight + wb_weight;
    if weight == 0.0 {
        return 0.0;
    }
    // Words split or joined differently ("glo tech" for "glotech") compare as one string.
    let joined = strsim::normalized_damerau_levenshtein(&wa.concat(), &wb.concat());
    (((sa + sb) / weight).max(joined) * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_and_reordered_words_score_one() {
        assert_eq!(name_score("glotech bexum", "glotech bexum"), 1.0);
        assert_eq!(name_score("bexum glotech", "glotech bexum"), 1.0);
    }

    #[test]
    fn a_typo_scores_far_above_a_replaced_word() {
        let typo = name_score("glotech bexnum", "glotech bexum");
        let decoy = name_score("glotech vormor", "glotech bexum");
        // (7 + 6 * 5/6 + 7 + 5 * 5/6) / 25
        assert_eq!(typo, 0.926667);
        assert_eq!(decoy, 0.594286);
        // A transposition is one edit: (7 + 5 * 4/5) * 2 / 24.
        assert_eq!(name_score("glotech bexmu", "glotech bexum"), 0.916667);
    }

    #[test]
    fn an_initial_counts_as_most_of_its_word() {
        // (1 * 0.8 + 5 + 7 * 0.8 + 5) / 18
        assert_eq!(name_score("g bexum", "glotech bexum"), 0.911111);
        assert!(name_score("x bexum", "glotech bexum") < 0.6);
    }

    #[test]
    fn a_word_split_in_two_still_matches() {
        assert_eq!(name_score("glo tech bexum", "glotech bexum"), 1.0);
        assert!(name_score("glo tech vormor", "glotech bexum") < 0.6);
    }

    #[test]
    fn extra_words_on_either_side_lower_the_score_symmetrically() {
        let extra = name_score("glotech bexum s a", "glotech bexum");
        assert_eq!(extra, name_score("glotech bexum", "glotech bexum s a"));
        assert!(extra > 0.85 && extra < 1.0, "{extra}");
        assert_eq!(name_score("", ""), 0.0);
        assert_eq!(name_score("acme", ""), 0.0);
    }
}
