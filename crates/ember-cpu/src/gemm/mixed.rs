//! The mixed-precision GEMM: `C = round(A)·round(B)` with f32 operands rounded to a 16-bit
//! float (bf16 or f16), products and sums in f32: what PyTorch's autocast and Keras's
//! `mixed_bfloat16` / `mixed_float16` policies compute for a matmul, from f32 tensors.
//!
//! Why a kernel entry of its own rather than "cast to 16 bits, then [`super::gemm_widen`]":
//! the training loop holds f32 activations, f32 gradients and f32 master weights, so a cast
//! would write a 16-bit copy of each operand before every product (two extra passes over
//! memory per GEMM, six per Dense layer and step). Here the rounding happens where the
//! operands are read anyway:
//! - **bf16 on AVX512-BF16** (the shapes [`super::gemm_widen`] sends to the `vdpbf16ps`
//!   kernel: AVX-512 active, N > 16, the packed path): the kernel's packing rounds each f32 to
//!   bf16 (nearest-even, `half::bf16::from_f32`) as it interleaves the pairs of K. No copy.
//! - **Everything else** (f16, which has no CPU kernel; bf16 on other CPUs; and the skinny
//!   shapes, N ≤ 16 or M = 1, where the bf16 tile would be mostly padding and the widening path
//!   measured 0.2–0.5× the f32 GEMM): the operands are rounded into dense f32 copies and the
//!   f32 GEMM runs on them. A product of two 16-bit values is exact in f32, so this is the same
//!   arithmetic as a 16-bit kernel with f32 accumulation — only the order of the additions
//!   differs — and it runs at the f32 GEMM's speed.
//!
//! Numerics: rounding is to nearest-even, overflow gives ±inf (f16 above 65504 — the reason
//! f16 training needs loss scaling), NaN stays NaN. The `vdpbf16ps` path flushes denormal
//! bf16 inputs and products to zero, as the instruction does; the copy path keeps them. Both
//! paths, like every GEMM path, give bit-identical results for any thread count.

use super::{
    Epilogue, GemmError, MatMut, MatRef, Widen, bf16, c_ptr, check_operands, gemm, packed_parallel,
    takes_small_path,
};
use crate::isa::Isa;

/// The 16-bit float the operands are rounded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// bfloat16: 8 exponent bits (f32's range), 8 significant bits.
    Bf16,
    /// IEEE half: 5 exponent bits (largest finite 65504), 11 significant bits.
    F16,
}

impl Half {
    /// `x` rounded to this type (nearest-even) and widened back to f32 (exactly).
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Half::Bf16 => half::bf16::from_f32(x).to_f32(),
            Half::F16 => half::f16::from_f32(x).to_f32(),
        }
    }

    /// `dst[i] = self.round(src[i])` for equal-length slices: through `half`'s slice
    /// conversions (F16C, 8 at a time, where the CPU has it; detected at run time), in chunks
    /// through a stack buffer.
    pub fn round_slice(self, src: &[f32], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        const CHUNK: usize = 256;
        let n = src.len().min(dst.len());
        for (s, d) in src[..n].chunks(CHUNK).zip(dst[..n].chunks_mut(CHUNK)) {
            match self {
                Half::Bf16 => {
                    let mut h = [half::bf16::ZERO; CHUNK];
                    h[..s.len()].convert_from_f32_slice(s);
                    h[..s.len()].convert_to_f32_slice(d);
                }
                Half::F16 => {
                    let mut h = [half::f16::ZERO; CHUNK];
                    h[..s.len()].convert_from_f32_slice(s);
                    h[..s.len()].convert_to_f32_slice(d);
                }
            }
        }
    }
}

/// True when a product of this shape with bf16 operands runs the AVX512-BF16 kernel: the
/// conditions [`super::gemm_widen`] applies (AVX-512 active, the CPU has AVX512-BF16, the
/// packed path, and more than one 16-wide sliver of columns).
pub fn uses_bf16_kernel(m: usize, n: usize, k: usize) -> bool {
    let isa = crate::isa::active();
    let mnk = m.saturating_mul(n).saturating_mul(k);
    isa == Isa::Avx512
        && n > 16
        && m > 1
        && k > 0
        && !takes_small_path::<f32>(isa, mnk, k)
        && bf16::supported()
}

