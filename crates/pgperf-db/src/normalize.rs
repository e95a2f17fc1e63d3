//! Name normalization: the ONE place that decides when two names are "the same", so fuzzy
//! matching (pg_trgm on `normalized_name`) compares like with like.
//!
//! Steps, in order: Unicode compatibility decomposition (NFKD) with combining marks dropped
//! (é -> e, ﬁ -> fi); lowercase; `&` -> `and`; every other non-alphanumeric character becomes
//! a space; whitespace collapsed; then trailing legal-form suffixes (inc, ltd, gmbh, ...) are
//! removed (with an `and` between them), as long as a word remains.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// Legal-form words removed from the end of a name.
const LEGAL_SUFFIXES: &[&str] = &[
    "ab",
    "ag",
    "bv",
    "co",
    "company",
    "corp",
    "corporation",
    "gmbh",
    "inc",
    "incorporated",
    "kg",
    "limited",
    "llc",
    "llp",
    "lp",
    "ltd",
    "nv",
    "oy",
    "plc",
    "pty",
    "sa",
    "sarl",
    "sas",
    "spa",
    "srl",
];

/// Normalizes a name for matching. Returns an empty string only for a name without any
/// letter or digit.
pub fn normalize_name(name: &str) -> String {
    let folded: String = name
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_alphanumeric() || c == '&' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words: Vec<&str> = folded
        .split_whitespace()
        .map(|w| if w == "&" { "and" } else { w })
        .collect();
    let mut stripped = false;
    while words.len() > 1 {
        let last = words[words.len() - 1];
        // "GmbH & Co. KG": an "and" between legal forms goes with them.
        if LEGAL_SUFFIXES.contains(&last) || (stripped && last == "and") {
            words.pop();
            stripped = true;
        } else {
            break;
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalize_name;

    #[test]
    fn case_whitespace_and_punctuation_are_folded() {
        assert_eq!(
            normalize_name("  ACME   Widgets,  (Europe)! "),
            "acme widgets europe"
        );
    }

    #[test]
    fn accents_are_removed() {
        assert_eq!(normalize_name("Société Générale"), "societe generale");
        assert_eq!(normalize_name("Müller & Söhne"), "muller and sohne");
    }

    #[test]
    fn legal_suffixes_are_dropped_but_never_the_whole_name() {
        assert_eq!(normalize_name("Acme, Inc."), "acme");
        assert_eq!(normalize_name("Globex Corp. Ltd"), "globex");
        assert_eq!(normalize_name("Initech GmbH & Co. KG"), "initech");
        assert_eq!(normalize_name("Smith & Wesson"), "smith and wesson");
        assert_eq!(normalize_name("Inc."), "inc");
    }

    #[test]
    fn a_name_without_letters_normalizes_to_empty() {
        assert_eq!(normalize_name(" -- "), "");
    }
}
