//! Callbacks that `fit` calls after each batch and each epoch: early stopping with restore of
//! the best weights, and a closure hook for progress display or logging.

use crate::error::{NnError, Result};
use crate::model::EpochLogs;
use ember_core::{Tensor, no_grad};

/// What a callback asks `fit` to do after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Hooks into the training loop. Every method has a default that does nothing.
pub trait Callback {
    /// Called once before the first epoch with the epoch count and the batches per epoch.
    fn on_train_begin(&mut self, _epochs: usize, _batches_per_epoch: usize) {}

    /// Called after each batch with the 0-based epoch and batch numbers and the batch's loss.
    fn on_batch_end(&mut self, _epoch: usize, _batch: usize, _loss: f64) {}

    /// Called after each epoch with its logs and the model's named parameters (which the
    /// callback may read or overwrite with `Tensor::assign`).
    fn on_epoch_end(&mut self, _logs: &EpochLogs, _params: &[(String, Tensor)]) -> Result<Control> {
        Ok(Control::Continue)
    }
}

/// Runs a closure at the end of every epoch.
pub struct EpochHook<F: FnMut(&EpochLogs)>(pub F);

impl<F: FnMut(&EpochLogs)> Callback for EpochHook<F> {
    fn on_epoch_end(&mut self, logs: &EpochLogs, _params: &[(String, Tensor)]) -> Result<Control> {
        (self.0)(logs);
        Ok(Control::Continue)
    }
}

/// Stops training when a monitored value has not improved for `patience` epochs, like Keras's
/// `EarlyStopping`. With `restore_best_weights` the parameters are set back to those of the
/// best epoch when it stops (as Keras does: only when it stops early).
pub struct EarlyStopping {
    /// The log to watch: `loss`, `val_loss`, or a metric such as `val_accuracy`.
    pub monitor: String,
    /// Epochs without improvement to tolerate.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Put back the best epoch's weights when stopping.
    pub restore_best_weights: bool,
    best: Option<f64>,
    best_epoch: usize,
    wait: usize,
    best_weights: Option<Vec<Tensor>>,
    stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor`; values ending in `loss` are minimised, others maximised.
    pub fn new(monitor: &str, patience: usize) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.to_string(),
            patience,
            min_delta: 0.0,
            restore_best_weights: false,
            best: None,
            best_epoch: 0,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }

    /// Sets `restore_best_weights`.
    pub fn restore_best_weights(mut self, yes: bool) -> EarlyStopping {
        self.restore_best_weights = yes;
        self
    }

    /// The 1-based epoch at which training was stopped, if it was.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The 1-based epoch with the best monitored value so far.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }

    fn minimise(&self) -> bool {
        self.monitor.ends_with("loss")
    }

    fn improved(&self, value: f64) -> bool {
        match self.best {
            None => true,
            Some(best) if self.minimise() => value < best - self.min_delta,
            Some(best) => value > best + self.min_delta,
        }
    }
}

/// Copies of the parameters' current values (new storage, not views).
fn snapshot(params: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
    no_grad(|| {
        params
            .iter()
            .map(|(_, p)| Ok(p.detach().mul_scalar(1.0)?))
            .collect()
    })
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, logs: &EpochLogs, params: &[(String, Tensor)]) -> Result<Control> {
        let value = logs.get(&self.monitor).ok_or_else(|| {
            NnError::Config(format!(
                "EarlyStopping: no value named '{}' in the epoch logs (have: {})",
                self.monitor,
                logs.names().join(", ")
            ))
        })?;
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(snapshot(params)?);
        }
        self.wait += 1;
        if self.improved(value) {
            self.best = Some(value);
            self.best_epoch = logs.epoch;
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(snapshot(params)?);
            }
        }
        if self.wait >= self.patience && logs.epoch > 1 {
            self.stopped_epoch = Some(logs.epoch);
            if let (true, Some(best)) = (self.restore_best_weights, &self.best_weights) {
                for ((_, p), saved) in params.iter().zip(best) {
                    p.assign(saved)?;
                }
            }
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }
}
