//! Text in the CLI: `ember train` on a corpus (a character language model, `--task lm`) or on
//! a CSV's text column (a sequence classifier, `--text-column`), `ember generate` (sampling
//! from a saved language model) and `ember predict` on a text CSV.
//!
//! The data pipeline is `ember_nn::text`: a character tokenizer built from the training text
//! (id 0 padding, id 1 unknown), language-model windows of `--seq-len` characters with targets
//! shifted by one, and padded id batches for classification. A model file names the layers;
//! an `Embedding` may give `vocab = "auto"`, filled in here with the tokenizer's size, and the
//! model's per-example input shape is set here to `[seq_len]` (LM) or `[max length]`
//! (classifier). The saved checkpoint holds the resolved model file (`ember.model`), the
//! tokenizer (`ember.tokenizer`) and what the text needs (`ember.text`: task, lengths,
//! column names, class names), so `generate` and `predict` need nothing else.

use super::train::TrainArgs;
use clap::Args;
use ember_core::{Device, Tensor, no_grad};
use ember_nn::data;
use ember_nn::loss::Loss;
use ember_nn::metrics::Metric;
use ember_nn::model::{FitConfig, HostReads, Model};
use ember_nn::module::Module;
use ember_nn::optim::Optimizer;
use ember_nn::spec::{LayerSpec, ModelSpec, VocabSize};
use ember_nn::text::{self, CharTokenizer, TOKENIZER_KEY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The metadata key with the text settings of a saved text model (JSON).
pub const TEXT_KEY: &str = "ember.text";

/// The text flags of `ember train`.
#[derive(Args, Debug, Clone)]
pub struct TextFlags {
    /// `lm` (character language model on a text file) or `classify` (a CSV's text column
    /// against `--target`). Default: `lm` for a `.txt`/`.txt.gz` file, `classify` when
    /// `--text-column` is given.
    #[arg(long, value_name = "lm|classify")]
    pub task: Option<String>,
    /// Characters per language-model window (the model sees T, predicts the next T).
    #[arg(long, default_value_t = 100, value_parser = super::whole_number)]
    pub seq_len: usize,
    /// Leading characters of the corpus used for training.
    #[arg(long, default_value_t = 1_000_000, value_parser = super::whole_number)]
    pub train_chars: usize,
    /// Characters after the training part used for validation (0: none).
    #[arg(long, default_value_t = 100_000, value_parser = super::whole_number)]
    pub val_chars: usize,
    /// The CSV column holding the text to classify.
    #[arg(long, value_name = "COLUMN")]
    pub text_column: Option<String>,
    /// Texts longer than this many characters are cut (classification).
    #[arg(long, default_value_t = 512, value_parser = super::whole_number)]
    pub max_len: usize,
}

/// Whether `ember train` was asked for text: `--task`, `--text-column`, or a `.txt`/`.txt.gz`
/// data file.
pub fn is_text(args: &TrainArgs) -> bool {
    let f = &args.text;
    f.task.is_some()
        || f.text_column.is_some()
        || args
            .data
            .as_deref()
            .is_some_and(|d| d.ends_with(".txt") || d.ends_with(".txt.gz"))
}

/// Fills `vocab = "auto"` of every Embedding with `vocab`, `units = "auto"` of every Dense
/// with `outputs`, and sets the input shape.
fn resolve(spec: &mut ModelSpec, vocab: usize, outputs: usize, input_len: usize) {
    spec.input_shape = vec![input_len];
    for layer in &mut spec.layers {
        let (v, n) = match layer {
            LayerSpec::Embedding { vocab: v, .. } => (v, vocab),
            LayerSpec::Dense { units: v, .. } => (v, outputs),
            _ => continue,
        };
        if matches!(v, VocabSize::Auto(_)) {
            *v = VocabSize::Fixed(n);
        }
    }
}

/// The optimizer: `--optimizer`/`--lr` over the model file's.
fn optimizer(args: &TrainArgs, spec: &ModelSpec) -> Result<Optimizer, String> {
    let mut opt = match (&args.model.optimizer, &spec.optimizer) {
        (Some(name), Some(file)) if *name == file.name => {
            spec.optimizer().map_err(|e| format!("--model: {e}"))?
        }
        (Some(name), _) => Optimizer::by_name(name).map_err(|e| e.to_string())?,
        (None, _) => spec.optimizer().map_err(|e| format!("--model: {e}"))?,
    };
    if let Some(lr) = args.model.lr {
        opt = opt.with_lr(lr);
    }
    Ok(opt)
}

/// `ember train` on text (called by `train::run` when [`is_text`]).
pub fn train(args: &TrainArgs, spec: Option<ModelSpec>, device: Device) -> Result<(), String> {
    let Some(spec) = spec else {
        return Err(
            "text training needs a model file: --model examples/models/char_bigram.toml (a \
             language model) or examples/models/verse_classifier.toml (a classifier)"
                .into(),
        );
    };
    let Some(data) = args.data.as_deref() else {
        return Err("text training needs --data (a .txt/.txt.gz corpus or a CSV)".into());
    };
    let task = match (&args.text.task, &args.text.text_column) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => "classify".into(),
        (None, None) => "lm".into(),
    };
    match task.as_str() {
        "lm" => train_lm(args, spec, Path::new(data), device),
        "classify" => train_classifier(args, spec, Path::new(data), device),
        other => Err(format!(
            "--task: unknown task '{other}' (expected lm or classify)"
        )),
    }
}

