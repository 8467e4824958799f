//! Text data: a character tokenizer, language-model windows and labelled text from a CSV.
//!
//! Everything a text model needs between a corpus file and `fit`:
//! - [`read_text`] reads a UTF-8 file, gunzipping it when its name ends in `.gz`.
//! - [`CharTokenizer`] maps characters to ids. Id 0 is padding (so an `Embedding` with
//!   `mask_zero` turns padded steps into a mask), id 1 stands for a character the training
//!   text did not contain, and ids 2.. are the training text's distinct characters, sorted.
//!   The vocabulary is built from the training part only (validation text may hold unseen
//!   characters, which become id 1); a prompt with an unseen character is an error
//!   ([`CharTokenizer::encode_strict`]) naming it and its position. It is saved with a model
//!   as JSON in the checkpoint's metadata under [`TOKENIZER_KEY`].
//! - [`char_lm_data`] cuts a corpus into language-model windows as the peer script
//!   (`seq_cnn_peers.py`, `charlm_data`) does: the first `train_chars` characters for
//!   training, the next `val_chars` for validation, each cut into consecutive non-overlapping
//!   windows of T + 1 characters: inputs are the first T, targets the last T (shifted by one).
//!   `fit` shuffles the windows each epoch.
//! - [`load_text_csv`] reads a text column and a class column of a CSV (gzipped or not), the
//!   class names sorted and numbered; [`encode_padded`] turns texts into `[N, L]` ids padded
//!   with 0.
//!
//! Ids are float tensors (ember has only float dtypes); they hold whole numbers.

use crate::error::{NnError, Result, config_err};
use ember_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// The checkpoint metadata key holding the tokenizer (JSON).
pub const TOKENIZER_KEY: &str = "ember.tokenizer";

/// The padding id.
pub const PAD: usize = 0;
/// The id of a character outside the vocabulary.
pub const UNKNOWN: usize = 1;

