//! Accuracy of a matcher on labelled data: precision, recall and F1. Pure counting,
//! unit-tested.
//!
//! Each labelled name has a truth (the entity it refers to, or none for a name that must not
//! match) and a prediction (the entity the matcher linked it to, or none). A right link is a
//! true positive; a link to the wrong entity is a false positive and, when the name had an
//! entity, also a false negative (that entity was missed); no link where there was an entity
//! is a false negative; no link where there was none is a true negative.

use serde::Serialize;

/// Counts of a confusion matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Linked to the right entity.
    pub true_positives: u64,
    /// Linked to a wrong entity, or linked when it should not have been.
    pub false_positives: u64,
    /// Its entity was not linked.
    pub false_negatives: u64,
    /// Rightly left unlinked.
    pub true_negatives: u64,
}

impl Confusion {
    /// Counts one name.
    pub fn add(&mut self, truth: Option<i64>, predicted: Option<i64>) {
        match (truth, predicted) {
            (Some(t), Some(p)) if t == p => self.true_positives += 1,
            (Some(_), Some(_)) => {
                self.false_positives += 1;
                self.false_negatives += 1;
            }
            (None, Some(_)) => self.false_positives += 1,
            (Some(_), None) => self.false_negatives += 1,
            (None, None) => self.true_negatives += 1,
        }
    }

    /// Of the links made, the share that was right (1 when none was made).
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Of the names that had an entity, the share linked to it (1 when none had).
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// The harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_outcome_once_and_a_wrong_link_twice() {
        let mut c = Confusion::default();
        c.add(Some(1), Some(1)); // right
        c.add(Some(1), Some(1)); // right
        c.add(Some(2), Some(3)); // wrong entity: FP and FN
        c.add(None, Some(4)); // a decoy linked
        c.add(Some(5), None); // missed
        c.add(None, None); // decoy left alone
        assert_eq!(
            c,
            Confusion {
                true_positives: 2,
                false_positives: 2,
                false_negatives: 2,
                true_negatives: 1
            }
        );
        assert_eq!(c.precision(), 0.5);
        assert_eq!(c.recall(), 0.5);
        assert_eq!(c.f1(), 0.5);
    }

    #[test]
    fn f1_is_the_harmonic_mean() {
        let c = Confusion {
            true_positives: 9,
            false_positives: 1,
            false_negatives: 9,
            true_negatives: 0,
        };
        assert!((c.precision() - 0.9).abs() < 1e-12);
        assert!((c.recall() - 0.5).abs() < 1e-12);
        assert!((c.f1() - 2.0 * 0.9 * 0.5 / 1.4).abs() < 1e-12);
        assert_eq!(
            Confusion::default().f1(),
            1.0,
            "nothing to find, nothing wrong"
        );
        let none_right = Confusion {
            false_positives: 3,
            ..Confusion::default()
        };
        assert_eq!(none_right.f1(), 0.0);
    }
}
