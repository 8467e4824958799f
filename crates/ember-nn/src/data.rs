//! Data: a CSV loader with precise errors, seeded shuffles and splits, scalers fitted on the
//! training part only, and an IDX (MNIST-format) reader.
//!
//! Tabular data is held as a [`Table`] of `f64` rows until it is split and scaled, because those
//! steps are bookkeeping on indices and columns; only then does it become tensors
//! ([`Table::features_tensor`], [`Table::labels_tensor`]). Every shuffle takes an explicit seed.

use crate::error::{NnError, Result, config_err};
use ember_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::io::Read;
use std::path::Path;

/// Which CSV column holds the label.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelColumn {
    /// The column with this header name.
    Name(String),
    /// The column at this 0-based index.
    Index(usize),
    /// The last column.
    Last,
}

impl LabelColumn {
    /// Parses a command-line value: a number is an index, anything else a name.
    pub fn parse(s: &str) -> LabelColumn {
        match s.parse::<usize>() {
            Ok(i) => LabelColumn::Index(i),
            Err(_) => LabelColumn::Name(s.to_string()),
        }
    }
}

/// A numeric table: features row-major `rows × feature_names.len()`, one label per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Names of the feature columns, in order.
    pub feature_names: Vec<String>,
    /// Name of the label column.
    pub label_name: String,
    /// Feature values, row-major.
    pub features: Vec<f64>,
    /// One label per row.
    pub labels: Vec<f64>,
    /// The 1-based source line of each row (for errors found after loading).
    pub lines: Vec<u64>,
}

impl Table {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Number of feature columns.
    pub fn cols(&self) -> usize {
        self.feature_names.len()
    }

    /// Checks that the public fields agree: `rows × cols` feature values and one source line
    /// per row. The loaders build consistent tables; a caller-built one is checked by every
    /// method that indexes by row (an error naming `op`, not an out-of-range panic).
    pub fn check_consistent(&self, op: &str) -> Result<()> {
        let want = self.rows().checked_mul(self.cols());
        if want != Some(self.features.len()) || self.lines.len() != self.rows() {
            return config_err(format!(
                "{op}: inconsistent table: {} rows and {} columns need {} feature values and {} \
                 line numbers, it holds {} and {}",
                self.rows(),
                self.cols(),
                want.map_or_else(|| "more than usize::MAX".to_string(), |w| w.to_string()),
                self.rows(),
                self.features.len(),
                self.lines.len()
            ));
        }
        Ok(())
    }

