//! `ember predict` and `ember evaluate`: a model trained by `ember train --save` applied to new
//! data, as the seed program's `model.predict` and `model.evaluate`.
//!
//! The checkpoint carries everything needed besides the weights (see `ember train`): the model
//! file as JSON (`ember.model`), the input scaling (`ember.scaling`) and the class count
//! (`ember.classes`). The network is rebuilt from the model file, the weights loaded by name
//! with every shape checked, and the data scaled exactly as the training data was.
//!
//! Data: a CSV with a header row (its label column, if present, is found with `--target`, or
//! as the one column beyond the model's inputs) or a folder of IDX files (`mnist`: the
//! repository's `data/mnist`, whose `t10k` pair is used).

use super::scaling::Scaling;
use super::train::{ReportOpts, image_folder, is_image_folder, load_idx_table, report_test};
use clap::Args;
use ember_core::{DType, Tensor};
use ember_nn::data::{self, LabelColumn, Table};
use ember_nn::loss::Loss;
use ember_nn::model::Model;
use ember_nn::spec::ModelSpec;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `ember predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `ember train --save` (it holds the model and its scaling).
    #[arg(long, value_name = "PATH.safetensors")]
    pub model: PathBuf,
    /// The examples: a CSV with a header row, or a folder of IDX files (`mnist`).
    #[arg(long, value_name = "PATH.csv|DIR|mnist")]
    pub data: String,
    /// Label column of the CSV, left out of the inputs (by name or 0-based index; default:
    /// the last column when the CSV has one column more than the model's inputs).
    #[arg(long, value_name = "COLUMN")]
    pub target: Option<String>,
    /// Output: `csv` (row, class, one probability per class) or `json` (one object per line).
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 256, value_parser = super::whole_number)]
    pub batch_size: usize,
}

/// Arguments of `ember evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A checkpoint written by `ember train --save`.
    #[arg(long, value_name = "PATH.safetensors")]
    pub model: PathBuf,
    /// Labelled examples: a CSV with a header row, or a folder of IDX files (`mnist`).
    #[arg(long, value_name = "PATH.csv|DIR|mnist")]
    pub data: String,
    /// Label column of the CSV (by name or 0-based index; default: the last column).
    #[arg(long, value_name = "COLUMN")]
    pub target: Option<String>,
    /// Class counted as positive by precision, recall, F1 and AUC (two-class data).
    #[arg(long, default_value_t = 1, value_parser = super::whole_number)]
    pub positive_class: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 256, value_parser = super::whole_number)]
    pub batch_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A trained model rebuilt from its checkpoint, with what its inputs need.
pub(crate) struct Trained {
    pub(crate) model: Model,
    pub(crate) spec: ModelSpec,
    scaling: Scaling,
    classes: usize,
}

/// Rebuilds the network from the checkpoint's model file and loads its weights.
pub(crate) fn load_trained(path: &Path) -> Result<Trained, String> {
    let shown = path.display();
    let (model, spec, meta) =
        ember_nn::spec::load_trained(path).map_err(|e| format!("--model {e}"))?;
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| format!("--model {shown}: no '{key}' in its metadata"))
    };
    let scaling = Scaling::from_json(get("ember.scaling")?, &shown.to_string())?;
    let classes: usize = get("ember.classes")?
        .parse()
        .map_err(|_| format!("--model {shown}: ember.classes is not a whole number"))?;
    Ok(Trained {
        model,
        spec,
        scaling,
        classes,
    })
}

/// The examples of `--data`, scaled as the model's training data was: a table whose features
/// are the model's inputs (labels as found, or zeros when the CSV has none) and whether labels
/// were present.
pub(crate) fn load_examples(
    data: &str,
    target: Option<&str>,
    t: &Trained,
) -> Result<(Table, bool), String> {
    let inputs: usize = t.spec.input_shape.iter().product();
    let (mut table, labelled, from_idx) = if is_image_folder(Some(data)) {
        (load_idx_table(&image_folder(data), "t10k")?, true, true)
    } else {
        let label = target.map(LabelColumn::parse).unwrap_or(LabelColumn::Last);
        let mut table =
            data::load_csv_as(Path::new(data), &label, DType::F32).map_err(|e| e.to_string())?;
        if target.is_none() && table.cols() + 1 == inputs {
            // No label column: the "label" read from the last column is an input.
            let d = table.cols();
            let mut features = Vec::with_capacity(table.rows() * inputs);
            for (row, &last) in table.features.chunks(d.max(1)).zip(&table.labels) {
                features.extend_from_slice(&row[..d]);
                features.push(last);
            }
            table.features = features;
            let name = std::mem::take(&mut table.label_name);
            table.feature_names.push(name);
            table.labels = vec![0.0; table.rows()];
            (table, false, false)
        } else {
            (table, true, false)
        }
    };
    if table.cols() != inputs {
        return Err(format!(
            "--data {data}: {} input columns, the model takes {inputs} (input_shape {:?})",
            table.cols(),
            t.spec.input_shape
        ));
    }
    t.scaling.apply(&mut table, from_idx)?;
    Ok((table, labelled))
}

