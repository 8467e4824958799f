//! The data module: one CSV test per kind of bad row (each error names file, line and
//! column), splits, scalers fitted on the training part, and the IDX reader.

use ember_nn::NnError;
use ember_nn::data::{self, LabelColumn, Scaler, parse_csv, parse_idx};

fn csv_err(text: &str, label: LabelColumn) -> String {
    match parse_csv(text.as_bytes(), "t.csv", &label) {
        Ok(t) => panic!("expected an error, parsed {} rows", t.rows()),
        Err(e @ NnError::Csv { .. }) => e.to_string(),
        Err(other) => panic!("expected a CSV error, got {other}"),
    }
}

#[test]
fn parses_a_good_file_with_label_by_name_index_or_last() {
    let text = "a,b,label\n1,2.5,0\n-3,4e2,1\n";
    let t = parse_csv(text.as_bytes(), "t.csv", &LabelColumn::Name("label".into())).unwrap();
    assert_eq!((t.rows(), t.cols()), (2, 2));
    assert_eq!(t.features, vec![1.0, 2.5, -3.0, 400.0]);
    assert_eq!(t.labels, vec![0.0, 1.0]);
    assert_eq!(t.lines, vec![2, 3]);
    let by_index = parse_csv(text.as_bytes(), "t.csv", &LabelColumn::Index(0)).unwrap();
    assert_eq!(by_index.labels, vec![1.0, -3.0]);
    assert_eq!(by_index.feature_names, vec!["b", "label"]);
    assert_eq!(
        parse_csv(text.as_bytes(), "t.csv", &LabelColumn::Last).unwrap(),
        t
    );
}

#[test]
fn row_with_too_few_fields() {
    let e = csv_err("a,b,label\n1,2,0\n3,4\n", LabelColumn::Last);
    assert_eq!(
        e,
        "t.csv: line 3: expected 3 fields (as in the header), found 2"
    );
}

#[test]
fn row_with_too_many_fields() {
    let e = csv_err("a,b,label\n1,2,0,9\n", LabelColumn::Last);
    assert!(e.contains("line 2") && e.contains("found 4"), "{e}");
}

#[test]
fn field_that_is_not_a_number() {
    let e = csv_err("a,b,label\n1,2,0\n1,abc,1\n", LabelColumn::Last);
    assert_eq!(e, "t.csv: line 3, column 2 (b): 'abc' is not a number");
}

#[test]
fn empty_field() {
    let e = csv_err("a,b,label\n1,,0\n", LabelColumn::Last);
    assert_eq!(e, "t.csv: line 2, column 2 (b): empty field");
}

#[test]
fn non_finite_value() {
    let e = csv_err("a,b,label\n1,2,0\nNaN,2,0\n", LabelColumn::Last);
    assert!(
        e.contains("line 3, column 1 (a)") && e.contains("not a finite number"),
        "{e}"
    );
    let e = csv_err("a,b,label\n1,inf,0\n", LabelColumn::Last);
    assert!(e.contains("column 2 (b)"), "{e}");
}

#[test]
fn bad_label_in_the_label_column() {
    let e = csv_err("a,b,label\n1,2,x\n", LabelColumn::Last);
    assert!(e.contains("line 2, column 3 (label)"), "{e}");
    // A number that is not a class id is caught by check_class_labels with its line.
    let t = parse_csv(b"a,label\n1,0\n2,1\n3,0.5\n", "t.csv", &LabelColumn::Last).unwrap();
    let e = t.check_class_labels("t.csv", 2).unwrap_err().to_string();
    assert!(e.contains("line 4") && e.contains("0.5"), "{e}");
}

#[test]
fn missing_label_column() {
    let e = csv_err("a,b,y\n1,2,0\n", LabelColumn::Name("label".into()));
    assert!(
        e.contains("no column named 'label'") && e.contains("a, b, y"),
        "{e}"
    );
    let e = csv_err("a,b,y\n1,2,0\n", LabelColumn::Index(3));
    assert!(e.contains("index 3 is out of range"), "{e}");
}

#[test]
fn empty_file_and_header_only() {
    assert!(csv_err("", LabelColumn::Last).contains("empty file"));
    assert!(csv_err("a,label\n", LabelColumn::Last).contains("no data rows"));
    assert!(csv_err("label\n1\n", LabelColumn::Last).contains("at least 2 columns"));
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    let bytes = b"a,label\n1,0\n\xff\xfe,1\n";
    let e = parse_csv(bytes, "t.csv", &LabelColumn::Last)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.csv: line 3"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let e = data::load_csv(
        std::path::Path::new("/no/such/file.csv"),
        &LabelColumn::Last,
    )
    .unwrap_err();
    assert!(e.to_string().contains("/no/such/file.csv"));
}

#[test]
fn train_test_split_is_seeded_disjoint_and_complete() {
    let (train, test) = data::train_test_split(10, 0.25, 3).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3)); // ceil(2.5) = 3
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(
        data::train_test_split(10, 0.25, 3).unwrap(),
        (train.clone(), test)
    );
    assert_ne!(data::train_test_split(10, 0.25, 4).unwrap().0, train);
    assert_eq!(data::train_test_split(5, 0.0, 0).unwrap().1.len(), 0);
    assert!(data::train_test_split(5, 1.0, 0).is_err());
}

#[test]
fn stratified_split_keeps_class_shares() {
    let labels: Vec<f64> = (0..100).map(|i| if i < 80 { 0.0 } else { 1.0 }).collect();
    let (train, test) = data::stratified_split(&labels, 0.25, 1).unwrap();
    assert_eq!((train.len(), test.len()), (75, 25));
    let pos = test.iter().filter(|&&i| labels[i] == 1.0).count();
    assert_eq!(pos, 5);
}