/// `C = round(A)·round(B)`, then the epilogue (bias added and activation applied in f32, on
/// the f32 sums), for f32 operands rounded to `half`; see the module documentation for the
/// paths. C is write-only (beta = 0). Errors as [`super::gemm`] (operands too short for
/// their shapes and strides, a bias of the wrong length).
#[allow(clippy::too_many_arguments)]
pub fn gemm_rounded(
    m: usize,
    n: usize,
    k: usize,
    half: Half,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    mut c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), GemmError> {
    check_operands(m, n, k, &a, &b, &c, &epi)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if half == Half::Bf16 && uses_bf16_kernel(m, n, k) {
        let cp = c_ptr(&mut c);
        let parallel = packed_parallel(m, n, k, 32);
        // SAFETY: AVX512-BF16 is present and m, n > 1, k > 0 (`uses_bf16_kernel`); the
        // operands passed `check_operands`; C is owned by this call.
        unsafe { bf16::gemm_bf16(m, n, k, 1.0, &a, &b, 0.0, cp, &epi, parallel) };
        return Ok(());
    }
    let (ar, br) = (dense_rounded(half, m, k, &a), dense_rounded(half, k, n, &b));
    gemm(
        m,
        n,
        k,
        1.0,
        MatRef {
            data: &ar,
            rs: k,
            cs: 1,
        },
        MatRef {
            data: &br,
            rs: n,
            cs: 1,
        },
        0.0,
        c,
        epi,
    )
}

