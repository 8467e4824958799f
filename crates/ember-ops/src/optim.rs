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
