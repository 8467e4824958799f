//! Sequence models built from text pieces: the Embedding spec (`vocab = "auto"` refused
//! outside the text pipeline), the mask of `mask_zero` reaching GlobalAveragePooling1D through a per-step
//! Dense, cross-entropy on `[N, T, C]` logits against a naive f64 reference, bits per
//! character equal to the loss over ln 2, and per-position accuracy.

use ember_nn::attention::GlobalAveragePooling1D;
use ember_nn::embedding::{Embedding, EmbeddingOptions};
use ember_nn::loss::Loss;
use ember_nn::metrics::Metric;
use ember_nn::module::Module;
use ember_nn::optim::Optimizer;
use ember_nn::prelude::*;
use ember_nn::spec::ModelSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;

const SPEC: &str = r#"
input_shape = [5]
[[layers]]
type = "Embedding"
vocab = VOCAB
dim = 4
mask_zero = true
[[layers]]
type = "Dense"
units = 3
[[layers]]
type = "GlobalAveragePooling1D"
[[layers]]
type = "Dense"
units = UNITS
"#;

#[test]
fn embedding_spec_builds_and_auto_is_refused_outside_text() {
    let spec = ModelSpec::parse(&SPEC.replace("VOCAB", "7").replace("UNITS", "2"), "t").unwrap();
    let net = spec.build(0, Device::Cpu).unwrap();
    assert_eq!(spec.output_shape(&net).unwrap(), [2]);
    // The spec survives its JSON round trip (what checkpoints store).
    assert_eq!(ModelSpec::parse(&spec.to_json(), "json").unwrap(), spec);
    for (v, u) in [("\"auto\"", "2"), ("7", "\"auto\"")] {
        let auto = ModelSpec::parse(&SPEC.replace("VOCAB", v).replace("UNITS", u), "t").unwrap();
        let e = auto.build(0, Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("auto") && e.contains("text pipeline"), "{e}");
    }
    let e = ModelSpec::parse(
        &SPEC.replace("VOCAB", "\"many\"").replace("UNITS", "2"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("t:"), "{e}");
}

#[test]
fn padded_steps_change_nothing_through_the_mask() {
    let mut rng = StdRng::seed_from_u64(4);
    let opts = EmbeddingOptions {
        mask_zero: true,
        ..Default::default()
    };
    let net = Sequential::new()
        .add(Embedding::new(9, 4, opts, &mut rng).unwrap())
        .add(Dense::new(4, 3, Activation::Tanh, &mut rng).unwrap())
        .add(GlobalAveragePooling1D);
    let ids = |v: Vec<f32>| Tensor::from_vec(v, [1, 6], Device::Cpu).unwrap();
    let short = net
        .forward(&ids(vec![3.0, 5.0, 2.0, 0.0, 0.0, 0.0]), false)
        .unwrap();
    // The same real steps with padding of another length.
    let net2_in = Tensor::from_vec(vec![3.0f32, 5.0, 2.0], [1, 3], Device::Cpu).unwrap();
    let unpadded = net.forward(&net2_in, false).unwrap();
    let (a, b) = (
        short.to_vec::<f32>().unwrap(),
        unpadded.to_vec::<f32>().unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn sequence_cross_entropy_bpc_and_accuracy() {
    // Logits [2, 3, 4] and targets [2, 3] from fixed formulas.
    let (n, t, c) = (2usize, 3usize, 4usize);
    let logits: Vec<f64> = (0..n * t * c)
        .map(|i| (0.7 * i as f64 + 0.3).sin() * 2.0)
        .collect();
    let targets: Vec<f64> = (0..n * t).map(|i| ((i * 7 + 1) % c) as f64).collect();
    let out = Tensor::from_vec(logits.clone(), [n, t, c], Device::Cpu).unwrap();
    let y = Tensor::from_vec(targets.clone(), [n, t], Device::Cpu).unwrap();
    let loss = Loss::CrossEntropy
        .compute(&out, &y)
        .unwrap()
        .to_vec::<f64>()
        .unwrap()[0];
    // Naive reference: mean over all N·T positions of −log softmax at the target.
    let mut want = 0.0;
    let mut hits = 0;
    for p in 0..n * t {
        let row = &logits[p * c..(p + 1) * c];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        want -= row[targets[p] as usize] - m - z.ln();
        let arg = (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        hits += usize::from(arg == targets[p] as usize);
    }
    want /= (n * t) as f64;
    assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    // Wrong target shapes are errors naming the loss.
    let bad = Tensor::from_vec(vec![0.0f64; n], [n], Device::Cpu).unwrap();
    let e = Loss::CrossEntropy
        .compute(&out, &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence logits"), "{e}");

    // A model whose output is its input: evaluate reports bpc = loss / ln 2 and the accuracy
    // of every position.
    let model = Sequential::new().add(Flatten0).compile(
        Optimizer::adam(),
        Loss::CrossEntropy,
        &[Metric::Accuracy, Metric::BitsPerChar],
    );
    let e = model.evaluate(&out, &y, 1).unwrap();
    assert!((e.loss - want).abs() < 1e-12);
    let bpc = e.get("bpc").unwrap();
    assert!((bpc - want / std::f64::consts::LN_2).abs() < 1e-12, "{bpc}");
    let acc = e.get("accuracy").unwrap();
    assert!((acc - hits as f64 / (n * t) as f64).abs() < 1e-12, "{acc}");
    // Metric::compute from probabilities agrees.
    let probs = model.probabilities(&logits, c);
    let direct = Metric::BitsPerChar.compute(&probs, c, &targets, 1);
    assert!((direct - bpc).abs() < 1e-9, "{direct} vs {bpc}");
}

/// The identity, to evaluate fixed outputs.
struct Flatten0;
impl Module for Flatten0 {
    fn forward(&self, x: &Tensor, _training: bool) -> ember_nn::Result<Tensor> {
        Ok(x.clone())
    }
    fn kind(&self) -> &'static str {
        "Identity"
    }
}
