//! Recurrent layers (SimpleRNN, LSTM, GRU) against PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU`
//! (outputs, final states and gradients; `tests/goldens/rnn.txt` from
//! `scripts/goldens/rnn.py`, whose doc gives the input formulas rebuilt here), loading
//! PyTorch's parameter names, checkpoint round trips, masks through `Sequential`, and errors.

mod common;

use common::{Goldens, parse_goldens};
use ember_core::{Activation, CellKind};
use ember_core::{DType, Device, RnnActivation, Tensor};
use ember_nn::checkpoint;
use ember_nn::layers::Dense;
use ember_nn::module::Module;
use ember_nn::recurrent::{Recurrent, RecurrentOptions};
use ember_nn::sequential::Sequential;
use rand::SeedableRng;
use rand::rngs::StdRng;

const GOLDENS: &str = include_str!("goldens/rnn.txt");
const N: usize = 2;
const T: usize = 5;
const F: usize = 3;
const H: usize = 4;

/// The script's formula: element i of seed s is sin(0.37·i + s)·scale, rounded to f32.
fn fill(shape: &[usize], seed: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((0.37 * i as f64 + seed).sin() * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// gy[i] = cos(0.11·i), rounded to f32.
fn upstream(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (0.11 * i as f64).cos() as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// The golden file, parsed.
fn goldens() -> Goldens {
    parse_goldens(GOLDENS)
}

fn compare(g: &Goldens, case: &str, name: &str, t: &Tensor) {
    let (shape, want) = g
        .get(&(case.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no golden {case} {name}"));
    assert_eq!(t.shape(), shape.as_slice(), "{case} {name}: shape");
    let got = t.to_vec::<f32>().unwrap();
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 2e-5 * b.abs().max(1.0),
            "{case} {name}[{i}]: ember {a}, PyTorch {b}"
        );
    }
}

/// One golden case: (name, cell, bidirectional, layers, lengths of a masked batch).
type GoldenCase = (&'static str, CellKind, bool, usize, Option<[usize; 2]>);

const CASES: [GoldenCase; 7] = [
    (
        "rnn_tanh",
        CellKind::Rnn(RnnActivation::Tanh),
        false,
        1,
        None,
    ),
    (
        "rnn_relu",
        CellKind::Rnn(RnnActivation::Relu),
        false,
        1,
        None,
    ),
    ("lstm", CellKind::Lstm, false, 1, None),
    ("gru", CellKind::Gru, false, 1, None),
    ("lstm_bi2", CellKind::Lstm, true, 2, None),
    ("gru_bi_masked", CellKind::Gru, true, 1, Some([5, 3])),
    ("lstm_masked", CellKind::Lstm, false, 1, Some([2, 5])),
];

fn layer(kind: CellKind, bidirectional: bool, layers: usize, seq: bool) -> Recurrent {
    let opts = RecurrentOptions {
        return_sequences: seq,
        bidirectional,
        num_layers: layers,
        ..RecurrentOptions::default()
    };
    let l = Recurrent::new(kind, F, H, opts, &mut StdRng::seed_from_u64(1)).unwrap();
    // PyTorch's j-th named parameter: seed 10 + j, scale 0.5; loaded by name.
    let named: Vec<(String, Tensor)> = l
        .parameters()
        .iter()
        .enumerate()
        .map(|(j, (name, p))| (name.clone(), fill(p.shape(), 10.0 + j as f64, 0.5)))
        .collect();
    l.load_named(&named).unwrap();
    l
}

#[test]
fn layers_match_pytorch() {
    let g = goldens();
    for (case, kind, bi, layers, lengths) in CASES {
        let d = if bi { 2 } else { 1 };
        let x = fill(&[N, T, F], 1.0, 0.8).as_variable();
        let mask = lengths.map(|ls| {
            let v: Vec<f32> = (0..N * T)
                .map(|i| if i % T < ls[i / T] { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_vec(v, [N, T], Device::Cpu).unwrap()
        });
        let seq = layer(kind, bi, layers, true);
        let (out, m) = seq.forward_masked(&x, mask.as_ref(), true).unwrap();
        assert_eq!(
            m.is_some(),
            mask.is_some(),
            "{case}: the mask is passed on with sequences"
        );
        let m3 = match &mask {
            Some(m) => m
                .reshape(vec![N, T, 1])
                .unwrap()
                .broadcast_to(vec![N, T, d * H])
                .unwrap(),
            None => Tensor::ones(vec![N, T, d * H], DType::F32, Device::Cpu).unwrap(),
        };
        // PyTorch zeroes padded outputs where ember carries the state: compare real steps.
        compare(&g, case, "out", &out.mul(&m3).unwrap());
        let loss = out
            .mul(&upstream(&[N, T, d * H]))
            .unwrap()
            .mul(&m3)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        compare(&g, case, "dx", grads.get(&x).unwrap());
        for (name, p) in seq.parameters() {
            compare(&g, case, &format!("d.{name}"), grads.get(&p).unwrap());
        }
        let last = layer(kind, bi, layers, false);
        let (y, m) = last.forward_masked(&x, mask.as_ref(), false).unwrap();
        assert!(m.is_none(), "{case}: the final state drops the mask");
        compare(&g, case, "last", &y);
    }
}

#[test]
fn load_named_checks_names_and_shapes() {
    let l = layer(CellKind::Gru, false, 1, false);
    let w = fill(&[12, 3], 0.0, 1.0);
    let e = l
        .load_named(&[("weight_ih_l1".to_string(), w.clone())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no parameter named \"weight_ih_l1\""), "{e}");
    let e = l
        .load_named(&[("weight_ih_l0".to_string(), w)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing parameter \"weight_hh_l0\""), "{e}");
    let mut all: Vec<(String, Tensor)> = l
        .parameters()
        .into_iter()
        .map(|(n, p)| (n, p.detach()))
        .collect();
    all[1].1 = fill(&[12, 5], 0.0, 1.0);
    let e = l.load_named(&all).unwrap_err().to_string();
    assert!(
        e.contains("weight_hh_l0 has shape [12, 5], expected [12, 4]"),
        "{e}"
    );
}

#[test]
fn checkpoints_round_trip_with_pytorch_names() {
    let build = |seed| {
        let opts = RecurrentOptions {
            bidirectional: true,
            ..RecurrentOptions::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        Sequential::new()
            .add(Recurrent::lstm(F, H, opts, &mut rng).unwrap())
            .add(Dense::new(2 * H, 3, Activation::None, &mut rng).unwrap())
    };
    let a = build(1);
    let names: Vec<String> = a.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.ends_with("weight_hh_l0_reverse")),
        "{names:?}"
    );
    let dir = std::env::temp_dir().join(format!("ember-nn-rnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lstm.safetensors");
    checkpoint::save(&path, &a, None).unwrap();
    let b = build(2);
    checkpoint::load(&path, &b, None).unwrap();
    for ((n, p), (_, q)) in a.named_parameters().iter().zip(b.named_parameters()) {
        assert_eq!(
            p.to_vec::<f32>().unwrap(),
            q.to_vec::<f32>().unwrap(),
            "{n}"
        );
    }
    let x = fill(&[N, T, F], 1.0, 0.8);
    assert_eq!(
        a.forward(&x, false).unwrap().to_vec::<f32>().unwrap(),
        b.forward(&x, false).unwrap().to_vec::<f32>().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shapes_init_and_errors() {
    let opts = RecurrentOptions {
        return_sequences: true,
        bidirectional: true,
        num_layers: 2,
        ..RecurrentOptions::default()
    };
    let l = Recurrent::gru(F, H, opts, &mut StdRng::seed_from_u64(3)).unwrap();
    assert_eq!(l.output_shape(&[7, F]).unwrap(), vec![7, 2 * H]);
    assert_eq!(l.parameters().len(), 16);
    let shapes: Vec<Vec<usize>> = l
        .parameters()
        .iter()
        .map(|(_, p)| p.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], vec![3 * H, F]);
    assert_eq!(
        shapes[8],
        vec![3 * H, 2 * H],
        "layer 1 reads both directions"
    );
    // PyTorch's init: U(-1/√H, 1/√H).
    let bound = 1.0 / (H as f32).sqrt();
    for (n, p) in l.parameters() {
        assert!(
            p.to_vec::<f32>().unwrap().iter().all(|v| v.abs() <= bound),
            "{n}"
        );
    }
    let e = l
        .forward(&fill(&[2, 5, 4], 0.0, 1.0), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GRU") && e.contains("[batch, steps, 3]") && e.contains("[2, 5, 4]"),
        "{e}"
    );
    let e = l.output_shape(&[5]).unwrap_err().to_string();
    assert!(e.contains("[steps, 3]"), "{e}");
    let bad = Tensor::ones(vec![2, 4], DType::F32, Device::Cpu).unwrap();
    let e = l
        .forward_masked(&fill(&[2, 5, 3], 0.0, 1.0), Some(&bad), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask [2, 4]"), "{e}");
    assert!(
        Recurrent::lstm(
            F,
            0,
            RecurrentOptions::default(),
            &mut StdRng::seed_from_u64(0)
        )
        .is_err()
    );
}

#[test]
fn model_files_build_recurrent_layers() {
    use ember_nn::spec::ModelSpec;
    let text = r#"
name = "seq"
input_shape = [28, 28]

[[layers]]
type = "LSTM"
units = 16
return_sequences = true
bidirectional = true

[[layers]]
type = "GRU"
units = 8
num_layers = 2

[[layers]]
type = "Dense"
units = 10
"#;
    let spec = ModelSpec::parse(text, "seq.toml").unwrap();
    let net = spec.build(1, Device::Cpu).unwrap();
    assert_eq!(spec.output_shape(&net).unwrap(), vec![10]);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.ends_with("weight_ih_l0_reverse")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("bias_hh_l1")), "{names:?}");
    let y = net.forward(&fill(&[2, 28, 28], 0.0, 1.0), false).unwrap();
    assert_eq!(y.shape(), &[2, 10]);
    let rnn = ModelSpec::parse(
        "name = \"r\"\ninput_shape = [5, 3]\n[[layers]]\ntype = \"SimpleRNN\"\nunits = 4\nactivation = \"relu\"\n",
        "r.toml",
    )
    .unwrap();
    let net = rnn.build(1, Device::Cpu).unwrap();
    assert_eq!(net.layers()[0].describe(), "SimpleRNN 4, relu");
    let bad = ModelSpec::parse(
        "name = \"r\"\ninput_shape = [5, 3]\n[[layers]]\ntype = \"SimpleRNN\"\nunits = 4\nactivation = \"gelu\"\n",
        "r.toml",
    )
    .unwrap()
    .build(1, Device::Cpu)
    .err()
    .unwrap()
    .to_string();
    assert!(bad.contains("SimpleRNN activation 'gelu'"), "{bad}");
    let flat = ModelSpec::parse(
        "name = \"r\"\ninput_shape = [5]\n[[layers]]\ntype = \"LSTM\"\nunits = 4\n",
        "r.toml",
    )
    .unwrap()
    .build(1, Device::Cpu)
    .err()
    .unwrap()
    .to_string();
    assert!(flat.contains("LSTM takes [steps, features]"), "{flat}");
}
