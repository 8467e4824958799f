//! Fuzzes the CSV loader (`ember_nn::data::parse_csv`, which `load_csv` calls on the file's
//! bytes) and what a caller does next with the table: class counting and label checks, the
//! stratified and plain splits with standardisation, and the conversion to tensors.
//!
//! Input: byte 0 picks the label column (last, an index from byte 1, or a name: the header's
//! field picked by byte 1, or a name absent from the header); the rest is the CSV text.
//! Oracle: no panic; an `Ok` table is consistent (one label and one line per row, `cols`
//! features per row, every value finite).
#![no_main]

use ember_core::DType;
use ember_fuzz::Cursor;
use ember_nn::data::{self, LabelColumn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let (mode, pick) = (c.byte(), c.byte());
    let text = c.rest();
    let label = match mode % 4 {
        0 => LabelColumn::Last,
        1 => LabelColumn::Index(pick as usize),
        2 => {
            // A name that is in the header when the header has that many fields.
            let header = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let names: Vec<&[u8]> = header.split(|&b| b == b',').collect();
            let name = names.get(pick as usize % names.len().max(1)).copied();
            LabelColumn::Name(
                String::from_utf8_lossy(name.unwrap_or(b""))
                    .trim()
                    .to_string(),
            )
        }
        _ => LabelColumn::Name("no such column".into()),
    };
    let Ok(table) = data::parse_csv(text, "fuzz.csv", &label) else {
        return;
    };
    let (rows, cols) = (table.rows(), table.cols());
    assert!(rows > 0 && cols > 0, "an Ok table has rows and features");
    assert_eq!(
        table.features.len(),
        rows * cols,
        "features are rows x cols"
    );
    assert_eq!(table.lines.len(), rows, "one source line per row");
    assert!(
        table
            .features
            .iter()
            .chain(&table.labels)
            .all(|v| v.is_finite())
    );

    // What `ember train` does with a loaded table, all through public calls.
    let classes = table.class_count();
    let _ = table.check_class_labels("fuzz.csv", classes);
    for stratified in [false, true] {
        if let Ok((train, test)) = data::split_and_standardise(&table, 0.25, 1, stratified) {
            assert_eq!(train.rows() + test.rows(), rows, "a split keeps every row");
        }
    }
    if let Ok(x) = table.features_tensor(DType::F32) {
        assert_eq!(x.shape(), &[rows, cols]);
    }
    let _ = table.labels_tensor(DType::F32);
});
