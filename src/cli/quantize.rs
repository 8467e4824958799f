//! `ember quantize`: a model trained by `ember train --save` turned into an int8 model file.
//!
//! The Dense and Conv2d layers are quantized (`ember_nn::quantize`: weights symmetric per output channel
//! to i8, activations to u8, the product in the int8 GEMM): dynamically (each batch's own
//! activation range) by default, or statically with `--calibrate DATA` (each layer's input range
//! fixed once from the first `--calibrate-rows` rows of DATA, scaled as the training data was,
//! PyTorch's post-training static quantization). The
//! result is saved with the f32 checkpoint's metadata (model file, input scaling, classes), so
//! `ember evaluate` and `ember predict` take it exactly as they take the f32 file. Networks of
//! Dense, Conv2d (ungrouped), MaxPool2d, AvgPool2d, activation, Flatten, Softmax and Dropout
//! layers are quantized today; any other layer (BatchNorm, a recurrent layer, a grouped
//! convolution) is refused with an error naming it.

use clap::Args;
use std::path::PathBuf;

/// Arguments of `ember quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// A checkpoint written by `ember train --save`.
    #[arg(long, value_name = "PATH.safetensors")]
    pub model: PathBuf,
    /// Where to write the int8 model (written atomically; an existing file is replaced).
    #[arg(long, value_name = "PATH.safetensors")]
    pub out: PathBuf,
    /// Calibrate static activation ranges on these examples (a CSV with a header row, or an
    /// IDX folder such as `mnist`), instead of dynamic per-batch ranges.
    #[arg(long, value_name = "PATH.csv|DIR|mnist")]
    pub calibrate: Option<String>,
    /// Label column of the calibration CSV (as for `ember predict`).
    #[arg(long, value_name = "COLUMN")]
    pub target: Option<String>,
    /// Rows of the calibration data used (the first ones).
    #[arg(long, default_value_t = 512, value_parser = super::whole_number)]
    pub calibrate_rows: usize,
}

/// Runs `ember quantize`.
pub fn run(args: QuantizeArgs) -> Result<(), String> {
    if args.out == args.model {
        return Err("--out must differ from --model (the f32 checkpoint is kept)".into());
    }
    if args.calibrate_rows == 0 {
        return Err("--calibrate-rows must be at least 1".into());
    }
    let t = super::predict::load_trained(&args.model)?;
    let meta = t.model.metadata.clone();
    if meta.contains_key("ember.quantized") {
        return Err(format!(
            "--model {}: already quantized",
            args.model.display()
        ));
    }
    let shown = args.model.display();
    let (q, how) = match &args.calibrate {
        None => (
            ember_nn::quantize::quantize_dynamic(&t.model.network)
                .map_err(|e| format!("--model {shown}: {e}"))?,
            "dynamic".to_string(),
        ),
        Some(data) => {
            let (table, _) = super::predict::load_examples(data, args.target.as_deref(), &t)?;
            if table.rows() == 0 {
                return Err(format!("--calibrate {data}: no rows"));
            }
            let (x, _) = super::predict::to_xy(&table, &t.spec.input_shape, t.model.loss)?;
            let rows = args.calibrate_rows.min(table.rows());
            let x = x.narrow(0, 0, rows).map_err(|e| e.to_string())?;
            (
                ember_nn::quantize::quantize_static(&t.model.network, &x)
                    .map_err(|e| format!("--model {shown}: {e}"))?,
                format!("static, calibrated on {rows} rows of {data}"),
            )
        }
    };
    let keep: std::collections::BTreeMap<String, String> = meta
        .into_iter()
        .filter(|(k, _)| k.starts_with("ember.") && k != "ember.layers")
        .collect();
    q.save_with_metadata(&args.out, &keep)
        .map_err(|e| format!("--out {e}"))?;
    let before = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "quantized {} → {} (int8 Dense and Conv2d layers, {how}; {} → {} bytes)",
        args.model.display(),
        args.out.display(),
        before,
        after
    );
    Ok(())
}
