//! Finite-difference gradient checks (f64) of every differentiable op, through plain, broadcast
//! and view inputs.

mod common;
use common::*;
use ember_core::gradcheck::gradcheck;
use ember_core::{Activation, Reduction, Result, Tensor, loss};

type F = fn(&[Tensor]) -> Result<Tensor>;

fn check(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let report = gradcheck(f, inputs, 1e-6, 1e-6).unwrap();
    assert!(report.passed, "{name}: {report}");
    assert!(
        report.checked > 0 || inputs.iter().all(|t| t.elem_count() == 0),
        "{name}: nothing checked"
    );
}

/// Values kept away from kinks (relu at 0, |x| at 0, clamp bounds).
fn away_from_kinks(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let mut a = rand_arr(shape, 0.2, 1.5, &mut r);
    for (i, v) in a.data.iter_mut().enumerate() {
        if i % 2 == 1 {
            *v = -*v;
        }
    }
    a.tensor()
}

fn positive(shape: &[usize], seed: u64) -> Tensor {
    rand_arr(shape, 0.5, 2.0, &mut rng(seed)).tensor()
}

/// Every op in the vocabulary, through `unary_op`: a new op is gradient-checked without editing
/// a list. Inputs keep away from kinks; ops defined only for positive inputs get positive ones.
#[test]
fn every_unary_op_in_the_vocabulary() {
    for op in ember_core::UnaryOp::ALL {
        let x = if op.smooth_domain().0 > 0.0 {
            positive(&[3, 4], 3)
        } else {
            away_from_kinks(&[3, 4], 4)
        };
        check(
            &format!("{op:?}"),
            |x| x[0].unary_op(op),
            std::slice::from_ref(&x),
        );
        check(
            &format!("{op:?} transposed"),
            |x| x[0].t()?.unary_op(op),
            &[x],
        );
    }
}

#[test]
fn unary_ops() {
    let cases: Vec<(&str, F)> = vec![
        ("neg", |x| x[0].neg()),
        ("abs", |x| x[0].abs()),
        ("exp", |x| x[0].exp()),
        ("sqr", |x| x[0].sqr()),
        ("sin", |x| x[0].sin()),
        ("cos", |x| x[0].cos()),
        ("tanh", |x| x[0].tanh()),
        ("sigmoid", |x| x[0].sigmoid()),
        ("relu", |x| x[0].relu()),
        ("leaky_relu", |x| x[0].leaky_relu(0.2)),
        ("elu", |x| x[0].elu(0.7)),
        ("gelu", |x| x[0].gelu()),
        ("gelu_tanh", |x| x[0].gelu_tanh()),
        ("softplus", |x| x[0].softplus()),
        ("clamp", |x| x[0].clamp(-1.0, 1.0)),
        ("add_scalar", |x| x[0].add_scalar(3.0)),
        ("mul_scalar", |x| x[0].mul_scalar(-2.0)),
        ("div_scalar", |x| x[0].div_scalar(4.0)),
    ];
    for (name, f) in cases {
        let x = away_from_kinks(&[3, 4], 1);
        check(name, f, std::slice::from_ref(&x));
        // Through a transposed view and a narrowed view.
        check(name, |x| f(&[x[0].t()?]), std::slice::from_ref(&x));
        check(name, |x| f(&[x[0].narrow(1, 1, 2)?]), &[x]);
    }
    let p = positive(&[2, 5], 2);
    check("log", |x| x[0].log(), std::slice::from_ref(&p));
    check("sqrt", |x| x[0].sqrt(), std::slice::from_ref(&p));
    check("recip", |x| x[0].recip(), std::slice::from_ref(&p));
    check("pow_scalar", |x| x[0].pow_scalar(2.5), &[p]);
}

#[test]
fn binary_ops_with_broadcasting() {
    let cases: Vec<(&str, F)> = vec![
        ("add", |x| x[0].add(&x[1])),
        ("sub", |x| x[0].sub(&x[1])),
        ("mul", |x| x[0].mul(&x[1])),
        ("div", |x| x[0].div(&x[1])),
        ("pow", |x| x[0].pow(&x[1])),
        ("maximum", |x| x[0].maximum(&x[1])),
        ("minimum", |x| x[0].minimum(&x[1])),
    ];
    for (name, f) in cases {
        // Same shapes, row broadcast, column broadcast against a transposed view, scalar.
        check(name, f, &[positive(&[3, 4], 3), positive(&[3, 4], 4)]);
        check(name, f, &[positive(&[3, 4], 5), positive(&[4], 6)]);
        check(
            name,
            |x| f(&[x[0].t()?, x[1].clone()]),
            &[positive(&[4, 3], 7), positive(&[3, 1], 8)],
        );
        check(name, f, &[positive(&[2, 3], 9), positive(&[], 10)]);
    }
    let c = Tensor::from_vec(
        vec![1.0f64, 0.0, 0.0, 1.0, 1.0, 0.0],
        (2, 3),
        ember_core::Device::Cpu,
    )
    .unwrap();
    let _ = c;
    check(
        "where_cond",
        |x| x[0].gt_scalar(0.0)?.where_cond(&x[0], &x[1]),
        &[away_from_kinks(&[2, 3], 11), positive(&[3], 12)],
    );
}

