//! The mixed-precision Dense layer: `y = act(round(x)·round(w)ᵀ + b)` on f32 tensors, with the
//! operands rounded to bf16 or f16 inside the GEMM and everything else in f32
//! ([`Tensor::linear_mixed`]); its backward here.
//!
//! This is what PyTorch's autocast does to `nn.Linear` (and Keras's `mixed_bfloat16` /
//! `mixed_float16` policies to `Dense`), with two deliberate differences, both towards f32:
//! - **f32 results.** Autocast returns the matmul's output, and later its input gradients, in
//!   the 16-bit type; here the f32 sums are kept as they are (the next op would widen them
//!   anyway), so only the GEMM *operands* are ever rounded.
//! - **The master weight is the input.** Autocast records a cast node `w → w16` and the GEMM
//!   reads `w16`; here the op reads the f32 weight and rounds it while packing (ember-cpu's
//!   `gemm_rounded`), so no 16-bit copy of a weight is made or kept, and the weight's
//!   gradient arrives in f32 directly.
//!
//! The backward computes the same three GEMMs as autocast's, with 16-bit operands:
//! `dz = g·act'(y)` (f32), then `dx = round(dz)·round(w)` and `dw = round(dz)ᵀ·round(x)`,
//! summed in f32; `db = Σ_rows dz` in f32 (no rounding: the bias add is an f32 op). Rounding dz
//! is where small gradients underflow in f16 (below 6·10⁻⁸) and large ones overflow (above
//! 65504), which is what the loss scaling of `ember_nn`'s fit corrects.
//!
//! Straight-through: the derivative of the rounding is taken as 1 (as for autocast's casts).

use super::Fused;
use crate::backend::MatmulSpec;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::fused::FusedOp;
use crate::layout::Layout;
use crate::op::Op;
use crate::ops::check_same;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::Activation;

/// The inputs of one recorded mixed-precision Dense forward (an activation whose slope follows
/// from its output; GELU is composed, as in [`Tensor::linear`]).
#[derive(Debug, Clone)]
pub(crate) struct MixedLinearOp {
    /// Input `[m, k]`, f32.
    pub x: Tensor,
    /// Weight `[n, k]`, f32 (the master weight).
    pub w: Tensor,
    /// Bias `[n]`, f32.
    pub b: Option<Tensor>,
    /// The fused activation.
    pub act: Activation,
    /// The type the GEMM operands are rounded to (bf16 or f16).
    pub half: DType,
}

impl Tensor {
    /// `act(round(self)·round(w)ᵀ + b)`: [`Tensor::linear`] with the GEMM's operands rounded
    /// to `half` (`DType::BF16` or `DType::F16`) and the products summed in f32 — a Dense
    /// layer under a mixed-precision policy. `self` `[batch, in]`, `w` `[out, in]` and `b`
    /// `[out]` are f32 and the result is f32; the bias and activation are applied in f32. See
    /// the module documentation for the backward and where this differs from autocast.
    ///
    /// Errors: operands that are not f32, on different devices, or of mismatched shapes, and
    /// `half` other than bf16/f16; on CUDA the op is not available yet (an error, never a
    /// silent f32 product).
    pub fn linear_mixed(
        &self,
        w: &Tensor,
        b: Option<&Tensor>,
        act: Activation,
        half: DType,
    ) -> Result<Tensor> {
        const OP: &str = "linear_mixed";
        check_same(OP, self, w)?;
        if let Some(b) = b {
            check_same(OP, self, b)?;
        }
        if self.dtype() != DType::F32 {
            return Err(Error::invalid(
                OP,
                format!(
                    "operands must be f32 (master weights; rounding happens inside the product), got {:?}",
                    self.dtype()
                ),
            ));
        }
        if !matches!(half, DType::BF16 | DType::F16) {
            return Err(Error::invalid(
                OP,
                format!("the rounding type must be bf16 or f16, got {half:?}"),
            ));
        }
        if self.rank() != 2 || w.rank() != 2 || self.shape()[1] != w.shape()[1] {
            return Err(Error::shape(
                OP,
                format!(
                    "input {:?} and weight {:?}: need input [batch, in] and weight [out, in] with equal `in`",
                    self.shape(),
                    w.shape()
                ),
            ));
        }
        let (m, k, n) = (self.shape()[0], self.shape()[1], w.shape()[0]);
        if let Some(b) = b
            && b.shape() != [n]
        {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} must have shape [{n}] to match weight {:?}",
                    b.shape(),
                    w.shape()
                ),
            ));
        }
        if !act.slope_from_output() {
            let z = self.linear_mixed(w, b, Activation::None, half)?;
            return match act.as_unary() {
                Some(op) => z.unary_op(op),
                None => Ok(z),
            };
        }
        let wt = w.layout().transpose(0, 1)?;
        let set = Tensor::read_set([self, w, b.unwrap_or(self)]);
        let spec = MatmulSpec {
            batch: &[],
            m,
            n,
            k,
            act,
        };
        let data = StorageData::matmul_rounded(
            &spec,
            half,
            (set.data(0), self.layout()),
            (set.data(1), &wt),
            (set.data(2), b.map(|b| b.layout())),
        )?;
        drop(set);
        let op = || {
            Op::Fused(FusedOp::MixedLinear(MixedLinearOp {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
                act,
                half,
            }))
        };
        Ok(Tensor::from_storage(data, &[m, n], Tensor::record(op)))
    }
}

