//! Property tests of the public tensor API: random shapes (sizes 0 and 1 included), random
//! layouts (contiguous, permuted storage viewed back, narrowed out of a padded tensor, broadcast
//! with stride 0) and every dtype. Each public op must either return `Err` or a result equal to
//! a naive f64 reference within a tolerance fitting the dtype, and must never panic: every call
//! runs under `catch_unwind`, and a panic fails the case with the input printed.
//!
//! Inputs that are known to panic today are left out here and kept as ignored tests in
//! `core_regressions.rs` (each exclusion below names its test).
//!
//! The case count is proptest's default, 256 per property, unless `PROPTEST_CASES` says
//! otherwise; the whole file then runs in well under a second in the dev profile (20,000 cases
//! per property took 7 s on the 2-core development machine), so longer runs by hand are cheap.

mod common;

use common::Arr;
use ember_core::{Activation, BinaryOp, DType, Device, Tensor, UnaryOp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};

// ---------------------------------------------------------------------------------------------
// Harness: panics become failures, results are compared with a tolerance per dtype.

/// The proptest configuration: the default case count (`PROPTEST_CASES` overrides it).
fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are kept as named tests in core_regressions.rs instead of a seed file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f`, turning a panic into a test failure that names the call and the panic message.
fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!("{what}: PANICKED: {msg}"))
    })
}

/// A value as stored in `dt` (round to nearest even), read back as f64.
fn round(v: f64, dt: DType) -> f64 {
    match dt {
        DType::F64 => v,
        DType::F32 => v as f32 as f64,
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
    }
}

/// Relative tolerance of one rounded result in `dt` (a few units in the last place).
fn tol(dt: DType) -> f64 {
    match dt {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        DType::BF16 => 1.6e-2,
    }
}

/// Checks `got` against `want` element by element: same shape; NaN matches NaN, infinities
/// match exactly, finite values within `tol · (1 + scale[i])` where `scale` is the magnitude
/// the result was computed from (|want| for a single rounding, Σ|terms| for a sum).
fn check(
    got: &Tensor,
    want: &Arr,
    scale: &[f64],
    tol: f64,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape.as_slice(), "{}: shape", what);
    let values = guard(what, || got.to_vec::<f64>())?
        .map_err(|e| TestCaseError::fail(format!("{what}: to_vec: {e}")))?;
    prop_assert_eq!(values.len(), want.data.len(), "{}: element count", what);
    for (i, (&g, &w)) in values.iter().zip(&want.data).enumerate() {
        let ok = if w.is_nan() || !w.is_finite() {
            (g.is_nan() && w.is_nan()) || g == w
        } else {
            (g - w).abs() <= tol * (1.0 + scale[i])
        };
        prop_assert!(
            ok,
            "{}: element {} of {:?}: got {}, want {}",
            what,
            i,
            want.shape,
            g,
            w
        );
    }
    Ok(())
}

/// [`check`] with the scale of a single rounding: |want|.
fn check_rounded(got: &Tensor, want: &Arr, tol: f64, what: &str) -> Result<(), TestCaseError> {
    let scale: Vec<f64> = want.data.iter().map(|w| w.abs()).collect();
    check(got, want, &scale, tol, what)
}

/// Unwraps a result that must be `Ok` for valid input.
fn ok<T>(r: ember_core::Result<T>, what: &str) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{what}: unexpected Err: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Inputs: reference arrays and tensors holding the same values in a chosen layout.

/// How an input tensor is laid out over its storage.
#[derive(Debug, Clone, Copy)]
enum View {
    /// Row-major, as created.
    Contiguous,
    /// The values stored permuted, viewed back through `permute` (the seed picks the order).
    Permuted(u64),
    /// Narrowed out of a tensor padded with NaN along one dimension (the seed picks which).
    Narrowed(u64),
    /// Some dimensions of extent 1 broadcast with stride 0 (the seed picks which).
    Broadcast(u64),
}

fn view() -> impl Strategy<Value = View> {
    prop_oneof![
        Just(View::Contiguous),
        any::<u64>().prop_map(View::Permuted),
        any::<u64>().prop_map(View::Narrowed),
        any::<u64>().prop_map(View::Broadcast),
    ]
}

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

/// Shapes of rank 0 to `max_rank` with extents 0 to `max_dim` (0 and 1 are common).
fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    ranked_shape(0, max_rank, max_dim)
}

/// Shapes of rank `min_rank` to `max_rank` with extents 0 to `max_dim`.
fn ranked_shape(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![1 => Just(0usize), 2 => Just(1usize), 5 => 0..=max_dim],
        min_rank..=max_rank,
    )
}

/// An array of `shape` whose element at each index is `f(index)`.
fn from_fn(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> Arr {
    let tmp = Arr::new(shape, vec![0.0; shape.iter().product()]);
    let data = (0..tmp.data.len()).map(|i| f(&tmp.unravel(i))).collect();
    Arr::new(shape, data)
}

/// The element of `a` at `idx` (same rank).
fn at(a: &Arr, idx: &[usize]) -> f64 {
    let off: usize = idx.iter().zip(a.strides()).map(|(i, s)| i * s).sum();
    a.data[off]
}

/// `a` with its dimensions reordered: output dimension `i` is input dimension `perm[i]`.
fn permute_ref(a: &Arr, perm: &[usize]) -> Arr {
    let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
    from_fn(&shape, |idx| {
        let mut src = vec![0; idx.len()];
        for (i, &p) in perm.iter().enumerate() {
            src[p] = idx[i];
        }
        at(a, &src)
    })
}

/// Builds a tensor of `dt` holding `want`'s values (already representable in `dt`) in `view`.
/// For [`View::Broadcast`] the values are first replaced by a broadcast of fewer values, so
/// the returned array is the reference to use.
fn make(want: &Arr, view: View, dt: DType) -> ember_core::Result<(Arr, Tensor)> {
    let rank = want.shape.len();
    let stored =
        |a: &Arr| Tensor::from_vec(a.data.clone(), a.shape.clone(), Device::Cpu)?.to_dtype(dt);
    match view {
        View::Permuted(seed) if rank >= 2 => {
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.shuffle(&mut StdRng::seed_from_u64(seed));
            let mut inverse = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            let t = stored(&permute_ref(want, &perm))?.permute(&inverse)?;
            Ok((want.clone(), t))
        }
        View::Narrowed(seed) if rank >= 1 => {
            let mut rng = StdRng::seed_from_u64(seed);
            let dim = rng.random_range(0..rank);
            let (before, after) = (rng.random_range(0..3usize), rng.random_range(0..3usize));
            let mut big = want.shape.clone();
            big[dim] += before + after;
            let padded = from_fn(&big, |idx| {
                let i = idx[dim];
                if i < before || i >= before + want.shape[dim] {
                    f64::NAN
                } else {
                    let mut src = idx.to_vec();
                    src[dim] -= before;
                    at(want, &src)
                }
            });
            let t = stored(&padded)?.narrow(dim, before, want.shape[dim])?;
            Ok((want.clone(), t))
        }
        View::Broadcast(seed) if rank >= 1 => {
            let mut rng = StdRng::seed_from_u64(seed);
            let base_shape: Vec<usize> = want
                .shape
                .iter()
                .map(|&e| if e > 0 && rng.random_bool(0.5) { 1 } else { e })
                .collect();
            let base = from_fn(&base_shape, |idx| at(want, idx));
            let reference = from_fn(&want.shape, |idx| base.at_broadcast(idx));
            let t = stored(&base)?.broadcast_to(want.shape.clone())?;
            Ok((reference, t))
        }
        _ => Ok((want.clone(), stored(want)?)),
    }
}

/// Random values in [lo, hi) rounded to `dt`, as an array of `shape`.
fn random_arr(shape: &[usize], lo: f64, hi: f64, dt: DType, seed: u64) -> Arr {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    Arr::new(
        shape,
        (0..n)
            .map(|_| round(rng.random_range(lo..hi), dt))
            .collect(),
    )
}

/// A random input: reference and tensor (values in [-4, 4)).
fn input(
    shape: &[usize],
    view: View,
    dt: DType,
    seed: u64,
) -> Result<(Arr, Tensor), TestCaseError> {
    let want = random_arr(shape, -4.0, 4.0, dt, seed);
    let what = format!("building {shape:?} {dt} {view:?}");
    ok(guard(&what, || make(&want, view, dt))?, &what)
}

// ---------------------------------------------------------------------------------------------
// Independent f64 formulas.

/// erf: its Maclaurin series for |z| <= 3 (cancellation stays under 1e-13 there), else
/// 1 - erfc(|z|) with erfc from its continued fraction (60 terms, converged for z >= 3).
fn erf(z: f64) -> f64 {
    if z.abs() > 3.0 {
        let x = z.abs();
        let mut t = x;
        for n in (1..=60).rev() {
            t = x + (n as f64 / 2.0) / t;
        }
        let erfc = (-x * x).exp() / std::f64::consts::PI.sqrt() / t;
        return z.signum() * (1.0 - erfc);
    }
    let (mut term, mut sum) = (z, z);
    for n in 1..200 {
        term *= -z * z / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The documented formula of each unary op (ember-ops' doc comments, PyTorch's definitions).
fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Sqr => x * x,
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryOp::Elu(a) => {
            if x > 0.0 {
                x
            } else {
                a * (x.exp() - 1.0)
            }
        }
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::GeluErf => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::Clamp(lo, hi) => x.max(lo).min(hi),
        UnaryOp::Powf(p) => x.powf(p),
        UnaryOp::AddScalar(c) => x + c,
        UnaryOp::MulScalar(c) => x * c,
        UnaryOp::Silu => x * sigmoid(x),
    }
}

fn binary_ref(op: BinaryOp, a: f64, b: f64) -> f64 {
    let flag = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        BinaryOp::Eq => flag(a == b),
        BinaryOp::Ne => flag(a != b),
        BinaryOp::Lt => flag(a < b),
        BinaryOp::Le => flag(a <= b),
        BinaryOp::Gt => flag(a > b),
        BinaryOp::Ge => flag(a >= b),
    }
}

/// A reduction over a set of axes, with keepdim, as the `Tensor` methods take it.
type AxesReduction = fn(&Tensor, &[usize], bool) -> ember_core::Result<Tensor>;

/// The naive reduction of one group of values.
type GroupReduction = fn(&[f64]) -> f64;

/// A `Tensor` call along one axis.
type AxisCall = fn(&Tensor, usize) -> ember_core::Result<Tensor>;

/// Drops the reduced axes of a keepdim-shaped reference when `keepdim` is false.
fn drop_axes(a: Arr, axes: &[usize], keepdim: bool) -> Arr {
    if keepdim {
        return a;
    }
    let shape: Vec<usize> = a
        .shape
        .iter()
        .enumerate()
        .filter(|(d, _)| !axes.contains(d))
        .map(|(_, &e)| e)
        .collect();
    Arr::new(&shape, a.data)
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config())]

    /// Every unary op in `UnaryOp::ALL`, on every dtype and layout, matches its formula.
    #[test]
    fn unary_ops_match_formulas(sh in shape(4, 5), v in view(), dt in dtype(), seed in any::<u64>()) {
        let (want, x) = input(&sh, v, dt, seed)?;
        for op in UnaryOp::ALL {
            let what = format!("unary_op({op:?}) on {sh:?} {dt} {v:?}");
            let y = ok(guard(&what, || x.unary_op(op))?, &what)?;
            prop_assert_eq!(y.dtype(), dt, "{}: dtype", what);
            let reference = want.map(|x| round(unary_ref(op, x), dt));
            check_rounded(&y, &reference, tol(dt), &what)?;
        }
    }

    /// Every binary op in `BinaryOp::ALL`, with NumPy broadcasting between random compatible
    /// shapes, matches its formula.
    #[test]
    fn binary_ops_broadcast(
        out in shape(4, 4),
        masks in (any::<u8>(), any::<u8>(), 0..=4usize, 0..=4usize),
        (va, vb) in (view(), view()),
        dt in dtype(),
        seed in any::<u64>(),
    ) {
        // Each operand: a suffix of the output shape with some extents replaced by 1.
        let operand = |mask: u8, drop: usize| -> Vec<usize> {
            let keep = out.len() - drop.min(out.len());
            out[out.len() - keep..]
                .iter()
                .enumerate()
                .map(|(i, &e)| if mask >> i & 1 == 1 { 1 } else { e })
                .collect()
        };
        let (sa, sb) = (operand(masks.0, masks.2), operand(masks.1, masks.3));
        let (a, ta) = input(&sa, va, dt, seed)?;
        let (b, tb) = input(&sb, vb, dt, seed ^ 0x9e37_79b9)?;
        for op in BinaryOp::ALL {
            let what = format!("binary_op({op:?}) on {sa:?} {va:?} and {sb:?} {vb:?} in {dt}");
            let y = ok(guard(&what, || ta.binary_op(&tb, op))?, &what)?;
            let reference = a.zip(&b, |x, y| round(binary_ref(op, x, y), dt));
            check_rounded(&y, &reference, tol(dt), &what)?;
        }
    }

    /// Shapes that cannot broadcast (an extent differs and neither is 1) give `Err`, as do
    /// operands of different dtypes (or, if ember ever promotes, a correct result).
    #[test]
    fn binary_ops_reject_bad_operands(
        sh in shape(3, 4),
        (x, step) in (2..6usize, 1..4usize),
        pos in any::<prop::sample::Index>(),
        (da, db) in (dtype(), dtype()),
        seed in any::<u64>(),
    ) {
        let y = x + step;
        let mut sa = sh.clone();
        let mut sb = sh.clone();
        let at = pos.index(sh.len() + 1);
        sa.insert(at, x);
        sb.insert(at, y);
        let (_, ta) = input(&sa, View::Contiguous, da, seed)?;
        let (_, tb) = input(&sb, View::Contiguous, da, seed)?;
        for op in BinaryOp::ALL {
            let what = format!("binary_op({op:?}) on {sa:?} and {sb:?}");
            let r = guard(&what, || ta.binary_op(&tb, op))?;
            prop_assert!(r.is_err(), "{}: expected Err, got shape {:?}", what, r.map(|t| t.shape().to_vec()));
        }
        // Mixed dtypes with equal shapes.
        let (a, ta) = input(&sh, View::Contiguous, da, seed)?;
        let (b, tb) = input(&sh, View::Contiguous, db, seed ^ 1)?;
        for op in BinaryOp::ALL {
            let what = format!("binary_op({op:?}) on {sh:?} {da} and {db}");
            if let Ok(y) = guard(&what, || ta.binary_op(&tb, op))? {
                let coarse = if tol(da) > tol(db) { da } else { db };
                let reference = a.zip(&b, |x, y| round(binary_ref(op, x, y), coarse));
                check_rounded(&y, &reference, tol(coarse), &what)?;
            }
        }
    }

    /// sum, mean, max, min over random axis sets (repeats must be `Err`) and argmax, argmin
    /// over one axis, with and without keepdim.
    #[test]
    fn reductions(
        sh in shape(4, 5),
        v in view(),
        dt in dtype(),
        mask in any::<u8>(),
        repeat in prop::bool::weighted(0.15),
        keepdim in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let rank = sh.len();
        let mut axes: Vec<usize> = (0..rank).filter(|d| mask >> d & 1 == 1).collect();
        if repeat && !axes.is_empty() {
            axes.push(axes[0]);
        }
        let empty_group = axes.iter().any(|&d| sh[d] == 0);
        let ops: [(&str, AxesReduction, GroupReduction); 4] = [
            ("sum", |t, a, k| t.sum(a, k), |g| g.iter().sum()),
            ("mean", |t, a, k| t.mean(a, k), |g| g.iter().sum::<f64>() / g.len() as f64),
            ("max", |t, a, k| t.max(a, k), |g| g.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
            ("min", |t, a, k| t.min(a, k), |g| g.iter().cloned().fold(f64::INFINITY, f64::min)),
        ];
        for (name, f, reduce) in ops {
            let what = format!("{name}({axes:?}, keepdim {keepdim}) on {sh:?} {dt} {v:?}");
            let r = guard(&what, || f(&x, &axes, keepdim))?;
            if repeat && !axes.is_empty() {
                prop_assert!(r.is_err(), "{}: repeated axes must be Err", what);
                continue;
            }
            let y = match r {
                Err(e) if empty_group && (name == "max" || name == "min") => {
                    let _ = e; // No extremum of an empty set: Err is the documented answer.
                    continue;
                }
                r => ok(r, &what)?,
            };
            let want = drop_axes(a.reduce(&axes, |g| round(reduce(g), dt)), &axes, keepdim);
            // A sum's error grows with the magnitude of its terms, a mean's with their average.
            let scale = drop_axes(
                a.reduce(&axes, |g| {
                    let s: f64 = g.iter().map(|v| v.abs()).sum();
                    if name == "mean" { s / g.len().max(1) as f64 } else { s }
                }),
                &axes,
                keepdim,
            );
            check(&y, &want, &scale.data, tol(dt), &what)?;
        }
        for axis in 0..rank + 1 {
            for (name, first_best) in [("argmax", true), ("argmin", false)] {
                let what = format!("{name}({axis}, keepdim {keepdim}) on {sh:?} {dt} {v:?}");
                let r = guard(&what, || if first_best { x.argmax(axis, keepdim) } else { x.argmin(axis, keepdim) })?;
                if axis >= rank || sh[axis] == 0 {
                    prop_assert!(r.is_err(), "{}: expected Err", what);
                    continue;
                }
                let y = ok(r, &what)?;
                // The first index of the extremum, as PyTorch and ember document.
                let want = drop_axes(
                    a.reduce(&[axis], |g| {
                        let mut best = 0;
                        for (i, &v) in g.iter().enumerate() {
                            if (first_best && v > g[best]) || (!first_best && v < g[best]) {
                                best = i;
                            }
                        }
                        best as f64
                    }),
                    &[axis],
                    keepdim,
                );
                check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
            }
        }
    }

    /// Reductions over an axis that is not there give `Err`.
    #[test]
    fn reductions_reject_bad_axes(sh in shape(3, 3), extra in 0..4usize, dt in dtype()) {
        let (_, x) = input(&sh, View::Contiguous, dt, 0)?;
        let axis = sh.len() + extra;
        let calls: [(&str, AxisCall); 8] = [
            ("sum", |t, a| t.sum(&[a], false)),
            ("mean", |t, a| t.mean(&[a], true)),
            ("max", |t, a| t.max(&[a], false)),
            ("argmax", |t, a| t.argmax(a, false)),
            ("softmax", |t, a| t.softmax(a)),
            ("log_softmax", |t, a| t.log_softmax(a)),
            ("logsumexp", |t, a| t.logsumexp(&[a], false)),
            ("var", |t, a| t.var(&[a], false)),
        ];
        for (name, f) in calls {
            let what = format!("{name}(axis {axis}) on {sh:?}");
            prop_assert!(guard(&what, || f(&x, axis))?.is_err(), "{}: expected Err", what);
        }
    }

    /// softmax and log_softmax along a random axis match their definitions.
    #[test]
    fn softmax_matches_definition(sh in ranked_shape(1, 3, 5), v in view(), dt in dtype(), axis in 0..3usize, seed in any::<u64>()) {
        let axis = axis % sh.len();
        let (a, x) = input(&sh, v, dt, seed)?;
        let lse = a.reduce(&[axis], |g| {
            let m = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + g.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
        });
        let log_sm = a.zip(&lse, |x, l| x - l);
        for (name, log) in [("softmax", false), ("log_softmax", true)] {
            let what = format!("{name}({axis}) on {sh:?} {dt} {v:?}");
            let y = ok(guard(&what, || if log { x.log_softmax(axis) } else { x.softmax(axis) })?, &what)?;
            let want = log_sm.map(|l| round(if log { l } else { l.exp() }, dt));
            // log_softmax subtracts values of size up to ~5: scale the error with them.
            let scale: Vec<f64> = want.data.iter().map(|w| w.abs() + if log { 5.0 } else { 0.0 }).collect();
            check(&y, &want, &scale, 2.0 * tol(dt), &what)?;
        }
    }

    /// matmul of random views (transposed storage, narrowed, stride-0 broadcast), batched with
    /// broadcast batch dimensions and with rank-1 operands, against a naive triple loop.
    #[test]
    fn matmul_matches_naive(
        (m, k, n) in (0..6usize, 0..6usize, 0..6usize),
        batch in prop_oneof![Just((vec![], vec![])), Just((vec![3], vec![3])), Just((vec![2], vec![])),
                             Just((vec![], vec![2])), Just((vec![2, 1], vec![3])), Just((vec![0], vec![1]))],
        vector in 0..4u8,
        (va, vb) in (view(), view()),
        dt in dtype(),
        seed in any::<u64>(),
    ) {
        let (lhs_vec, rhs_vec) = (vector == 1, vector == 2);
        let sa: Vec<usize> = if lhs_vec { vec![k] } else { [batch.0.clone(), vec![m, k]].concat() };
        let sb: Vec<usize> = if rhs_vec { vec![k] } else { [batch.1.clone(), vec![k, n]].concat() };
        let (a, ta) = input(&sa, va, dt, seed)?;
        let (b, tb) = input(&sb, vb, dt, seed ^ 7)?;
        let what = format!("matmul {sa:?} {va:?} x {sb:?} {vb:?} in {dt}");
        let y = ok(guard(&what, || ta.matmul(&tb))?, &what)?;
        // Reference: operands as matrices, batch dimensions broadcast from the right.
        let a2 = if lhs_vec { Arr::new(&[1, k], a.data.clone()) } else { a.clone() };
        let b2 = if rhs_vec { Arr::new(&[k, 1], b.data.clone()) } else { b.clone() };
        let (ba, bb) = (&a2.shape[..a2.shape.len() - 2], &b2.shape[..b2.shape.len() - 2]);
        let brank = ba.len().max(bb.len());
        let pad = |s: &[usize]| [vec![1; brank - s.len()], s.to_vec()].concat();
        let bshape: Vec<usize> = pad(ba).iter().zip(pad(bb)).map(|(&x, y)| if x == 1 { y } else { x }).collect();
        let (mm, nn) = (a2.shape[a2.shape.len() - 2], b2.shape[b2.shape.len() - 1]);
        let full = [bshape.clone(), vec![mm, nn]].concat();
        let dot = |idx: &[usize], abs: bool| -> f64 {
            let (bi, i, j) = (&idx[..brank], idx[brank], idx[brank + 1]);
            (0..k).map(|kk| {
                let p = a2.at_broadcast(&[bi, &[i, kk]].concat()) * b2.at_broadcast(&[bi, &[kk, j]].concat());
                if abs { p.abs() } else { p }
            }).sum()
        };
        let want_full = from_fn(&full, |idx| round(dot(idx, false), dt));
        let scale_full = from_fn(&full, |idx| dot(idx, true));
        let mut out_shape = bshape.clone();
        if !lhs_vec { out_shape.push(mm); }
        if !rhs_vec { out_shape.push(nn); }
        let want = Arr::new(&out_shape, want_full.data);
        check(&y, &want, &scale_full.data, tol(dt), &what)?;
    }

    /// reshape keeps the row-major order; a shape with another element count is `Err`.
    #[test]
    fn reshape_keeps_order(sh in shape(4, 4), v in view(), dt in dtype(), seed in any::<u64>(), order in any::<u64>(), grow in 1..3usize) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let mut target = sh.clone();
        target.shuffle(&mut StdRng::seed_from_u64(order));
        target.insert((order % (target.len() as u64 + 1)) as usize, 1);
        let what = format!("reshape {sh:?} {v:?} to {target:?}");
        let y = ok(guard(&what, || x.reshape(target.clone()))?, &what)?;
        check(&y, &Arr::new(&target, a.data.clone()), &vec![0.0; a.data.len()], 0.0, &what)?;
        let n: usize = sh.iter().product();
        let bad = vec![n + grow];
        let what = format!("reshape {sh:?} to {bad:?}");
        prop_assert!(guard(&what, || x.reshape(bad.clone()))?.is_err(), "{}: expected Err", what);
    }

    /// permute and transpose move values as the reference does; invalid orders are `Err`.
    #[test]
    fn permute_and_transpose(sh in shape(4, 4), v in view(), dt in dtype(), seed in any::<u64>(), order in any::<u64>(), (d0, d1) in (0..5usize, 0..5usize)) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let rank = sh.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(order));
        let what = format!("permute({perm:?}) on {sh:?} {v:?}");
        let y = ok(guard(&what, || x.permute(&perm))?, &what)?;
        let want = permute_ref(&a, &perm);
        check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        if rank >= 1 {
            let mut bad = perm.clone();
            bad[0] = (bad[0] + 1) % (rank + 1); // a repeat, or an axis out of range
            let what = format!("permute({bad:?}) on {sh:?}");
            prop_assert!(guard(&what, || x.permute(&bad))?.is_err(), "{}: expected Err", what);
        }
        let what = format!("transpose({d0}, {d1}) on {sh:?} {v:?}");
        let r = guard(&what, || x.transpose(d0, d1))?;
        if d0 >= rank || d1 >= rank {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut p: Vec<usize> = (0..rank).collect();
            p.swap(d0, d1);
            let want = permute_ref(&a, &p);
            check(&ok(r, &what)?, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        }
    }

    /// narrow picks the range or returns `Err`, with starts and lengths up to `usize::MAX`.
    #[test]
    fn narrow_in_and_out_of_range(
        sh in shape(3, 5),
        v in view(),
        dt in dtype(),
        seed in any::<u64>(),
        dim in 0..4usize,
        start in prop_oneof![0..7usize, Just(usize::MAX), Just(usize::MAX - 1)],
        len in prop_oneof![0..7usize, Just(usize::MAX)],
    ) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let what = format!("narrow({dim}, {start}, {len}) on {sh:?} {v:?}");
        let r = guard(&what, || x.narrow(dim, start, len))?;
        let valid = dim < sh.len() && start.checked_add(len).is_some_and(|end| end <= sh[dim]);
        if !valid {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh.clone();
            out[dim] = len;
            let want = from_fn(&out, |idx| {
                let mut src = idx.to_vec();
                src[dim] += start;
                at(&a, &src)
            });
            check(&ok(r, &what)?, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        }
    }

    /// broadcast_to to a shape with new leading dimensions and expanded 1s; changing an extent
    /// other than 1 is `Err`.
    #[test]
    fn broadcast_to_views(sh in shape(3, 4), v in view(), dt in dtype(), seed in any::<u64>(), lead in shape(2, 3), grow in prop::collection::vec(0..4usize, 3)) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let expanded: Vec<usize> = sh.iter().zip(grow.iter().chain(std::iter::repeat(&0))).map(|(&e, &g)| if e == 1 { g } else { e }).collect();
        let target = [lead.clone(), expanded].concat();
        let what = format!("broadcast_to({target:?}) on {sh:?} {v:?}");
        let y = ok(guard(&what, || x.broadcast_to(target.clone()))?, &what)?;
        let want = from_fn(&target, |idx| a.at_broadcast(idx));
        check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        if let Some(d) = sh.iter().position(|&e| e != 1) {
            let mut bad = sh.clone();
            bad[d] += 1;
            let what = format!("broadcast_to({bad:?}) on {sh:?}");
            prop_assert!(guard(&what, || x.broadcast_to(bad.clone()))?.is_err(), "{}: expected Err", what);
        }
    }

    /// cat of one to three tensors (each its own view) along a dimension; a mismatch outside
    /// that dimension, or a dimension out of range, is `Err`.
    #[test]
    fn cat_joins(sh in ranked_shape(1, 3, 4), extents in prop::collection::vec(0..4usize, 1..4), views in prop::collection::vec(view(), 3), dim in 0..3usize, dt in dtype(), seed in any::<u64>()) {
        let dim = dim % sh.len();
        let mut parts = Vec::new();
        for (i, &e) in extents.iter().enumerate() {
            let mut s = sh.clone();
            s[dim] = e;
            parts.push(input(&s, views[i], dt, seed.wrapping_add(i as u64))?);
        }
        let tensors: Vec<&Tensor> = parts.iter().map(|(_, t)| t).collect();
        let what = format!("cat along {dim} of {extents:?} in {sh:?} {views:?}");
        let y = ok(guard(&what, || Tensor::cat(&tensors, dim))?, &what)?;
        let mut out = sh.clone();
        out[dim] = extents.iter().sum();
        let want = from_fn(&out, |idx| {
            let (mut i, mut part) = (idx[dim], 0);
            while i >= parts[part].0.shape[dim] {
                i -= parts[part].0.shape[dim];
                part += 1;
            }
            let mut src = idx.to_vec();
            src[dim] = i;
            at(&parts[part].0, &src)
        });
        check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        let what = format!("cat along {} of {sh:?}", sh.len());
        prop_assert!(guard(&what, || Tensor::cat(&tensors, sh.len()))?.is_err(), "{}: expected Err", what);
        if sh.len() >= 2 {
            let other = (dim + 1) % sh.len();
            let mut s = sh.clone();
            s[other] += 1;
            let (_, odd) = input(&s, View::Contiguous, dt, seed)?;
            let what = format!("cat along {dim} of {sh:?} and {s:?}");
            prop_assert!(guard(&what, || Tensor::cat(&[tensors[0], &odd], dim))?.is_err(), "{}: expected Err", what);
        }
    }

    /// index_select and gather with whole-number indices in range match the reference; an
    /// index out of range, negative or fractional is `Err`.
    #[test]
    fn index_select_and_gather(sh in ranked_shape(1, 3, 4), v in view(), dt in dtype(), seed in any::<u64>(), dim in 0..3usize, count in 0..5usize, bad in prop_oneof![Just(None), Just(Some(-1.0)), Just(Some(0.5)), Just(Some(f64::NAN)), Just(Some(1e30))], idt in prop::sample::select(vec![DType::F32, DType::F64])) {
        let dim = dim % sh.len();
        let (a, x) = input(&sh, v, dt, seed)?;
        let size = sh[dim];
        let mut rng = StdRng::seed_from_u64(seed);
        // index_select: `count` indices along `dim`.
        let mut idx: Vec<f64> = (0..count).map(|_| if size == 0 { 0.0 } else { rng.random_range(0..size) as f64 }).collect();
        // (Good indices are drawn from 0..size, so only a bad one or an empty axis can fail.)
        let must_fail = count > 0 && (size == 0 || bad.is_some());
        if let (Some(b), Some(first)) = (bad, idx.first_mut()) {
            *first = b;
        }
        let it = ok(Tensor::from_vec(idx.clone(), count, Device::Cpu).and_then(|t| t.to_dtype(idt)), "indices")?;
        let what = format!("index_select({idx:?}, {dim}) on {sh:?} {v:?}");
        let r = guard(&what, || x.index_select(&it, dim))?;
        if must_fail {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh.clone();
            out[dim] = count;
            let want = from_fn(&out, |i| {
                let mut src = i.to_vec();
                src[dim] = idx[i[dim]] as usize;
                at(&a, &src)
            });
            check(&ok(r, &what)?, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        }
        // gather: an index tensor shaped like the input except `count` along `dim`.
        let mut ishape = sh.clone();
        ishape[dim] = count;
        let n: usize = ishape.iter().product();
        let mut gidx: Vec<f64> = (0..n).map(|_| if size == 0 { 0.0 } else { rng.random_range(0..size) as f64 }).collect();
        let must_fail = (size == 0 || bad.is_some()) && n > 0;
        if let (Some(b), Some(first)) = (bad, gidx.first_mut()) {
            *first = b;
        }
        let gi = ok(Tensor::from_vec(gidx.clone(), ishape.clone(), Device::Cpu).and_then(|t| t.to_dtype(idt)), "indices")?;
        let what = format!("gather({dim}, {gidx:?} {ishape:?}) on {sh:?} {v:?}");
        let r = guard(&what, || x.gather(dim, &gi))?;
        if must_fail {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let gref = Arr::new(&ishape, gidx.clone());
            let want = from_fn(&ishape, |i| {
                let mut src = i.to_vec();
                src[dim] = at(&gref, i) as usize;
                at(&a, &src)
            });
            check(&ok(r, &what)?, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        }
        // Indices whose shape differs off `dim` are `Err`.
        if sh.len() >= 2 {
            let mut wrong = ishape.clone();
            wrong[(dim + 1) % sh.len()] += 1;
            let gi = ok(Tensor::zeros(wrong.clone(), DType::F32, Device::Cpu), "zeros")?;
            let what = format!("gather({dim}, {wrong:?}) on {sh:?}");
            prop_assert!(guard(&what, || x.gather(dim, &gi))?.is_err(), "{}: expected Err", what);
        }
    }

    /// to_dtype rounds to nearest (ties to even) in every direction, on any layout; converting
    /// to a wider type and back is exact.
    #[test]
    fn to_dtype_round_trips(sh in shape(3, 5), v in view(), (from, to) in (dtype(), dtype()), seed in any::<u64>(), wide in prop::bool::weighted(0.2)) {
        // Values far outside f16's range, and tiny ones, sometimes.
        let (lo, hi) = if wide { (-1e6, 1e6) } else { (-4.0, 4.0) };
        let want0 = Arr::new(&sh, random_arr(&sh, lo, hi, DType::F64, seed).data.iter().map(|&x| round(x, from)).collect());
        let what = format!("building {sh:?} {from} {v:?}");
        let (a, x) = ok(guard(&what, || make(&want0, v, from))?, &what)?;
        let what = format!("to_dtype({to}) from {from} on {sh:?} {v:?}");
        let y = ok(guard(&what, || x.to_dtype(to))?, &what)?;
        prop_assert_eq!(y.dtype(), to);
        let want = a.map(|x| round(x, to));
        check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        let what = format!("to_dtype({to}).to_dtype({from}) on {sh:?}");
        let back = ok(guard(&what, || y.to_dtype(from))?, &what)?;
        let want_back = want.map(|x| round(x, from));
        check(&back, &want_back, &vec![0.0; want_back.data.len()], 0.0, &what)?;
        if to.size_in_bytes() >= from.size_in_bytes() && !(from.is_half() && to.is_half()) {
            check(&back, &a, &vec![0.0; a.data.len()], 0.0, &format!("{what} (widening is exact)"))?;
        }
    }

    /// var (population) and logsumexp over random axis sets match their definitions.
    #[test]
    fn var_and_logsumexp(sh in shape(4, 5), v in view(), dt in dtype(), mask in any::<u8>(), keepdim in any::<bool>(), seed in any::<u64>()) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let axes: Vec<usize> = (0..sh.len()).filter(|d| mask >> d & 1 == 1).collect();
        let what = format!("var({axes:?}, {keepdim}) on {sh:?} {dt} {v:?}");
        let y = ok(guard(&what, || x.var(&axes, keepdim))?, &what)?;
        let want = drop_axes(a.reduce(&axes, |g| {
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            round(g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / g.len() as f64, dt)
        }), &axes, keepdim);
        // The mean is rounded to the dtype before the squares: scale with the squared terms.
        let scale = drop_axes(a.reduce(&axes, |g| g.iter().map(|v| v * v).sum::<f64>() / g.len().max(1) as f64 * 4.0), &axes, keepdim);
        check(&y, &want, &scale.data, tol(dt), &what)?;
        let what = format!("logsumexp({axes:?}, {keepdim}) on {sh:?} {dt} {v:?}");
        let r = guard(&what, || x.logsumexp(&axes, keepdim))?;
        if axes.iter().any(|&d| sh[d] == 0) {
            // ln of an empty sum: PyTorch gives -inf, ember an Err (either is accepted).
            if let Ok(y) = r {
                let want = drop_axes(a.reduce(&axes, |_| f64::NEG_INFINITY), &axes, keepdim);
                check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
            }
            return Ok(());
        }
        let y = ok(r, &what)?;
        let want = drop_axes(a.reduce(&axes, |g| {
            let m = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            round(m + g.iter().map(|v| (v - m).exp()).sum::<f64>().ln(), dt)
        }), &axes, keepdim);
        let scale: Vec<f64> = want.data.iter().map(|w| w.abs() + 4.0).collect();
        check(&y, &want, &scale, 2.0 * tol(dt), &what)?;
    }

    /// flatten, squeeze, unsqueeze and stack move no values; invalid dimensions are `Err`.
    #[test]
    fn flatten_squeeze_unsqueeze_stack(sh in shape(4, 4), v in view(), dt in dtype(), seed in any::<u64>(), (d0, d1) in (0..5usize, 0..5usize), parts in 1..4usize) {
        let (a, x) = input(&sh, v, dt, seed)?;
        let rank = sh.len();
        let zero = vec![0.0; a.data.len()];
        let what = format!("flatten({d0}, {d1}) on {sh:?} {v:?}");
        let r = guard(&what, || x.flatten(d0, d1))?;
        if d0 > d1 || d1 >= rank {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh[..d0].to_vec();
            out.push(sh[d0..=d1].iter().product());
            out.extend_from_slice(&sh[d1 + 1..]);
            check(&ok(r, &what)?, &Arr::new(&out, a.data.clone()), &zero, 0.0, &what)?;
        }
        let what = format!("unsqueeze({d0}) on {sh:?} {v:?}");
        let r = guard(&what, || x.unsqueeze(d0))?;
        if d0 > rank {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh.clone();
            out.insert(d0, 1);
            check(&ok(r, &what)?, &Arr::new(&out, a.data.clone()), &zero, 0.0, &what)?;
        }
        let what = format!("squeeze({d0}) on {sh:?} {v:?}");
        let r = guard(&what, || x.squeeze(d0))?;
        if d0 >= rank || sh[d0] != 1 {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh.clone();
            out.remove(d0);
            check(&ok(r, &what)?, &Arr::new(&out, a.data.clone()), &zero, 0.0, &what)?;
        }
        let inputs: Vec<(Arr, Tensor)> = (0..parts).map(|i| input(&sh, v, dt, seed.wrapping_add(i as u64))).collect::<Result<_, _>>()?;
        let tensors: Vec<&Tensor> = inputs.iter().map(|(_, t)| t).collect();
        let what = format!("stack({parts} x {sh:?}, {d0}) {v:?}");
        let r = guard(&what, || Tensor::stack(&tensors, d0))?;
        if d0 > rank {
            prop_assert!(r.is_err(), "{}: expected Err", what);
        } else {
            let mut out = sh.clone();
            out.insert(d0, parts);
            let want = from_fn(&out, |idx| {
                let mut src = idx.to_vec();
                let part = src.remove(d0);
                at(&inputs[part].0, &src)
            });
            check(&ok(r, &what)?, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
        }
    }

    /// where_cond picks from two broadcast branches by a broadcast mask.
    #[test]
    fn where_cond_selects(out in shape(3, 4), masks in (any::<u8>(), any::<u8>(), any::<u8>()), dt in dtype(), seed in any::<u64>(), vs in (view(), view(), view())) {
        let operand = |mask: u8| -> Vec<usize> {
            out.iter().enumerate().map(|(i, &e)| if mask >> i & 1 == 1 { 1 } else { e }).collect()
        };
        let (sc, sa, sb) = (operand(masks.0), operand(masks.1), operand(masks.2));
        let (c, tc) = input(&sc, vs.0, dt, seed)?;
        let c = c.map(|v| if v > 0.0 { 1.0 } else { 0.0 });
        let tc = ok(tc.gt_scalar(0.0), "mask")?;
        let (a, ta) = input(&sa, vs.1, dt, seed ^ 3)?;
        let (b, tb) = input(&sb, vs.2, dt, seed ^ 5)?;
        let what = format!("where_cond mask {sc:?} {:?}, {sa:?} {:?}, {sb:?} {:?} in {dt}", vs.0, vs.1, vs.2);
        let y = ok(guard(&what, || tc.where_cond(&ta, &tb))?, &what)?;
        // The broadcast shape: an extent stays 1 where every operand has 1 there.
        let shape: Vec<usize> = (0..out.len()).map(|i| if [&sc, &sa, &sb].iter().all(|s| s[i] == 1) { 1 } else { out[i] }).collect();
        let want = from_fn(&shape, |idx| if c.at_broadcast(idx) != 0.0 { a.at_broadcast(idx) } else { b.at_broadcast(idx) });
        check(&y, &want, &vec![0.0; want.data.len()], 0.0, &what)?;
    }

    /// linear (x · wᵀ + b with a fused activation) on views equals matmul, add and activation
    /// done naively; mismatched sizes are `Err`.
    #[test]
    fn linear_matches_naive(
        (m, k, n) in (0..6usize, 0..6usize, 0..6usize),
        (vx, vw, vb) in (view(), view(), view()),
        act in prop::sample::select(vec![Activation::None, Activation::Relu, Activation::Sigmoid, Activation::Tanh, Activation::Gelu, Activation::GeluTanh]),
        bias in any::<bool>(),
        dt in dtype(),
        seed in any::<u64>(),
    ) {
        let (x, tx) = input(&[m, k], vx, dt, seed)?;
        let (w, tw) = input(&[n, k], vw, dt, seed ^ 11)?;
        let (b, tb) = input(&[n], vb, dt, seed ^ 13)?;
        let what = format!("linear x [{m}, {k}] {vx:?}, w [{n}, {k}] {vw:?}, bias {bias} {vb:?}, {act:?} in {dt}");
        let y = ok(guard(&what, || tx.linear(&tw, bias.then_some(&tb), act))?, &what)?;
        let f = |z: f64| match act {
            Activation::None => z,
            Activation::Relu => z.max(0.0),
            Activation::Sigmoid => sigmoid(z),
            Activation::Tanh => z.tanh(),
            Activation::Gelu => unary_ref(UnaryOp::GeluErf, z),
            Activation::GeluTanh => unary_ref(UnaryOp::GeluTanh, z),
        };
        let z = |i: usize, j: usize, abs: bool| -> f64 {
            let dot: f64 = (0..k).map(|kk| { let p = at(&x, &[i, kk]) * at(&w, &[j, kk]); if abs { p.abs() } else { p } }).sum();
            let bj = if bias { at(&b, &[j]) } else { 0.0 };
            dot + if abs { bj.abs() } else { bj }
        };
        let want = from_fn(&[m, n], |idx| {
            round(f(z(idx[0], idx[1], false)), dt)
        });
        let scale = from_fn(&[m, n], |idx| z(idx[0], idx[1], true));
        check(&y, &want, &scale.data, 2.0 * tol(dt), &what)?;
        let (_, bad_w) = input(&[n, k + 1], View::Contiguous, dt, seed)?;
        let what = format!("linear x [{m}, {k}], w [{n}, {}]", k + 1);
        prop_assert!(guard(&what, || tx.linear(&bad_w, None, act))?.is_err(), "{}: expected Err", what);
    }
}
