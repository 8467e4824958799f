//! Classification metrics over plain slices of predictions and labels.
//!
//! Metrics are computed once over a whole epoch's (or test set's) predictions, read back from
//! the tensors as `f64`, so they are exact counts rather than averages of per-batch ratios. For
//! binary models a prediction is the probability of class 1 and is thresholded at 0.5; for
//! multi-class models it is a row of scores and the class is the argmax.

/// A metric to track during `fit` and report from `evaluate`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Metric {
    /// Binary accuracy for one output column, categorical accuracy for several (Keras's
    /// `"accuracy"` picks the same way).
    Accuracy,
    /// Precision of the positive class.
    Precision,
    /// Recall of the positive class.
    Recall,
    /// F1 score of the positive class.
    F1,
    /// Area under the ROC curve (binary models only).
    Auc,
    /// Bits per character of a language model: the mean cross-entropy (over every position)
    /// divided by ln 2. `fit` and `evaluate` take it from the loss; [`Metric::compute`]
    /// derives it from the probabilities (−log₂ p of each label, averaged).
    BitsPerChar,
}

impl Metric {
    /// The name used in logs and histories.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Auc => "auc",
            Metric::BitsPerChar => "bpc",
        }
    }

    /// Computes this metric. `scores` holds `rows × cols` model outputs already turned into
    /// probabilities (one column: P(class 1)); `labels` holds one class id per row;
    /// `positive` is the class treated as positive by precision, recall and F1.
    pub fn compute(&self, scores: &[f64], cols: usize, labels: &[f64], positive: usize) -> f64 {
        if *self == Metric::BitsPerChar {
            return bits_per_char(scores, cols, labels);
        }
        let predicted = predicted_classes(scores, cols);
        let truth: Vec<usize> = labels.iter().map(|&l| class_id(l)).collect();
        let classes = cols.max(2);
        let cm = ConfusionMatrix::new(&truth, &predicted, classes);
        match self {
            Metric::Accuracy => cm.accuracy(),
            Metric::Precision => cm.precision(positive),
            Metric::Recall => cm.recall(positive),
            Metric::F1 => cm.f1(positive),
            Metric::BitsPerChar => bits_per_char(scores, cols, labels),
            Metric::Auc => {
                if cols <= 1 {
                    let pos: Vec<bool> = truth.iter().map(|&t| t == positive).collect();
                    let s: Vec<f64> = if positive == 1 {
                        scores.to_vec()
                    } else {
                        scores.iter().map(|p| 1.0 - p).collect()
                    };
                    roc_auc(&s, &pos).unwrap_or(f64::NAN)
                } else {
                    let s: Vec<f64> = scores
                        .iter()
                        .skip(positive)
                        .step_by(cols)
                        .copied()
                        .collect();
                    let pos: Vec<bool> = truth.iter().map(|&t| t == positive).collect();
                    roc_auc(&s, &pos).unwrap_or(f64::NAN)
                }
            }
        }
    }
}

/// Mean −log₂ p(label) over the rows of `probs` (`rows × cols` probabilities); a zero
/// probability counts as the smallest positive f64 (a finite, very large cost). NaN for no rows.
fn bits_per_char(probs: &[f64], cols: usize, labels: &[f64]) -> f64 {
    let rows = probs.len() / cols.max(1);
    let n = rows.min(labels.len());
    if n == 0 {
        return f64::NAN;
    }
    let total: f64 = (0..n)
        .map(|r| {
            let p = probs
                .get(r * cols + class_id(labels[r]))
                .copied()
                .unwrap_or(0.0);
            -p.max(f64::MIN_POSITIVE).log2()
        })
        .sum();
    total / n as f64
}

/// A label stored as a float, as a class id (negative or non-finite values become 0).
fn class_id(label: f64) -> usize {
    if label.is_finite() && label > 0.0 {
        label.round() as usize
    } else {
        0
    }
}