/// Prints one epoch's line, as `fit` does with `verbose`.
fn fit_config(args: &TrainArgs, epoch: usize, validation_split: f64) -> FitConfig {
    FitConfig {
        epochs: epoch + 1,
        initial_epoch: epoch,
        batch_size: args.model.batch_size(),
        validation_split,
        shuffle: true,
        seed: args.model.seed,
        verbose: 0,
        callbacks: Vec::new(),
        host_reads: HostReads::Auto,
        ..FitConfig::default()
    }
}

fn train_lm(
    args: &TrainArgs,
    mut spec: ModelSpec,
    path: &Path,
    device: Device,
) -> Result<(), String> {
    let f = &args.text;
    let corpus = text::read_text(path).map_err(|e| format!("--data {e}"))?;
    let d = text::char_lm_data(&corpus, f.train_chars, f.val_chars, f.seq_len)
        .map_err(|e| format!("--data {}: {e}", path.display()))?;
    let vocab = d.tokenizer.vocab_size();
    resolve(&mut spec, vocab, vocab, f.seq_len);
    let net = spec
        .build(args.model.seed, device)
        .map_err(|e| format!("--model: {e}"))?;
    let out = spec.output_shape(&net).map_err(|e| e.to_string())?;
    if out != [f.seq_len, vocab] {
        return Err(format!(
            "--model: a character language model must output [steps, vocabulary] = [{}, {vocab}] \
             per example (the vocabulary: {} characters of the training text + padding + \
             unknown), got {out:?}; set the last Dense's units to \"auto\" (or {vocab})",
            f.seq_len,
            vocab - 2
        ));
    }
    if let Some(l) = spec.loss().map_err(|e| e.to_string())?
        && l != Loss::CrossEntropy
    {
        return Err(format!(
            "--model: a language model trains with cross_entropy on logits, not {}",
            l.name()
        ));
    }
    let mut model = net.compile(
        optimizer(args, &spec)?,
        Loss::CrossEntropy,
        &[Metric::BitsPerChar],
    );
    model.precision = args.model.precision()?;
    model.metadata.insert("ember.model".into(), spec.to_json());
    model
        .metadata
        .insert(TOKENIZER_KEY.into(), d.tokenizer.to_json());
    model.metadata.insert(
        TEXT_KEY.into(),
        json!({"task": "lm", "seq_len": f.seq_len}).to_string(),
    );
    let to_dev = |t: &Tensor| t.to_device(device).map_err(|e| e.to_string());
    let (x, y) = (to_dev(&d.x_train)?, to_dev(&d.y_train)?);
    let val = match &d.val {
        Some((xv, yv)) => Some((to_dev(xv)?, to_dev(yv)?)),
        None => None,
    };
    if !args.json {
        println!(
            "Data: {}: {} training windows of {} characters, {} validation; vocabulary {vocab} \
             ({} characters + padding + unknown)",
            path.display(),
            d.x_train.shape()[0],
            f.seq_len,
            d.val.as_ref().map_or(0, |v| v.0.shape()[0]),
            vocab - 2
        );
        print!(
            "{}",
            model
                .summary(&spec.input_shape)
                .map_err(|e| e.to_string())?
        );
    }
    run_epochs(args, &mut model, &x, &y, val.as_ref(), 0.0)?;
    save(args, &model)
}

