//! Checkpoints during `fit`, and resuming from them: Keras's `ModelCheckpoint`.
//!
//! A run that is killed loses everything since its last save, so [`Model::fit`] can write a
//! checkpoint every N epochs ([`FitConfig::checkpoint`](crate::model::FitConfig)): the
//! weights, the buffers, the optimizer state and [`Model::metadata`], plus the **resume point**
//! ([`ResumePoint`]: the number of epochs done, the seed and the batch size) in the header's
//! metadata (`ember.epoch`, `ember.seed`, `ember.batch_size`). The file is written with
//! [`checkpoint::save_with_metadata`], i.e. to a temporary file that is synced and renamed over
//! the target ([`checkpoint::write_atomic`]): a process killed mid-save leaves the previous
//! checkpoint intact. It is an ordinary ember checkpoint, so `ember evaluate`/`predict` and
//! [`Model::load`] read it as they read a `--save` file.
//!
//! Why a `FitConfig` field and not a [`Callback`](crate::callbacks::Callback): a callback sees
//! the epoch logs and the parameters, but not the optimizer, whose state a resumable checkpoint
//! must hold. The checkpoint is written after the epoch's callbacks have run (so it holds what
//! the next epoch starts from, e.g. the weights `EarlyStopping` restored when it stops).
//!
//! Resuming ([`Model::resume`]) loads the weights and the optimizer state and returns the
//! resume point; `fit` with `initial_epoch = point.epoch` (and the same data, seed, batch size
//! and settings) then continues **bit-identically** to an uninterrupted run: epoch `e`'s
//! shuffle and augmentation depend only on the seed and `e` (see [`crate::model`]), and every
//! other piece of training state is in the file. Exceptions, which a resumed run cannot
//! reproduce because their state is not saved: `Dropout` layers' mask generators (each layer's
//! own stream, advanced by every training forward pass), DP-SGD's privacy accountant, and a
//! distillation teacher's state.
//!
//! Under a communicator ([`crate::dist`]) rank 0 alone writes; every rank that resumes reads
//! the file (the parameters are broadcast from rank 0 anyway when `fit` starts, the optimizer
//! state is not, so the file must be readable by every rank: one machine, or a shared file
//! system). A write that fails (full disk, removed directory) ends `fit` with that error on
//! rank 0 only; the other ranks then fail in their next collective (MPI: the CLI aborts the
//! job; [`ember_comm::local`]: the group's timeout). Differences from Keras: the period is in epochs (Keras's integer `save_freq` counts
//! batches), and without `save_best_only` the last epoch of the run is always written too, so
//! the file ends holding the final state.