#[test]
fn reductions() {
    let cases: Vec<(&str, F)> = vec![
        ("sum", |x| x[0].sum(&[1], false)),
        ("sum_all", |x| x[0].sum_all()),
        ("sum_keepdim", |x| x[0].sum(&[0, 2], true)),
        ("mean", |x| x[0].mean(&[0], false)),
        ("max", |x| x[0].max(&[2], false)),
        ("min", |x| x[0].min(&[0, 1], true)),
        ("var", |x| x[0].var(&[1], false)),
        ("logsumexp", |x| x[0].logsumexp(&[2], false)),
        ("softmax", |x| x[0].softmax(1)),
        ("log_softmax", |x| x[0].log_softmax(2)),
    ];
    for (name, f) in cases {
        let x = away_from_kinks(&[2, 3, 4], 13);
        check(name, f, std::slice::from_ref(&x));
        check(name, |x| f(&[x[0].permute(&[2, 0, 1])?]), &[x]);
    }
}

#[test]
fn matmul_and_linear() {
    check(
        "matmul",
        |x| x[0].matmul(&x[1]),
        &[positive(&[3, 4], 14), positive(&[4, 2], 15)],
    );
    check(
        "matmul_t",
        |x| x[0].t()?.matmul(&x[1].t()?),
        &[positive(&[4, 3], 16), positive(&[2, 4], 17)],
    );
    check(
        "matmul_batched",
        |x| x[0].matmul(&x[1]),
        &[positive(&[2, 3, 4], 18), positive(&[4, 2], 19)],
    );
    for act in Activation::ALL {
        let x = away_from_kinks(&[5, 3], 20);
        let w = away_from_kinks(&[2, 3], 21);
        let b = away_from_kinks(&[2], 22);
        check(
            &format!("linear {act:?}"),
            |x| x[0].linear(&x[1], Some(&x[2]), act),
            &[x, w, b],
        );
    }
    // The CPU's fused Linear backward reads strided operands and skips dx for constants.
    check(
        "linear strided x and w, no bias",
        |x| x[0].t()?.linear(&x[1].t()?, None, Activation::Relu),
        &[away_from_kinks(&[3, 5], 23), away_from_kinks(&[3, 2], 24)],
    );
    // Operands sharing one buffer take its lock once (`ReadSet`); values and gradients must
    // be those of separate buffers: w and b as views of one flat parameter vector, x used as
    // its own weight, and a tensor concatenated with itself.
    check(
        "linear, w and b views of one buffer",
        |x| {
            let w = x[0].narrow(0, 0, 6)?.reshape((2, 3))?;
            let b = x[0].narrow(0, 6, 2)?;
            x[1].linear(&w, Some(&b), Activation::Tanh)
        },
        &[away_from_kinks(&[8], 28), away_from_kinks(&[4, 3], 29)],
    );
    check(
        "linear of x with itself",
        |x| x[0].linear(&x[0], None, Activation::Sigmoid),
        &[away_from_kinks(&[3, 3], 30)],
    );
    check(
        "cat of x with itself",
        |x| Tensor::cat(&[&x[0], &x[0]], 0)?.sigmoid(),
        &[away_from_kinks(&[2, 3], 31)],
    );
    let constant_x = away_from_kinks(&[4, 3], 25);
    check(
        "linear of a constant input",
        |x| constant_x.linear(&x[0], Some(&x[1]), Activation::Sigmoid),
        &[away_from_kinks(&[2, 3], 26), away_from_kinks(&[2], 27)],
    );
    check(
        "linear after a broadcast gradient",
        |x| {
            x[0].linear(&x[1], Some(&x[2]), Activation::Tanh)?
                .sum(&[0], true)?
                .broadcast_to((3, 2))
        },
        &[
            away_from_kinks(&[5, 3], 28),
            away_from_kinks(&[2, 3], 29),
            away_from_kinks(&[2], 30),
        ],
    );
}

#[test]
fn views_and_index_ops() {
    let x = positive(&[3, 4], 23);
    check(
        "reshape",
        |x| x[0].reshape((2, 6))?.mul(&x[0].reshape((2, 6))?),
        std::slice::from_ref(&x),
    );
    check(
        "permute+reshape",
        |x| x[0].t()?.reshape(12),
        std::slice::from_ref(&x),
    );
    check(
        "narrow",
        |x| x[0].narrow(0, 1, 2)?.sqr(),
        std::slice::from_ref(&x),
    );
    check(
        "broadcast_to",
        |x| x[0].narrow(0, 0, 1)?.broadcast_to((5, 4))?.sqr(),
        std::slice::from_ref(&x),
    );
    check(
        "squeeze/unsqueeze",
        |x| x[0].unsqueeze(0)?.squeeze(0)?.exp(),
        std::slice::from_ref(&x),
    );
    check(
        "contiguous",
        |x| x[0].t()?.contiguous()?.sqr(),
        std::slice::from_ref(&x),
    );
    check(
        "cat",
        |x| Tensor::cat(&[&x[0], &x[1].sqr()?], 0),
        &[x.clone(), positive(&[2, 4], 24)],
    );
    check(
        "stack",
        |x| Tensor::stack(&[&x[0], &x[0].exp()?], 1),
        std::slice::from_ref(&x),
    );
    check(
        "index_select",
        |x| {
            let idx = Tensor::from_vec(vec![2.0f64, 0.0, 2.0], 3, ember_core::Device::Cpu)?;
            x[0].index_select(&idx, 0)?.sqr()
        },
        std::slice::from_ref(&x),
    );
    check(
        "gather",
        |x| {
            let idx = Tensor::from_vec(vec![3.0f64, 1.0, 1.0], (3, 1), ember_core::Device::Cpu)?;
            x[0].gather(1, &idx)?.sqr()
        },
        std::slice::from_ref(&x),
    );
    check(
        "to_dtype",
        |x| x[0].to_dtype(ember_core::DType::F64)?.sqr(),
        &[x],
    );
}