/// Trains epoch by epoch, evaluating on `val` after each, and prints the epoch lines.
fn run_epochs(
    args: &TrainArgs,
    model: &mut Model,
    x: &Tensor,
    y: &Tensor,
    val: Option<&(Tensor, Tensor)>,
    validation_split: f64,
) -> Result<(), String> {
    let epochs = args.model.epochs();
    let started = Instant::now();
    let mut windows = 0usize;
    for epoch in 0..epochs {
        let t0 = Instant::now();
        let h = model
            .fit(x, y, fit_config(args, epoch, validation_split))
            .map_err(|e| e.to_string())?;
        let Some(mut logs) = h.epochs.last().cloned() else {
            return Err("training ran no epoch".into());
        };
        if let Some((xv, yv)) = val {
            let e = model
                .evaluate(xv, yv, args.model.batch_size())
                .map_err(|e| e.to_string())?;
            logs.val_loss = Some(e.loss);
            logs.val_metrics = e.metrics;
        }
        logs.seconds = t0.elapsed().as_secs_f64();
        windows += x.shape()[0];
        if args.json {
            let mut o = serde_json::Map::new();
            o.insert("epoch".into(), json!(logs.epoch));
            o.insert("loss".into(), json!(logs.loss));
            for (n, v) in &logs.metrics {
                o.insert(n.clone(), json!(v));
            }
            if let Some(v) = logs.val_loss {
                o.insert("val_loss".into(), json!(v));
            }
            for (n, v) in &logs.val_metrics {
                o.insert(format!("val_{n}"), json!(v));
            }
            o.insert("seconds".into(), json!(logs.seconds));
            println!("{}", serde_json::Value::Object(o));
        } else {
            println!("Epoch {}/{} - {}", epoch + 1, epochs, logs.line());
        }
    }
    if !args.json {
        let s = started.elapsed().as_secs_f64();
        println!(
            "Trained {epochs} epochs in {s:.2} s: {:.0} examples/s (validation included)",
            windows as f64 / s.max(1e-9)
        );
    }
    Ok(())
}

fn save(args: &TrainArgs, model: &Model) -> Result<(), String> {
    if let Some(path) = &args.save {
        model.save(path).map_err(|e| format!("--save: {e}"))?;
        if !args.json {
            println!(
                "Saved the model, its tokenizer and optimizer state to {}",
                path.display()
            );
        }
    }
    Ok(())
}

