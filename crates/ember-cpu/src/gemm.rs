//! General matrix multiply: C = alpha * A * B + beta * C, then an optional Dense epilogue.
//!
//! Every operand is addressed through a row stride and a column stride (in elements), so a
//! transposed or sliced matrix is passed as it lies in memory and never copied by the caller.
//! `beta == 0` means C is write-only: its old contents (even NaN) are ignored, as BLAS does.
//! The epilogue adds a bias per column and applies an activation while C is written, which is
//! a whole Dense forward in one pass.

use crate::element::Float;
use crate::unary::{UnaryOp, apply};

/// A matrix operand: its data slice (already offset to element (0,0)), row and column strides.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    /// Data starting at element (0, 0).
    pub data: &'a [T],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

/// The destination matrix, like [`MatRef`] but writable.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// Data starting at element (0, 0).
    pub data: &'a mut [T],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

/// The activation applied in a GEMM epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// No activation.
    #[default]
    None,
    /// max(x, 0)
    Relu,
    /// logistic sigmoid
    Sigmoid,
    /// tanh
    Tanh,
    /// GELU, tanh approximation
    Gelu,
}

impl Activation {
    /// The equivalent elementwise op, if any.
    pub fn as_unary(self) -> Option<UnaryOp> {
        match self {
            Activation::None => None,
            Activation::Relu => Some(UnaryOp::Relu),
            Activation::Sigmoid => Some(UnaryOp::Sigmoid),
            Activation::Tanh => Some(UnaryOp::Tanh),
            Activation::Gelu => Some(UnaryOp::GeluTanh),
        }
    }
}

/// What happens to each element of C after the product is accumulated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a, T> {
    /// Added to every row of C (length n), before the activation.
    pub bias: Option<&'a [T]>,
    /// Applied last.
    pub act: Activation,
}

/// C[m×n] = alpha·A[m×k]·B[k×n] + beta·C, then the epilogue.
///
/// The caller guarantees every addressed element lies inside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    epi: Epilogue<'_, T>,
) {
    let act = epi.act.as_unary();
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::ZERO;
            for p in 0..k {
                acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let ci = i * c.rs + j * c.cs;
            let mut v = alpha * acc;
            if beta != T::ZERO {
                v += beta * c.data[ci];
            }
            if let Some(bias) = epi.bias {
                v += bias[j];
            }
            if let Some(op) = act {
                v = apply(op, v);
            }
            c.data[ci] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_product() {
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 3x4
        let mut eye = vec![0.0f32; 16];
        for i in 0..4 {
            eye[i * 5] = 1.0;
        }
        let mut c = vec![f32::NAN; 12];
        gemm(
            3,
            4,
            4,
            1.0,
            MatRef {
                data: &a,
                rs: 4,
                cs: 1,
            },
            MatRef {
                data: &eye,
                rs: 4,
                cs: 1,
            },
            0.0,
            MatMut {
                data: &mut c,
                rs: 4,
                cs: 1,
            },
            Epilogue::default(),
        );
        assert_eq!(c, a);
    }
}
