//! GPU tests of every SGEMM version and of the tensor-core GEMM against an f64 reference:
//! odd and awkward shapes (1, 7, 67, 1000, 4097 in each role), A and B row-major, transposed
//! (column-major) and padded/misaligned, C row-major, transposed and padded, every epilogue
//! (alpha, beta, bias, each activation). C is poisoned with NaN before each launch: where beta
//! is 0 the poison must be ignored, and the padding around C must still be NaN afterwards (no
//! out-of-bounds write). The 128×128 and 64×64 SGEMM block tiles are also forced
//! (`sgemm_with_tile`) on ragged shapes, since the shape rule picks 128×128 only for outputs
//! with at least one such tile per SM.
//!
//! Tolerances, per element, relative to s = |alpha|·Σ_p|a_ip·b_pj| + |beta·c_ij| + |bias_j|:
//! - fp32: the dot product accumulates k rounded terms; for random signs the error grows like
//!   sqrt(k)·2^-24·s (k = 4097: ~4e-6·s), so 1e-5·s holds with margin; the activations' slopes
//!   are at most 1.13 (GELU), covered by the factor 1.2.
//! - f16/bf16 on tensor cores: products of 16-bit inputs are exact in f32; the mma units add
//!   each 16-term slice into the f32 accumulator with truncation rather than round-to-nearest,
//!   about one f32 ulp per mma (k/16 of them: ~1.5e-5·s at k = 4097), so 1e-4·s. The reference
//!   uses the rounded 16-bit inputs, so input rounding does not count; a 16-bit C adds one
//!   rounding of the result (2^-8 bf16, 2^-11 f16, relative to the result).

mod common;

use std::sync::Arc;

use common::*;
use ember_cuda::gemm::{
    Activation, Epilogue, HgemmVersion, MatMut, MatRef, SgemmTile, SgemmVersion, hgemm_version,
    sgemm_version, sgemm_with_tile,
};
use ember_cuda::{CudaDevice, DeviceElem};
use rand::rngs::StdRng;

const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (7, 67, 1),
    (67, 7, 1000),
    (1000, 67, 7),
    (4097, 7, 67),
    (67, 4097, 7),
    (7, 1, 4097),
    (129, 130, 131),
    (256, 256, 256),
    (300, 200, 64),
];

#[derive(Clone, Copy, Debug)]
enum Lay {
    RowMajor,
    ColMajor,
    /// Row-major with 3 extra elements per row and the matrix starting at element 1.
    Padded,
}
const LAYS: [Lay; 3] = [Lay::RowMajor, Lay::ColMajor, Lay::Padded];

/// A matrix stored in a buffer: element (i, j) at `off + i*rs + j*cs`; other slots are NaN.
struct Stored {
    buf: Vec<f64>,
    off: usize,
    rs: usize,
    cs: usize,
}

impl Stored {
    fn new(rows: usize, cols: usize, lay: Lay, fill: impl FnMut() -> f64) -> Self {
        let mut fill = fill;
        let (off, rs, cs, len) = match lay {
            Lay::RowMajor => (0, cols, 1, rows * cols),
            Lay::ColMajor => (0, 1, rows, rows * cols),
            Lay::Padded => (1, cols + 3, 1, 1 + rows * (cols + 3)),
        };
        let mut buf = vec![f64::NAN; len.max(1)];
        for i in 0..rows {
            for j in 0..cols {
                buf[off + i * rs + j * cs] = fill();
            }
        }
        Stored { buf, off, rs, cs }
    }
    fn at(&self, i: usize, j: usize) -> f64 {
        self.buf[self.off + i * self.rs + j * self.cs]
    }
}

/// The activation in f64, through ember-cpu's scalar reference formulas.
fn act_ref(act: Activation, v: f64) -> f64 {
    match act.as_unary() {
        None => v,
        Some(op) => ember_cpu::unary::apply(op, v),
    }
}

/// One epilogue configuration.
#[derive(Clone, Copy, Debug)]
struct Epi {
    alpha: f64,
    beta: f64,
    bias: bool,
    act: Activation,
}

fn epilogues() -> Vec<Epi> {
    let mut v = Vec::new();
    for act in Activation::ALL {
        for (alpha, beta, bias) in [
            (1.0, 0.0, false),
            (0.7, 0.0, true),
            (1.0, 0.5, true),
            (-1.3, 1.0, false),
        ] {
            v.push(Epi {
                alpha,
                beta,
                bias,
                act,
            });
        }
    }
    v
}