/// The table's features as a batch of `input_shape`, and its labels in the form `loss` takes.
pub(crate) fn to_xy(
    table: &Table,
    input_shape: &[usize],
    loss: Loss,
) -> Result<(Tensor, Tensor), String> {
    let mut shape = vec![table.rows()];
    shape.extend(input_shape);
    let x = table
        .features_tensor(DType::F32)
        .and_then(|x| Ok(x.reshape(shape)?))
        .map_err(|e| e.to_string())?;
    let y = if matches!(
        loss,
        Loss::BinaryCrossEntropy | Loss::BinaryCrossEntropyWithLogits
    ) {
        table.labels_column(DType::F32)
    } else {
        table.labels_tensor(DType::F32)
    }
    .map_err(|e| e.to_string())?;
    Ok((x, y))
}

/// Runs `ember predict`: one line per example with the predicted class and the probabilities.
pub fn run_predict(args: PredictArgs) -> Result<(), String> {
    if !matches!(args.format.as_str(), "csv" | "json") {
        return Err(format!(
            "--format: unknown format '{}' (expected csv or json)",
            args.format
        ));
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if super::text::predict(&args.model, &args.data, args.batch_size)?.is_some() {
        return Ok(());
    }
    let t = load_trained(&args.model)?;
    let (table, _) = load_examples(&args.data, args.target.as_deref(), &t)?;
    if table.rows() == 0 {
        return Err(format!("--data {}: no rows", args.data));
    }
    let (x, _) = to_xy(&table, &t.spec.input_shape, t.model.loss)?;
    let out = t
        .model
        .predict(&x, args.batch_size)
        .map_err(|e| e.to_string())?;
    let cols = out.elem_count() / table.rows();
    let outputs = out.to_vec::<f64>().map_err(|e| e.to_string())?;
    let probs = t.model.probabilities(&outputs, cols);
    // One output is P(class 1) of a two-class model; more are one probability per class.
    let per_class = |row: &[f64]| -> Vec<f64> {
        if cols == 1 {
            vec![1.0 - row[0], row[0]]
        } else {
            row.to_vec()
        }
    };
    let shown_classes = if cols == 1 { 2 } else { cols };
    if args.format == "csv" {
        let head: Vec<String> = (0..shown_classes).map(|c| format!("p{c}")).collect();
        println!("row,class,{}", head.join(","));
    }
    for (i, row) in probs.chunks(cols.max(1)).enumerate() {
        let p = per_class(row);
        let class = p
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (c, &v)| {
                if v > best.1 { (c, v) } else { best }
            })
            .0;
        if args.format == "csv" {
            let ps: Vec<String> = p.iter().map(|v| format!("{v:.6}")).collect();
            println!("{i},{class},{}", ps.join(","));
        } else {
            println!("{}", json!({"row": i, "class": class, "probabilities": p}));
        }
    }
    Ok(())
}

/// Runs `ember evaluate`: loss, accuracy, precision, recall, F1, AUC and the confusion matrix
/// on labelled data, in the same form as `ember train`'s test report.
pub fn run_evaluate(args: EvaluateArgs) -> Result<(), String> {
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let mut t = load_trained(&args.model)?;
    let (table, labelled) = load_examples(&args.data, args.target.as_deref(), &t)?;
    if !labelled {
        return Err(format!(
            "--data {}: no label column (it has exactly the model's {} inputs); evaluate needs labels",
            args.data,
            table.cols()
        ));
    }
    table
        .check_class_labels(&args.data, t.classes)
        .map_err(|e| e.to_string())?;
    if t.classes == 2 && args.positive_class > 1 {
        return Err(format!(
            "--positive-class {} is not a class of two-class data (0 or 1)",
            args.positive_class
        ));
    }
    t.model.positive_class = args.positive_class;
    let opts = ReportOpts {
        json: args.json,
        test_split: 0.0,
        positive_class: args.positive_class,
        batch_size: args.batch_size,
    };
    let Trained {
        mut model,
        spec,
        classes,
        ..
    } = t;
    let loss = model.loss;
    let xy = |table: &Table| to_xy(table, &spec.input_shape, loss);
    report_test(&opts, &mut model, &table, xy, classes, &[], table.rows())
}