#[test]
fn scalers_use_only_the_part_they_were_fitted_on() {
    let mk = |f: Vec<f64>| data::Table {
        feature_names: vec!["a".into(), "b".into()],
        label_name: "y".into(),
        labels: vec![0.0; f.len() / 2],
        lines: (2..2 + f.len() as u64 / 2).collect(),
        features: f,
    };
    let train = mk(vec![0.0, 5.0, 2.0, 5.0, 4.0, 5.0]);
    let mut test = mk(vec![6.0, 7.0]);
    let mm = Scaler::fit_min_max(&train).unwrap();
    mm.transform(&mut test).unwrap();
    // Column a: (6 - 0) / 4 = 1.5 (outside [0, 1], as fitted on train only); b is constant: 0.
    assert_eq!(test.features, vec![1.5, 0.0]);
    let mut t2 = train.clone();
    let st = Scaler::fit_standard(&train).unwrap();
    st.transform(&mut t2).unwrap();
    let s = (8.0f64 / 3.0).sqrt();
    let want = [-2.0 / s, 0.0, 0.0, 0.0, 2.0 / s, 0.0];
    for (a, b) in t2.features.iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn idx_reader_plain_gzip_and_errors() {
    // 2 × 3 u8 array.
    let mut raw = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
    raw.extend([1, 2, 3, 4, 5, 6]);
    let a = parse_idx(&raw, "x.idx").unwrap();
    assert_eq!(a.dims, vec![2, 3]);
    assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    let mut truncated = raw.clone();
    truncated.pop();
    let e = parse_idx(&truncated, "x.idx").unwrap_err().to_string();
    assert!(e.contains("x.idx") && e.contains("need 6 values"), "{e}");
    assert!(
        parse_idx(&[1, 0, 8, 1], "x.idx")
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
    assert!(
        parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "x.idx")
            .unwrap_err()
            .to_string()
            .contains("0x0d")
    );
    assert!(
        parse_idx(&[0x1f, 0x8b, 1, 2], "x.gz")
            .unwrap_err()
            .to_string()
            .contains("gzip")
    );
}

#[test]
fn reads_the_shipped_mnist_test_labels() {
    // The MNIST subset lives in the workspace's data/ folder, outside this crate: a packaged
    // ember-nn has no copy, so the test says so and stops there.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    if !dir.is_dir() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: reads_the_shipped_mnist_test_labels: {} is absent (the workspace's data/ \
             folder is not part of the ember-nn package)",
            dir.display()
        );
        return;
    }
    let labels = data::read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.dims, vec![2000]);
    // Label counts from data/README.md.
    let mut counts = [0usize; 10];
    for &l in &labels.data {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [189, 222, 212, 242, 196, 186, 158, 215, 193, 187]);
    let (x, y) = data::load_mnist(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(
        (x.shape(), y.shape()),
        (&[2000usize, 784][..], &[2000usize][..])
    );
    let px = x.to_vec::<f32>().unwrap();
    assert!(px.iter().all(|&p| (0.0..=1.0).contains(&p)) && px.contains(&1.0));
}

/// I/O and csv errors keep the underlying error as `source()`, with its original type.
#[test]
fn io_and_csv_errors_keep_their_source() {
    use std::error::Error;
    let missing = std::path::Path::new("/nonexistent/ember/no-such-file.csv");
    let err = data::load_csv(missing, &LabelColumn::Last).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }), "{err:?}");
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the io::Error is kept");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/ember/no-such-file.csv: ")
    );

    // Invalid UTF-8 in a row: the csv reader itself fails.
    let err = parse_csv(b"a,b\n\xff,1\n", "t.csv", &LabelColumn::Last).unwrap_err();
    let csv_err = err
        .source()
        .and_then(|s| s.downcast_ref::<csv::Error>())
        .expect("the csv::Error is kept");
    assert!(
        matches!(csv_err.kind(), csv::ErrorKind::Utf8 { .. }),
        "{csv_err:?}"
    );
    assert!(err.to_string().contains("cannot read the row"), "{err}");

    // A problem ember finds itself has no underlying error.
    let err = parse_csv(b"a,b\n1,x\n", "t.csv", &LabelColumn::Last).unwrap_err();
    assert!(err.source().is_none(), "{err:?}");

    // A truncated gzip stream: the decoder's io::Error is kept.
    let err = parse_idx(&[0x1f, 0x8b, 0x08, 0x00], "t.idx").unwrap_err();
    assert!(
        err.source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some(),
        "{err:?}"
    );
}

#[test]
fn crlf_and_lone_cr_line_endings_give_the_same_line_numbers() {
    for eol in ["\n", "\r\n", "\r"] {
        let text = ["a,b,label", "1,2,0", "3,4,1", "5,x,1", ""].join(eol);
        let e = csv_err(&text, LabelColumn::Last);
        assert!(e.contains("line 4, column 2 (b)"), "{eol:?}: {e}");
        let good = ["a,b,label", "1,2,0", "", "3,4,1", ""].join(eol);
        let t = parse_csv(good.as_bytes(), "t.csv", &LabelColumn::Last).unwrap();
        assert_eq!(t.lines, vec![2, 4], "{eol:?}");
    }
    // A quoted field spanning lines: the row is named by its first line.
    let text = "a,b,label\r\n\"1\r\n\",2,0\r\n3,y,1\r\n";
    let e = csv_err(text, LabelColumn::Last);
    assert!(e.contains("line 4, column 2 (b)"), "{e}");
}