/// Reference C (as a full buffer, padding untouched) and per-element tolerance scale.
#[allow(clippy::needless_range_loop)] // (i, j) index A, B, C and the bias alike
fn reference(c: &Case, a: &Stored, b: &Stored, cm: &Stored, bias: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (m, n, k, e) = (c.m, c.n, c.k, c.e);
    let mut want = cm.buf.clone();
    let mut scale = vec![0.0; cm.buf.len()];
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut mag) = (0.0, 0.0);
            for p in 0..k {
                let t = a.at(i, p) * b.at(p, j);
                acc += t;
                mag += t.abs();
            }
            let mut v = e.alpha * acc;
            let mut s = e.alpha.abs() * mag;
            if e.beta != 0.0 {
                v += e.beta * cm.at(i, j);
                s += (e.beta * cm.at(i, j)).abs();
            }
            if e.bias {
                v += bias[j];
                s += bias[j].abs();
            }
            let idx = cm.off + i * cm.rs + j * cm.cs;
            want[idx] = act_ref(e.act, v);
            scale[idx] = 1.2 * s;
        }
    }
    (want, scale)
}

/// Compares the whole C buffer: the matrix within tolerance, the padding still NaN.
fn check(what: &str, got: &[f64], want: &[f64], scale: &[f64], rel: f64, rel_out: f64) {
    for idx in 0..want.len() {
        let (g, w) = (got[idx], want[idx]);
        if w.is_nan() {
            assert!(
                g.is_nan(),
                "{what}: element {idx} outside C was overwritten with {g}"
            );
            continue;
        }
        let tol = rel * scale[idx] + rel_out * w.abs() + 1e-6;
        assert!(
            (g - w).abs() <= tol,
            "{what}: C[{idx}] = {g}, want {w} (tol {tol})"
        );
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    la: Lay,
    lb: Lay,
    lc: Lay,
    e: Epi,
}

/// Generates (case, A, B, C, bias) with values rounded through `round` (f32 or a 16-bit type).
fn make(
    r: &mut StdRng,
    c: &Case,
    round: &dyn Fn(f64) -> f64,
) -> (Stored, Stored, Stored, Vec<f64>) {
    use rand::Rng;
    let a = Stored::new(c.m, c.k, c.la, || round(r.random_range(-1.0..1.0)));
    let b = Stored::new(c.k, c.n, c.lb, || round(r.random_range(-1.0..1.0)));
    let cm = Stored::new(c.m, c.n, c.lc, || {
        if c.e.beta == 0.0 {
            f64::NAN
        } else {
            round(r.random_range(-1.0..1.0))
        }
    });
    let bias: Vec<f64> = (0..c.n).map(|_| round(r.random_range(-1.0..1.0))).collect();
    (a, b, cm, bias)
}

fn cases() -> Vec<Case> {
    let epis = epilogues();
    let mut v = Vec::new();
    let mut t = 0;
    for &(m, n, k) in &SHAPES {
        for la in LAYS {
            for lb in LAYS {
                let lc = LAYS[t % 3];
                v.push(Case {
                    m,
                    n,
                    k,
                    la,
                    lb,
                    lc,
                    e: epis[t % epis.len()],
                });
                t += 1;
            }
        }
    }
    // Every epilogue on one shape that exercises edge tiles in all three dimensions.
    for (i, e) in epis.iter().enumerate() {
        v.push(Case {
            m: 131,
            n: 67,
            k: 45,
            la: Lay::RowMajor,
            lb: Lay::RowMajor,
            lc: LAYS[i % 3],
            e: *e,
        });
    }
    v
}

fn upload<T: DeviceElem>(
    dev: &Arc<CudaDevice>,
    v: &[f64],
    conv: &dyn Fn(f64) -> T,
) -> ember_cuda::DeviceBuffer<T> {
    let host: Vec<T> = v.iter().map(|&x| conv(x)).collect();
    dev.upload(&host).unwrap()
}

/// Runs one SGEMM case on the device and checks C (and its padding) against the f64 reference.
/// `tile`: `None` goes through `sgemm_version` (the tile chosen by shape, or forced by
/// `EMBER_CUDA_SGEMM_TILE`), `Some` through `sgemm_with_tile`.
fn sgemm_case(
    dev: &Arc<CudaDevice>,
    r: &mut StdRng,
    version: SgemmVersion,
    tile: Option<SgemmTile>,
    c: &Case,
) {
    let round = |x: f64| x as f32 as f64;
    let (a, b, cm, bias) = make(r, c, &round);
    let to32 = |x: f64| x as f32;
    let (da, db, dbias) = (
        upload(dev, &a.buf, &to32),
        upload(dev, &b.buf, &to32),
        upload(dev, &bias, &to32),
    );
    let mut dc = upload(dev, &cm.buf, &to32);
    let clen = dc.len();
    let epi = Epilogue {
        bias: c.e.bias.then(|| dbias.view()),
        act: c.e.act,
    };
    let ma = MatRef {
        data: da.slice(a.off..a.buf.len()).unwrap(),
        rs: a.rs,
        cs: a.cs,
    };
    let mb = MatRef {
        data: db.slice(b.off..b.buf.len()).unwrap(),
        rs: b.rs,
        cs: b.cs,
    };
    let mc = MatMut {
        data: dc.slice_mut(cm.off..clen).unwrap(),
        rs: cm.rs,
        cs: cm.cs,
    };
    let (alpha, beta) = (c.e.alpha as f32, c.e.beta as f32);
    let res = match tile {
        None => sgemm_version(version, c.m, c.n, c.k, alpha, ma, mb, beta, mc, epi),
        Some(t) => sgemm_with_tile(version, t, c.m, c.n, c.k, alpha, ma, mb, beta, mc, epi),
    };
    res.unwrap();
    let got: Vec<f64> = dc.to_host().unwrap().iter().map(|&x| x as f64).collect();
    let (want, scale) = reference(c, &a, &b, &cm, &bias);
    let what = format!(
        "sgemm {} tile {:?} m={} n={} k={} A {:?} B {:?} C {:?} {:?}",
        version.name(),
        tile,
        c.m,
        c.n,
        c.k,
        c.la,
        c.lb,
        c.lc,
        c.e
    );
    check(&what, &got, &want, &scale, 1e-5, 0.0);
}

#[test]
fn every_sgemm_version_matches_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_gemm::sgemm") else {
        return;
    };
    let mut r = rng("sgemm");
    for version in SgemmVersion::ALL {
        for c in cases() {
            sgemm_case(&dev, &mut r, version, None, &c);
        }
    }
}

