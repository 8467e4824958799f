//! Elementwise ops: unary math and activations, binary arithmetic with NumPy broadcasting,
//! comparisons (masks of 1 and 0), scalar forms, and `where_cond`.
//!
//! Broadcasting is done by first viewing both operands at the common shape (`broadcast_to`, a
//! recorded view), so the binary op itself only ever sees equal shapes and its derivative rule
//! never has to think about broadcasting: the `Broadcast` rule sums gradients back.

use super::check_same;
use crate::error::Result;
use crate::op::Op;
use crate::shape::broadcast_shapes;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::{BinaryOp, UnaryOp};

/// The op's name in error messages.
pub(crate) fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Pow => "pow",
        BinaryOp::Maximum => "maximum",
        BinaryOp::Minimum => "minimum",
        BinaryOp::Eq => "eq",
        BinaryOp::Ne => "ne",
        BinaryOp::Lt => "lt",
        BinaryOp::Le => "le",
        BinaryOp::Gt => "gt",
        BinaryOp::Ge => "ge",
    }
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        $( $(#[$doc])* pub fn $name(&self) -> Result<Tensor> { self.unary_op($op) } )*
    };
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        $( $(#[$doc])* pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> { self.binary_op(rhs, $op) } )*
    };
}

macro_rules! scalar_rhs_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        $( $(#[$doc])* pub fn $name(&self, rhs: f64) -> Result<Tensor> {
            self.binary_op(&self.scalar_like(rhs)?, $op)
        } )*
    };
}

impl Tensor {
    /// Applies an elementwise function (the generic form behind `exp`, `relu`, ...).
    pub fn unary_op(&self, op: UnaryOp) -> Result<Tensor> {
        let data = self.with_storage(|s, l| StorageData::unary(s, l, op))?;
        Ok(Tensor::from_storage(
            data,
            self.shape(),
            Tensor::record(|| Op::Unary(op, self.clone())),
        ))
    }

    /// dx = g · op'(x), given x, y = op(x) and g of one shape, through the fused elementwise
    /// backward kernel (for the derivative rules; records nothing).
    pub(crate) fn unary_backward(
        op: UnaryOp,
        x: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<Tensor> {
        // One read lock per distinct storage (`ReadSet`): the Linear rule passes y for x and y.
        let set = Tensor::read_set([x, y, g]);
        let data = StorageData::unary_backward(
            op,
            (set.data(0), x.layout()),
            (set.data(1), y.layout()),
            (set.data(2), g.layout()),
        )?;
        drop(set);
        Ok(Tensor::from_storage(data, x.shape(), None))
    }

    /// Applies an elementwise function of two broadcast operands.
    pub fn binary_op(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = binary_name(op);
        check_same(name, self, rhs)?;
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let (a, b) = (self.broadcast_to(&shape)?, rhs.broadcast_to(&shape)?);
        // Operands sharing one storage (`x.mul(&x)`, a tensor and its view) take its lock once.
        let set = Tensor::read_set([&a, &b]);
        let data = StorageData::binary(op, (set.data(0), a.layout()), (set.data(1), b.layout()))?;
        drop(set);
        let record = if op.is_comparison() {
            None
        } else {
            Tensor::record(|| Op::Binary(op, a, b))
        };
        Ok(Tensor::from_storage(data, &shape, record))
    }

    /// A rank-0 tensor holding `v` with this tensor's dtype and device.
    pub(crate) fn scalar_like(&self, v: f64) -> Result<Tensor> {
        Tensor::full(v, (), self.dtype(), self.device())
    }

    unary_methods! {
        /// -x
        neg => UnaryOp::Neg;
        /// |x|
        abs => UnaryOp::Abs;
        /// e^x
        exp => UnaryOp::Exp;
        /// Natural logarithm.
        log => UnaryOp::Log;
        /// Square root.
        sqrt => UnaryOp::Sqrt;
        /// x²
        sqr => UnaryOp::Sqr;
        /// 1/x
        recip => UnaryOp::Recip;
        /// Sine.
        sin => UnaryOp::Sin;
        /// Cosine.
        cos => UnaryOp::Cos;
        /// Hyperbolic tangent.
        tanh => UnaryOp::Tanh;
        /// Logistic sigmoid (exactly 0 and 1 at the extremes, never NaN for finite input).
        sigmoid => UnaryOp::Sigmoid;
        /// max(x, 0)
        relu => UnaryOp::Relu;
        /// GELU, exact: x·Φ(x) = 0.5·x·(1 + erf(x/√2)), the default `gelu` of PyTorch and Keras.
        gelu => UnaryOp::GeluErf;
        /// GELU, tanh approximation (PyTorch's `approximate='tanh'`, Keras's `approximate=True`).
        gelu_tanh => UnaryOp::GeluTanh;
        /// ln(1 + e^x), computed stably.
        softplus => UnaryOp::Softplus;
        /// x·sigmoid(x) (SiLU / swish, PyTorch's `silu`).
        silu => UnaryOp::Silu;
    }

    /// x for x > 0, alpha·x otherwise.
    pub fn leaky_relu(&self, alpha: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::LeakyRelu(alpha))
    }

