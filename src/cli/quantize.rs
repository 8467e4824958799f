//! `ember quantize`: a model trained by `ember train --save` turned into an int8 model file.
//!
//! The Dense layers are quantized dynamically (`ember_nn::quantize`: weights symmetric per
//! output channel to i8, activations per batch to u8, the product in the int8 GEMM), and the
//! result is saved with the f32 checkpoint's metadata (model file, input scaling, classes), so
//! `ember evaluate` and `ember predict` take it exactly as they take the f32 file. Only networks
//! of Dense, activation, Flatten, Softmax and Dropout layers are quantized today; any other
//! layer (a convolution, BatchNorm) is refused with an error naming it.

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
}

/// Runs `ember quantize`.
pub fn run(args: QuantizeArgs) -> Result<(), String> {
    if args.out == args.model {
        return Err("--out must differ from --model (the f32 checkpoint is kept)".into());
    }
    let (model, _spec, meta) =
        ember_nn::spec::load_trained(&args.model).map_err(|e| format!("--model {e}"))?;
    if meta.contains_key("ember.quantized") {
        return Err(format!(
            "--model {}: already quantized",
            args.model.display()
        ));
    }
    let q = ember_nn::quantize::quantize_dynamic(&model.network)
        .map_err(|e| format!("--model {}: {e}", args.model.display()))?;
    let keep: std::collections::BTreeMap<String, String> = meta
        .into_iter()
        .filter(|(k, _)| k.starts_with("ember.") && k != "ember.layers")
        .collect();
    q.save_with_metadata(&args.out, &keep)
        .map_err(|e| format!("--out {e}"))?;
    let before = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "quantized {} → {} (dynamic int8 Dense layers; {} → {} bytes)",
        args.model.display(),
        args.out.display(),
        before,
        after
    );
    Ok(())
}
