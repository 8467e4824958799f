//! Checkpoints: round trip of weights and optimizer state, resumed training equal to
//! uninterrupted training, atomic writes, and one loader test per kind of mismatch.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::checkpoint;
use ember_nn::layers::DenseOptions;
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::PathBuf;

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-nn-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn model(hidden: &[usize], seed: u64, dtype: DType) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new();
    let mut width = 3;
    for &h in hidden {
        let opts = DenseOptions {
            activation: Activation::Relu,
            dtype,
            ..DenseOptions::default()
        };
        net.push(Dense::with_options(width, h, opts, &mut rng).unwrap());
        width = h;
    }
    let opts = DenseOptions {
        activation: Activation::Sigmoid,
        dtype,
        ..DenseOptions::default()
    };
    net.push(Dense::with_options(width, 1, opts, &mut rng).unwrap());
    net.compile(
        Optimizer::adam().with_lr(0.01),
        Loss::BinaryCrossEntropy,
        &[Metric::Accuracy],
    )
}

fn data() -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..60)
        .map(|i| ((i * 13) % 17) as f32 / 17.0 - 0.5)
        .collect();
    let y: Vec<f32> = x
        .chunks(3)
        .map(|r| f32::from(u8::from(r[0] + r[1] > 0.0)))
        .collect();
    (
        Tensor::from_vec(x, (20, 3), Device::Cpu).unwrap(),
        Tensor::from_vec(y, (20, 1), Device::Cpu).unwrap(),
    )
}

fn cfg(initial_epoch: usize, epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        initial_epoch,
        batch_size: 6,
        verbose: 0,
        seed: 4,
        ..FitConfig::default()
    }
}

fn bits(m: &Model) -> Vec<(String, Vec<u32>)> {
    let mut all = m.network.named_parameters();
    all.extend(m.optimizer.state_tensors());
    all.iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn round_trip_restores_weights_and_optimizer_state() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("m.safetensors");
    let (x, y) = data();
    let mut a = model(&[4], 0, DType::F32);
    a.fit(&x, &y, cfg(0, 2)).unwrap();
    a.save(&path).unwrap();
    let mut b = model(&[4], 99, DType::F32); // different initial weights
    let report = b.load(&path).unwrap();
    assert_eq!(report.tensors, 4);
    assert_eq!(report.optimizer_iterations, Some(a.optimizer.iterations()));
    assert_eq!(b.optimizer.iterations(), a.optimizer.iterations());
    assert_eq!(bits(&a), bits(&b));
    // PyTorch nn.Linear names and layout.
    let names: Vec<String> = bits(&a).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"layers.0.weight".to_string())
            && names.contains(&"optimizer.layers.1.bias.v".to_string())
    );
    // No temporary file is left behind.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let dir = temp_dir("resume");
    let path = dir.join("half.safetensors");
    let (x, y) = data();
    let mut straight = model(&[4], 0, DType::F32);
    straight.fit(&x, &y, cfg(0, 4)).unwrap();

    let mut first = model(&[4], 0, DType::F32);
    first.fit(&x, &y, cfg(0, 2)).unwrap();
    first.save(&path).unwrap();
    let mut resumed = model(&[4], 123, DType::F32);
    resumed.load(&path).unwrap();
    resumed.fit(&x, &y, cfg(2, 4)).unwrap();
    assert_eq!(bits(&straight), bits(&resumed));
}

#[test]
fn saving_again_replaces_the_file_atomically() {
    let dir = temp_dir("atomic");
    let path = dir.join("m.safetensors");
    let (x, y) = data();
    let mut a = model(&[4], 0, DType::F32);
    a.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    a.fit(&x, &y, cfg(0, 1)).unwrap();
    a.save(&path).unwrap();
    assert_ne!(before, std::fs::read(&path).unwrap());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // A directory that does not exist is an error naming the path, not a panic.
    let bad = dir.join("missing").join("m.safetensors");
    assert!(a.save(&bad).unwrap_err().to_string().contains("missing"));
}

#[test]
fn loading_reports_a_missing_tensor() {
    let dir = temp_dir("missing");
    let path = dir.join("m.safetensors");
    model(&[4], 0, DType::F32).save(&path).unwrap();
    let err = model(&[4, 4], 0, DType::F32)
        .load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing tensor 'layers.2.weight'"), "{err}");
}

