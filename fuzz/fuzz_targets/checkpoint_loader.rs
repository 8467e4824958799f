//! Fuzzes the safetensors checkpoint loader: `checkpoint::stored_optimizer`, then
//! `Model::load` (weights, buffers and Adam state) or `checkpoint::load` without optimizer,
//! into the small model of `ember_fuzz::small_model`, from a file holding the input.
//!
//! Input: byte 0 picks the call (with or without the optimizer); the rest is the file.
//! Oracle: no panic; a load that fails leaves every weight as it was (the loader promises to
//! check everything before it writes); a load that succeeds keeps every shape and dtype.
#![no_main]

use ember_fuzz::{Cursor, scratch_path, small_model};
use ember_nn::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let with_optimizer = c.byte().is_multiple_of(2);
    let path = scratch_path("model.safetensors");
    if std::fs::write(&path, c.rest()).is_err() {
        return;
    }
    let _ = checkpoint::stored_optimizer(&path);
    let mut model = small_model();
    let params = model.network.named_parameters();
    let before: Vec<(Vec<usize>, Vec<f32>)> = params
        .iter()
        .map(|(_, t)| (t.shape().to_vec(), t.to_vec::<f32>().expect("f32 weights")))
        .collect();
    let result = if with_optimizer {
        model.load(&path)
    } else {
        checkpoint::load(&path, &model.network, None)
    };
    for ((name, t), (shape, values)) in params.iter().zip(&before) {
        assert_eq!(t.shape(), shape.as_slice(), "{name}: shape changed");
        let now = t.to_vec::<f32>().expect("f32 weights");
        if result.is_err() {
            let same = now
                .iter()
                .zip(values)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name} changed although the load failed: {result:?}");
        }
    }
});
