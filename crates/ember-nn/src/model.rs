//! `Model`: a compiled network with Keras's `fit`, `evaluate` and `predict`.
//!
//! `compile` joins a [`Sequential`] with an optimizer, a loss and metrics. `fit` follows the
//! Keras semantics a user relies on:
//! - `validation_split` takes the *last* fraction of the samples (before any shuffling): the
//!   first `ceil(n · (1 − split))` rows train, the rest validate;
//! - the training rows are shuffled at the start of every epoch (epoch `e`'s order depends only
//!   on `seed` and `e`, so a run resumed at `initial_epoch` sees the same batches);
//! - the last, partial batch is used;
//! - the epoch `loss` is the mean of the batch losses weighted by batch size, including the
//!   regularisation penalty, as Keras reports it; metrics are computed over all the epoch's
//!   predictions (each made before that batch's update, as in Keras).
//!
//! Reading a value back to the host waits for the device. On a GPU, `fit` and `evaluate`
//! therefore keep each batch's loss and outputs on the device and read them once per epoch
//! ([`HostReads`]): a training step is then launches only. The epoch's figures are the same
//! either way; what changes is when `on_batch_end` runs and when a non-finite loss is noticed.

use crate::callbacks::{Callback, Control};
use crate::error::{NnError, Result, config_err};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::module::Module;
use crate::optim::Optimizer;
use crate::sequential::Sequential;
use ember_core::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// Settings of [`Model::fit`]. `Default` gives Keras's defaults (1 epoch, batch 32, no
/// validation, shuffling on, verbose 1) with seed 0.
pub struct FitConfig {
    /// Index one past the last epoch to train (Keras's `epochs`).
    pub epochs: usize,
    /// Samples per batch; the last batch may be smaller.
    pub batch_size: usize,
    /// Fraction in `[0, 1)` of the samples, taken from the end, held out for validation.
    pub validation_split: f64,
    /// Shuffle the training samples each epoch.
    pub shuffle: bool,
    /// Seed of the shuffles.
    pub seed: u64,
    /// 0: silent; 1 or more: one line per epoch on stdout.
    pub verbose: u8,
    /// Epoch to start at (0-based), to resume a run (Keras's `initial_epoch`).
    pub initial_epoch: usize,
    /// Callbacks, called in order.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// When batch losses and outputs are read back to the host.
    pub host_reads: HostReads,
    /// Applied to each epoch's shuffled training examples (never to validation data).
    pub augment: Option<crate::augment::Augmentation>,
    /// Train with DP-SGD (Poisson-sampled batches of expected size `batch_size`, per-example
    /// clipping and noise; see [`crate::dp`]); the epoch logs then carry `epsilon`.
    pub dp: Option<crate::dp::DpSgd>,
    /// Gradual magnitude pruning: masks recomputed on the schedule before optimizer steps
    /// (see [`crate::prune`]).
    pub pruning: Option<crate::prune::Pruning>,
    /// Train data-parallel across the ranks of a communicator (see [`crate::dist`]); every
    /// rank calls `fit` with the same arguments. `None`: one process, as always.
    pub distributed: Option<crate::dist::Distributed>,
    /// Write a resumable checkpoint every N epochs (rank 0 alone under a communicator); see
    /// [`crate::model_checkpoint`].
    pub checkpoint: Option<crate::model_checkpoint::ModelCheckpoint>,
}

/// When [`Model::fit`] reads batch losses and outputs back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HostReads {
    /// Per batch on the CPU, once per epoch on a GPU.
    #[default]
    Auto,
    /// After every batch: a non-finite loss stops training before its update is applied, and
    /// `on_batch_end` runs after each batch.
    PerBatch,
    /// Once per epoch: losses and outputs stay on the device until the epoch ends (no wait
    /// for the device between steps). `on_batch_end` then runs for every batch, in order, at
    /// the end of the epoch, and a non-finite loss is reported there (naming its optimizer
    /// step), after the epoch's remaining updates were applied.
    PerEpoch,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            validation_split: 0.0,
            shuffle: true,
            seed: 0,
            verbose: 1,
            initial_epoch: 0,
            callbacks: Vec::new(),
            host_reads: HostReads::Auto,
            augment: None,
            dp: None,
            pruning: None,
            distributed: None,
            checkpoint: None,
        }
    }
}