#[test]
fn loading_reports_an_unexpected_tensor() {
    let dir = temp_dir("unexpected");
    let path = dir.join("m.safetensors");
    model(&[4, 4], 0, DType::F32).save(&path).unwrap();
    let err = model(&[4], 0, DType::F32)
        .load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected tensor 'layers.2."), "{err}");
}

#[test]
fn loading_reports_a_wrong_shape_and_changes_nothing() {
    let dir = temp_dir("shape");
    let path = dir.join("m.safetensors");
    model(&[5], 0, DType::F32).save(&path).unwrap();
    let mut target = model(&[4], 7, DType::F32);
    let before = bits(&target);
    let err = target.load(&path).unwrap_err().to_string();
    assert!(
        err.contains("'layers.0.weight' has shape [5, 3]") && err.contains("expects [4, 3]"),
        "{err}"
    );
    assert_eq!(before, bits(&target));
}

#[test]
fn loading_reports_a_wrong_dtype() {
    let dir = temp_dir("dtype");
    let path = dir.join("m.safetensors");
    checkpoint::save(&path, &model(&[4], 0, DType::F64).network, None).unwrap();
    let err = checkpoint::load(&path, &model(&[4], 0, DType::F32).network, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'layers.0.weight' has dtype F64") && err.contains("expects f32"),
        "{err}"
    );
}

#[test]
fn loading_reports_another_optimizers_state_and_bad_files() {
    let dir = temp_dir("other");
    let path = dir.join("m.safetensors");
    let (x, y) = data();
    let mut a = model(&[4], 0, DType::F32);
    a.fit(&x, &y, cfg(0, 1)).unwrap();
    a.save(&path).unwrap();
    let mut b = model(&[4], 0, DType::F32);
    b.optimizer = Optimizer::sgd();
    let err = b.load(&path).unwrap_err().to_string();
    assert!(err.contains("'adam'") && err.contains("'sgd'"), "{err}");
    // Weights alone still load into any network of the same shape.
    assert!(checkpoint::load(&path, &b.network, None).is_ok());
    // Garbage and missing files are errors, not panics.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    assert!(
        b.load(&junk)
            .unwrap_err()
            .to_string()
            .contains("junk.safetensors")
    );
    assert!(b.load(&dir.join("nope.safetensors")).is_err());
}

/// A file that is not a safetensors file: the safetensors crate's error is kept as `source()`;
/// a missing file keeps the operating system's error.
#[test]
fn checkpoint_errors_keep_the_underlying_error() {
    use std::error::Error;
    let dir = temp_dir("source");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let net = model(&[3], 0, DType::F32).network;
    let err = checkpoint::load(&garbage, &net, None).unwrap_err();
    assert!(matches!(err, NnError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
    assert!(
        err.source()
            .and_then(|s| s.downcast_ref::<safetensors::SafeTensorError>())
            .is_some(),
        "{err:?}"
    );
    let err = checkpoint::load(&dir.join("missing.safetensors"), &net, None).unwrap_err();
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

#[test]
fn a_save_removes_temp_files_left_by_killed_saves_and_nothing_else() {
    let dir = temp_dir("stale");
    let target = dir.join("m.safetensors");
    // Left by a save killed mid-write: a PID above Linux's largest (2^22) is never alive.
    let stale = dir.join(".m.safetensors.tmp-4999999");
    // Not ours to remove: a live process's temp file (our parent's PID, alive while we run),
    // another checkpoint's, and names that only look alike.
    let parent = std::os::unix::process::parent_id();
    let live = dir.join(format!(".m.safetensors.tmp-{parent}"));
    let other = dir.join(".n.safetensors.tmp-4999999");
    let odd = [
        dir.join(".m.safetensors.tmp-12ab"),
        dir.join(".m.safetensors.tmp-"),
        dir.join("m.safetensors.tmp-4999999"),
    ];
    for p in [&stale, &live, &other].into_iter().chain(&odd) {
        std::fs::write(p, b"partial").unwrap();
    }
    model(&[4], 0, DType::F32).save(&target).unwrap();
    assert!(target.exists());
    assert!(!stale.exists(), "the stale temp file is still there");
    for p in [&live, &other].into_iter().chain(&odd) {
        assert!(p.exists(), "{} was removed", p.display());
    }
}