/// Shapes with ragged edges in every dimension for the forced-tile test: more than one 128×128
/// tile with partial ones at the right and bottom, a k that is not a multiple of the 8-deep
/// k-tile, single rows and columns, and one shape with full tiles only.
const TILE_SHAPES: [(usize, usize, usize); 6] = [
    (129, 130, 131),
    (257, 131, 45),
    (131, 257, 9),
    (1, 129, 17),
    (130, 1, 33),
    (256, 128, 64),
];

/// The 128×128 register-blocked kernels (`sgemm_regblock_128`, `sgemm_vec_128`) are chosen by
/// shape only when the tiles cover every SM (132 on an H200: 1536×1408 and up), which no other
/// correctness test reaches; forcing the tile runs them, and the 64×64 ones, on ragged shapes
/// in every layout. (`compute-sanitizer` runs this test in `scripts/gpu-check.sh`.)
#[test]
fn forced_tiles_match_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_gemm::forced_tiles") else {
        return;
    };
    let mut r = rng("forced_tiles");
    let epis = epilogues();
    let mut t = 0;
    for tile in [SgemmTile::T128, SgemmTile::T64] {
        for version in [SgemmVersion::RegBlocked, SgemmVersion::Vectorized] {
            for &(m, n, k) in &TILE_SHAPES {
                for la in LAYS {
                    for lb in LAYS {
                        let c = Case {
                            m,
                            n,
                            k,
                            la,
                            lb,
                            lc: LAYS[t % 3],
                            e: epis[t % epis.len()],
                        };
                        t += 1;
                        sgemm_case(&dev, &mut r, version, Some(tile), &c);
                    }
                }
            }
        }
    }
}

fn hgemm_case<H: ember_cuda::HalfElem>(
    version: HgemmVersion,
    dev: &Arc<CudaDevice>,
    r: &mut StdRng,
    to_h: &dyn Fn(f64) -> H,
    from_h: &dyn Fn(H) -> f64,
    unit: f64,
) {
    let round = |x: f64| from_h(to_h(x));
    for c in cases() {
        let (a, b, cm, bias) = make(r, &c, &round);
        let (da, db) = (upload(dev, &a.buf, to_h), upload(dev, &b.buf, to_h));
        let ma = MatRef {
            data: da.slice(a.off..a.buf.len()).unwrap(),
            rs: a.rs,
            cs: a.cs,
        };
        let mb = MatRef {
            data: db.slice(b.off..b.buf.len()).unwrap(),
            rs: b.rs,
            cs: b.cs,
        };
        let (want, scale) = reference(&c, &a, &b, &cm, &bias);
        let what = format!(
            "hgemm {} <{:?}> m={} n={} k={} A {:?} B {:?} C {:?} {:?}",
            version.name(),
            H::DTYPE,
            c.m,
            c.n,
            c.k,
            c.la,
            c.lb,
            c.lc,
            c.e
        );
        // f32 C and bias.
        let to32 = |x: f64| x as f32;
        let dbias = upload(dev, &bias, &to32);
        let mut dc = upload(dev, &cm.buf, &to32);
        let clen = dc.len();
        let epi = Epilogue {
            bias: c.e.bias.then(|| dbias.view()),
            act: c.e.act,
        };
        hgemm_version(
            version,
            c.m,
            c.n,
            c.k,
            c.e.alpha as f32,
            ma,
            mb,
            c.e.beta as f32,
            MatMut {
                data: dc.slice_mut(cm.off..clen).unwrap(),
                rs: cm.rs,
                cs: cm.cs,
            },
            epi,
        )
        .unwrap();
        let got: Vec<f64> = dc.to_host().unwrap().iter().map(|&x| x as f64).collect();
        check(&what, &got, &want, &scale, 1e-4, 0.0);
        // 16-bit C and bias (C and bias already hold 16-bit-representable values).
        let dbias = upload(dev, &bias, to_h);
        let mut dc = upload(dev, &cm.buf, to_h);
        let epi = Epilogue {
            bias: c.e.bias.then(|| dbias.view()),
            act: c.e.act,
        };
        hgemm_version(
            version,
            c.m,
            c.n,
            c.k,
            c.e.alpha as f32,
            ma,
            mb,
            c.e.beta as f32,
            MatMut {
                data: dc.slice_mut(cm.off..clen).unwrap(),
                rs: cm.rs,
                cs: cm.cs,
            },
            epi,
        )
        .unwrap();
        let got: Vec<f64> = dc.to_host().unwrap().iter().map(|&x| from_h(x)).collect();
        check(&format!("{what} out16"), &got, &want, &scale, 1e-4, unit);
    }
}