/// What one epoch produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLogs {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Batch-size-weighted mean of the batch losses.
    pub loss: f64,
    /// Training metrics, by name.
    pub metrics: Vec<(String, f64)>,
    /// Validation loss, when there is a validation part.
    pub val_loss: Option<f64>,
    /// Validation metrics, by name (without the `val_` prefix).
    pub val_metrics: Vec<(String, f64)>,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
}

impl EpochLogs {
    /// The value named `loss`, `val_loss`, a metric name or `val_` + a metric name.
    pub fn get(&self, name: &str) -> Option<f64> {
        if name == "loss" {
            return Some(self.loss);
        }
        if name == "val_loss" {
            return self.val_loss;
        }
        if let Some(m) = name.strip_prefix("val_") {
            return self
                .val_metrics
                .iter()
                .find(|(n, _)| n == m)
                .map(|(_, v)| *v);
        }
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Every name [`EpochLogs::get`] answers.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec!["loss".to_string()];
        names.extend(self.metrics.iter().map(|(n, _)| n.clone()));
        if self.val_loss.is_some() {
            names.push("val_loss".into());
            names.extend(self.val_metrics.iter().map(|(n, _)| format!("val_{n}")));
        }
        names
    }

    /// A Keras-like line: `loss: 0.4321 - accuracy: 0.8750 - val_loss: ... - 0.01s`.
    pub fn line(&self) -> String {
        let mut parts = vec![format!("loss: {:.4}", self.loss)];
        parts.extend(self.metrics.iter().map(|(n, v)| format!("{n}: {v:.4}")));
        if let Some(v) = self.val_loss {
            parts.push(format!("val_loss: {v:.4}"));
            parts.extend(
                self.val_metrics
                    .iter()
                    .map(|(n, v)| format!("val_{n}: {v:.4}")),
            );
        }
        parts.push(format!("{:.3}s", self.seconds));
        parts.join(" - ")
    }
}

/// The per-epoch logs of a `fit` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// One entry per trained epoch.
    pub epochs: Vec<EpochLogs>,
}

impl History {
    /// The series of one logged value over the epochs (missing values are NaN).
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.epochs
            .iter()
            .map(|e| e.get(name).unwrap_or(f64::NAN))
            .collect()
    }

    /// The last epoch's logs.
    pub fn last(&self) -> Option<&EpochLogs> {
        self.epochs.last()
    }
}

/// The result of [`Model::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Batch-size-weighted mean loss (with the regularisation penalty, as Keras).
    pub loss: f64,
    /// Metrics, by name.
    pub metrics: Vec<(String, f64)>,
    /// The model's outputs turned into probabilities, `rows × cols`.
    pub scores: Vec<f64>,
    /// Columns of `scores` (1 for a binary model).
    pub cols: usize,
    /// The labels, one per row.
    pub labels: Vec<f64>,
}