    /// A new table with the rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Table> {
        self.check_consistent("select")?;
        let d = self.cols();
        let mut out = Table {
            feature_names: self.feature_names.clone(),
            label_name: self.label_name.clone(),
            features: Vec::with_capacity(indices.len() * d),
            labels: Vec::with_capacity(indices.len()),
            lines: Vec::with_capacity(indices.len()),
        };
        for &i in indices {
            if i >= self.rows() {
                return config_err(format!(
                    "select: row {i} out of range for {} rows",
                    self.rows()
                ));
            }
            out.features
                .extend_from_slice(&self.features[i * d..(i + 1) * d]);
            out.labels.push(self.labels[i]);
            out.lines.push(self.lines[i]);
        }
        Ok(out)
    }

    /// The features as a `[rows, cols]` tensor of `dtype` on the CPU. A value that `dtype`
    /// cannot hold (beyond f32's range, say, which a cast would turn into infinity) is an error
    /// naming its line and column instead of a silent infinity or NaN later.
    pub fn features_tensor(&self, dtype: DType) -> Result<Tensor> {
        let d = self.cols().max(1);
        for (i, &v) in self.features.iter().enumerate() {
            if !fits(dtype, v) {
                let (row, col) = (i / d, i % d);
                return Err(self.range_error(row, &self.feature_names[col], v, dtype));
            }
        }
        Ok(Tensor::from_vec(
            self.features.clone(),
            vec![self.rows(), self.cols()],
            Device::Cpu,
        )?
        .to_dtype(dtype)?)
    }

    /// The labels as a `[rows, 1]` tensor (for binary or regression outputs); a label
    /// `dtype` cannot hold is an error naming its line.
    pub fn labels_column(&self, dtype: DType) -> Result<Tensor> {
        self.check_labels_fit(dtype)?;
        Ok(
            Tensor::from_vec(self.labels.clone(), vec![self.rows(), 1], Device::Cpu)?
                .to_dtype(dtype)?,
        )
    }

    /// The labels as a `[rows]` tensor of class ids (for cross-entropy); a label `dtype`
    /// cannot hold is an error naming its line.
    pub fn labels_tensor(&self, dtype: DType) -> Result<Tensor> {
        self.check_labels_fit(dtype)?;
        Ok(
            Tensor::from_vec(self.labels.clone(), vec![self.rows()], Device::Cpu)?
                .to_dtype(dtype)?,
        )
    }

    fn check_labels_fit(&self, dtype: DType) -> Result<()> {
        match self.labels.iter().position(|&v| !fits(dtype, v)) {
            Some(row) => Err(self.range_error(row, &self.label_name, self.labels[row], dtype)),
            None => Ok(()),
        }
    }

    /// The error for a value of row `row`, column `column`, that `dtype` cannot hold.
    fn range_error(&self, row: usize, column: &str, value: f64, dtype: DType) -> NnError {
        NnError::Config(format!(
            "line {}: value {value:e} in column '{column}' is beyond the range of {dtype}",
            self.lines.get(row).copied().unwrap_or(0)
        ))
    }

    /// Checks that every label is an integer in `0..classes`, naming the first line that is not.
    pub fn check_class_labels(&self, source: &str, classes: usize) -> Result<()> {
        for (label, line) in self.labels.iter().zip(&self.lines) {
            if label.fract() != 0.0 || *label < 0.0 || *label >= classes as f64 {
                return Err(NnError::Csv {
                    file: source.to_string(),
                    line: Some(*line),
                    column: None,
                    message: format!(
                        "label {} in column '{}' is not a class id in 0..{}",
                        label, self.label_name, classes
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// The number of classes: one more than the largest label (at least 2). It trusts the
    /// labels: one stray large label makes a huge count. For data from outside, use
    /// [`Table::class_info`], which checks them first.
    /// A label at or beyond `usize::MAX` saturates the count (the `as` cast does) rather than
    /// overflowing; [`Table::check_class_labels`] then rejects it.
    pub fn class_count(&self) -> usize {
        let max = self.labels.iter().cloned().fold(0.0f64, f64::max);
        (max as usize).saturating_add(1).max(2)
    }
}

/// The largest number of classes [`Table::class_info`] accepts (labels `0..=65535`). A label
/// above it is far more likely a stray value (or the wrong column) than a class id, and each
/// class costs an output unit and a row and column of the confusion matrix.
pub const MAX_CLASSES: usize = 65_536;

/// The classes of a label column, as found by [`Table::class_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// Number of classes: one more than the largest label, and at least 2.
    pub classes: usize,
    /// Rows per class id, `classes` entries.
    pub counts: Vec<usize>,
}

impl ClassInfo {
    /// The class ids below `classes` that no row has (gaps such as 1 and 3 in labels 0, 2, 4,
    /// or class 1 when every label is 0).
    pub fn missing(&self) -> Vec<usize> {
        // (A caller-built ClassInfo may have fewer counts than classes: those count as 0.)
        (0..self.classes)
            .filter(|&c| self.counts.get(c).is_none_or(|&n| n == 0))
            .collect()
    }

    /// Number of classes with at least one row.
    pub fn present(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }
}

impl Table {
    /// Checks the labels as class ids and counts them, before anything is sized by the
    /// class count. Errors, naming the file, line and value: a label that is not a whole
    /// number ≥ 0; a label that would make more than [`MAX_CLASSES`] classes; a largest label
    /// that makes more than two classes and more classes than there are rows (one stray value
    /// such as `1000000` in a column of 0s and 1s). Gaps (labels 0, 2, 4) are not errors here:
    /// [`ClassInfo::missing`] names them, for the caller to report.
    pub fn class_info(&self, source: &str) -> Result<ClassInfo> {
        let bad = |line: u64, message: String| NnError::Csv {
            file: source.to_string(),
            line: Some(line),
            column: None,
            message,
            source: None,
        };
        let mut largest: Option<(usize, u64)> = None;
        for (&label, &line) in self.labels.iter().zip(&self.lines) {
            if !(label.fract() == 0.0 && label >= 0.0) {
                return Err(bad(
                    line,
                    format!(
                        "label {label} in column '{}' is not a whole number ≥ 0: the label column must hold class ids 0, 1, 2, ... (choose it with --target)",
                        self.label_name
                    ),
                ));
            }
            if label >= MAX_CLASSES as f64 {
                return Err(bad(
                    line,
                    format!(
                        "label {label} in column '{}' would make {} classes, more than the limit of {MAX_CLASSES}",
                        self.label_name,
                        label + 1.0
                    ),
                ));
            }
            let id = label as usize;
            if largest.is_none_or(|(l, _)| id > l) {
                largest = Some((id, line));
            }
        }
        let Some((max, line)) = largest else {
            return Ok(ClassInfo {
                classes: 2,
                counts: vec![0; 2],
            });
        };
        let classes = (max + 1).max(2);
        if classes > 2 && classes > self.rows() {
            return Err(bad(
                line,
                format!(
                    "label {max} in column '{}' would make {classes} classes, but the data has only {} rows",
                    self.label_name,
                    self.rows()
                ),
            ));
        }
        let mut counts = vec![0; classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        Ok(ClassInfo { classes, counts })
    }
}

/// Whether `dtype` holds `v` as a finite number (a cast to f32 turns 1e39 into infinity).
fn fits(dtype: DType, v: f64) -> bool {
    match dtype {
        DType::F64 => v.is_finite(),
        DType::F32 => (v as f32).is_finite(),
        DType::F16 => half::f16::from_f64(v).is_finite(),
        DType::BF16 => half::bf16::from_f64(v).is_finite(),
    }
}

/// Reads a CSV file. See [`parse_csv`].
pub fn load_csv(path: &Path, label: &LabelColumn) -> Result<Table> {
    load_csv_as(path, label, DType::F64)
}

/// Reads a CSV file whose values will be trained in `dtype`. See [`parse_csv_as`].
pub fn load_csv_as(path: &Path, label: &LabelColumn, dtype: DType) -> Result<Table> {
    let text = std::fs::read(path).map_err(|source| NnError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_csv_as(&text, &path.display().to_string(), label, dtype)
}

/// Parses CSV text with a header row. Every field must be a finite number; the `label` column
/// becomes the labels and every other column a feature. `source` names the data in errors,
/// which give the 1-based line and column of the first bad field. Line numbers count `\n`,
/// `\r\n` and a lone `\r` alike as one line end.
pub fn parse_csv(bytes: &[u8], source: &str, label: &LabelColumn) -> Result<Table> {
    parse_csv_as(bytes, source, label, DType::F64)
}

/// [`parse_csv`] for data that will be trained in `dtype`: every field must also be finite
/// once converted to `dtype` (`1e39` parses as an f64 but is infinite as an f32), and the
/// error names the line and column of the first that is not.
pub fn parse_csv_as(
    bytes: &[u8],
    source: &str,
    label: &LabelColumn,
    dtype: DType,
) -> Result<Table> {
    let err = |line: Option<u64>, column: Option<(usize, String)>, message: String| NnError::Csv {
        file: source.to_string(),
        line,
        column,
        message,
        source: None,
    };
    // The csv reader's own failure, kept as the error's `source()`.
    let reader_err = |line: Option<u64>, message: String, e: csv::Error| NnError::Csv {
        file: source.to_string(),
        line,
        column: None,
        message,
        source: Some(e),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.to_string()).collect(),
        Err(e) => {
            let message = format!("cannot read the header: {e}");
            return Err(reader_err(Some(1), message, e));
        }
    };
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err(err(Some(1), None, "empty file: no header row".into()));
    }
    if header.len() < 2 {
        return Err(err(
            Some(1),
            None,
            format!(
                "need at least 2 columns (features and a label), found {}",
                header.len()
            ),
        ));
    }
    let label_idx = match label {
        LabelColumn::Last => header.len() - 1,
        LabelColumn::Index(i) if *i < header.len() => *i,
        LabelColumn::Index(i) => {
            return Err(err(
                Some(1),
                None,
                format!(
                    "label column index {i} is out of range: the header has {} columns",
                    header.len()
                ),
            ));
        }
        LabelColumn::Name(name) => match header.iter().position(|h| h == name) {
            Some(i) => i,
            None => {
                return Err(err(
                    Some(1),
                    None,
                    format!(
                        "no column named '{name}'; columns are: {}",
                        header.join(", ")
                    ),
                ));
            }
        },
    };
    let feature_names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != label_idx)
        .map(|(_, h)| h.clone())
        .collect();
    let mut table = Table {
        feature_names,
        label_name: header[label_idx].clone(),
        features: Vec::new(),
        labels: Vec::new(),
        lines: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    // Line numbers come from the byte offsets the reader reports: its own line count is one
    // too low per `\r\n` in some cases.
    let mut lines = LineCounter::default();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| lines.line_at(bytes, p.byte()));
                let message = format!("cannot read the row: {e}");
                return Err(reader_err(line, message, e));
            }
        }
        let line = record
            .position()
            .map(|p| lines.line_at(bytes, p.byte()))
            .unwrap_or(0);
        // A blank line reads as one empty field; the csv crate skips most of them already.
        if record.len() == 1 && record.get(0) == Some("") {
            continue;
        }
        if record.len() != header.len() {
            return Err(err(
                Some(line),
                None,
                format!(
                    "expected {} fields (as in the header), found {}",
                    header.len(),
                    record.len()
                ),
            ));
        }
        for (j, field) in record.iter().enumerate() {
            let column = Some((j + 1, header[j].clone()));
            if field.is_empty() {
                return Err(err(Some(line), column, "empty field".into()));
            }
            let value: f64 = match field.parse() {
                Ok(v) => v,
                Err(_) => {
                    return Err(err(
                        Some(line),
                        column,
                        format!("'{field}' is not a number"),
                    ));
                }
            };
            if !value.is_finite() {
                return Err(err(
                    Some(line),
                    column,
                    format!("'{field}' is not a finite number"),
                ));
            }
            if !fits(dtype, value) {
                return Err(err(
                    Some(line),
                    column,
                    format!("'{field}' is beyond the range of {dtype} (it would become infinite)"),
                ));
            }
            if j == label_idx {
                table.labels.push(value);
            } else {
                table.features.push(value);
            }
        }
        table.lines.push(line);
    }
    if table.rows() == 0 {
        return Err(err(None, None, "no data rows after the header".into()));
    }
    Ok(table)
}

