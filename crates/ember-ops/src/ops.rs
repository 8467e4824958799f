//! The op enums: what an elementwise map, a reduction or a fused epilogue computes.
//!
//! Semantics follow PyTorch's documentation; the formulas live with the kernels (ember-cpu's
//! `unary::apply`, `kernels/elementwise.cu`), the derivatives beside them.

/// An elementwise function of one argument. Parameters are carried as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// sqrt x
    Sqrt,
    /// x^2
    Sqr,
    /// 1/x
    Recip,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tanh x
    Tanh,
    /// 1/(1+e^-x), exactly 0 or 1 at the extremes, never NaN for finite x
    Sigmoid,
    /// max(x, 0) (NaN passes through)
    Relu,
    /// x if x > 0 else alpha*x
    LeakyRelu(f64),
    /// x if x > 0 else alpha*(e^x - 1)
    Elu(f64),
    /// GELU, tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
    /// (PyTorch's `approximate='tanh'`, Keras's `approximate=True`)
    GeluTanh,
    /// GELU, exact: x * Phi(x) = 0.5x(1 + erf(x/sqrt 2)) (the default of PyTorch and Keras)
    GeluErf,
    /// ln(1 + e^x), computed stably
    Softplus,
    /// min(max(x, lo), hi)
    Clamp(f64, f64),
    /// x^p for a constant p
    Powf(f64),
    /// x + c
    AddScalar(f64),
    /// x * c
    MulScalar(f64),
    /// x * sigmoid(x) (SiLU, also called swish)
    Silu,
}

impl UnaryOp {
    /// One value of every variant (parameterised ops with a representative parameter).
    pub const ALL: [UnaryOp; 22] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Sqr,
        UnaryOp::Recip,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.1),
        UnaryOp::Elu(1.0),
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
        UnaryOp::Softplus,
        UnaryOp::Clamp(-0.5, 0.75),
        UnaryOp::Powf(2.5),
        UnaryOp::AddScalar(0.5),
        UnaryOp::MulScalar(-1.5),
        UnaryOp::Silu,
    ];

    /// The code of the identity map (the CUDA copy kernels' op), one past the last op.
    pub const IDENTITY_CODE: u32 = 22;

    /// The numeric code (`U_*` in the CUDA sources).
    pub fn code(self) -> u32 {
        match self {
            UnaryOp::Neg => 0,
            UnaryOp::Abs => 1,
            UnaryOp::Exp => 2,
            UnaryOp::Log => 3,
            UnaryOp::Sqrt => 4,
            UnaryOp::Sqr => 5,
            UnaryOp::Recip => 6,
            UnaryOp::Sin => 7,
            UnaryOp::Cos => 8,
            UnaryOp::Tanh => 9,
            UnaryOp::Sigmoid => 10,
            UnaryOp::Relu => 11,
            UnaryOp::LeakyRelu(_) => 12,
            UnaryOp::Elu(_) => 13,
            UnaryOp::GeluTanh => 14,
            UnaryOp::GeluErf => 15,
            UnaryOp::Softplus => 16,
            UnaryOp::Clamp(..) => 17,
            UnaryOp::Powf(_) => 18,
            UnaryOp::AddScalar(_) => 19,
            UnaryOp::MulScalar(_) => 20,
            UnaryOp::Silu => 21,
        }
    }

    /// The name in the CUDA sources' `U_<NAME>` codes, and in messages.
    pub fn cuda_name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "NEG",
            UnaryOp::Abs => "ABS",
            UnaryOp::Exp => "EXP",
            UnaryOp::Log => "LOG",
            UnaryOp::Sqrt => "SQRT",
            UnaryOp::Sqr => "SQR",
            UnaryOp::Recip => "RECIP",
            UnaryOp::Sin => "SIN",
            UnaryOp::Cos => "COS",
            UnaryOp::Tanh => "TANH",
            UnaryOp::Sigmoid => "SIGMOID",
            UnaryOp::Relu => "RELU",
            UnaryOp::LeakyRelu(_) => "LEAKY_RELU",
            UnaryOp::Elu(_) => "ELU",
            UnaryOp::GeluTanh => "GELU_TANH",
            UnaryOp::GeluErf => "GELU_ERF",
            UnaryOp::Softplus => "SOFTPLUS",
            UnaryOp::Clamp(..) => "CLAMP",
            UnaryOp::Powf(_) => "POWF",
            UnaryOp::AddScalar(_) => "ADD_SCALAR",
            UnaryOp::MulScalar(_) => "MUL_SCALAR",
            UnaryOp::Silu => "SILU",
        }
    }

    /// The op's two parameters as the kernels receive them (unused ones are 0).
    pub fn params(self) -> (f64, f64) {
        match self {
            UnaryOp::LeakyRelu(a)
            | UnaryOp::Elu(a)
            | UnaryOp::Powf(a)
            | UnaryOp::AddScalar(a)
            | UnaryOp::MulScalar(a) => (a, 0.0),
            UnaryOp::Clamp(lo, hi) => (lo, hi),
            _ => (0.0, 0.0),
        }
    }

    /// A domain on which the op is smooth, for gradient checks and reference tests: (lo, hi)
    /// such that every x in [lo, hi] is away from kinks and singularities by at least 0.05.
    pub fn smooth_domain(self) -> (f64, f64) {
        match self {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip | UnaryOp::Powf(_) => (0.2, 3.0),
            _ => (-3.0, 3.0),
        }
    }
}