/// The predicted class of each row: `p > 0.5` for one column (as Keras thresholds), the argmax (first on ties)
/// otherwise.
pub fn predicted_classes(scores: &[f64], cols: usize) -> Vec<usize> {
    if cols <= 1 {
        return scores.iter().map(|&p| usize::from(p > 0.5)).collect();
    }
    scores
        .chunks(cols)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows where `probs[i] > threshold` agrees with `labels[i] == 1` (Keras's
/// `binary_accuracy`, which also uses a strict `>`). Returns 0 for empty input.
pub fn binary_accuracy(probs: &[f64], labels: &[f64], threshold: f64) -> f64 {
    if probs.is_empty() {
        return 0.0;
    }
    let hits = probs
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| (p > threshold) == (l >= 0.5))
        .count();
    hits as f64 / probs.len() as f64
}

/// Fraction of rows whose argmax equals the label. Returns 0 for empty input.
pub fn categorical_accuracy(scores: &[f64], cols: usize, labels: &[f64]) -> f64 {
    let predicted = predicted_classes(scores, cols);
    if predicted.is_empty() {
        return 0.0;
    }
    let hits = predicted
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| p == class_id(l))
        .count();
    hits as f64 / predicted.len() as f64
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney statistic, computed with average ranks).
/// `None` when only one class is present.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n = scores.len().min(positive.len());
    let n_pos = positive[..n].iter().filter(|&&p| p).count();
    let n_neg = n - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average 1-based ranks over runs of equal scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if positive[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// Counts of (true class, predicted class) pairs: `counts[t][p]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Builds the matrix for `classes` classes; pairs with an id `>= classes` are ignored. It
    /// holds `classes²` counts: check class ids from outside first (see
    /// `data::Table::class_info`, which caps them at `data::MAX_CLASSES`).
    pub fn new(truth: &[usize], predicted: &[usize], classes: usize) -> ConfusionMatrix {
        let mut counts = vec![vec![0; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            if t < classes && p < classes {
                counts[t][p] += 1;
            }
        }
        ConfusionMatrix { counts }
    }

    /// Number of samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// The count of (true `t`, predicted `p`); 0 for a cell the matrix does not have (`counts`
    /// is public: a caller-built matrix may be ragged, and is read as zero-padded to square).
    fn cell(&self, t: usize, p: usize) -> usize {
        self.counts
            .get(t)
            .and_then(|row| row.get(p))
            .copied()
            .unwrap_or(0)
    }

    /// Samples predicted as `p`.
    fn predicted_as(&self, p: usize) -> usize {
        (0..self.counts.len()).map(|t| self.cell(t, p)).sum()
    }

    /// Samples of true class `t`.
    fn actual(&self, t: usize) -> usize {
        self.counts.get(t).map_or(0, |row| row.iter().sum())
    }

    /// Samples on the diagonal.
    fn correct(&self) -> usize {
        (0..self.counts.len()).map(|i| self.cell(i, i)).sum()
    }

    /// Fraction on the diagonal (0 if empty).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// TP / (TP + FP) for class `positive`; 0 when nothing was predicted positive (sklearn's
    /// `zero_division=0`).
    pub fn precision(&self, positive: usize) -> f64 {
        ratio(self.cell(positive, positive), self.predicted_as(positive))
    }

    /// TP / (TP + FN) for class `positive`; 0 when the class is absent.
    pub fn recall(&self, positive: usize) -> f64 {
        ratio(self.cell(positive, positive), self.actual(positive))
    }

    /// Harmonic mean of precision and recall for class `positive` (0 when both are 0).
    pub fn f1(&self, positive: usize) -> f64 {
        let (p, r) = (self.precision(positive), self.recall(positive));
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Undefined-aware forms: `None` where the ratio is 0/0 (scikit-learn's `zero_division`
/// case), instead of the 0 the plain forms report. A report should print these as
/// "undefined" rather than as a score of 0.
impl ConfusionMatrix {
    /// Fraction on the diagonal; `None` when no sample was counted.
    pub fn checked_accuracy(&self) -> Option<f64> {
        checked_ratio(self.correct(), self.total())
    }

    /// TP / (TP + FP) for class `positive`; `None` when nothing was predicted as it (or it
    /// is not a class of the matrix).
    pub fn checked_precision(&self, positive: usize) -> Option<f64> {
        self.counts.get(positive)?;
        checked_ratio(self.cell(positive, positive), self.predicted_as(positive))
    }

    /// TP / (TP + FN) for class `positive`; `None` when no sample is of that class.
    pub fn checked_recall(&self, positive: usize) -> Option<f64> {
        self.counts.get(positive)?;
        checked_ratio(self.cell(positive, positive), self.actual(positive))
    }

    /// Harmonic mean of precision and recall; `None` when either is undefined, 0 when both
    /// are 0.
    pub fn checked_f1(&self, positive: usize) -> Option<f64> {
        let (p, r) = (
            self.checked_precision(positive)?,
            self.checked_recall(positive)?,
        );
        Some(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        })
    }

    /// Number of classes with at least one true sample.
    pub fn classes_present(&self) -> usize {
        self.counts
            .iter()
            .filter(|row| row.iter().any(|&c| c > 0))
            .count()
    }
}

fn checked_ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_scores_by_hand() {
        // truth:     1 1 1 0 0 0 1 0
        // predicted: 1 0 1 0 1 0 1 0   -> TP 3, FN 1, FP 1, TN 3
        let t = [1, 1, 1, 0, 0, 0, 1, 0];
        let p = [1, 0, 1, 0, 1, 0, 1, 0];
        let cm = ConfusionMatrix::new(&t, &p, 2);
        assert_eq!(cm.counts, vec![vec![3, 1], vec![1, 3]]);
        assert_eq!(cm.accuracy(), 0.75);
        assert_eq!(cm.precision(1), 0.75);
        assert_eq!(cm.recall(1), 0.75);
        assert_eq!(cm.f1(1), 0.75);
        // Positive class 0: TP 3, FP 1 (true 1 predicted 0), FN 1.
        assert_eq!(cm.precision(0), 0.75);
        let cm = ConfusionMatrix::new(&[1, 1, 0], &[1, 0, 0], 2);
        assert_eq!(cm.precision(1), 1.0);
        assert_eq!(cm.recall(1), 0.5);
        assert!((cm.f1(1) - 2.0 / 3.0).abs() < 1e-15);
        // Nothing predicted positive: precision 0, F1 0, no division by zero.
        let cm = ConfusionMatrix::new(&[1, 0], &[0, 0], 2);
        assert_eq!((cm.precision(1), cm.f1(1)), (0.0, 0.0));
    }

    #[test]
    fn checked_forms_say_undefined_instead_of_zero() {
        // Every true label 0, every prediction 0: class 1's scores are 0/0.
        let cm = ConfusionMatrix::new(&[0, 0, 0], &[0, 0, 0], 2);
        assert_eq!(cm.precision(1), 0.0);
        assert_eq!(cm.checked_precision(1), None);
        assert_eq!(cm.checked_recall(1), None);
        assert_eq!(cm.checked_f1(1), None);
        assert_eq!(cm.checked_accuracy(), Some(1.0));
        assert_eq!(cm.classes_present(), 1);
        // Defined zeros stay zeros.
        let cm = ConfusionMatrix::new(&[1, 0], &[0, 1], 2);
        assert_eq!(cm.checked_precision(1), Some(0.0));
        assert_eq!(cm.checked_f1(1), Some(0.0));
        assert_eq!(ConfusionMatrix::new(&[], &[], 2).checked_accuracy(), None);
        assert_eq!(cm.checked_recall(7), None);
    }

    #[test]
    fn accuracies() {
        // 0.5 is not above the threshold, so it predicts class 0 (a miss here), as in Keras.
        assert_eq!(
            binary_accuracy(&[0.9, 0.4, 0.5, 0.1], &[1.0, 1.0, 1.0, 0.0], 0.5),
            0.5
        );
        assert_eq!(
            categorical_accuracy(&[0.1, 0.9, 0.8, 0.2, 0.3, 0.7], 2, &[1.0, 0.0, 0.0]),
            2.0 / 3.0
        );
        assert_eq!(predicted_classes(&[1.0, 3.0, 2.0], 3), vec![1]);
    }

    #[test]
    fn auc_by_hand() {
        // Perfect ranking, reversed ranking, and one tie between a positive and a negative.
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        // pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5 vs 0.5) = ½, others 1 -> 3.5 / 4.
        assert_eq!(
            roc_auc(&[0.5, 0.9, 0.5, 0.1], &[true, true, false, false]),
            Some(0.875)
        );
        assert_eq!(roc_auc(&[0.5, 0.9], &[true, true]), None);
    }

    #[test]
    fn metric_enum_uses_positive_class() {
        let scores = [0.9, 0.2, 0.7, 0.4];
        let labels = [1.0, 0.0, 0.0, 0.0];
        assert_eq!(Metric::Accuracy.compute(&scores, 1, &labels, 1), 0.75);
        assert_eq!(Metric::Precision.compute(&scores, 1, &labels, 1), 0.5);
        assert_eq!(Metric::Recall.compute(&scores, 1, &labels, 0), 2.0 / 3.0);
        assert_eq!(Metric::Auc.compute(&scores, 1, &labels, 1), 1.0);
        assert_eq!(Metric::Auc.compute(&scores, 1, &labels, 0), 1.0);
    }
}