/// Turns byte offsets (increasing) into 1-based line numbers, counting `\n`, `\r\n` and a
/// lone `\r` each as one line end. It resumes from the last offset, so a whole file costs one
/// pass.
#[derive(Default)]
struct LineCounter {
    /// Offset counted up to.
    offset: usize,
    /// Line ends before `offset`.
    ends: u64,
}

impl LineCounter {
    /// The line on which the text at `offset` starts; a record never starts on a line end, so
    /// any at `offset` (blank lines skipped by the reader) are counted too.
    fn line_at(&mut self, bytes: &[u8], offset: u64) -> u64 {
        let mut target = (offset as usize).min(bytes.len());
        while target < bytes.len() && matches!(bytes[target], b'\r' | b'\n') {
            target += 1;
        }
        if target < self.offset {
            *self = LineCounter::default();
        }
        let mut i = self.offset;
        while i < target {
            match bytes[i] {
                b'\n' => self.ends += 1,
                b'\r' if bytes.get(i + 1) != Some(&b'\n') => self.ends += 1,
                _ => {}
            }
            i += 1;
        }
        self.offset = target;
        self.ends + 1
    }
}

/// `0..n` in a random order fixed by `seed`.
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    idx
}

/// Number of test rows for a fraction: `ceil(n · fraction)`, as scikit-learn rounds.
fn test_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).ceil() as usize).min(n)
}

