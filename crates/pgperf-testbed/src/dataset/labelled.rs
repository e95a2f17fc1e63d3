//! A labelled evaluation set for entity resolution: names that refer to a known generated
//! entity, changed the way real sources change names, and decoys that look like an existing
//! name but are another entity (they must not match). Deterministic per seed, like the rest
//! of the dataset.
//!
//! Every variation, with its share of the set:
//!
//! | Variation | Example (of "Glotech Bexum Inc.") | Share |
//! |---|---|---|
//! | `insert`, `delete`, `substitute`, `transpose` | one typo in one word: "Glotech Bexnum Inc." | 8 % each |
//! | `reorder` | words swapped: "Bexum Glotech Inc." | 8 % |
//! | `legal_form` | suffix spelled out, shortened or dropped: "Glotech Bexum Incorporated" | 8 % |
//! | `initial` | first word as an initial: "G. Bexum Inc." | 8 % |
//! | `case` | "GLOTECH BEXUM INC." or "glotech bexum inc." | 8 % |
//! | `accents` | vowels accented: "Glötech Bexüm Inc." | 8 % |
//! | `punctuation` | "Glo-tech, Bexum Inc" | 8 % |
//! | `two_typos` | two typos in different words | 5 % |
//! | `decoy` | one word replaced by another generated word: "Glotech Vormor Inc." | 15 % |

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{entity, word};
use crate::db::EntityKind;

/// How a labelled name was made from its entity's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variation {
    /// A letter inserted into a word.
    Insert,
    /// A letter deleted from a word.
    Delete,
    /// A letter replaced by another.
    Substitute,
    /// Two neighbouring letters swapped.
    Transpose,
    /// The first two words swapped.
    Reorder,
    /// The legal form spelled out, shortened or dropped.
    LegalForm,
    /// The first word reduced to its initial.
    Initial,
    /// All capitals or all lower case.
    Case,
    /// Vowels with accents.
    Accents,
    /// Punctuation added or removed.
    Punctuation,
    /// Typos in two different words.
    TwoTypos,
    /// Another entity's name that looks like this one: must not match.
    Decoy,
}

impl Variation {
    /// Every variation, in table order.
    pub const ALL: [Self; 12] = [
        Self::Insert,
        Self::Delete,
        Self::Substitute,
        Self::Transpose,
        Self::Reorder,
        Self::LegalForm,
        Self::Initial,
        Self::Case,
        Self::Accents,
        Self::Punctuation,
        Self::TwoTypos,
        Self::Decoy,
    ];

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Delete => "delete",
            Self::Substitute => "substitute",
            Self::Transpose => "transpose",
            Self::Reorder => "reorder",
            Self::LegalForm => "legal_form",
            Self::Initial => "initial",
            Self::Case => "case",
            Self::Accents => "accents",
            Self::Punctuation => "punctuation",
            Self::TwoTypos => "two_typos",
            Self::Decoy => "decoy",
        }
    }

    /// Picks a variation by the shares in the module documentation (in percent).
    fn pick(rng: &mut ChaCha8Rng) -> Self {
        let roll = rng.random_range(0..100u32);
        match roll {
            0..80 => Self::ALL[(roll / 8) as usize],
            80..85 => Self::TwoTypos,
            _ => Self::Decoy,
        }
    }
}

/// One labelled name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledName {
    /// The name as a source would send it.
    pub name: String,
    /// The kind it is resolved as.
    pub kind: EntityKind,
    /// The generated entity it refers to (0-based index, id = first id + index), or `None`
    /// for a decoy.
    pub truth: Option<u64>,
    /// How it was made.
    pub variation: Variation,
}