use crate::checkpoint;
use crate::error::{NnError, Result, config_err};
use crate::model::{EpochLogs, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata key: epochs completed when the checkpoint was written (the `initial_epoch` to
/// resume at).
pub const META_EPOCH: &str = "ember.epoch";
/// Metadata key: the `fit` seed of the run that wrote the checkpoint.
pub const META_SEED: &str = "ember.seed";
/// Metadata key: the `fit` batch size of the run that wrote the checkpoint.
pub const META_BATCH_SIZE: &str = "ember.batch_size";

/// Where and when `fit` writes checkpoints (Keras's `ModelCheckpoint` with
/// `save_weights_only=False`).
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    /// The file written (atomically, replaced each time).
    pub path: PathBuf,
    /// Write after every `every`-th epoch, counted from the start of training (1-based epoch
    /// numbers divisible by `every`, so a resumed run keeps the schedule), and after the last
    /// epoch of the run. At least 1.
    pub every: usize,
    /// Only write when `monitor` improved on the best value seen by this `fit` call (lower is
    /// better for names ending in `loss`, higher otherwise), as Keras's `save_best_only`;
    /// the last epoch is then not written unless it is the best.
    pub save_best_only: bool,
    /// The logged value `save_best_only` watches (`loss`, `val_loss`, a metric, `val_` + a
    /// metric).
    pub monitor: String,
    best: Option<f64>,
}

impl ModelCheckpoint {
    /// Writes `path` after every epoch (`every` 1, no `save_best_only`, monitor `val_loss`).
    pub fn new(path: impl Into<PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint {
            path: path.into(),
            every: 1,
            save_best_only: false,
            monitor: "val_loss".into(),
            best: None,
        }
    }

    /// Writes every `n` epochs instead (see [`ModelCheckpoint::every`]).
    pub fn every(mut self, n: usize) -> ModelCheckpoint {
        self.every = n;
        self
    }

    /// Writes only when `monitor` improves (see [`ModelCheckpoint::save_best_only`]).
    pub fn save_best_only(mut self, monitor: &str) -> ModelCheckpoint {
        self.save_best_only = true;
        self.monitor = monitor.to_string();
        self
    }

    /// Checks the settings before training.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.every == 0 {
            return config_err("ModelCheckpoint: every must be at least 1 epoch");
        }
        if self.path.file_name().is_none() {
            return config_err(format!(
                "ModelCheckpoint: '{}' has no file name",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// Whether the epoch whose logs are `logs` is written; `last`: the run ends after it.
    /// Updates the best monitored value.
    pub(crate) fn due(&mut self, logs: &EpochLogs, last: bool) -> Result<bool> {
        let periodic = logs.epoch.is_multiple_of(self.every);
        if !self.save_best_only {
            return Ok(periodic || last);
        }
        if !periodic {
            return Ok(false);
        }
        let value = logs.get(&self.monitor).ok_or_else(|| {
            NnError::Config(format!(
                "ModelCheckpoint: no value named '{}' in the epoch logs (have: {})",
                self.monitor,
                logs.names().join(", ")
            ))
        })?;
        let better = match self.best {
            None => !value.is_nan(),
            Some(best) if self.monitor.ends_with("loss") => value < best,
            Some(best) => value > best,
        };
        if better {
            self.best = Some(value);
        }
        Ok(better)
    }
}

/// Where a checkpoint written by `fit` (or by `ember train --save`) stands: read back from its
/// metadata by [`ResumePoint::read`] or [`Model::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Epochs completed: the `initial_epoch` of the resumed `fit`.
    pub epoch: usize,
    /// The seed of the run that wrote it, when recorded.
    pub seed: Option<u64>,
    /// The batch size of the run that wrote it, when recorded.
    pub batch_size: Option<usize>,
}

impl ResumePoint {
    /// The metadata that records this point in a checkpoint's header.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(META_EPOCH.to_string(), self.epoch.to_string());
        if let Some(s) = self.seed {
            m.insert(META_SEED.to_string(), s.to_string());
        }
        if let Some(b) = self.batch_size {
            m.insert(META_BATCH_SIZE.to_string(), b.to_string());
        }
        m
    }

    /// The resume point recorded in `path`'s header (an error names the file when it has no
    /// `ember.epoch`, i.e. was not written by `fit`'s checkpoints or `ember train --save`).
    pub fn read(path: &Path) -> Result<ResumePoint> {
        let meta = checkpoint::read_metadata(path)?;
        let bad = |key: &str, v: &str| NnError::Checkpoint {
            path: path.display().to_string(),
            message: format!("metadata '{key}' is '{v}', not a whole number"),
            source: None,
        };
        let epoch = match meta.get(META_EPOCH) {
            Some(v) => v.parse::<usize>().map_err(|_| bad(META_EPOCH, v))?,
            None => {
                return Err(NnError::Checkpoint {
                    path: path.display().to_string(),
                    message: format!(
                        "no '{META_EPOCH}' in its metadata: it was not written by a checkpointing \
                         fit (or `ember train --save`), so the epoch to resume at is unknown"
                    ),
                    source: None,
                });
            }
        };
        let seed = match meta.get(META_SEED) {
            Some(v) => Some(v.parse::<u64>().map_err(|_| bad(META_SEED, v))?),
            None => None,
        };
        let batch_size = match meta.get(META_BATCH_SIZE) {
            Some(v) => Some(v.parse::<usize>().map_err(|_| bad(META_BATCH_SIZE, v))?),
            None => None,
        };
        Ok(ResumePoint {
            epoch,
            seed,
            batch_size,
        })
    }
}

impl Model {
    /// Writes a resumable checkpoint to `path`: weights, buffers, optimizer state,
    /// [`Model::metadata`] and `point` (atomically, see [`checkpoint::write_atomic`]).
    pub fn save_resumable(&self, path: &Path, point: ResumePoint) -> Result<()> {
        let mut meta = self.metadata.clone();
        meta.extend(point.metadata());
        checkpoint::save_with_metadata(path, &self.network, Some(&self.optimizer), &meta)
    }

    /// Loads a checkpoint to continue its run: the weights, the buffers and the optimizer
    /// state (which must be there, for this model's optimizer: without it the run would not
    /// continue as it would have), and returns its [`ResumePoint`]; pass `point.epoch` as
    /// `FitConfig::initial_epoch` with the run's seed and batch size.
    pub fn resume(&mut self, path: &Path) -> Result<ResumePoint> {
        let point = ResumePoint::read(path)?;
        let stored = checkpoint::stored_optimizer(path)?;
        let mine = self.optimizer.algorithm.name();
        if stored.as_deref() != Some(mine) {
            return Err(NnError::Checkpoint {
                path: path.display().to_string(),
                message: match stored {
                    Some(other) => format!(
                        "resume: its optimizer state is for '{other}', the model's optimizer is \
                         '{mine}'; load the weights alone to start a new run from them"
                    ),
                    None => "resume: it holds no optimizer state (weights only); load the \
                             weights alone to start a new run from them"
                        .to_string(),
                },
                source: None,
            });
        }
        self.load(path)?;
        Ok(point)
    }
}