fn check_fraction(what: &str, fraction: f64) -> Result<()> {
    if !(0.0..1.0).contains(&fraction) {
        return config_err(format!("{what} must be in [0, 1), got {fraction}"));
    }
    Ok(())
}

/// Shuffles `0..n` with `seed` and splits it into (train, test) index lists, the test part
/// holding `ceil(n · test_fraction)` rows.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_fraction("test fraction", test_fraction)?;
    let idx = shuffled_indices(n, seed);
    let n_test = test_count(n, test_fraction);
    let test = idx[..n_test].to_vec();
    let train = idx[n_test..].to_vec();
    Ok((train, test))
}

/// Like [`train_test_split`] but keeps each class's share: every class contributes
/// `round(count · test_fraction)` rows to the test part. Both parts are shuffled.
pub fn stratified_split(
    labels: &[f64],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_fraction("test fraction", test_fraction)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut classes: Vec<f64> = labels.to_vec();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let k = ((members.len() as f64 * test_fraction).round() as usize).min(members.len());
        test.extend_from_slice(&members[..k]);
        train.extend_from_slice(&members[k..]);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Ok((train, test))
}

/// The usual preparation of a classification table in one call: a seeded (optionally
/// stratified) train/test split, then standardisation fitted on the training part only and
/// applied to both parts. Returns `(train, test)`.
pub fn split_and_standardise(
    table: &Table,
    test_fraction: f64,
    seed: u64,
    stratified: bool,
) -> Result<(Table, Table)> {
    let (train_idx, test_idx) = if stratified {
        stratified_split(&table.labels, test_fraction, seed)?
    } else {
        train_test_split(table.rows(), test_fraction, seed)?
    };
    let mut train = table.select(&train_idx)?;
    let mut test = table.select(&test_idx)?;
    let scaler = Scaler::fit_standard(&train)?;
    scaler.transform(&mut train)?;
    scaler.transform(&mut test)?;
    Ok((train, test))
}