fn train_classifier(
    args: &TrainArgs,
    mut spec: ModelSpec,
    path: &Path,
    device: Device,
) -> Result<(), String> {
    let f = &args.text;
    let Some(text_column) = f.text_column.as_deref() else {
        return Err("--task classify needs --text-column (the CSV column holding the text)".into());
    };
    let Some(target) = args.target.as_deref() else {
        return Err("--task classify needs --target (the CSV column holding the class)".into());
    };
    if f.max_len == 0 {
        return Err("--max-len must be at least 1".into());
    }
    let table =
        text::load_text_csv(path, text_column, Some(target)).map_err(|e| format!("--data {e}"))?;
    let classes = table.classes.len();
    if classes < 2 {
        return Err(format!(
            "--target {target}: only {classes} class in {}; a classifier needs two or more",
            path.display()
        ));
    }
    let (trainval, test) =
        data::stratified_split(&table.labels, args.model.test_split, args.model.seed)
            .map_err(|e| e.to_string())?;
    let pick =
        |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| table.texts[i].clone()).collect() };
    let train_texts = pick(&trainval);
    let tokenizer = CharTokenizer::fit(&train_texts.concat())
        .map_err(|e| format!("--data {}: {e}", path.display()))?;
    let longest = train_texts
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0);
    let len = longest.min(f.max_len).max(1);
    let vocab = tokenizer.vocab_size();
    resolve(&mut spec, vocab, classes, len);
    let net = spec
        .build(args.model.seed, device)
        .map_err(|e| format!("--model: {e}"))?;
    let out = spec.output_shape(&net).map_err(|e| e.to_string())?;
    let width: usize = out.iter().product();
    let loss = ember_nn::spec::loss_or_default(&spec, width).map_err(|e| e.to_string())?;
    let binary = matches!(
        loss,
        Loss::BinaryCrossEntropy | Loss::BinaryCrossEntropyWithLogits
    );
    let fits = out.len() == 1
        && if binary {
            width == 1 && classes == 2
        } else {
            width == classes
        };
    if !fits {
        return Err(format!(
            "--model: the output shape {out:?} does not fit {} for {classes} classes (one \
             output for two classes with binary cross-entropy, one per class otherwise)",
            loss.name()
        ));
    }
    let mut model = net.compile(optimizer(args, &spec)?, loss, &[Metric::Accuracy]);
    model.precision = args.model.precision()?;
    model.positive_class = args.positive_class;
    model.metadata.insert("ember.model".into(), spec.to_json());
    model
        .metadata
        .insert(TOKENIZER_KEY.into(), tokenizer.to_json());
    model
        .metadata
        .insert("ember.classes".into(), classes.to_string());
    model.metadata.insert(
        TEXT_KEY.into(),
        json!({
            "task": "classify",
            "max_len": len,
            "text_column": text_column,
            "target": target,
            "class_names": table.classes,
        })
        .to_string(),
    );
    let xy = |idx: &[usize]| -> Result<(Tensor, Tensor), String> {
        let x = text::encode_fixed(&tokenizer, &pick(idx), len).map_err(|e| e.to_string())?;
        let labels: Vec<f32> = idx.iter().map(|&i| table.labels[i] as f32).collect();
        let n = labels.len();
        let y = if binary {
            Tensor::from_vec(labels, [n, 1], Device::Cpu)
        } else {
            Tensor::from_vec(labels, [n], Device::Cpu)
        }
        .map_err(|e| e.to_string())?;
        Ok((
            x.to_device(device).map_err(|e| e.to_string())?,
            y.to_device(device).map_err(|e| e.to_string())?,
        ))
    };
    let (x, y) = xy(&trainval)?;
    if !args.json {
        println!(
            "Data: {}: {} rows, text '{text_column}' cut/padded to {len} characters, {classes} \
             classes of '{target}' ({}); train+validation {} / test {}; vocabulary {vocab}",
            path.display(),
            table.texts.len(),
            table.classes.join(", "),
            trainval.len(),
            test.len()
        );
        print!(
            "{}",
            model
                .summary(&spec.input_shape)
                .map_err(|e| e.to_string())?
        );
    }
    run_epochs(
        args,
        &mut model,
        &x,
        &y,
        None,
        args.model.validation_split(),
    )?;
    if !test.is_empty() {
        let (xt, yt) = xy(&test)?;
        let e = model
            .evaluate(&xt, &yt, args.model.batch_size())
            .map_err(|e| e.to_string())?;
        let acc = e.get("accuracy").unwrap_or(f64::NAN);
        if args.json {
            println!(
                "{}",
                json!({"test_loss": e.loss, "test_accuracy": acc, "test_rows": test.len()})
            );
        } else {
            println!(
                "Test ({} rows): loss {:.4}, accuracy {:.4}",
                test.len(),
                e.loss,
                acc
            );
        }
    }
    save(args, &model)
}

/// Arguments of `ember generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A language model saved by `ember train --task lm --save`.
    #[arg(long, value_name = "PATH.safetensors")]
    pub model: PathBuf,
    /// The text to continue (every character must be in the model's vocabulary).
    #[arg(long)]
    pub prompt: String,
    /// Characters to generate.
    #[arg(long, default_value_t = 300, value_parser = super::whole_number)]
    pub length: usize,
    /// Sampling temperature: softmax(logits / temperature); 0 picks the most likely character.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Seed of the sampling (the same seed gives the same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A saved text model: the model, its tokenizer and its text settings.
fn load_text_model(path: &Path) -> Result<(Model, CharTokenizer, serde_json::Value), String> {
    let shown = path.display();
    let (model, _spec, meta) =
        ember_nn::spec::load_trained(path).map_err(|e| format!("--model {e}"))?;
    let tok = meta.get(TOKENIZER_KEY).ok_or_else(|| {
        format!("--model {shown}: no '{TOKENIZER_KEY}' in its metadata: not a text model saved by `ember train` on text")
    })?;
    let tok = CharTokenizer::from_json(tok).map_err(|e| format!("--model {shown}: {e}"))?;
    let settings: serde_json::Value = meta
        .get(TEXT_KEY)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| format!("--model {shown}: no valid '{TEXT_KEY}' in its metadata"))?;
    Ok((model, tok, settings))
}

