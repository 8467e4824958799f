//! Regression tests for defects in ember-nn's public API found by the fuzz targets (fuzz/) and
//! the panic audit (scripts/panic-audit.sh). Each test is named after its bug and states what
//! must hold: bad input gives `Err` (or a defined value), never a panic. Tests of open bugs are
//! `#[ignore]`d with the bug in one line; remove the `ignore` together with the fix.

use ember_nn::data::{self, LabelColumn};
use ember_nn::metrics::Metric;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f` and fails the test with the panic message if it panics; returns `f`'s value.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}

#[test]
// Fixed: was parse_idx multiplies the header's dimensions unchecked and panics when the product overflows usize; found by fuzz target idx_reader
fn idx_dimension_product_overflow_panics() {
    // Rank 3, every extent 2^32 - 1: the product overflows 64 bits. 16 bytes in all.
    let mut bytes = vec![0, 0, 0x08, 3];
    bytes.extend_from_slice(&[0xff; 12]);
    let r = no_panic("parse_idx", || data::parse_idx(&bytes, "overflow.idx"));
    assert!(r.is_err(), "the file cannot hold 2^96 values");
}

#[test]
// Fixed: was Table::class_count computes `max as usize + 1`, which overflows for a label >= 2^64 (e.g. 1e20 in a CSV); found by fuzz target csv_loader
fn class_count_overflows_on_huge_label() {
    let table = data::parse_csv(b"x,y\n1,1e20\n", "huge.csv", &LabelColumn::Last).unwrap();
    let classes = no_panic("class_count", || table.class_count());
    assert!(
        table.check_class_labels("huge.csv", classes).is_err(),
        "1e20 is not a usable class id"
    );
}

#[test]
// Fixed; was: Metric::Auc.compute with cols = 0 reaches `step_by(0)` and panics; found by reading for the panic audit
fn auc_metric_with_zero_columns_panics() {
    let v = no_panic("Metric::Auc.compute(cols = 0)", || {
        Metric::Auc.compute(&[], 0, &[], 0)
    });
    assert!(v.is_nan(), "no scores: AUC is undefined");
}

#[test]
// Fixed; was: Scaler::fit_standard/fit_min_max on a Table with no feature columns call chunks(0) and panic; found by reading for the panic audit
fn scaler_fit_on_zero_feature_columns_panics() {
    let table = data::Table {
        feature_names: vec![],
        label_name: "y".into(),
        features: vec![],
        labels: vec![0.0, 1.0],
        lines: vec![2, 3],
    };
    let standard = no_panic("Scaler::fit_standard", || {
        data::Scaler::fit_standard(&table)
    });
    let min_max = no_panic("Scaler::fit_min_max", || data::Scaler::fit_min_max(&table));
    // Nothing to scale: a scaler of width 0 or an Err are both fine.
    for s in [standard, min_max].into_iter().flatten() {
        let mut t = table.clone();
        no_panic("Scaler::transform", || s.transform(&mut t)).unwrap();
    }
}

/// A table whose public fields disagree: 2 labels, 2 feature columns, but 3 feature values and
/// 1 source line.
fn inconsistent_table() -> data::Table {
    data::Table {
        feature_names: vec!["a".into(), "b".into()],
        label_name: "y".into(),
        features: vec![1.0, 2.0, 3.0],
        labels: vec![0.0, 1.0],
        lines: vec![2],
    }
}

#[test]
// Fixed; was: Table's fields are public and Scaler::fit_*/transform and Table::select index them assuming rows*cols features and one line per row; found by the panic audit
fn inconsistent_table_panics_in_scalers_and_select() {
    let t = inconsistent_table();
    let r = no_panic("Scaler::fit_standard", || data::Scaler::fit_standard(&t));
    let _ = no_panic("Scaler::fit_min_max", || data::Scaler::fit_min_max(&t));
    if let Ok(s) = &r {
        let mut t2 = t.clone();
        let _ = no_panic("Scaler::transform", || s.transform(&mut t2));
    }
    let e = no_panic("Table::select", || t.select(&[1])).unwrap_err();
    assert!(e.to_string().contains("inconsistent table"), "{e}");
    assert!(r.is_err(), "fitting on an inconsistent table is an error");
}

#[test]
// Fixed; was: ConfusionMatrix::counts is public and accuracy/precision index it as a square matrix; found by the panic audit
fn ragged_confusion_matrix_panics() {
    let cm = ember_nn::metrics::ConfusionMatrix {
        counts: vec![vec![], vec![1]],
    };
    no_panic("ConfusionMatrix::accuracy", || cm.accuracy());
    no_panic("ConfusionMatrix::precision", || cm.precision(1));
}

// Found by the panic audit, fixed with it: hand-built values whose public fields disagree.
#[test]
fn short_class_counts_and_mismatched_scaler_vectors_do_not_panic() {
    let info = data::ClassInfo {
        classes: 3,
        counts: vec![4],
    };
    assert_eq!(
        no_panic("ClassInfo::missing", || info.missing()),
        vec![1, 2]
    );
    let scaler = data::Scaler::MinMax {
        min: vec![0.0, 0.0],
        max: vec![1.0],
    };
    let mut t = data::Table {
        feature_names: vec!["a".into(), "b".into()],
        label_name: "y".into(),
        features: vec![1.0, 2.0],
        labels: vec![0.0],
        lines: vec![2],
    };
    let r = no_panic("Scaler::transform", || scaler.transform(&mut t));
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("2 columns (1 in its second vector)")
    );
}