/// The `rows`×`cols` matrix `x` rounded to `half`, as a dense row-major f32 copy.
fn dense_rounded(half: Half, rows: usize, cols: usize, x: &MatRef<'_, f32>) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    if cols == 0 {
        return out;
    }
    for (i, row) in out.chunks_exact_mut(cols).enumerate() {
        if x.cs == 1 {
            half.round_slice(&x.data[i * x.rs..i * x.rs + cols], row);
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = half.round(x.data[i * x.rs + j * x.cs].widen());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests_rng::Rng;

    /// The f64 reference: sum over k of round(a)·round(b), plus the bias; with the sum of the
    /// terms' magnitudes (the scale of the f32 rounding error).
    fn reference(
        half: Half,
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        (ars, acs): (usize, usize),
        b: &[f32],
        bias: Option<&[f32]>,
    ) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0); m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |v| v[j] as f64);
                let mut mag = s.abs();
                for p in 0..k {
                    let t =
                        half.round(a[i * ars + p * acs]) as f64 * half.round(b[p * n + j]) as f64;
                    s += t;
                    mag += t.abs();
                }
                out[i * n + j] = (s, mag);
            }
        }
        out
    }

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect()
    }

    fn run(
        half: Half,
        m: usize,
        n: usize,
        k: usize,
        a: &MatRef<'_, f32>,
        b: &MatRef<'_, f32>,
    ) -> Vec<f32> {
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
        let mut c = vec![f32::NAN; m * n];
        gemm_rounded(
            m,
            n,
            k,
            half,
            *a,
            *b,
            MatMut {
                data: &mut c,
                rs: n,
                cs: 1,
            },
            Epilogue {
                bias: Some(&bias),
                act: ember_ops::Activation::None,
            },
        )
        .expect("valid operands");
        c
    }

    /// Every path (bf16 kernel with rounding in its packing, rounded copies + f32 GEMM,
    /// skinny and tiny shapes, transposed A) against the f64 reference of the rounded inputs.
    #[test]
    fn matches_the_f64_reference_of_rounded_operands() {
        let mut rng = Rng::new(7);
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (64, 1, 512),
            (256, 10, 512),
            (37, 33, 129),
            (128, 96, 300),
            (256, 64, 784),
            (5, 0, 3),
            (4, 6, 0),
        ];
        for half in [Half::Bf16, Half::F16] {
            for &(m, n, k) in &shapes {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
                // B's transpose stored row-major, read through strides (a Dense weight wᵀ).
                let mut bt = vec![0.0; k * n];
                for p in 0..k {
                    for j in 0..n {
                        bt[j * k + p] = b[p * n + j];
                    }
                }
                for (transposed, b_transposed) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    // A as stored, or A's transpose stored row-major and read through strides.
                    let (data, rs, cs) = if transposed {
                        let mut t = vec![0.0; m * k];
                        for i in 0..m {
                            for p in 0..k {
                                t[p * m + i] = a[i * k + p];
                            }
                        }
                        (t, 1, m)
                    } else {
                        (a.clone(), k, 1)
                    };
                    let ar = MatRef {
                        data: &data,
                        rs,
                        cs,
                    };
                    let br = if b_transposed {
                        MatRef {
                            data: &bt[..],
                            rs: 1,
                            cs: k,
                        }
                    } else {
                        MatRef {
                            data: &b[..],
                            rs: n,
                            cs: 1,
                        }
                    };
                    let got = run(half, m, n, k, &ar, &br);
                    let want = reference(half, (m, n, k), &data, (rs, cs), &b, Some(&bias));
                    for (g, (w, mag)) in got.iter().zip(&want) {
                        // f32 sums of k exact products: within (k+1)·eps·Σ|terms|.
                        let tol = 1.2e-7 * (k as f64 + 2.0) * mag + 1e-30;
                        assert!(
                            (*g as f64 - w).abs() <= tol,
                            "{half:?} {m}x{n}x{k} transposed {transposed}/{b_transposed}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The slice rounding (vectorised) equals the scalar one, ties, overflow, denormals and
    /// NaN included, across chunk boundaries.
    #[test]
    fn slice_rounding_equals_scalar_rounding() {
        let mut rng = Rng::new(3);
        let mut v: Vec<f32> = (0..1000)
            .map(|i| ((rng.uniform() * 2.0 - 1.0) * 10f64.powi(i % 12 - 6)) as f32)
            .collect();
        v.extend([
            1.0 + f32::EPSILON * 64.0, // a bf16 tie
            1.0 + 2.0f32.powi(-11),    // an f16 tie
            70000.0,
            -3e38,
            1e-40,
            6e-8,
            f32::INFINITY,
            f32::NAN,
        ]);
        for half in [Half::Bf16, Half::F16] {
            let mut out = vec![0.0; v.len()];
            half.round_slice(&v, &mut out);
            for (x, o) in v.iter().zip(&out) {
                let want = half.round(*x);
                assert!(
                    want.to_bits() == o.to_bits() || (want.is_nan() && o.is_nan()),
                    "{half:?} {x}: {o} vs {want}"
                );
            }
        }
    }

    /// f16 rounding overflows to infinity above 65504; bf16 keeps f32's range.
    #[test]
    fn f16_overflows_where_bf16_does_not() {
        let a = [70000.0f32, 1.0];
        let b = [1.0f32, 0.0];
        for (half, finite) in [(Half::F16, false), (Half::Bf16, true)] {
            let mut c = [0.0f32];
            gemm_rounded(
                1,
                1,
                2,
                half,
                MatRef {
                    data: &a,
                    rs: 2,
                    cs: 1,
                },
                MatRef {
                    data: &b,
                    rs: 1,
                    cs: 1,
                },
                MatMut {
                    data: &mut c,
                    rs: 1,
                    cs: 1,
                },
                Epilogue::default(),
            )
            .expect("valid operands");
            assert_eq!(c[0].is_finite(), finite, "{half:?}: {}", c[0]);
        }
    }

    /// Results do not depend on the number of rayon threads (both paths).
    #[test]
    fn bit_identical_across_thread_counts() {
        let mut rng = Rng::new(11);
        for &(m, n, k) in &[(256, 512, 784), (256, 1, 512), (300, 130, 257)] {
            let a = random(&mut rng, m * k);
            let b = random(&mut rng, k * n);
            let ar = MatRef {
                data: &a,
                rs: k,
                cs: 1,
            };
            let br = MatRef {
                data: &b,
                rs: n,
                cs: 1,
            };
            for half in [Half::Bf16, Half::F16] {
                let results: Vec<Vec<f32>> = [1, 2, 3]
                    .iter()
                    .map(|&t| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(t)
                            .build()
                            .expect("a thread pool")
                            .install(|| run(half, m, n, k, &ar, &br))
                    })
                    .collect();
                assert!(
                    results.windows(2).all(|w| w[0] == w[1]),
                    "{half:?} {m}x{n}x{k}"
                );
            }
        }
    }

    /// The bad-operand errors of the f32 GEMM (never a panic).
    #[test]
    fn short_operands_are_errors() {
        let a = [1.0f32; 5];
        let b = [1.0f32; 6];
        let mut c = [0.0f32; 6];
        let r = gemm_rounded(
            2,
            3,
            3,
            Half::Bf16,
            MatRef {
                data: &a,
                rs: 3,
                cs: 1,
            },
            MatRef {
                data: &b,
                rs: 3,
                cs: 1,
            },
            MatMut {
                data: &mut c,
                rs: 3,
                cs: 1,
            },
            Epilogue::default(),
        );
        assert!(r.is_err());
    }
}
