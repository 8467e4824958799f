//! GPU test of the int8 GEMM (kernels/qgemm.cu): bit-identical to ember-cpu's `qgemm` with the
//! f32 epilogue (portable path, the exact reference) over shapes that cover partial tiles, K not
//! a multiple of 4 or of the 32-k stage, zero points, the full u8 range, bias and ReLU; and bad
//! operands rejected before any launch. Skips with one line without a GPU.

mod common;

use common::*;
use ember_cpu::qgemm::{Dequant, PackedB, QActs, QOut, QPath, qgemm_with};
use ember_cuda::qgemm::{QGemmArgs, qgemm_f32};
use ember_ops::Activation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn qgemm_matches_the_cpu_kernel_bit_for_bit() {
    let Some(dev) = gpu_or_skip("qgemm_matches_the_cpu_kernel_bit_for_bit") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(5);
    for &(m, n, k, za, relu, bias) in &[
        (1, 1, 1, 0, false, false),
        (64, 64, 32, 0, false, true),
        (65, 63, 33, 11, true, true),
        (256, 512, 784, 64, true, true),
        (7, 10, 9, 127, false, true),
        (130, 3, 300, 200, true, false),
    ] {
        let a: Vec<u8> = (0..m * k).map(|_| rng.random_range(0..=255u8)).collect();
        let b_t: Vec<i8> = (0..n * k).map(|_| rng.random_range(-127..=127i8)).collect();
        let scales: Vec<f32> = (0..n).map(|_| rng.random_range(1e-4f32..1e-2)).collect();
        let bias_v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let a_scale = 0.013f32;
        let got = qgemm_f32(
            &dev,
            &QGemmArgs {
                m,
                n,
                k,
                a: &a,
                za,
                b_t: &b_t,
                a_scale,
                b_scales: &scales,
                bias: bias.then_some(&bias_v[..]),
                relu,
            },
        )
        .unwrap();
        let packed = PackedB::from_transposed(k, n, &b_t, k).unwrap();
        let mut want = vec![0f32; m * n];
        qgemm_with(
            QPath::Portable,
            QActs {
                data: &a,
                m,
                lda: k,
                zero_point: za,
            },
            &packed,
            QOut::F32 {
                c: &mut want,
                ldc: n,
                dq: Dequant {
                    a_scale,
                    b_scales: &scales,
                    bias: bias.then_some(&bias_v[..]),
                    act: if relu {
                        Activation::Relu
                    } else {
                        Activation::None
                    },
                },
            },
        )
        .unwrap();
        // Equal as numbers (a ReLU may give +0 where the CPU gives −0).
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "m{m} n{n} k{k} za{za}: C[{}, {}] = {g}, CPU {w}",
                i / n,
                i % n
            );
        }
    }
}

#[test]
fn bad_operands_are_errors() {
    let Some(dev) = gpu_or_skip("bad_operands_are_errors") else {
        return;
    };
    let args = QGemmArgs {
        m: 2,
        n: 2,
        k: 3,
        a: &[0; 6],
        za: 0,
        b_t: &[0; 5],
        a_scale: 1.0,
        b_scales: &[1.0; 2],
        bias: None,
        relu: false,
    };
    let e = qgemm_f32(&dev, &args).unwrap_err().to_string();
    assert!(e.contains("B 2x3"), "{e}");
}
