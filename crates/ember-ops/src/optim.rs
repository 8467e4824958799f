//! Optimizer hyperparameters, shared by the CPU and CUDA update kernels (Keras 3 forms; the
//! rules are documented with ember-cpu's kernels).

/// Hyperparameters of SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables the velocity buffer).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Hyperparameters of Adam / AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to sqrt(v).
    pub eps: f64,
    /// Decoupled weight decay (AdamW when non-zero).
    pub weight_decay: f64,
    /// 1-based step count, for the bias corrections.
    pub step: u64,
}

/// Hyperparameters of AdaGrad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate.
    pub lr: f64,
    /// Added to the accumulator inside the square root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Hyperparameters of RMSProp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmspropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the squared-gradient average.
    pub rho: f64,
    /// Momentum factor (0 disables the momentum buffer).
    pub momentum: f64,
    /// Added inside the square root.
    pub eps: f64,
    /// Subtract the squared mean gradient (centered RMSProp).
    pub centered: bool,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// One fused optimizer update: the rule and its hyperparameters. Each rule reads its state
/// tensors from fixed slots (see [`OptimStep::STATE_SLOTS`]): slot 0, 1 and 2 hold
/// - SGD: the velocity (only with momentum);
/// - Adam: the first moment, the second moment;
/// - AdaGrad: the accumulator;
/// - RMSProp: the squared-gradient average, the momentum buffer (with momentum), the gradient
///   average (centered).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimStep {
    /// SGD with optional (Nesterov) momentum.
    Sgd(SgdConfig),
    /// Adam / AdamW.
    Adam(AdamConfig),
    /// AdaGrad.
    Adagrad(AdagradConfig),
    /// RMSProp.
    Rmsprop(RmspropConfig),
}

impl OptimStep {
    /// How many state slots an update may use.
    pub const STATE_SLOTS: usize = 3;

    /// The op's name in messages (`adam_step`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimStep::Sgd(_) => "sgd_step",
            OptimStep::Adam(_) => "adam_step",
            OptimStep::Adagrad(_) => "adagrad_step",
            OptimStep::Rmsprop(_) => "rmsprop_step",
        }
    }

    /// Which of the three slots the rule reads with these hyperparameters.
    pub fn used_slots(&self) -> [bool; 3] {
        match self {
            OptimStep::Sgd(c) => [c.momentum != 0.0, false, false],
            OptimStep::Adam(_) => [true, true, false],
            OptimStep::Adagrad(_) => [true, false, false],
            OptimStep::Rmsprop(c) => [true, c.momentum > 0.0, c.centered],
        }
    }
}