/// Letters a typo inserts or substitutes.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// One typo in `word` (at least 2 letters; the first letter is kept, as people rarely get it
/// wrong).
fn typo(rng: &mut ChaCha8Rng, word: &str, kind: Variation) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        return word.to_owned();
    }
    let at = rng.random_range(1..chars.len());
    let letter = char::from(LETTERS[rng.random_range(0..LETTERS.len())]);
    match kind {
        Variation::Insert => chars.insert(at, letter),
        Variation::Delete => {
            chars.remove(at);
        }
        Variation::Substitute => {
            // A different letter, so the typo is real.
            let replaced = chars[at].to_ascii_lowercase();
            chars[at] = if letter == replaced {
                char::from(b'a' + (letter as u8 - b'a' + 1) % 26)
            } else {
                letter
            };
        }
        _ => {
            let at = at.min(chars.len() - 2).max(1);
            if chars[at] == chars[at + 1] {
                // Swapping equal letters changes nothing: make the first one a neighbour.
                chars[at] = char::from(b'a' + (chars[at] as u8 - b'a' + 1) % 26);
            }
            chars.swap(at, at + 1);
        }
    }
    chars.into_iter().collect()
}

/// Splits a generated name into its two words and its legal form ("" when none).
fn parts(name: &str) -> (String, String, String) {
    let mut words = name.split(' ');
    let first = words.next().unwrap_or_default().to_owned();
    let second = words.next().unwrap_or_default().to_owned();
    let legal = words.collect::<Vec<_>>().join(" ");
    (first, second, legal)
}

fn join(first: &str, second: &str, legal: &str) -> String {
    format!("{first} {second} {legal}").trim_end().to_owned()
}

fn legal_form(rng: &mut ChaCha8Rng, legal: &str) -> String {
    let spelled = match legal {
        "Inc." => "Incorporated",
        "Ltd" => "Limited",
        "Corp." => "Corporation",
        "LLC" => "L.L.C.",
        "S.A." => "SA",
        "GmbH" => "G.m.b.H.",
        "plc" => "PLC",
        _ => "Inc",
    };
    if rng.random_bool(0.5) {
        spelled.to_owned()
    } else {
        String::new()
    }
}

fn accented(rng: &mut ChaCha8Rng, name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a' if rng.random_bool(0.5) => 'á',
            'e' if rng.random_bool(0.5) => 'é',
            'o' if rng.random_bool(0.5) => 'ö',
            'u' if rng.random_bool(0.5) => 'ü',
            'i' if rng.random_bool(0.5) => 'í',
            other => other,
        })
        .collect()
}

fn punctuated(rng: &mut ChaCha8Rng, first: &str, second: &str, legal: &str) -> String {
    let legal = legal.replace('.', "");
    let cut = first.len() / 2;
    match rng.random_range(0..3) {
        0 => format!("{}-{}, {second} {legal}", &first[..cut], &first[cut..]),
        1 => format!("{first}, {second}. ({legal})"),
        _ => format!("{first}/{second}; {legal}!"),
    }
}

/// Varies `name` by `variation`. Not for [`Variation::Decoy`]: a decoy is another entity's
/// words, made by [`evaluation_set`] (and [`variant_of`] never picks it).
fn vary(rng: &mut ChaCha8Rng, name: &str, variation: Variation) -> String {
    let (first, second, legal) = parts(name);
    match variation {
        Variation::Insert | Variation::Delete | Variation::Substitute | Variation::Transpose => {
            if rng.random_bool(0.5) {
                join(&typo(rng, &first, variation), &second, &legal)
            } else {
                join(&first, &typo(rng, &second, variation), &legal)
            }
        }
        Variation::Reorder => join(&second, &first, &legal),
        Variation::LegalForm => join(&first, &second, &legal_form(rng, &legal)),
        Variation::Initial => {
            let initial: String = first.chars().take(1).collect();
            join(&format!("{initial}."), &second, &legal)
        }
        Variation::Case if rng.random_bool(0.5) => name.to_uppercase(),
        Variation::Case => name.to_lowercase(),
        Variation::Accents => accented(rng, name),
        Variation::Punctuation => punctuated(rng, &first, &second, &legal),
        Variation::TwoTypos => {
            let a = [Variation::Insert, Variation::Delete, Variation::Substitute]
                [rng.random_range(0..3)];
            let b = [Variation::Substitute, Variation::Transpose][rng.random_range(0..2)];
            join(&typo(rng, &first, a), &typo(rng, &second, b), &legal)
        }
        Variation::Decoy => {
            unreachable!("a decoy is made by evaluation_set, not by varying a name")
        }
    }
}

