//! Operator sugar: `&a + &b`, `&a * 2.0`, `-&a` and friends.
//!
//! These call the `Result` forms and panic with the same message on error (mismatched shapes,
//! say). Library code should use the methods (`a.add(&b)?`); the operators are for examples,
//! tests and notebooks where a panic is an acceptable way to report a bug.

use crate::tensor::Tensor;
use std::ops::{Add, Div, Mul, Neg, Sub};

fn ok(r: crate::Result<Tensor>) -> Tensor {
    r.unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! binary_sugar {
    ($trait:ident, $method:ident, $tensor_fn:ident, $scalar_fn:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                ok(Tensor::$tensor_fn(self, rhs))
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                ok(Tensor::$tensor_fn(&self, &rhs))
            }
        }
        impl $trait<f64> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                ok(Tensor::$scalar_fn(&self, rhs))
            }
        }
        impl $trait<f64> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                ok(Tensor::$scalar_fn(&self, rhs))
            }
        }
    };
}

binary_sugar!(Add, add, add, add_scalar);
binary_sugar!(Sub, sub, sub, sub_scalar);
binary_sugar!(Mul, mul, mul, mul_scalar);
binary_sugar!(Div, div, div, div_scalar);

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        ok(Tensor::neg(self))
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        ok(Tensor::neg(&self))
    }
}