/// Reads a UTF-8 text file, gunzipping it when the name ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String> {
    let io = |e: std::io::Error| NnError::Config(format!("{}: {e}", path.display()));
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                NnError::Config(format!("{}: not a valid gzip file: {e}", path.display()))
            })?;
        out
    } else {
        raw
    };
    String::from_utf8(bytes).map_err(|e| {
        NnError::Config(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Characters to ids and back (see the module doc for the id layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharTokenizer {
    /// The known characters, sorted; character `chars[i]` has id `i + 2`.
    chars: Vec<char>,
}

impl CharTokenizer {
    /// The vocabulary of `text`: its distinct characters, sorted. An empty text is an error.
    pub fn fit(text: &str) -> Result<CharTokenizer> {
        let set: BTreeSet<char> = text.chars().collect();
        if set.is_empty() {
            return config_err("tokenizer: the training text is empty; there is nothing to learn");
        }
        Ok(CharTokenizer {
            chars: set.into_iter().collect(),
        })
    }

    /// A tokenizer over exactly these characters (sorted and deduplicated here).
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> Result<CharTokenizer> {
        let set: BTreeSet<char> = chars.into_iter().collect();
        if set.is_empty() {
            return config_err("tokenizer: no characters");
        }
        Ok(CharTokenizer {
            chars: set.into_iter().collect(),
        })
    }

    /// The number of ids, padding and unknown included (an Embedding's rows, an LM's classes).
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + 2
    }

    /// The known characters, sorted.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c`, if known.
    pub fn id(&self, c: char) -> Option<usize> {
        self.chars.binary_search(&c).ok().map(|i| i + 2)
    }

    /// Ids of `text`, unknown characters as [`UNKNOWN`].
    pub fn encode(&self, text: &str) -> Vec<usize> {
        text.chars()
            .map(|c| self.id(c).unwrap_or(UNKNOWN))
            .collect()
    }

    /// Ids of `text`; a character outside the vocabulary is an error naming it and its
    /// position (in characters, from 0).
    pub fn encode_strict(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                self.id(c).ok_or_else(|| {
                    NnError::Config(format!(
                        "character {c:?} (U+{:04X}) at position {i} is not in the model's \
                         vocabulary of {} characters",
                        c as u32,
                        self.chars.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of `ids`: padding is skipped, unknown ids and ids past the vocabulary become
    /// U+FFFD.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .filter(|&&i| i != PAD)
            .map(|&i| {
                i.checked_sub(2)
                    .and_then(|k| self.chars.get(k))
                    .copied()
                    .unwrap_or('\u{FFFD}')
            })
            .collect()
    }

    /// The tokenizer as JSON: `{"kind":"char","chars":"..."}`.
    pub fn to_json(&self) -> String {
        let chars: String = self.chars.iter().collect();
        serde_json::json!({ "kind": "char", "chars": chars }).to_string()
    }

    /// Reads [`CharTokenizer::to_json`]'s output back.
    pub fn from_json(text: &str) -> Result<CharTokenizer> {
        let bad = |why: &str| NnError::Config(format!("{TOKENIZER_KEY}: {why}"));
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(&format!("not JSON: {e}")))?;
        if v.get("kind").and_then(|k| k.as_str()) != Some("char") {
            return Err(bad("expected a character tokenizer (\"kind\": \"char\")"));
        }
        let chars = v
            .get("chars")
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad("no \"chars\" string"))?;
        let t = CharTokenizer::from_chars(chars.chars())?;
        if t.chars.len() != chars.chars().count() {
            return Err(bad("\"chars\" repeats a character"));
        }
        Ok(t)
    }
}

/// Consecutive non-overlapping windows of `seq_len + 1` ids: inputs `[n, seq_len]` and targets
/// `[n, seq_len]` (the inputs shifted by one), `n = (len − 1) / seq_len`, as float tensors.
/// Too short a sequence for one window is an error.
pub fn lm_windows(ids: &[usize], seq_len: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
    if seq_len == 0 {
        return config_err("language-model windows: the sequence length must be at least 1");
    }
    let n = ids.len().saturating_sub(1) / seq_len;
    if n == 0 {
        return config_err(format!(
            "language-model windows: a window of {} characters (sequence length {seq_len} + 1 \
             target) is longer than the text of {} characters",
            seq_len + 1,
            ids.len()
        ));
    }
    let mut x = Vec::with_capacity(n * seq_len);
    let mut y = Vec::with_capacity(n * seq_len);
    for w in 0..n {
        let s = w * seq_len;
        x.extend(ids[s..s + seq_len].iter().map(|&i| i as f64));
        y.extend(ids[s + 1..s + seq_len + 1].iter().map(|&i| i as f64));
    }
    let t = |v: Vec<f64>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, [n, seq_len], Device::Cpu)?.to_dtype(dtype)?)
    };
    Ok((t(x)?, t(y)?))
}

/// A character language model's data: the tokenizer and the windows.
pub struct CharLmData {
    /// Built from the training characters.
    pub tokenizer: CharTokenizer,
    /// Training inputs `[n, T]`.
    pub x_train: Tensor,
    /// Training targets `[n, T]`.
    pub y_train: Tensor,
    /// Validation inputs and targets, when `val_chars > 0`.
    pub val: Option<(Tensor, Tensor)>,
}

/// Splits `text` into its first `train_chars` characters (training) and the next `val_chars`
/// (validation), builds the tokenizer from the training part and cuts both into windows of
/// `seq_len` (see [`lm_windows`]). Fewer characters than asked for is fine (the parts are
/// shorter); too few for one window is an error naming the part.
pub fn char_lm_data(
    text: &str,
    train_chars: usize,
    val_chars: usize,
    seq_len: usize,
) -> Result<CharLmData> {
    if text.is_empty() {
        return config_err("language-model data: the corpus is empty");
    }
    let chars: Vec<char> = text.chars().collect();
    let train_end = train_chars.min(chars.len());
    let val_end = train_end.saturating_add(val_chars).min(chars.len());
    let train: String = chars[..train_end].iter().collect();
    let tokenizer = CharTokenizer::fit(&train)?;
    let (x_train, y_train) = lm_windows(&tokenizer.encode(&train), seq_len, DType::F32)
        .map_err(|e| NnError::Config(format!("training part: {e}")))?;
    let val = if val_chars > 0 {
        let v: String = chars[train_end..val_end].iter().collect();
        Some(
            lm_windows(&tokenizer.encode(&v), seq_len, DType::F32).map_err(|e| {
                NnError::Config(format!(
                    "validation part (characters {train_end}..{val_end} of {}): {e}",
                    chars.len()
                ))
            })?,
        )
    } else {
        None
    };
    Ok(CharLmData {
        tokenizer,
        x_train,
        y_train,
        val,
    })
}

/// Texts with class labels read from a CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    /// One text per row.
    pub texts: Vec<String>,
    /// The class id of each row (an index into `classes`).
    pub labels: Vec<f64>,
    /// The class names, sorted (numerically when all are numbers); id = position.
    pub classes: Vec<String>,
}

/// Reads `text_column` and (when given) `target_column` of a CSV with a header row, gunzipped
/// when the name ends in `.gz`. Class names are the target's distinct values, sorted
/// (numerically when they are all numbers), numbered from 0. A missing column is an error
/// listing the header. Without a target, every label is 0 and `classes` is empty.
pub fn load_text_csv(
    path: &Path,
    text_column: &str,
    target_column: Option<&str>,
) -> Result<TextTable> {
    let text = read_text(path)?;
    parse_text_csv(
        &text,
        &path.display().to_string(),
        text_column,
        target_column,
    )
}

/// [`load_text_csv`] on CSV text already read; `source` names it in errors.
pub fn parse_text_csv(
    csv_text: &str,
    source: &str,
    text_column: &str,
    target_column: Option<&str>,
) -> Result<TextTable> {
    let csv_err = |e: csv::Error| NnError::Config(format!("{source}: {e}"));
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |name: &str| -> Result<usize> {
        header.iter().position(|h| h == name).ok_or_else(|| {
            NnError::Config(format!(
                "{source}: no column '{name}'; the header has {}",
                header.join(", ")
            ))
        })
    };
    let tc = find(text_column)?;
    let yc = target_column.map(find).transpose()?;
    let mut texts = Vec::new();
    let mut raw_labels = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(csv_err)?;
        let field = |c: usize| -> Result<String> {
            rec.get(c).map(str::to_string).ok_or_else(|| {
                NnError::Config(format!(
                    "{source}: row {} has {} fields, the header {}",
                    i + 2,
                    rec.len(),
                    header.len()
                ))
            })
        };
        texts.push(field(tc)?);
        if let Some(c) = yc {
            raw_labels.push(field(c)?);
        }
    }
    if texts.is_empty() {
        return config_err(format!("{source}: no data rows"));
    }
    let mut classes: Vec<String> = raw_labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let numeric: Option<Vec<f64>> = classes.iter().map(|c| c.trim().parse().ok()).collect();
    if let Some(nums) = numeric {
        let mut pairs: Vec<(f64, String)> = nums.into_iter().zip(classes).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        classes = pairs.into_iter().map(|p| p.1).collect();
    }
    let labels = if yc.is_some() {
        raw_labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).unwrap_or(0) as f64)
            .collect()
    } else {
        vec![0.0; texts.len()]
    };
    Ok(TextTable {
        texts,
        labels,
        classes,
    })
}