/// An elementwise function of two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// a^b
    Pow,
    /// max(a, b), NaN if either is NaN
    Maximum,
    /// min(a, b), NaN if either is NaN
    Minimum,
    /// 1 where a == b
    Eq,
    /// 1 where a != b
    Ne,
    /// 1 where a < b
    Lt,
    /// 1 where a <= b
    Le,
    /// 1 where a > b
    Gt,
    /// 1 where a >= b
    Ge,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    /// The numeric code (`B_*` in the CUDA sources).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name in the CUDA sources' `B_<NAME>` codes.
    pub fn cuda_name(self) -> &'static str {
        match self {
            BinaryOp::Add => "ADD",
            BinaryOp::Sub => "SUB",
            BinaryOp::Mul => "MUL",
            BinaryOp::Div => "DIV",
            BinaryOp::Pow => "POW",
            BinaryOp::Maximum => "MAXIMUM",
            BinaryOp::Minimum => "MINIMUM",
            BinaryOp::Eq => "EQ",
            BinaryOp::Ne => "NE",
            BinaryOp::Lt => "LT",
            BinaryOp::Le => "LE",
            BinaryOp::Gt => "GT",
            BinaryOp::Ge => "GE",
        }
    }

    /// True for the comparisons, which give 0/1 masks and no gradient.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// How values along the reduced axes are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (0 for an empty set).
    Sum,
    /// Arithmetic mean (NaN for an empty set).
    Mean,
    /// Maximum (-inf for an empty set; NaN if any element is NaN).
    Max,
    /// Minimum (+inf for an empty set; NaN if any element is NaN).
    Min,
    /// Index of the first maximum along a single axis, stored as a float.
    ArgMax,
    /// Index of the first minimum along a single axis, stored as a float.
    ArgMin,
}

impl ReduceOp {
    /// Every reduction.
    pub const ALL: [ReduceOp; 6] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::ArgMax,
        ReduceOp::ArgMin,
    ];

    /// The numeric code (`R_*` in the CUDA sources).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name in the CUDA sources' `R_<NAME>` codes.
    pub fn cuda_name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "SUM",
            ReduceOp::Mean => "MEAN",
            ReduceOp::Max => "MAX",
            ReduceOp::Min => "MIN",
            ReduceOp::ArgMax => "ARGMAX",
            ReduceOp::ArgMin => "ARGMIN",
        }
    }

    /// True for the arg-reductions, which return indices and take exactly one axis.
    pub fn is_arg(self) -> bool {
        matches!(self, ReduceOp::ArgMax | ReduceOp::ArgMin)
    }
}

/// The activation applied in a fused GEMM epilogue (a Dense layer's forward in one kernel).
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
    /// GELU, exact (erf), as PyTorch's and Keras's default `gelu`
    Gelu,
    /// GELU, tanh approximation (PyTorch's `approximate='tanh'`)
    GeluTanh,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 6] = [
        Activation::None,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::GeluTanh,
    ];

    /// The numeric code (`ACT_*` in the CUDA sources).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name in the CUDA sources' `ACT_<NAME>` codes.
    pub fn cuda_name(self) -> &'static str {
        match self {
            Activation::None => "NONE",
            Activation::Relu => "RELU",
            Activation::Sigmoid => "SIGMOID",
            Activation::Tanh => "TANH",
            Activation::Gelu => "GELU",
            Activation::GeluTanh => "GELU_TANH",
        }
    }

    /// The equivalent elementwise op, if any.
    pub fn as_unary(self) -> Option<UnaryOp> {
        match self {
            Activation::None => None,
            Activation::Relu => Some(UnaryOp::Relu),
            Activation::Sigmoid => Some(UnaryOp::Sigmoid),
            Activation::Tanh => Some(UnaryOp::Tanh),
            Activation::Gelu => Some(UnaryOp::GeluErf),
            Activation::GeluTanh => Some(UnaryOp::GeluTanh),
        }
    }

    /// True when the activation's slope is a function of its output alone (relu, sigmoid,
    /// tanh), so a backward pass needs only y; GELU needs its input.
    pub fn slope_from_output(self) -> bool {
        matches!(
            self,
            Activation::None | Activation::Relu | Activation::Sigmoid | Activation::Tanh
        )
    }
}

/// Which binary cross-entropy form a fused loss kernel computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BceForm {
    /// On probabilities, clamped to [eps, 1 - eps] (Keras's clamping).
    Probs(f64),
    /// On logits (stable: max(x, 0) - x·y + ln(1 + e^-|x|)).
    Logits,
}
