//! GPU tests of BCE (forward and fused backward) and of the fused optimizer steps.
//!
//! BCE: the reference is f64 on the stored inputs. Each element's loss is computed in the input
//! type on the device (a log or log1p/exp: a few ulp of the element's loss) and summed in
//! double, so the sum's error is <= ~4 ulp · Σ|loss_i|: 1e-5 relative to Σ|loss| for f32.
//! Gradients are a handful of f32 operations: 1e-5 relative. The forward is also checked for
//! bit-identical repeats (deterministic reduction).
//!
//! Optimizers: the kernels round every operation exactly like the CPU code (no FMA
//! contraction, IEEE division and square root), so they are compared bit for bit, over several
//! steps, with an f32 twin of ember-cpu's update written here (SGD, Adam) or with ember-cpu's
//! own update in f32 and f64 (AdaGrad, RMSProp in all four momentum/centered forms). State and
//! parameter buffers start from random values, and every state the kernel must write is checked.

mod common;

use common::*;
use ember_cuda::FloatElem;
use ember_cuda::loss::{bce_logits_grad, bce_logits_sum, bce_probs_grad, bce_probs_sum};
use ember_cuda::optim::{
    AdagradConfig, AdamConfig, RmspropConfig, SgdConfig, adagrad_step, adam_step, rmsprop_step,
    sgd_step,
};

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

#[test]
fn bce_forward_and_backward_match_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_loss::bce") else {
        return;
    };
    let mut r = rng("bce");
    let eps = 1e-7;
    for n in SIZES.iter().copied().chain([1 << 20]) {
        let logits: Vec<f32> = uniform(&mut r, n, -12.0, 12.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut probs: Vec<f32> = logits.iter().map(|&v| sigmoid(v as f64) as f32).collect();
        probs[0] = 0.0; // clamped on both sides, zero gradient
        if n > 1 {
            probs[1] = 1.0;
        }
        let y: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 3 == 0) as i32 as f32)
            .collect();
        let (dx, dp, dy) = (
            dev.upload(&logits).unwrap(),
            dev.upload(&probs).unwrap(),
            dev.upload(&y).unwrap(),
        );
        let scale = 1.0 / n as f64;

        // Forward on logits.
        let want: f64 = logits
            .iter()
            .zip(&y)
            .map(|(&x, &t)| {
                let x = x as f64;
                x.max(0.0) - x * t as f64 + (-x.abs()).exp().ln_1p()
            })
            .sum();
        let mut out = dev.upload(&[f32::NAN]).unwrap();
        bce_logits_sum(dx.view(), dy.view(), scale, out.view_mut()).unwrap();
        let got = out.to_host().unwrap()[0] as f64;
        assert!(
            (got - want * scale).abs() <= 1e-5 * want * scale + 1e-7,
            "logits n={n}: {got} vs {}",
            want * scale
        );
        let mut again = dev.upload(&[f32::NAN]).unwrap();
        bce_logits_sum(dx.view(), dy.view(), scale, again.view_mut()).unwrap();
        assert_eq!(
            again.to_host().unwrap()[0].to_bits(),
            (got as f32).to_bits(),
            "logits n={n}: not deterministic"
        );

        // Forward on probabilities. The device clamps in f32, to [eps, 1 - eps] as f32 values,
        // so the reference clamps to the same two numbers.
        let (lo, hi) = (eps as f32 as f64, (1.0f32 - eps as f32) as f64);
        let want: f64 = probs
            .iter()
            .zip(&y)
            .map(|(&p, &t)| {
                let p = (p as f64).clamp(lo, hi);
                let t = t as f64;
                -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
            })
            .sum();
        bce_probs_sum(dp.view(), dy.view(), eps, 1.0, out.view_mut()).unwrap();
        let got = out.to_host().unwrap()[0] as f64;
        assert!(
            (got - want).abs() <= 1e-5 * want + 1e-6,
            "probs n={n}: {got} vs {want}"
        );

        // Backward, logits: scale * (sigmoid(x) - y).
        let mut g = dev.upload(&vec![f32::NAN; n]).unwrap();
        bce_logits_grad(dx.view(), dy.view(), scale, g.view_mut()).unwrap();
        let got: Vec<f64> = g.to_host().unwrap().iter().map(|&v| v as f64).collect();
        let want: Vec<f64> = logits
            .iter()
            .zip(&y)
            .map(|(&x, &t)| scale * (sigmoid(x as f64) - t as f64))
            .collect();
        let sc: Vec<f64> = want.iter().map(|w| w.abs().max(scale)).collect();
        assert_close(
            &format!("bce_logits_grad n={n}"),
            &got,
            &want,
            &sc,
            1e-5,
            0.0,
        );

        // Backward, probabilities: (p - y) / (p (1 - p)) inside the clamp range, 0 outside.
        bce_probs_grad(dp.view(), dy.view(), eps, scale, g.view_mut()).unwrap();
        let got: Vec<f64> = g.to_host().unwrap().iter().map(|&v| v as f64).collect();
        let want: Vec<f64> = probs
            .iter()
            .zip(&y)
            .map(|(&p, &t)| {
                let p = p as f64;
                if p < lo || p > hi {
                    0.0
                } else {
                    scale * (p - t as f64) / (p * (1.0 - p))
                }
            })
            .collect();
        let sc: Vec<f64> = want.iter().map(|w| w.abs()).collect();
        assert_close(
            &format!("bce_probs_grad n={n}"),
            &got,
            &want,
            &sc,
            1e-5,
            0.0,
        );
    }
}