/// `count` labelled names over the first `entity_count` entities of `seed`
/// ([`super::entities`]). The same arguments give the same set.
pub fn evaluation_set(seed: u64, entity_count: u64, count: u64) -> Vec<LabelledName> {
    let entity_count = entity_count.max(1);
    (0..count)
        .map(|n| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(17) ^ n);
            let i = rng.random_range(0..entity_count);
            let (entity, _) = entity(seed, i);
            let variation = Variation::pick(&mut rng);
            let (name, truth) = if variation == Variation::Decoy {
                let (first, second, legal) = parts(&entity.name);
                let other = word(&mut rng);
                let name = if rng.random_bool(0.5) {
                    join(&first, &other, &legal)
                } else {
                    join(&other, &second, &legal)
                };
                (name, None)
            } else {
                (vary(&mut rng, &entity.name, variation), Some(i))
            };
            LabelledName {
                name,
                kind: entity.kind,
                truth,
                variation,
            }
        })
        .collect()
}

/// A source's spelling of entity `i`'s name: one of the non-decoy variations, picked by
/// `rng` (queries of the scaling benchmark).
pub fn variant_of(rng: &mut ChaCha8Rng, name: &str) -> String {
    let variation = Variation::ALL[rng.random_range(0..Variation::ALL.len() - 1)];
    vary(rng, name, variation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::normalize_name;

    #[test]
    fn the_same_seed_gives_the_same_set() {
        assert_eq!(evaluation_set(3, 1_000, 200), evaluation_set(3, 1_000, 200));
        assert_ne!(evaluation_set(3, 1_000, 200), evaluation_set(4, 1_000, 200));
    }

    #[test]
    fn every_variation_occurs_and_changes_the_name_as_described() {
        let set = evaluation_set(11, 5_000, 3_000);
        for v in Variation::ALL {
            assert!(set.iter().any(|l| l.variation == v), "{v:?} never occurs");
        }
        for l in &set {
            assert_eq!(l.truth.is_none(), l.variation == Variation::Decoy);
            assert!(!normalize_name(&l.name).is_empty(), "{l:?}");
            let Some(i) = l.truth else { continue };
            let original = entity(11, i).0.name;
            let (norm, orig) = (normalize_name(&l.name), normalize_name(&original));
            match l.variation {
                // Normalization undoes these entirely.
                Variation::Case | Variation::Accents => assert_eq!(norm, orig, "{l:?}"),
                // The two words stay; the legal form may normalize differently ("S.A." is
                // "s a", "SA" goes).
                Variation::LegalForm => {
                    let two = |s: &str| s.split(' ').take(2).collect::<Vec<_>>().join(" ");
                    assert_eq!(two(&norm), two(&orig), "{l:?}");
                }
                Variation::Reorder => {
                    let mut a: Vec<_> = norm.split(' ').collect();
                    let mut b: Vec<_> = orig.split(' ').collect();
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b, "{l:?}");
                }
                Variation::Insert => assert_eq!(norm.len(), orig.len() + 1, "{l:?}"),
                Variation::Delete => assert_eq!(norm.len() + 1, orig.len(), "{l:?}"),
                Variation::Substitute | Variation::Transpose => {
                    assert_eq!(norm.len(), orig.len(), "{l:?}");
                    assert_ne!(norm, orig, "{l:?}");
                }
                _ => assert_ne!(l.name, original, "{l:?}"),
            }
        }
    }

    #[test]
    fn typos_change_one_letter() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for kind in [Variation::Substitute, Variation::Transpose] {
            for _ in 0..200 {
                let t = typo(&mut rng, "Glotech", kind);
                let differing = t
                    .chars()
                    .zip("Glotech".chars())
                    .filter(|(a, b)| a != b)
                    .count();
                assert!((1..=2).contains(&differing), "{kind:?}: {t}");
                assert!(t.starts_with('G'));
            }
        }
    }
}