#[test]
fn tensor_core_gemm_matches_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_gemm::hgemm") else {
        return;
    };
    let mut r = rng("hgemm");
    hgemm_case::<half::bf16>(
        HgemmVersion::Mma,
        &dev,
        &mut r,
        &half::bf16::from_f64,
        &|h| h.to_f64(),
        2f64.powi(-8),
    );
    hgemm_case::<half::f16>(
        HgemmVersion::Mma,
        &dev,
        &mut r,
        &half::f16::from_f64,
        &|h| h.to_f64(),
        2f64.powi(-11),
    );
}

#[test]
fn wgmma_gemm_matches_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_gemm::wgmma") else {
        return;
    };
    if dev.arch() != "sm_90a" {
        // Architecture-specific: not a failure even under EMBER_REQUIRE_GPU=1.
        skipped(&format!(
            "gpu_gemm::wgmma: needs sm_90a, device is {}",
            dev.arch()
        ));
        return;
    }
    let mut r = rng("wgmma");
    hgemm_case::<half::bf16>(
        HgemmVersion::Wgmma,
        &dev,
        &mut r,
        &half::bf16::from_f64,
        &|h| h.to_f64(),
        2f64.powi(-8),
    );
    hgemm_case::<half::f16>(
        HgemmVersion::Wgmma,
        &dev,
        &mut r,
        &half::f16::from_f64,
        &|h| h.to_f64(),
        2f64.powi(-11),
    );
}

#[test]
fn gemm_rejects_operands_that_do_not_fit() {
    let Some(dev) = gpu_or_skip("gpu_gemm::errors") else {
        return;
    };
    let a = dev.upload(&[1.0f32; 6]).unwrap();
    let b = dev.upload(&[1.0f32; 6]).unwrap();
    let mut c = dev.alloc::<f32>(4).unwrap();
    // A is 2x3 but claims 3 rows.
    let e = sgemm_version(
        SgemmVersion::Auto,
        3,
        2,
        3,
        1.0,
        MatRef {
            data: a.view(),
            rs: 3,
            cs: 1,
        },
        MatRef {
            data: b.view(),
            rs: 2,
            cs: 1,
        },
        0.0,
        MatMut {
            data: c.view_mut(),
            rs: 2,
            cs: 1,
        },
        Epilogue::default(),
    );
    assert!(e.is_err());
    // C with overlapping rows.
    let e = sgemm_version(
        SgemmVersion::Auto,
        2,
        2,
        3,
        1.0,
        MatRef {
            data: a.view(),
            rs: 3,
            cs: 1,
        },
        MatRef {
            data: b.view(),
            rs: 2,
            cs: 1,
        },
        0.0,
        MatMut {
            data: c.view_mut(),
            rs: 1,
            cs: 1,
        },
        Epilogue::default(),
    );
    assert!(e.is_err());
    // Bias of the wrong length.
    let bias = dev.upload(&[0.0f32; 3]).unwrap();
    let e = sgemm_version(
        SgemmVersion::Auto,
        2,
        2,
        3,
        1.0,
        MatRef {
            data: a.view(),
            rs: 3,
            cs: 1,
        },
        MatRef {
            data: b.view(),
            rs: 2,
            cs: 1,
        },
        0.0,
        MatMut {
            data: c.view_mut(),
            rs: 2,
            cs: 1,
        },
        Epilogue {
            bias: Some(bias.view()),
            act: Activation::Relu,
        },
    );
    assert!(e.is_err());
}