/// ember-cpu's SGD, line for line, in f32.
fn sgd_twin(cfg: &SgdConfig, p: &mut [f32], g: &[f32], vel: &mut [f32]) {
    let (lr, mom, decay) = (
        cfg.lr as f32,
        cfg.momentum as f32,
        (cfg.lr * cfg.weight_decay) as f32,
    );
    for i in 0..p.len() {
        if cfg.weight_decay != 0.0 {
            p[i] -= decay * p[i];
        }
        if cfg.momentum == 0.0 {
            p[i] -= lr * g[i];
            continue;
        }
        vel[i] = mom * vel[i] - lr * g[i];
        if cfg.nesterov {
            p[i] += mom * vel[i] - lr * g[i];
        } else {
            p[i] += vel[i];
        }
    }
}

/// ember-cpu's Adam (Keras form), line for line, in f32.
fn adam_twin(cfg: &AdamConfig, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let t = cfg.step.max(1) as i32;
    let lr_t = (cfg.lr * (1.0 - cfg.beta2.powi(t)).sqrt() / (1.0 - cfg.beta1.powi(t))) as f32;
    let (b1, b2, eps) = (
        (1.0 - cfg.beta1) as f32,
        (1.0 - cfg.beta2) as f32,
        cfg.eps as f32,
    );
    let decay = (cfg.lr * cfg.weight_decay) as f32;
    for i in 0..p.len() {
        if cfg.weight_decay != 0.0 {
            p[i] -= decay * p[i];
        }
        m[i] += b1 * (g[i] - m[i]);
        v[i] += b2 * (g[i] * g[i] - v[i]);
        p[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn optimizer_steps_are_bit_identical_to_the_cpu_rules() {
    let Some(dev) = gpu_or_skip("gpu_optim") else {
        return;
    };
    let mut r = rng("optim");
    for n in SIZES {
        for (momentum, nesterov, wd) in [
            (0.0, false, 0.0),
            (0.9, false, 0.0),
            (0.9, true, 1e-2),
            (0.0, false, 1e-2),
        ] {
            let cfg = SgdConfig {
                lr: 0.05,
                momentum,
                nesterov,
                weight_decay: wd,
            };
            let mut hp: Vec<f32> = uniform(&mut r, n, -1.0, 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let mut hv = vec![0.0f32; n];
            let mut p = dev.upload(&hp).unwrap();
            let mut v = dev.upload(&hv).unwrap();
            for _ in 0..3 {
                let hg: Vec<f32> = uniform(&mut r, n, -1.0, 1.0)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                let g = dev.upload(&hg).unwrap();
                sgd_step(&cfg, p.view_mut(), g.view(), v.view_mut()).unwrap();
                sgd_twin(&cfg, &mut hp, &hg, &mut hv);
            }
            assert_eq!(bits(&p.to_host().unwrap()), bits(&hp), "sgd {cfg:?} n={n}");
            if momentum != 0.0 {
                assert_eq!(
                    bits(&v.to_host().unwrap()),
                    bits(&hv),
                    "sgd velocity {cfg:?} n={n}"
                );
            }
        }
        for wd in [0.0, 1e-2] {
            let mut hp: Vec<f32> = uniform(&mut r, n, -1.0, 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let (mut hm, mut hv) = (vec![0.0f32; n], vec![0.0f32; n]);
            let mut p = dev.upload(&hp).unwrap();
            let mut m = dev.upload(&hm).unwrap();
            let mut v = dev.upload(&hv).unwrap();
            for step in 1..=4 {
                let cfg = AdamConfig {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-7,
                    weight_decay: wd,
                    step,
                };
                let hg: Vec<f32> = uniform(&mut r, n, -1.0, 1.0)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                let g = dev.upload(&hg).unwrap();
                adam_step(&cfg, p.view_mut(), g.view(), m.view_mut(), v.view_mut()).unwrap();
                adam_twin(&cfg, &mut hp, &hg, &mut hm, &mut hv);
            }
            assert_eq!(bits(&p.to_host().unwrap()), bits(&hp), "adam wd={wd} n={n}");
            assert_eq!(
                bits(&m.to_host().unwrap()),
                bits(&hm),
                "adam m wd={wd} n={n}"
            );
            assert_eq!(
                bits(&v.to_host().unwrap()),
                bits(&hv),
                "adam v wd={wd} n={n}"
            );
        }
    }
}

#[test]
fn optimizer_rejects_mismatched_state() {
    let Some(dev) = gpu_or_skip("gpu_optim::errors") else {
        return;
    };
    let mut p = dev.upload(&[1.0f32; 4]).unwrap();
    let g = dev.upload(&[1.0f32; 3]).unwrap();
    let mut v = dev.upload(&[0.0f32; 4]).unwrap();
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    assert!(sgd_step(&cfg, p.view_mut(), g.view(), v.view_mut()).is_err());
}

/// Bit patterns of f32 or f64 values, widened to u64 for comparison.
fn bits64<T: Into<f64> + Copy>(v: &[T]) -> Vec<u64> {
    v.iter().map(|&x| Into::<f64>::into(x).to_bits()).collect()
}

fn random_vec<T: FloatElem>(r: &mut rand::rngs::StdRng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    uniform(r, n, lo, hi)
        .into_iter()
        .map(<T as FloatElem>::from_f64)
        .collect()
}

fn adagrad_and_rmsprop<T: FloatElem + ember_cpu::Float + Into<f64>>(
    dev: &std::sync::Arc<ember_cuda::CudaDevice>,
    r: &mut rand::rngs::StdRng,
) {
    let ty = T::DTYPE.name();
    for n in SIZES {
        for wd in [0.0, 1e-2] {
            let cfg = ember_cpu::optim::AdagradConfig {
                lr: 0.05,
                eps: 1e-7,
                weight_decay: wd,
            };
            let ccfg = AdagradConfig {
                lr: cfg.lr,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
            };
            let mut hp: Vec<T> = random_vec(r, n, -1.0, 1.0);
            let mut ha: Vec<T> = random_vec(r, n, 0.0, 0.5);
            let mut p = dev.upload(&hp).unwrap();
            let mut a = dev.upload(&ha).unwrap();
            for _ in 0..3 {
                let hg: Vec<T> = random_vec(r, n, -1.0, 1.0);
                let g = dev.upload(&hg).unwrap();
                adagrad_step(&ccfg, p.view_mut(), g.view(), a.view_mut()).unwrap();
                ember_cpu::optim::adagrad_step(&cfg, &mut hp, &hg, &mut ha).unwrap();
            }
            let what = format!("adagrad {ty} wd={wd} n={n}");
            assert_eq!(bits64(&p.to_host().unwrap()), bits64(&hp), "{what}");
            assert_eq!(bits64(&a.to_host().unwrap()), bits64(&ha), "{what} acc");
        }
        for (momentum, centered, wd) in [
            (0.0, false, 0.0),
            (0.9, false, 0.0),
            (0.0, true, 1e-2),
            (0.9, true, 1e-2),
        ] {
            let cfg = ember_cpu::optim::RmspropConfig {
                lr: 1e-2,
                rho: 0.9,
                momentum,
                eps: 1e-7,
                centered,
                weight_decay: wd,
            };
            let ccfg = RmspropConfig {
                lr: cfg.lr,
                rho: cfg.rho,
                momentum: cfg.momentum,
                eps: cfg.eps,
                centered: cfg.centered,
                weight_decay: cfg.weight_decay,
            };
            let mut hp: Vec<T> = random_vec(r, n, -1.0, 1.0);
            let mut hs: Vec<T> = random_vec(r, n, 0.5, 1.0);
            let mut hm: Vec<T> = random_vec(r, n, -0.1, 0.1);
            let mut hga: Vec<T> = random_vec(r, n, -0.1, 0.1);
            let mut p = dev.upload(&hp).unwrap();
            let mut s = dev.upload(&hs).unwrap();
            let mut m = dev.upload(&hm).unwrap();
            let mut ga = dev.upload(&hga).unwrap();
            for _ in 0..3 {
                let hg: Vec<T> = random_vec(r, n, -1.0, 1.0);
                let g = dev.upload(&hg).unwrap();
                rmsprop_step(
                    &ccfg,
                    p.view_mut(),
                    g.view(),
                    s.view_mut(),
                    Some(m.view_mut()),
                    Some(ga.view_mut()),
                )
                .unwrap();
                ember_cpu::optim::rmsprop_step(&cfg, &mut hp, &hg, &mut hs, &mut hm, &mut hga)
                    .unwrap();
            }
            let what = format!("rmsprop {ty} momentum={momentum} centered={centered} n={n}");
            assert_eq!(bits64(&p.to_host().unwrap()), bits64(&hp), "{what}");
            assert_eq!(bits64(&s.to_host().unwrap()), bits64(&hs), "{what} sq_avg");
            // Unused states must be left alone, used ones must match.
            assert_eq!(
                bits64(&m.to_host().unwrap()),
                bits64(&hm),
                "{what} momentum"
            );
            assert_eq!(
                bits64(&ga.to_host().unwrap()),
                bits64(&hga),
                "{what} grad_avg"
            );
        }
    }
}

#[test]
fn adagrad_and_rmsprop_are_bit_identical_to_ember_cpu() {
    let Some(dev) = gpu_or_skip("gpu_optim::adagrad_rmsprop") else {
        return;
    };
    let mut r = rng("adagrad_rmsprop");
    adagrad_and_rmsprop::<f32>(&dev, &mut r);
    adagrad_and_rmsprop::<f64>(&dev, &mut r);
}

#[test]
fn rmsprop_rejects_a_missing_state() {
    let Some(dev) = gpu_or_skip("gpu_optim::rmsprop_errors") else {
        return;
    };
    let mut p = dev.upload(&[1.0f32; 4]).unwrap();
    let g = dev.upload(&[1.0f32; 4]).unwrap();
    let mut s = dev.upload(&[0.0f32; 4]).unwrap();
    let cfg = RmspropConfig {
        lr: 0.1,
        rho: 0.9,
        momentum: 0.9,
        eps: 1e-7,
        centered: false,
        weight_decay: 0.0,
    };
    let e = rmsprop_step(&cfg, p.view_mut(), g.view(), s.view_mut(), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("momentum"), "{e}");
    let mut acc = dev.upload(&[0.0f32; 3]).unwrap();
    let ac = AdagradConfig {
        lr: 0.1,
        eps: 1e-7,
        weight_decay: 0.0,
    };
    assert!(adagrad_step(&ac, p.view_mut(), g.view(), acc.view_mut()).is_err());
}