/// Ids of `texts` as `[N, L]`, `L` the longest text's length capped at `max_len`; longer texts
/// are cut at `max_len`, shorter ones padded with 0 at the end. Unknown characters are
/// [`UNKNOWN`]. An empty list, or only empty texts, is an error.
pub fn encode_padded(tok: &CharTokenizer, texts: &[String], max_len: usize) -> Result<Tensor> {
    let encoded: Vec<Vec<usize>> = texts.iter().map(|t| tok.encode(t)).collect();
    let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
    let len = longest.min(max_len);
    if len == 0 {
        return config_err(format!(
            "text batch: {} texts with no characters to encode (max length {max_len})",
            texts.len()
        ));
    }
    encode_to_len(&encoded, len)
}

/// Ids of already-encoded texts as `[N, len]`, cut or padded with 0 to `len`.
fn encode_to_len(encoded: &[Vec<usize>], len: usize) -> Result<Tensor> {
    let mut v = vec![PAD as f32; encoded.len() * len];
    for (row, ids) in v.chunks_mut(len).zip(encoded) {
        for (o, &i) in row.iter_mut().zip(ids) {
            *o = i as f32;
        }
    }
    Ok(Tensor::from_vec(v, [encoded.len(), len], Device::Cpu)?)
}

/// Ids of `texts` as `[N, len]` exactly (cut or padded), for inputs to a model trained on
/// that length.
pub fn encode_fixed(tok: &CharTokenizer, texts: &[String], len: usize) -> Result<Tensor> {
    if len == 0 {
        return config_err("text batch: the length must be at least 1");
    }
    let encoded: Vec<Vec<usize>> = texts.iter().map(|t| tok.encode(t)).collect();
    encode_to_len(&encoded, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_round_trip_and_ids() {
        let t = CharTokenizer::fit("hello world").unwrap();
        assert_eq!(t.chars(), &[' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
        assert_eq!(t.vocab_size(), 10);
        assert_eq!(t.id(' '), Some(2));
        let ids = t.encode("hold");
        assert_eq!(ids, [5, 7, 6, 3]);
        assert_eq!(t.decode(&ids), "hold");
        assert_eq!(t.encode("hex"), [5, 4, UNKNOWN]);
        assert_eq!(t.decode(&[0, 5, 1]), "h\u{FFFD}");
        let back = CharTokenizer::from_json(&t.to_json()).unwrap();
        assert_eq!(back, t);
        // Non-ASCII characters survive the JSON round trip.
        let u = CharTokenizer::fit("naïve \"q\"\n").unwrap();
        assert_eq!(CharTokenizer::from_json(&u.to_json()).unwrap(), u);
    }

    #[test]
    fn tokenizer_errors() {
        assert!(CharTokenizer::fit("").is_err());
        let t = CharTokenizer::fit("abc").unwrap();
        let e = t.encode_strict("abz").unwrap_err().to_string();
        assert!(e.contains("'z'") && e.contains("position 2"), "{e}");
        assert!(CharTokenizer::from_json("{}").is_err());
        assert!(CharTokenizer::from_json("{\"kind\":\"char\",\"chars\":\"aa\"}").is_err());
        assert!(CharTokenizer::from_json("nope").is_err());
    }

    #[test]
    fn windows_are_shifted_by_one() {
        let ids: Vec<usize> = (10..21).collect(); // 11 ids
        let (x, y) = lm_windows(&ids, 3, DType::F64).unwrap();
        assert_eq!(x.shape(), [3, 3]);
        assert_eq!(
            x.to_vec::<f64>().unwrap(),
            [10., 11., 12., 13., 14., 15., 16., 17., 18.]
        );
        assert_eq!(
            y.to_vec::<f64>().unwrap(),
            [11., 12., 13., 14., 15., 16., 17., 18., 19.]
        );
        let e = lm_windows(&ids[..3], 3, DType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than the text of 3"), "{e}");
        assert!(lm_windows(&ids, 0, DType::F32).is_err());
    }

    #[test]
    fn lm_data_splits_train_and_validation() {
        let text = "abcabcabcabcXYZ";
        let d = char_lm_data(text, 12, 3, 2).unwrap();
        // Vocabulary from the training part only: X, Y, Z are unknown.
        assert_eq!(d.tokenizer.chars(), &['a', 'b', 'c']);
        assert_eq!(d.x_train.shape(), [5, 2]);
        let (xv, yv) = d.val.unwrap();
        assert_eq!(xv.shape(), [1, 2]);
        assert_eq!(xv.to_vec::<f32>().unwrap(), [1.0, 1.0]);
        assert_eq!(yv.to_vec::<f32>().unwrap(), [1.0, 1.0]);
        assert!(char_lm_data("", 10, 0, 2).is_err());
        let e = char_lm_data("abcdef", 4, 2, 2).err().unwrap().to_string();
        assert!(e.contains("validation part"), "{e}");
    }

    #[test]
    fn csv_columns_classes_and_padding() {
        let csv = "book,testament,text\nGe,0,\"In the, beginning\"\nMt,1,Jesus wept.\nEx,0,And\n";
        let t = parse_text_csv(csv, "t.csv", "text", Some("testament")).unwrap();
        assert_eq!(t.texts[0], "In the, beginning");
        assert_eq!(t.labels, [0.0, 1.0, 0.0]);
        assert_eq!(t.classes, ["0", "1"]);
        let by_book = parse_text_csv(csv, "t.csv", "text", Some("book")).unwrap();
        assert_eq!(by_book.classes, ["Ex", "Ge", "Mt"]);
        assert_eq!(by_book.labels, [1.0, 2.0, 0.0]);
        let e = parse_text_csv(csv, "t.csv", "verse", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no column 'verse'") && e.contains("book, testament, text"),
            "{e}"
        );
        let tok = CharTokenizer::fit("And Jesus").unwrap();
        let x = encode_padded(&tok, &t.texts[1..], 8).unwrap();
        assert_eq!(x.shape(), [2, 8]);
        let v = x.to_vec::<f32>().unwrap();
        // ' ' 2, A 3, J 4, d 5, e 6, n 7, s 8, u 9.
        assert_eq!(&v[8..], &[3.0, 7.0, 5.0, 0., 0., 0., 0., 0.]);
    }
}