#[test]
fn losses() {
    let p = rand_arr(&[6, 1], 0.05, 0.95, &mut rng(25)).tensor();
    let y = Tensor::from_vec(
        vec![1.0f64, 0.0, 1.0, 1.0, 0.0, 0.0],
        (6, 1),
        ember_core::Device::Cpu,
    )
    .unwrap();
    let yy = y.clone();
    check(
        "bce",
        |x| loss::binary_cross_entropy(&x[0], &x[1], Reduction::Mean),
        &[p.clone(), y.clone()],
    );
    check(
        "bce_sum",
        |x| loss::binary_cross_entropy(&x[0], &x[1], Reduction::Sum),
        &[p, y.clone()],
    );
    let logits = away_from_kinks(&[6, 1], 26);
    check(
        "bce_logits",
        |x| loss::binary_cross_entropy_with_logits(&x[0], &x[1], Reduction::Mean),
        &[logits.clone(), yy],
    );
    check(
        "mse",
        |x| loss::mse(&x[0], &x[1], Reduction::Mean),
        &[logits, positive(&[6, 1], 27)],
    );
    let cls = Tensor::from_vec(vec![2.0f64, 0.0, 1.0, 2.0], 4, ember_core::Device::Cpu).unwrap();
    let z = away_from_kinks(&[4, 3], 28);
    let report = gradcheck(
        |x| loss::cross_entropy(&x[0], &cls, Reduction::Mean),
        &[z],
        1e-6,
        1e-6,
    )
    .unwrap();
    assert!(report.passed, "cross_entropy: {report}");
}

#[test]
fn gradcheck_reports_a_wrong_gradient() {
    // A function whose gradient autograd cannot see: detach hides the x² term.
    let x = positive(&[3], 29);
    let report = gradcheck(|x| x[0].sqr()?.detach().add(&x[0]), &[x], 1e-6, 1e-6).unwrap();
    assert!(!report.passed);
    assert!(report.to_string().contains("FAILED"), "{report}");
}

#[test]
fn bce_gradients_computed_with_the_loss() {
    // On the CPU the loss kernels compute d(loss)/d(input) in the same pass as the loss and
    // backward only applies the upstream gradient: check it against the closed forms, with
    // the upstream gradient 1 (loss.backward()) and 2.5 (a scaled loss).
    let x = away_from_kinks(&[5, 1], 40).as_variable();
    let p = rand_arr(&[5, 1], 0.05, 0.95, &mut rng(41))
        .tensor()
        .as_variable();
    let y = Tensor::from_vec(
        vec![1.0f64, 0.0, 1.0, 0.0, 1.0],
        (5, 1),
        ember_core::Device::Cpu,
    )
    .unwrap();
    let (xv, pv, yv) = (
        x.to_vec::<f64>().unwrap(),
        p.to_vec::<f64>().unwrap(),
        y.to_vec::<f64>().unwrap(),
    );
    for upstream in [1.0, 2.5] {
        let l = loss::binary_cross_entropy_with_logits(&x, &y, Reduction::Mean)
            .unwrap()
            .mul_scalar(upstream)
            .unwrap();
        let g = l.backward().unwrap();
        let gx = g.get(&x).unwrap().to_vec::<f64>().unwrap();
        for i in 0..5 {
            let want = upstream * (1.0 / (1.0 + (-xv[i]).exp()) - yv[i]) / 5.0;
            assert!(
                (gx[i] - want).abs() < 1e-14,
                "logits {i}: {} vs {want}",
                gx[i]
            );
        }
        let l = loss::binary_cross_entropy(&p, &y, Reduction::Sum)
            .unwrap()
            .mul_scalar(upstream)
            .unwrap();
        let g = l.backward().unwrap();
        let gp = g.get(&p).unwrap().to_vec::<f64>().unwrap();
        for i in 0..5 {
            let want = upstream * (pv[i] - yv[i]) / (pv[i] * (1.0 - pv[i]));
            assert!(
                (gp[i] - want).abs() < 1e-12 * want.abs().max(1.0),
                "probs {i}: {} vs {want}",
                gp[i]
            );
        }
    }
}
