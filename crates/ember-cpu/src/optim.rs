//! Fused optimizer updates: each function updates one parameter buffer and its state buffers in
//! a single pass, with no temporaries and no locks.
//!
//! The update rules follow Keras 3 (ember grew from a Keras program), including where they
//! differ from PyTorch: Adam adds epsilon to sqrt(v) *after* folding the bias corrections into the
//! step size; AdaGrad and RMSProp put epsilon inside the square root; weight decay is decoupled
//! (`p -= lr * wd * p`, applied before the gradient step) for every optimizer, as Keras does.

use crate::element::Float;

/// Hyperparameters of SGD.
#[derive(Debug, Clone, Copy)]
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

/// SGD: `v = momentum v - lr g; p += v` (or `p += momentum v - lr g` with Nesterov).
/// `velocity` is ignored (and may be empty) when momentum is 0.
pub fn sgd_step<T: Float>(cfg: &SgdConfig, p: &mut [T], g: &[T], velocity: &mut [T]) {
    let lr = T::from_f64(cfg.lr);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    if cfg.momentum == 0.0 {
        for (p, &g) in p.iter_mut().zip(g) {
            if use_wd {
                *p -= decay * *p;
            }
            *p -= lr * g;
        }
        return;
    }
    for ((p, &g), v) in p.iter_mut().zip(g).zip(velocity.iter_mut()) {
        if use_wd {
            *p -= decay * *p;
        }
        *v = mom * *v - lr * g;
        if cfg.nesterov {
            *p += mom * *v - lr * g;
        } else {
            *p += *v;
        }
    }
}

/// Hyperparameters of Adam / AdamW.
#[derive(Debug, Clone, Copy)]
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

/// Adam (Keras form): `m += (1-b1)(g-m); v += (1-b2)(g²-v);
/// p -= lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt v + eps)`.
pub fn adam_step<T: Float>(cfg: &AdamConfig, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let t = cfg.step.max(1) as i32;
    let lr_t = cfg.lr * (1.0 - cfg.beta2.powi(t)).sqrt() / (1.0 - cfg.beta1.powi(t));
    let lr_t = T::from_f64(lr_t);
    let one_b1 = T::from_f64(1.0 - cfg.beta1);
    let one_b2 = T::from_f64(1.0 - cfg.beta2);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    for i in 0..p.len() {
        let gi = g[i];
        if use_wd {
            p[i] -= decay * p[i];
        }
        m[i] += one_b1 * (gi - m[i]);
        v[i] += one_b2 * (gi * gi - v[i]);
        p[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
    }
}

/// Hyperparameters of AdaGrad.
#[derive(Debug, Clone, Copy)]
pub struct AdagradConfig {
    /// Learning rate.
    pub lr: f64,
    /// Added to the accumulator inside the square root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// AdaGrad: `acc += g²; p -= lr g / sqrt(acc + eps)`.
pub fn adagrad_step<T: Float>(cfg: &AdagradConfig, p: &mut [T], g: &[T], acc: &mut [T]) {
    let lr = T::from_f64(cfg.lr);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    for i in 0..p.len() {
        if cfg.weight_decay != 0.0 {
            p[i] -= decay * p[i];
        }
        acc[i] += g[i] * g[i];
        p[i] -= lr * g[i] / (acc[i] + eps).sqrt();
    }
}

/// Hyperparameters of RMSProp.
#[derive(Debug, Clone, Copy)]
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

/// RMSProp (Keras form): `s = rho s + (1-rho) g²; [a = rho a + (1-rho) g; s' = s - a²];
/// inc = lr g / sqrt(s' + eps); with momentum: `b = momentum b + inc; p -= b`, else `p -= inc`.
/// `mom_buf` is ignored unless momentum > 0 and `grad_avg` unless centered; either may be empty.
pub fn rmsprop_step<T: Float>(
    cfg: &RmspropConfig,
    p: &mut [T],
    g: &[T],
    sq_avg: &mut [T],
    mom_buf: &mut [T],
    grad_avg: &mut [T],
) {
    let lr = T::from_f64(cfg.lr);
    let rho = T::from_f64(cfg.rho);
    let one_rho = T::from_f64(1.0 - cfg.rho);
    let eps = T::from_f64(cfg.eps);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    for i in 0..p.len() {
        let gi = g[i];
        if cfg.weight_decay != 0.0 {
            p[i] -= decay * p[i];
        }
        sq_avg[i] = rho * sq_avg[i] + one_rho * gi * gi;
        let mut denom = sq_avg[i];
        if cfg.centered {
            grad_avg[i] = rho * grad_avg[i] + one_rho * gi;
            denom -= grad_avg[i] * grad_avg[i];
        }
        let inc = lr * gi / (denom + eps).sqrt();
        if cfg.momentum > 0.0 {
            mom_buf[i] = mom * mom_buf[i] + inc;
            p[i] -= mom_buf[i];
        } else {
            p[i] -= inc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction the first Adam step is lr * g/|g| (up to eps).
        let cfg = AdamConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-12,
            weight_decay: 0.0,
            step: 1,
        };
        let mut p = [1.0f64, -1.0];
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        adam_step(&cfg, &mut p, &[3.0, -0.5], &mut m, &mut v);
        assert!(
            (p[0] - 0.9).abs() < 1e-9 && (p[1] + 0.9).abs() < 1e-9,
            "{p:?}"
        );
    }

    #[test]
    fn sgd_momentum_two_steps() {
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut p = [1.0f64];
        let mut v = [0.0];
        sgd_step(&cfg, &mut p, &[1.0], &mut v);
        sgd_step(&cfg, &mut p, &[1.0], &mut v);
        // v1 = -0.1, p1 = 0.9; v2 = -0.09 - 0.1 = -0.19, p2 = 0.71
        assert!((p[0] - 0.71).abs() < 1e-12);
    }
}
