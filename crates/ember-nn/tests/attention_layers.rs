//! The attention layers: PyTorch's `nn.MultiheadAttention` and `nn.TransformerEncoderLayer`
//! (norm_first, gelu, eval) with the same weights, loaded by PyTorch's parameter names
//! (`tests/goldens/attention_layers.txt`, written by `scripts/goldens/attention.py`); masked
//! pooling; positional embeddings; and a model file with every attention layer training.

mod common;

use common::{Goldens, parse_goldens};
use ember_core::{Device, Tensor, no_grad};
use ember_nn::attention::{
    GlobalAveragePooling1D, GlobalMaxPooling1D, LayerNorm, MultiHeadAttention, PositionalEmbedding,
    SinusoidalPositional, TransformerEncoderBlock,
};
use ember_nn::module::Module;
use ember_nn::prelude::*;
use ember_nn::spec::ModelSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;

const GOLDENS: &str = include_str!("goldens/attention_layers.txt");

/// The golden file, parsed.
fn goldens() -> Goldens {
    parse_goldens(GOLDENS)
}

/// The script's formula: element i of seed s is sin(0.37·i + s)·0.8, in f32.
fn fill(shape: &[usize], seed: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((0.37 * i as f64 + seed).sin() * 0.8) as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn upstream(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (0.11 * i as f64).cos() as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn compare(g: &Goldens, case: &str, name: &str, t: &Tensor) {
    let (shape, want) = g
        .get(&(case.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no golden {case} {name}"));
    assert_eq!(t.shape(), shape.as_slice(), "{case} {name}: shape");
    let got = t.to_vec::<f32>().unwrap();
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 3e-5 * (1.0 + b.abs()),
            "{case} {name}[{i}]: ember {a}, PyTorch {b}"
        );
    }
}

/// Sets the parameters, in PyTorch's `named_parameters` order (which `torch_order` lists), from
/// fill(shape, seed0 + 0.1·i)·0.5, as the script does.
fn set_params(m: &dyn Module, torch_order: &[&str], seed0: f64) {
    let params: HashMap<String, Tensor> = m.parameters().into_iter().collect();
    assert_eq!(params.len(), torch_order.len(), "parameter count");
    no_grad(|| {
        for (i, name) in torch_order.iter().enumerate() {
            let p = params
                .get(*name)
                .unwrap_or_else(|| panic!("no parameter {name}"));
            p.assign(
                &fill(p.shape(), seed0 + 0.1 * i as f64)
                    .mul_scalar(0.5)
                    .unwrap(),
            )
            .unwrap();
        }
    });
}

fn check_case(g: &Goldens, case: &str, m: &dyn Module, f: impl Fn(&Tensor) -> Tensor) {
    let x = fill(&[2, 5, 8], 0.3).as_variable();
    let y = f(&x);
    compare(g, case, "y", &y);
    let grads = y
        .mul(&upstream(y.shape()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    compare(g, case, "dx", grads.get(&x).unwrap());
    for (name, p) in m.parameters() {
        compare(g, case, &format!("d.{name}"), grads.get(&p).unwrap());
    }
}

const MHA: [&str; 4] = [
    "in_proj_weight",
    "in_proj_bias",
    "out_proj.weight",
    "out_proj.bias",
];

#[test]
fn multi_head_attention_matches_pytorch() {
    let g = goldens();
    let mut rng = StdRng::seed_from_u64(0);
    let mha = MultiHeadAttention::new(8, 2, false, &mut rng).unwrap();
    set_params(&mha, &MHA, 2.0);
    // PyTorch's key_padding_mask [[F]*5, [F, F, F, T, T]] is ember's keep mask below.
    let keep = Tensor::from_vec(
        vec![1f32, 1., 1., 1., 1., 1., 1., 1., 0., 0.],
        [2, 5],
        Device::Cpu,
    )
    .unwrap();
    check_case(&g, "mha_self_mask", &mha, |x| {
        mha.forward_masked(x, Some(&keep), false).unwrap().0
    });
    check_case(&g, "mha_causal", &mha, |x| {
        mha.forward_qkv(x, x, x, None, true).unwrap()
    });
    // Cross-attention path (separate projections) agrees with the fused self-attention one.
    let x = fill(&[2, 5, 8], 0.3);
    let x2 = x.mul_scalar(1.0).unwrap();
    let a = mha
        .forward_qkv(&x, &x, &x, None, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = mha
        .forward_qkv(&x, &x2, &x2, None, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-5, "{u} vs {v}");
    }
}

#[test]
fn encoder_block_matches_pytorch_by_parameter_name() {
    let g = goldens();
    let torch_order = [
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ];
    let mut rng = StdRng::seed_from_u64(0);
    for (case, causal) in [("encoder_block", false), ("encoder_block_causal", true)] {
        let block = TransformerEncoderBlock::new(8, 2, 16, 0.1, causal, 7, &mut rng).unwrap();
        set_params(&block, &torch_order, 3.0);
        // Evaluation mode: dropout off, as PyTorch's eval().
        check_case(&g, case, &block, |x| block.forward(x, false).unwrap());
    }
}

#[test]
fn layer_norm_layer_normalises_the_last_axis() {
    let ln = LayerNorm::new(6).unwrap();
    let x = fill(&[3, 4, 6], 0.2);
    let y = ln.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
    for row in y.chunks(6) {
        let mean: f32 = row.iter().sum::<f32>() / 6.0;
        let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
    assert!(ln.forward(&fill(&[3, 5], 0.1), false).is_err());
    let names: Vec<String> = ln.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
}

#[test]
fn masked_pooling_ignores_padded_steps() {
    let x = fill(&[2, 4, 3], 0.5);
    let mask =
        Tensor::from_vec(vec![1f32, 1., 0., 0., 0., 0., 0., 0.], [2, 4], Device::Cpu).unwrap();
    let xv = x.to_vec::<f32>().unwrap();
    let (avg, m_out) = GlobalAveragePooling1D
        .forward_masked(&x, Some(&mask), false)
        .unwrap();
    assert!(m_out.is_none(), "pooling drops the mask");
    let (mx, _) = GlobalMaxPooling1D
        .forward_masked(&x, Some(&mask), false)
        .unwrap();
    let (avg, mx) = (avg.to_vec::<f32>().unwrap(), mx.to_vec::<f32>().unwrap());
    for f in 0..3 {
        let (a, b) = (xv[f], xv[3 + f]);
        assert!((avg[f] - (a + b) / 2.0).abs() < 1e-6);
        assert_eq!(mx[f], a.max(b));
        // Example 1 is all padding: zeros.
        assert_eq!(avg[3 + f], 0.0);
        assert_eq!(mx[3 + f], 0.0);
    }
    // Without a mask: the plain mean and max; gradients reach only real steps.
    let unmasked = GlobalAveragePooling1D.forward(&x, false).unwrap();
    assert_eq!(unmasked.shape(), [2, 3]);
    let xv2 = x.as_variable();
    let y = GlobalAveragePooling1D
        .forward_masked(&xv2, Some(&mask), true)
        .unwrap()
        .0;
    let gr = y.sum_all().unwrap().backward().unwrap();
    let d = gr.get(&xv2).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&d[6..12], &[0.0; 6], "padded steps get no gradient");
    assert_eq!(&d[0..3], &[0.5; 3]);
}

#[test]
fn positional_embeddings() {
    let mut rng = StdRng::seed_from_u64(1);
    let pe = PositionalEmbedding::new(5, 4, &mut rng).unwrap();
    let x = fill(&[2, 3, 4], 0.1);
    let y = pe.forward(&x, false).unwrap();
    let w = pe.parameters()[0].1.to_vec::<f32>().unwrap();
    let (xv, yv) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    for i in 0..24 {
        assert_eq!(yv[i], xv[i] + w[i % 12]);
    }
    let e = pe
        .forward(&fill(&[1, 6, 4], 0.1), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_len 5"), "{e}");
    let sp = SinusoidalPositional::new(4).unwrap();
    let t = sp.table(3).unwrap().to_vec::<f64>().unwrap();
    // pe[2, 1] = cos(2), pe[2, 2] = sin(2 / 100).
    assert!((t[2 * 4 + 1] - 2f64.cos()).abs() < 1e-12);
    assert!((t[2 * 4 + 2] - (0.02f64).sin()).abs() < 1e-12);
}

#[test]
fn a_model_file_with_attention_layers_trains() {
    let text = r#"{"input_shape": [6, 8], "loss": "binary_crossentropy", "layers": [
        {"type": "SinusoidalPositional"},
        {"type": "PositionalEmbedding", "max_len": 6},
        {"type": "TransformerEncoder", "heads": 2, "ff": 16, "dropout": 0.1},
        {"type": "TransformerDecoder", "heads": 2, "ff": 16},
        {"type": "MultiHeadAttention", "heads": 4, "causal": true},
        {"type": "LayerNorm"},
        {"type": "GlobalMaxPooling1D"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"}]}"#;
    let spec = ModelSpec::parse(text, "attn.json").unwrap();
    let net = spec.build(3, Device::Cpu).unwrap();
    assert_eq!(spec.output_shape(&net).unwrap(), vec![1]);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("self_attn.in_proj_weight")),
        "{names:?}"
    );
    // Label: whether the first feature of the first step is positive.
    let n = 64;
    let x = Tensor::randn(
        0.0,
        1.0,
        &[n, 6, 8][..],
        ember_core::DType::F32,
        Device::Cpu,
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    let first: Vec<f32> = x
        .to_vec::<f32>()
        .unwrap()
        .chunks(48)
        .map(|c| (c[0] > 0.0) as u8 as f32)
        .collect();
    let y = Tensor::from_vec(first, [n, 1], Device::Cpu).unwrap();
    let mut model = net.compile(Optimizer::adam(), Loss::BinaryCrossEntropy, &[]);
    let h = model
        .fit(
            &x,
            &y,
            FitConfig {
                epochs: 3,
                batch_size: 16,
                verbose: 0,
                ..FitConfig::default()
            },
        )
        .unwrap();
    let losses = h.series("loss");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let e = ModelSpec::parse(
        r#"{"input_shape": [10], "layers": [{"type": "TransformerEncoder", "heads": 2, "ff": 4}]}"#,
        "bad.json",
    )
    .unwrap()
    .build(0, Device::Cpu)
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("TransformerEncoder") && e.contains("[steps, features]"),
        "{e}"
    );
}