/// Per-column scaling fitted on one part of the data and applied to any part.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Scaler {
    /// `(x − min) / (max − min)`, mapping the fitted range to [0, 1] (a constant column maps
    /// to 0).
    MinMax {
        /// Column minima.
        min: Vec<f64>,
        /// Column maxima.
        max: Vec<f64>,
    },
    /// `(x − mean) / std` with the population standard deviation (a constant column keeps
    /// std 1, as scikit-learn's `StandardScaler` does).
    Standard {
        /// Column means.
        mean: Vec<f64>,
        /// Column standard deviations.
        std: Vec<f64>,
    },
}

impl Scaler {
    /// Fits min-max scaling on the columns of `table` (pass the training part only).
    pub fn fit_min_max(table: &Table) -> Result<Scaler> {
        table.check_consistent("min-max scaler")?;
        let (d, n) = (table.cols(), table.rows());
        if n == 0 {
            return config_err("min-max scaler: cannot fit on zero rows");
        }
        let mut min = vec![f64::INFINITY; d];
        let mut max = vec![f64::NEG_INFINITY; d];
        // (With no feature columns there are no values: `max(1)` only keeps `chunks` legal.)
        for row in table.features.chunks(d.max(1)) {
            for j in 0..d {
                min[j] = min[j].min(row[j]);
                max[j] = max[j].max(row[j]);
            }
        }
        Ok(Scaler::MinMax { min, max })
    }