impl Evaluation {
    /// The metric named `name`, or `loss`.
    pub fn get(&self, name: &str) -> Option<f64> {
        if name == "loss" {
            return Some(self.loss);
        }
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// A network with its optimizer, loss and metrics.
pub struct Model {
    /// The layers.
    pub network: Sequential,
    /// The optimizer (holds its state between `fit` calls).
    pub optimizer: Optimizer,
    /// The training loss.
    pub loss: Loss,
    /// Metrics reported by `fit` and `evaluate`.
    pub metrics: Vec<Metric>,
    /// Class treated as positive by precision, recall, F1 and AUC (default 1, as Keras).
    pub positive_class: usize,
    /// Text saved in the checkpoint header beside the weights (`ember.model`: the model file
    /// as JSON, `ember.scaling`: the input preprocessing), read back with
    /// [`checkpoint::read_metadata`](crate::checkpoint::read_metadata).
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The privacy spent by DP-SGD training so far (see [`crate::dp`]).
    pub accountant: crate::privacy::RdpAccountant,
    /// A teacher to distil from while training (see [`crate::distill`]).
    pub teacher: Option<crate::distill::Teacher>,
    /// The precision policy of `fit`, `evaluate` and `predict` (default f32; see
    /// [`crate::mixed`]).
    pub precision: crate::mixed::Precision,
    /// Dynamic loss scaling: settings and state, kept between `fit` calls (see
    /// [`crate::mixed`]).
    pub loss_scaler: crate::mixed::LossScaler,
}

impl Sequential {
    /// Joins this network with an optimizer, a loss and metrics (Keras's `compile`).
    pub fn compile(self, optimizer: Optimizer, loss: Loss, metrics: &[Metric]) -> Model {
        Model {
            network: self,
            optimizer,
            loss,
            metrics: metrics.to_vec(),
            positive_class: 1,
            metadata: Default::default(),
            accountant: Default::default(),
            teacher: None,
            precision: Default::default(),
            loss_scaler: Default::default(),
        }
    }
}

/// Rows `[start, start + len)` of a tensor's first dimension.
fn rows(t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    Ok(t.narrow(0, start, len)?)
}

/// The rows at `ids` (as a float index tensor on the tensor's device).
fn gather_rows(t: &Tensor, ids: &[usize]) -> Result<Tensor> {
    let idx: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    let idx = Tensor::from_vec(idx, vec![ids.len()], ember_core::Device::Cpu)?;
    let idx = if t.device() == ember_core::Device::Cpu {
        idx
    } else {
        idx.to_device(t.device())?
    };
    Ok(t.index_select(&idx, 0)?)
}

/// A scalar tensor's value as f64.
fn scalar(t: &Tensor) -> Result<f64> {
    if t.elem_count() != 1 {
        return config_err(format!("expected a scalar, got shape {:?}", t.shape()));
    }
    // `to_scalar` reads the one element in place on the CPU (no allocation per step).
    Ok(t.to_scalar::<f64>()?)
}

/// Seed of epoch `epoch`'s shuffle: a fixed mix of the run's seed and the epoch number.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Model {
    /// Checks that `x` and `y` have the same number of rows.
    fn check_xy(&self, x: &Tensor, y: &Tensor) -> Result<usize> {
        if x.rank() == 0 || y.rank() == 0 || x.shape()[0] != y.shape()[0] {
            return config_err(format!(
                "x {:?} and y {:?} must have the same number of rows",
                x.shape(),
                y.shape()
            ));
        }
        Ok(x.shape()[0])
    }

    /// The loss of one batch including the regularisation penalty, as a scalar tensor.
    pub(crate) fn batch_loss(&self, out: &Tensor, y: &Tensor) -> Result<Tensor> {
        let data = self.loss.compute(out, y)?;
        Ok(match self.network.regularization()? {
            Some(r) => data.add(&r.to_dtype(data.dtype())?)?,
            None => data,
        })
    }

    /// One optimisation step on a batch, in training mode: forward (under the model's
    /// [`precision`](Model::precision) policy), loss, backward, update (with loss scaling when
    /// active: an overflowing step is skipped, see [`crate::mixed`]).
    /// Returns the batch loss and the outputs (detached). A NaN or infinite loss returns
    /// [`NnError::Diverged`] (with no epoch or batch) before the update is applied.
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<(f64, Tensor)> {
        let out = crate::mixed::autocast(self.precision, || self.network.forward(x, true))?;
        let loss = self.training_loss(x, &out, y)?;
        let value = scalar(&loss)?;
        if !value.is_finite() {
            return Err(NnError::Diverged {
                step: self.optimizer.iterations() + 1,
                epoch: None,
                batch: None,
                loss: value,
            });
        }
        let grads = self.loss_for_backward(&loss)?.backward()?;
        self.apply_gradients(&grads)?;
        Ok((value, out.detach()))
    }

    /// [`Model::train_step`] without reading anything back: returns the batch loss and the
    /// outputs as (detached) tensors on the model's device.
    fn train_step_on_device(&mut self, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = crate::mixed::autocast(self.precision, || self.network.forward(x, true))?;
        let loss = self.training_loss(x, &out, y)?;
        let grads = self.loss_for_backward(&loss)?.backward()?;
        self.apply_gradients(&grads)?;
        Ok((loss.detach(), out.detach()))
    }

    /// Turns raw outputs into probabilities for the metrics (sigmoid or softmax for logits).
    /// The network's outputs (`rows × cols`, row-major) as probabilities: sigmoid or softmax
    /// of logits when the loss takes logits, the outputs as they are otherwise.
    pub fn probabilities(&self, out: &[f64], cols: usize) -> Vec<f64> {
        self.scores(out, cols)
    }

    fn scores(&self, out: &[f64], cols: usize) -> Vec<f64> {
        match self.loss {
            Loss::BinaryCrossEntropyWithLogits => {
                out.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect()
            }
            Loss::CrossEntropy if cols > 1 => {
                let mut s = Vec::with_capacity(out.len());
                for row in out.chunks(cols) {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    s.extend(e.iter().map(|v| v / z));
                }
                s
            }
            _ => out.to_vec(),
        }
    }

    fn compute_metrics(
        &self,
        scores: &[f64],
        cols: usize,
        labels: &[f64],
        loss: f64,
    ) -> Vec<(String, f64)> {
        self.metrics
            .iter()
            .map(|m| {
                let v = match m {
                    // Exactly the mean cross-entropy in bits: no need to re-derive it.
                    Metric::BitsPerChar => loss / std::f64::consts::LN_2,
                    _ => m.compute(scores, cols, labels, self.positive_class),
                };
                (m.name().to_string(), v)
            })
            .collect()
    }

    /// Whether a metric needs the epoch's outputs (bits per character comes from the loss;
    /// collecting a language model's `[N, T, V]` outputs over an epoch would cost gigabytes).
    fn needs_outputs(&self) -> bool {
        self.metrics.iter().any(|m| *m != Metric::BitsPerChar)
    }

    /// Trains the model (Keras's `fit`); see the module documentation for the semantics.
    pub fn fit(&mut self, x: &Tensor, y: &Tensor, cfg: FitConfig) -> Result<History> {
        self.check_precision(x, cfg.dp.is_some())?;
        crate::mixed::autocast(self.precision, || self.fit_inner(x, y, cfg))
    }

    fn fit_inner(&mut self, x: &Tensor, y: &Tensor, mut cfg: FitConfig) -> Result<History> {
        let n = self.check_xy(x, y)?;
        if cfg.batch_size == 0 {
            return config_err("fit: batch_size must be at least 1");
        }
        if !(0.0..1.0).contains(&cfg.validation_split) {
            return config_err(format!(
                "fit: validation_split must be in [0, 1), got {}",
                cfg.validation_split
            ));
        }
        let n_train = if cfg.validation_split > 0.0 {
            (n as f64 * (1.0 - cfg.validation_split)).ceil() as usize
        } else {
            n
        }
        .min(n);
        if n_train == 0 {
            return config_err(format!(
                "fit: no training samples left of {n} after validation_split {}",
                cfg.validation_split
            ));
        }
        let n_val = n - n_train;
        let (x_train, y_train) = (rows(x, 0, n_train)?, rows(y, 0, n_train)?);
        let val = if n_val > 0 {
            Some((rows(x, n_train, n_val)?, rows(y, n_train, n_val)?))
        } else {
            None
        };
        if let Some(dp) = &cfg.dp {
            dp.validate()?;
            self.check_dp_layers()?;
            if self.teacher.is_some() {
                return config_err(
                    "fit: DP-SGD with a distillation teacher is not supported (the teacher's \
                     outputs would need their own privacy analysis); clear the teacher first",
                );
            }
        }
        if let Some(p) = &cfg.pruning {
            p.schedule.validate()?;
        }
        if let Some(c) = &cfg.checkpoint {
            c.validate()?;
        }
        // Distributed: checks, and rank 0's weights everywhere; only rank 0 prints.
        if let Some(d) = &cfg.distributed {
            self.dist_begin(d, cfg.dp.is_some())?;
        }
        let rank0 = cfg.distributed.as_ref().is_none_or(|d| d.comm.rank() == 0);
        let batches = n_train.div_ceil(cfg.batch_size);
        for cb in cfg.callbacks.iter_mut() {
            cb.on_train_begin(cfg.epochs, batches);
        }
        let mut history = History::default();
        for epoch in cfg.initial_epoch..cfg.epochs {
            let start = Instant::now();
            let mut order: Vec<usize> = (0..n_train).collect();
            if cfg.shuffle {
                order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(cfg.seed, epoch)));
            }
            let (mut loss_sum, mut outs, mut labels, mut cols) = (0.0, Vec::new(), Vec::new(), 1);
            let deferred = match cfg.host_reads {
                _ if cfg.distributed.is_some() => false,
                HostReads::Auto => x.device() != ember_core::Device::Cpu,
                HostReads::PerBatch => false,
                HostReads::PerEpoch => true,
            };
            // Deferred mode: the epoch's batch losses, outputs and labels, still on the device.
            let (mut dev_losses, mut dev_outs, mut dev_labels) =
                (Vec::new(), Vec::new(), Vec::new());
            let steps_before = self.optimizer.iterations();
            let skipped_before = self.loss_scaler.skipped_steps();
            // Gather the epoch's shuffled rows once; each batch is then a cheap view of them.
            let (x_epoch, y_epoch) = if cfg.shuffle {
                (
                    gather_rows(&x_train, &order)?,
                    gather_rows(&y_train, &order)?,
                )
            } else {
                (x_train.clone(), y_train.clone())
            };
            let x_epoch = match &cfg.augment {
                Some(a) => a.apply(&x_epoch, epoch_seed(cfg.seed ^ 0xA5A5_5A5A, epoch))?,
                None => x_epoch,
            };
            // DP-SGD draws its own (Poisson) batches below instead of these.
            let plain: &[usize] = if cfg.dp.is_some() { &[] } else { &order };
            for (b, ids) in plain.chunks(cfg.batch_size).enumerate() {
                let start = b * cfg.batch_size;
                let xb = rows(&x_epoch, start, ids.len())?;
                let yb = rows(&y_epoch, start, ids.len())?;
                if let Some(p) = &cfg.pruning {
                    p.before_step(self)?;
                }
                if let Some(d) = &cfg.distributed {
                    let s =
                        self.dist_step(d, &xb, &yb, self.needs_outputs())
                            .map_err(|e| match e {
                                NnError::Diverged { step, loss, .. } => NnError::Diverged {
                                    step,
                                    epoch: Some(epoch + 1),
                                    batch: Some(b),
                                    loss,
                                },
                                other => other,
                            })?;
                    loss_sum += s.loss * ids.len() as f64;
                    if self.needs_outputs() {
                        cols = s.cols;
                        outs.extend(s.outputs);
                        labels.extend(yb.to_vec::<f64>()?);
                    }
                    for cb in cfg.callbacks.iter_mut() {
                        cb.on_batch_end(epoch, b, s.loss);
                    }
                    continue;
                }
                if deferred {
                    let (loss, out) = self.train_step_on_device(&xb, &yb)?;
                    dev_losses.push(loss);
                    if self.needs_outputs() {
                        dev_outs.push(out);
                        dev_labels.push(yb);
                    }
                    continue;
                }
                let (loss, out) = self.train_step(&xb, &yb).map_err(|e| match e {
                    NnError::Diverged { step, loss, .. } => NnError::Diverged {
                        step,
                        epoch: Some(epoch + 1),
                        batch: Some(b),
                        loss,
                    },
                    other => other,
                })?;
                loss_sum += loss * ids.len() as f64;
                if self.needs_outputs() {
                    cols = output_cols(&out, ids.len());
                    outs.extend(out.to_vec::<f64>()?);
                    labels.extend(yb.to_vec::<f64>()?);
                }
                for cb in cfg.callbacks.iter_mut() {
                    cb.on_batch_end(epoch, b, loss);
                }
            }
            if deferred {
                // One read for the whole epoch: the batch losses stacked on the device.
                let losses: Vec<f64> = if dev_losses.is_empty() {
                    Vec::new()
                } else {
                    let parts: Vec<&Tensor> = dev_losses.iter().collect();
                    Tensor::stack(&parts, 0)?.to_vec::<f64>()?
                };
                for ((b, ids), &loss) in order.chunks(cfg.batch_size).enumerate().zip(&losses) {
                    if !loss.is_finite() {
                        return Err(NnError::Diverged {
                            step: steps_before + b as u64 + 1,
                            epoch: Some(epoch + 1),
                            batch: Some(b),
                            loss,
                        });
                    }
                    loss_sum += loss * ids.len() as f64;
                    for cb in cfg.callbacks.iter_mut() {
                        cb.on_batch_end(epoch, b, loss);
                    }
                }
                if !dev_outs.is_empty() {
                    let outs_t = Tensor::cat(&dev_outs.iter().collect::<Vec<_>>(), 0)?;
                    cols = output_cols(&outs_t, n_train);
                    outs = outs_t.to_vec::<f64>()?;
                    labels =
                        Tensor::cat(&dev_labels.iter().collect::<Vec<_>>(), 0)?.to_vec::<f64>()?;
                }
            }
            let mut seen = n_train;
            let mut epsilon = None;
            if let Some(dp) = cfg.dp {
                let q = (cfg.batch_size as f64 / n_train as f64).min(1.0);
                let mut rng = StdRng::seed_from_u64(epoch_seed(cfg.seed ^ 0xD1FF_5EED, epoch));
                seen = 0;
                for b in 0..batches {
                    let ids = crate::dp::poisson_batch(n_train, q, &mut rng);
                    if let Some(p) = &cfg.pruning {
                        p.before_step(self)?;
                    }
                    let step = |m: &mut Self, batch, rng: &mut StdRng| {
                        m.dp_step(batch, &dp, q * n_train as f64, rng)
                            .map_err(|e| match e {
                                NnError::Diverged { step, loss, .. } => NnError::Diverged {
                                    step,
                                    epoch: Some(epoch + 1),
                                    batch: Some(b),
                                    loss,
                                },
                                other => other,
                            })
                    };
                    let loss = if ids.is_empty() {
                        step(self, None, &mut rng)?.0
                    } else {
                        let (xb, yb) = (gather_rows(&x_train, &ids)?, gather_rows(&y_train, &ids)?);
                        let (loss, out) = step(self, Some((&xb, &yb)), &mut rng)?;
                        if self.needs_outputs()
                            && let Some(out) = &out
                        {
                            cols = output_cols(out, ids.len());
                            outs.extend(out.to_vec::<f64>()?);
                            labels.extend(yb.to_vec::<f64>()?);
                        }
                        loss
                    };
                    loss_sum += loss;
                    seen += ids.len();
                    for cb in cfg.callbacks.iter_mut() {
                        cb.on_batch_end(epoch, b, loss / ids.len().max(1) as f64);
                    }
                }
                epsilon = Some(crate::dp::account(
                    &mut self.accountant,
                    &dp,
                    q,
                    batches as u64,
                )?);
            }
            let scores = self.scores(&outs, cols);
            let train_loss = loss_sum / seen.max(1) as f64;
            let mut metrics =
                if self.metrics.is_empty() || (outs.is_empty() && self.needs_outputs()) {
                    Vec::new()
                } else {
                    self.compute_metrics(&scores, cols, &labels, train_loss)
                };
            if let Some(eps) = epsilon {
                metrics.push(("epsilon".to_string(), eps));
            }
            if self.loss_scaling_active() {
                metrics.push(("loss_scale".to_string(), self.loss_scaler.scale()));
                let skipped = self.loss_scaler.skipped_steps() - skipped_before;
                metrics.push(("skipped_steps".to_string(), skipped as f64));
            }
            let (val_loss, val_metrics) = match &val {
                Some((xv, yv)) => {
                    let e = self.evaluate(xv, yv, cfg.batch_size)?;
                    (Some(e.loss), e.metrics)
                }
                None => (None, Vec::new()),
            };
            let logs = EpochLogs {
                epoch: epoch + 1,
                loss: train_loss,
                metrics,
                val_loss,
                val_metrics,
                seconds: start.elapsed().as_secs_f64(),
            };
            if cfg.verbose > 0 && rank0 {
                println!("Epoch {}/{} - {}", epoch + 1, cfg.epochs, logs.line());
            }
            let params = self.network.named_parameters();
            let mut stop = false;
            for cb in cfg.callbacks.iter_mut() {
                if cb.on_epoch_end(&logs, &params)? == Control::Stop {
                    stop = true;
                }
            }
            // After the callbacks: the checkpoint holds what the next epoch starts from.
            if let Some(ck) = cfg.checkpoint.as_mut()
                && ck.due(&logs, stop || epoch + 1 == cfg.epochs)?
                && rank0
            {
                let point = crate::model_checkpoint::ResumePoint {
                    epoch: epoch + 1,
                    seed: Some(cfg.seed),
                    batch_size: Some(cfg.batch_size),
                };
                self.save_resumable(&ck.path, point)?;
            }
            history.epochs.push(logs);
            if stop {
                break;
            }
        }
        Ok(history)
    }

    /// Loss and metrics on `(x, y)` in evaluation mode (the forward passes get
    /// `training = false`; no layer state changes), in batches of `batch_size`.
    ///
    /// Zero rows is an error ([`NnError::Config`]): a mean loss and an accuracy over no
    /// samples are undefined, not 0.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<Evaluation> {
        let n = self.check_xy(x, y)?;
        if batch_size == 0 {
            return config_err("evaluate: batch_size must be at least 1");
        }
        if n == 0 {
            return config_err(
                "evaluate: x and y have no rows: loss and metrics over no samples are undefined",
            );
        }
        crate::mixed::no_grad_under(self.precision, || -> Result<Evaluation> {
            let (mut loss_sum, mut outs, mut cols) = (0.0, Vec::new(), 1);
            // On a GPU the batch losses and outputs stay on the device and are read once.
            let on_device = x.device() != ember_core::Device::Cpu;
            let (mut dev_losses, mut dev_outs, mut lens) = (Vec::new(), Vec::new(), Vec::new());
            let mut start = 0;
            while start < n {
                let len = batch_size.min(n - start);
                let (xb, yb) = (rows(x, start, len)?, rows(y, start, len)?);
                let out = self.network.forward(&xb, false)?;
                let loss = self.batch_loss(&out, &yb)?;
                cols = output_cols(&out, len);
                if on_device {
                    dev_losses.push(loss);
                    dev_outs.push(out);
                    lens.push(len);
                } else {
                    loss_sum += scalar(&loss)? * len as f64;
                    outs.extend(out.to_vec::<f64>()?);
                }
                start += len;
            }
            if !dev_losses.is_empty() {
                let losses =
                    Tensor::stack(&dev_losses.iter().collect::<Vec<_>>(), 0)?.to_vec::<f64>()?;
                for (&l, &len) in losses.iter().zip(&lens) {
                    loss_sum += l * len as f64;
                }
                outs = Tensor::cat(&dev_outs.iter().collect::<Vec<_>>(), 0)?.to_vec::<f64>()?;
            }
            let labels = y.to_vec::<f64>()?;
            let scores = self.scores(&outs, cols);
            let metrics = self.compute_metrics(&scores, cols, &labels, loss_sum / n as f64);
            Ok(Evaluation {
                loss: loss_sum / n as f64,
                metrics,
                scores,
                cols,
                labels,
            })
        })
    }

    /// The model's outputs for `x` in evaluation mode (the forward passes get
    /// `training = false`; no layer state changes, so a later `fit` behaves exactly as if
    /// `predict` had not been called), computed in batches of `batch_size`.
    pub fn predict(&self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        if x.rank() == 0 {
            return config_err("predict: x needs a batch dimension");
        }
        if batch_size == 0 {
            return config_err("predict: batch_size must be at least 1");
        }
        let n = x.shape()[0];
        crate::mixed::no_grad_under(self.precision, || -> Result<Tensor> {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < n {
                let len = batch_size.min(n - start);
                parts.push(self.network.forward(&rows(x, start, len)?, false)?);
                start += len;
            }
            if parts.is_empty() {
                return config_err("predict: x has no rows");
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            Ok(Tensor::cat(&refs, 0)?)
        })
    }

    /// The Keras-like summary table for inputs of `input_shape` (without the batch dimension).
    pub fn summary(&self, input_shape: &[usize]) -> Result<String> {
        self.network.summary(input_shape)
    }

    /// The architecture as a Mermaid flowchart.
    pub fn to_mermaid(&self, input_shape: &[usize]) -> Result<String> {
        self.network.to_mermaid(input_shape)
    }

    /// The element type of the first parameter (f32 for a default model).
    pub fn dtype(&self) -> DType {
        self.network
            .named_parameters()
            .first()
            .map(|(_, t)| t.dtype())
            .unwrap_or(DType::F32)
    }
}

/// Columns per prediction row of a batch output of `rows` examples: the classes of a sequence
/// output `[N, T, C]` (metrics then count every position, as Keras does), else everything
/// after the batch axis.
fn output_cols(out: &Tensor, rows: usize) -> usize {
    if out.rank() == 3 {
        out.shape()[2]
    } else {
        out.elem_count() / rows.max(1)
    }
}