/// `round(a)·round(b)` for `a` read through `al` (`[m, k]`) and `b` through `bl` (`[k, n]`), as
/// a fresh f32 `[m, n]` tensor (not recorded: it is a gradient).
fn rounded_product(
    (a, al): (&Tensor, &Layout),
    (b, bl): (&Tensor, &Layout),
    (m, n, k): (usize, usize, usize),
    half: DType,
) -> Result<Tensor> {
    let set = Tensor::read_set([a, b]);
    let spec = MatmulSpec {
        batch: &[],
        m,
        n,
        k,
        act: Activation::None,
    };
    let data = StorageData::matmul_rounded(
        &spec,
        half,
        (set.data(0), al),
        (set.data(1), bl),
        (set.data(0), None),
    )?;
    Ok(Tensor::from_storage(data, &[m, n], None))
}

impl Fused for MixedLinearOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
        f(&self.w);
        if let Some(b) = &self.b {
            f(b);
        }
    }

    /// dz = g·act'(y); dx = round(dz)·round(w), dw = round(dz)ᵀ·round(x) (f32 sums), db = Σ dz.
    /// dx and dw only for inputs that need them.
    fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let MixedLinearOp { x, w, b, act, half } = self;
        let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[0]);
        let dz = match act.as_unary() {
            None => g.clone(),
            // relu's [z > 0] equals [y > 0], so y stands in for z.
            Some(u) => Tensor::unary_backward(u, y, y, g)?,
        };
        let mut v = Vec::with_capacity(3);
        if x.requires_grad() {
            let dx = rounded_product((&dz, dz.layout()), (w, w.layout()), (m, k, n), *half)?;
            v.push((x.clone(), dx));
        }
        if w.requires_grad() {
            let dzt = dz.layout().transpose(0, 1)?;
            let dw = rounded_product((&dz, &dzt), (x, x.layout()), (n, k, m), *half)?;
            v.push((w.clone(), dw));
        }
        if let Some(b) = b
            && b.requires_grad()
        {
            v.push((b.clone(), dz.sum(&[0], false)?));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};
    use ember_ops::Activation;

    /// A deterministic generator of values in [-1, 1) (a 64-bit LCG's top bits).
    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    fn round(half: DType, x: f32) -> f64 {
        match half {
            DType::BF16 => half::bf16::from_f32(x).to_f64(),
            _ => half::f16::from_f32(x).to_f64(),
        }
    }

    fn close(got: &[f32], want: &[(f64, f64)], k: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, (w, mag))) in got.iter().zip(want).enumerate() {
            let tol = 1.2e-7 * (k as f64 + 2.0) * mag + 1e-30;
            assert!(
                (*g as f64 - w).abs() <= tol,
                "{what}[{i}]: {g} vs {w} (tol {tol})"
            );
        }
    }

    /// Σ_p round(a[i, p])·round(b[p, j]) (+ c[j]) in f64, with the terms' magnitude.
    fn product(
        half: DType,
        (m, n, k): (usize, usize, usize),
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
        c: impl Fn(usize) -> f64,
    ) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut mag) = (c(j), c(j).abs());
                for p in 0..k {
                    let t = round(half, a(i, p)) * round(half, b(p, j));
                    s += t;
                    mag += t.abs();
                }
                out.push((s, mag));
            }
        }
        out
    }

    /// Forward and every gradient against an f64 reference of the rounded operands, for both
    /// 16-bit types, the bf16 kernel's shapes and the skinny ones, with and without relu.
    #[test]
    fn forward_and_gradients_match_the_f64_reference() {
        let shapes = [(37, 129, 33), (64, 512, 1), (16, 300, 96), (3, 5, 2)];
        for half in [DType::BF16, DType::F16] {
            for (si, &(m, k, n)) in shapes.iter().enumerate() {
                for act in [Activation::None, Activation::Relu] {
                    let seed = si as u64 * 10;
                    let (xv, wv, bv) = (
                        values(seed, m * k),
                        values(seed + 1, n * k),
                        values(seed + 2, n),
                    );
                    let gv = values(seed + 3, m * n);
                    let x = Tensor::from_vec(xv.clone(), vec![m, k], Device::Cpu)
                        .unwrap()
                        .as_variable();
                    let w = Tensor::from_vec(wv.clone(), vec![n, k], Device::Cpu)
                        .unwrap()
                        .as_variable();
                    let b = Tensor::from_vec(bv.clone(), vec![n], Device::Cpu)
                        .unwrap()
                        .as_variable();
                    let y = x.linear_mixed(&w, Some(&b), act, half).unwrap();
                    assert_eq!(y.dtype(), DType::F32);
                    let z = product(
                        half,
                        (m, n, k),
                        |i, p| xv[i * k + p],
                        |p, j| wv[j * k + p],
                        |j| bv[j] as f64,
                    );
                    let want: Vec<(f64, f64)> = z
                        .iter()
                        .map(|&(s, mag)| match act {
                            Activation::Relu => (s.max(0.0), mag),
                            _ => (s, mag),
                        })
                        .collect();
                    let what = format!("{half:?} {m}x{k}->{n} {act:?}");
                    let yv = y.to_vec::<f32>().unwrap();
                    close(&yv, &want, k, &format!("y {what}"));
                    let g = Tensor::from_vec(gv.clone(), vec![m, n], Device::Cpu).unwrap();
                    let grads = y.backward_with(&g).unwrap();
                    // dz = g·act'(y), from ember's own y (the reference's sign decisions
                    // could differ at a rounding-level zero crossing).
                    let dz: Vec<f32> = gv
                        .iter()
                        .zip(&yv)
                        .map(|(&g, &y)| match act {
                            Activation::Relu if y <= 0.0 => 0.0,
                            _ => g,
                        })
                        .collect();
                    let dx = grads.get(&x).unwrap();
                    let dw = grads.get(&w).unwrap();
                    let db = grads.get(&b).unwrap();
                    for t in [dx, dw, db] {
                        assert_eq!(t.dtype(), DType::F32, "{what}");
                    }
                    let want_dx = product(
                        half,
                        (m, k, n),
                        |i, j| dz[i * n + j],
                        |j, p| wv[j * k + p],
                        |_| 0.0,
                    );
                    close(
                        &dx.to_vec::<f32>().unwrap(),
                        &want_dx,
                        n,
                        &format!("dx {what}"),
                    );
                    let want_dw = product(
                        half,
                        (n, k, m),
                        |j, i| dz[i * n + j],
                        |i, p| xv[i * k + p],
                        |_| 0.0,
                    );
                    close(
                        &dw.to_vec::<f32>().unwrap(),
                        &want_dw,
                        m,
                        &format!("dw {what}"),
                    );
                    let want_db: Vec<(f64, f64)> = (0..n)
                        .map(|j| {
                            let col = (0..m).map(|i| dz[i * n + j] as f64);
                            (col.clone().sum(), col.map(f64::abs).sum())
                        })
                        .collect();
                    close(
                        &db.to_vec::<f32>().unwrap(),
                        &want_db,
                        m,
                        &format!("db {what}"),
                    );
                }
            }
        }
    }

    /// GELU is composed from the mixed product and the f32 activation.
    #[test]
    fn gelu_is_the_f32_activation_of_the_mixed_product() {
        let (xv, wv) = (values(1, 6 * 40), values(2, 20 * 40));
        let x = Tensor::from_vec(xv, vec![6, 40], Device::Cpu).unwrap();
        let w = Tensor::from_vec(wv, vec![20, 40], Device::Cpu).unwrap();
        let z = x
            .linear_mixed(&w, None, Activation::None, DType::BF16)
            .unwrap();
        let g = x
            .linear_mixed(&w, None, Activation::Gelu, DType::BF16)
            .unwrap();
        let want = z.unary_op(ember_ops::UnaryOp::GeluErf).unwrap();
        assert_eq!(g.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    }

    /// Bad operands are errors naming the op, never panics.
    #[test]
    fn bad_operands_are_errors() {
        let x = Tensor::from_vec(vec![1.0f32; 6], vec![2, 3], Device::Cpu).unwrap();
        let w = Tensor::from_vec(vec![1.0f32; 6], vec![2, 3], Device::Cpu).unwrap();
        let e = x
            .linear_mixed(&w, None, Activation::None, DType::F32)
            .unwrap_err();
        assert!(e.to_string().contains("linear_mixed"), "{e}");
        let w_bad = Tensor::from_vec(vec![1.0f32; 8], vec![2, 4], Device::Cpu).unwrap();
        assert!(
            x.linear_mixed(&w_bad, None, Activation::None, DType::BF16)
                .is_err()
        );
        let x64 = x.to_dtype(DType::F64).unwrap();
        let w64 = w.to_dtype(DType::F64).unwrap();
        assert!(
            x64.linear_mixed(&w64, None, Activation::None, DType::BF16)
                .is_err()
        );
        let b_bad = Tensor::from_vec(vec![1.0f32; 3], vec![3], Device::Cpu).unwrap();
        assert!(
            x.linear_mixed(&w, Some(&b_bad), Activation::None, DType::F16)
                .is_err()
        );
    }
}