    /// x for x > 0, alpha·(e^x − 1) otherwise.
    pub fn elu(&self, alpha: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::Elu(alpha))
    }

    /// min(max(x, lo), hi).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        if lo > hi || lo.is_nan() || hi.is_nan() {
            return Err(crate::Error::invalid(
                "clamp",
                format!("lower bound {lo} must not exceed upper bound {hi}"),
            ));
        }
        self.unary_op(UnaryOp::Clamp(lo, hi))
    }

    /// x + c
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::AddScalar(c))
    }

    /// x − c
    pub fn sub_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::AddScalar(-c))
    }

    /// x · c
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::MulScalar(c))
    }

    /// x / c
    pub fn div_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::MulScalar(1.0 / c))
    }

    /// x^p for a constant exponent (for p = 0 the gradient is 0 everywhere, also at x = 0).
    pub fn pow_scalar(&self, p: f64) -> Result<Tensor> {
        self.unary_op(UnaryOp::Powf(p))
    }

    binary_methods! {
        /// a + b, broadcasting.
        add => BinaryOp::Add;
        /// a − b, broadcasting.
        sub => BinaryOp::Sub;
        /// a · b, broadcasting.
        mul => BinaryOp::Mul;
        /// a / b, broadcasting.
        div => BinaryOp::Div;
        /// a^b, broadcasting. Gradients follow PyTorch at a zero base: the base's is 0 where
        /// b = 0, the exponent's is 0 where a = 0 and b ≥ 0 (no NaN or −∞ from 0·∞ or ln 0).
        pow => BinaryOp::Pow;
        /// max(a, b), broadcasting; NaN if either is NaN. The gradient goes to the larger
        /// operand; a tie splits it equally (PyTorch's `maximum`, and ember's `max` reduction).
        maximum => BinaryOp::Maximum;
        /// min(a, b), broadcasting; NaN if either is NaN. Ties split the gradient equally.
        minimum => BinaryOp::Minimum;
        /// Mask: 1 where a == b (broadcasting).
        eq => BinaryOp::Eq;
        /// Mask: 1 where a != b (broadcasting).
        ne => BinaryOp::Ne;
        /// Mask: 1 where a < b (broadcasting).
        lt => BinaryOp::Lt;
        /// Mask: 1 where a <= b (broadcasting).
        le => BinaryOp::Le;
        /// Mask: 1 where a > b (broadcasting).
        gt => BinaryOp::Gt;
        /// Mask: 1 where a >= b (broadcasting).
        ge => BinaryOp::Ge;
    }

    scalar_rhs_methods! {
        /// max(a, b); NaN if either is NaN. with a scalar b.
        maximum_scalar => BinaryOp::Maximum;
        /// min(a, b); NaN if either is NaN. with a scalar b.
        minimum_scalar => BinaryOp::Minimum;
        /// Mask: 1 where a == b. with a scalar b.
        eq_scalar => BinaryOp::Eq;
        /// Mask: 1 where a != b. with a scalar b.
        ne_scalar => BinaryOp::Ne;
        /// Mask: 1 where a < b. with a scalar b.
        lt_scalar => BinaryOp::Lt;
        /// Mask: 1 where a <= b. with a scalar b.
        le_scalar => BinaryOp::Le;
        /// Mask: 1 where a > b. with a scalar b.
        gt_scalar => BinaryOp::Gt;
        /// Mask: 1 where a >= b. with a scalar b.
        ge_scalar => BinaryOp::Ge;
    }

    /// Elementwise select: where this mask is non-zero take `on_true`, else `on_false`
    /// (all three broadcast together). Gradients flow to the two branches, not the mask.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        check_same("where_cond", on_true, on_false)?;
        check_same("where_cond", self, on_true)?;
        let shape = broadcast_shapes("where_cond", self.shape(), on_true.shape())?;
        let shape = broadcast_shapes("where_cond", &shape, on_false.shape())?;
        let c = self.detach().broadcast_to(&shape)?;
        let a = on_true.broadcast_to(&shape)?;
        let b = on_false.broadcast_to(&shape)?;
        let set = Tensor::read_set([&c, &a, &b]);
        let data = StorageData::where_cond(
            (set.data(0), c.layout()),
            (set.data(1), a.layout()),
            (set.data(2), b.layout()),
        )?;
        drop(set);
        Ok(Tensor::from_storage(
            data,
            &shape,
            Tensor::record(|| Op::Where(c, a, b)),
        ))
    }
}