    /// Fits standardisation on the columns of `table` (pass the training part only).
    pub fn fit_standard(table: &Table) -> Result<Scaler> {
        table.check_consistent("standard scaler")?;
        let (d, n) = (table.cols(), table.rows());
        if n == 0 {
            return config_err("standard scaler: cannot fit on zero rows");
        }
        let mut mean = vec![0.0; d];
        for row in table.features.chunks(d.max(1)) {
            for j in 0..d {
                mean[j] += row[j];
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; d];
        for row in table.features.chunks(d.max(1)) {
            for j in 0..d {
                var[j] += (row[j] - mean[j]).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / n as f64).sqrt();
                if s > 0.0 { s } else { 1.0 }
            })
            .collect();
        Ok(Scaler::Standard { mean, std })
    }

    /// Scales `table`'s features in place.
    pub fn transform(&self, table: &mut Table) -> Result<()> {
        table.check_consistent("scaler transform")?;
        let d = table.cols();
        // Both vectors of the (public) variant must have the table's width.
        let (width, other) = match self {
            Scaler::MinMax { min, max } => (min.len(), max.len()),
            Scaler::Standard { mean, std } => (mean.len(), std.len()),
        };
        if width != d || other != d {
            return config_err(format!(
                "scaler fitted on {width} columns ({other} in its second vector), table has {d}"
            ));
        }
        for row in table.features.chunks_mut(d.max(1)) {
            for j in 0..d {
                row[j] = match self {
                    Scaler::MinMax { min, max } => {
                        let range = max[j] - min[j];
                        if range > 0.0 {
                            (row[j] - min[j]) / range
                        } else {
                            0.0
                        }
                    }
                    Scaler::Standard { mean, std } => (row[j] - mean[j]) / std[j],
                };
            }
        }
        Ok(())
    }
}

/// An array read from an IDX file: its dimensions and its u8 values, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, e.g. `[10000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The values.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (MNIST's format), gunzipping it first if it starts with
/// the gzip magic bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let name = path.display().to_string();
    let raw = std::fs::read(path).map_err(|source| NnError::Io {
        path: name.clone(),
        source,
    })?;
    parse_idx(&raw, &name)
}

/// Parses IDX bytes (gzip-compressed or not); `source` names the data in errors.
pub fn parse_idx(raw: &[u8], source: &str) -> Result<IdxArray> {
    let fail = |message: String| NnError::Idx {
        path: source.to_string(),
        message,
        source: None,
    };
    let bytes: Vec<u8> = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| NnError::Idx {
                path: source.to_string(),
                message: format!("gzip: {e}"),
                source: Some(e),
            })?;
        out
    } else {
        raw.to_vec()
    };
    if bytes.len() < 4 {
        return Err(fail(format!(
            "too short for an IDX header ({} bytes)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(fail(format!(
            "bad magic {:02x} {:02x}: an IDX file starts with two zero bytes",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(fail(format!(
            "element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
            bytes[2]
        )));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(fail(format!(
            "header declares {rank} dimensions but the file has {} bytes",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    // A product beyond usize cannot match any file's length: report it like a short file.
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(bytes.len() - header) {
        let count = count.map_or_else(|| "more than usize::MAX".to_string(), |c| c.to_string());
        return Err(fail(format!(
            "dimensions {dims:?} need {count} values, the file holds {}",
            bytes.len() - header
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Loads an MNIST image file and its label file as `([n, rows·cols]` pixels scaled to [0, 1],
/// `[n]` labels`)`, both f32 on the CPU.
pub fn load_mnist(images: &Path, labels: &Path) -> Result<(Tensor, Tensor)> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    if img.dims.len() != 3 || lab.dims.len() != 1 || img.dims[0] != lab.dims[0] {
        return config_err(format!(
            "MNIST: images {:?} ({}) and labels {:?} ({}) do not match",
            img.dims,
            images.display(),
            lab.dims,
            labels.display()
        ));
    }
    let n = img.dims[0];
    let pixels: Vec<f32> = img.data.iter().map(|&b| b as f32 / 255.0).collect();
    let ids: Vec<f32> = lab.data.iter().map(|&b| b as f32).collect();
    Ok((
        Tensor::from_vec(pixels, vec![n, img.dims[1] * img.dims[2]], Device::Cpu)?,
        Tensor::from_vec(ids, vec![n], Device::Cpu)?,
    ))
}