/// `ember generate`: continues the prompt one character at a time.
///
/// Each step runs the model on the last `seq_len` characters (all of them while the text is
/// shorter) from a fresh state, as it was trained (every training window started from a zero
/// state), and samples the next character from softmax(logits / temperature) at the last
/// position; the padding and unknown ids are never sampled. Temperature 0 takes the argmax.
/// The sampling generator is seeded with `--seed`, so a seed fixes the text.
pub fn run_generate(args: GenerateArgs) -> Result<(), String> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        return Err(format!(
            "--temperature must be a finite number ≥ 0, got {}",
            args.temperature
        ));
    }
    let (model, tok, settings) = load_text_model(&args.model)?;
    if settings.get("task").and_then(|t| t.as_str()) != Some("lm") {
        return Err(format!(
            "--model {}: not a language model (trained with --task lm)",
            args.model.display()
        ));
    }
    let seq_len = settings
        .get("seq_len")
        .and_then(|v| v.as_u64())
        .filter(|&v| v > 0)
        .ok_or_else(|| {
            format!(
                "--model {}: {TEXT_KEY} has no seq_len",
                args.model.display()
            )
        })? as usize;
    if args.prompt.is_empty() {
        return Err("--prompt is empty: give at least one character to continue".into());
    }
    let mut ids = tok
        .encode_strict(&args.prompt)
        .map_err(|e| format!("--prompt: {e}"))?;
    let start = ids.len();
    let mut rng = StdRng::seed_from_u64(args.seed);
    for _ in 0..args.length {
        let ctx = &ids[ids.len().saturating_sub(seq_len)..];
        let x = Tensor::from_vec(
            ctx.iter().map(|&i| i as f32).collect::<Vec<_>>(),
            [1, ctx.len()],
            Device::Cpu,
        )
        .map_err(|e| e.to_string())?;
        let out = no_grad(|| model.network.forward(&x, false)).map_err(|e| e.to_string())?;
        let v = *out.shape().last().unwrap_or(&0);
        let all = out.to_vec::<f64>().map_err(|e| e.to_string())?;
        let Some(logits) = all
            .get(all.len().saturating_sub(v)..)
            .filter(|l| l.len() > 2)
        else {
            return Err(format!(
                "the model's output {:?} has no logits per character",
                out.shape()
            ));
        };
        ids.push(sample(logits, args.temperature, &mut rng));
    }
    println!("{}{}", args.prompt, tok.decode(&ids[start..]));
    Ok(())
}

/// The next id from `logits` (ids 0 and 1, padding and unknown, excluded).
fn sample(logits: &[f64], temperature: f64, rng: &mut StdRng) -> usize {
    let cand = &logits[2..];
    let best = cand
        .iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > cand[b] { i } else { b });
    if temperature == 0.0 {
        return best + 2;
    }
    let m = cand[best];
    let w: Vec<f64> = cand
        .iter()
        .map(|&z| ((z - m) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, &wi) in w.iter().enumerate() {
        if r < wi {
            return i + 2;
        }
        r -= wi;
    }
    best + 2
}

/// `ember predict` for a text classifier: the class of each row of a CSV's text column.
/// Returns `None` when the checkpoint is not a text model (the caller goes on as before).
pub fn predict(model_path: &Path, data: &str, batch_size: usize) -> Result<Option<()>, String> {
    let meta =
        ember_nn::checkpoint::read_metadata(model_path).map_err(|e| format!("--model {e}"))?;
    if !meta.contains_key(TEXT_KEY) {
        return Ok(None);
    }
    let (model, tok, settings) = load_text_model(model_path)?;
    if settings.get("task").and_then(|t| t.as_str()) != Some("classify") {
        return Err(format!(
            "--model {}: a language model; use `ember generate`",
            model_path.display()
        ));
    }
    let col = settings
        .get("text_column")
        .and_then(|v| v.as_str())
        .unwrap_or("text")
        .to_string();
    let len = settings
        .get("max_len")
        .and_then(|v| v.as_u64())
        .unwrap_or(1)
        .max(1) as usize;
    let names: Vec<String> = settings
        .get("class_names")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let table =
        text::load_text_csv(Path::new(data), &col, None).map_err(|e| format!("--data {e}"))?;
    let x = text::encode_fixed(&tok, &table.texts, len).map_err(|e| e.to_string())?;
    let out = model.predict(&x, batch_size).map_err(|e| e.to_string())?;
    let rows = table.texts.len();
    let cols = out.elem_count() / rows.max(1);
    let probs = model.probabilities(&out.to_vec::<f64>().map_err(|e| e.to_string())?, cols);
    let classes = ember_nn::metrics::predicted_classes(&probs, cols);
    println!("row,class,name,probability");
    for (r, (&c, row)) in classes.iter().zip(probs.chunks(cols.max(1))).enumerate() {
        let p = if cols == 1 {
            if c == 1 { row[0] } else { 1.0 - row[0] }
        } else {
            row.get(c).copied().unwrap_or(f64::NAN)
        };
        let name = names.get(c).map_or("", String::as_str);
        println!("{r},{c},{name},{p:.6}");
    }
    Ok(Some(()))
}
