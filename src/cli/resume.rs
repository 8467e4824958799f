//! `ember train --checkpoint PATH [--checkpoint-every N]` and `--resume PATH`: checkpoints
//! during training, and continuing a run from one.
//!
//! `--checkpoint` hands ember-nn's `ModelCheckpoint` to `fit` (see `ember_nn::model_checkpoint`):
//! after every N-th epoch and after the last one, the weights, the optimizer state, the model
//! description and input scaling (the same metadata as `--save`, so `ember evaluate` and
//! `ember predict` read it) and the resume point (`ember.epoch`, `ember.seed`,
//! `ember.batch_size`) are written atomically; under `--distributed` rank 0 alone writes.
//!
//! `--resume PATH` loads the weights and the optimizer state of such a file (or of a `--save`
//! file, which records the same resume point) and starts at its epoch, so that the run ends
//! bit-identical to one that was never interrupted, on any rank count with `--allreduce tree`.
//! What would break that is refused with the reason: `--load` beside it, an `--initial-epoch`,
//! `--seed` or `--batch-size` other than the checkpoint's, `--epochs` not beyond it, another
//! optimizer, and DP-SGD (its privacy accountant is not in the file). Dropout layers draw
//! their masks from a stream that is not saved: resuming such a model trains on, with a warning
//! that the result differs from an uninterrupted run.

use clap::Args;
use ember_nn::model::Model;
use ember_nn::model_checkpoint::{ModelCheckpoint, ResumePoint};
use std::path::PathBuf;

/// The checkpointing flags of `ember train`.
#[derive(Args, Debug, Clone, Default)]
pub struct CheckpointArgs {
    /// Write a resumable checkpoint here during training (after every --checkpoint-every
    /// epochs and after the last; atomically; rank 0 alone under --distributed). It holds what
    /// --save writes, so `ember evaluate`/`predict` read it.
    #[arg(long, value_name = "PATH.safetensors")]
    pub checkpoint: Option<PathBuf>,
    /// Epochs between two --checkpoint writes (counted from the run's first epoch, so a
    /// resumed run keeps the schedule).
    #[arg(long, default_value_t = 1, requires = "checkpoint", allow_negative_numbers = true, value_parser = super::whole_number)]
    pub checkpoint_every: usize,
    /// Continue the run saved in this checkpoint (--checkpoint or --save of `ember train`):
    /// its weights, optimizer state and epoch; the result is bit-identical to an uninterrupted
    /// run with the same flags.
    #[arg(long, value_name = "PATH.safetensors", conflicts_with = "load")]
    pub resume: Option<PathBuf>,
}

impl CheckpointArgs {
    /// The flags' checks that need no file: `--checkpoint-every` at least 1.
    pub fn check(&self) -> Result<(), String> {
        if self.checkpoint.is_some() && self.checkpoint_every == 0 {
            return Err("--checkpoint-every must be at least 1".into());
        }
        Ok(())
    }

    /// What `fit` gets for `--checkpoint`.
    pub fn model_checkpoint(&self) -> Option<ModelCheckpoint> {
        self.checkpoint
            .as_ref()
            .map(|p| ModelCheckpoint::new(p.clone()).every(self.checkpoint_every))
    }
}

/// The run's settings a resumed run must share with the one that wrote the checkpoint.
pub struct RunFlags {
    /// `--initial-epoch`, when given.
    pub initial_epoch: Option<usize>,
    /// `--epochs` (resolved).
    pub epochs: usize,
    /// `--seed`.
    pub seed: u64,
    /// `--batch-size` (resolved).
    pub batch_size: usize,
    /// DP-SGD is on.
    pub dp: bool,
}

/// The epoch to start at: `--resume`'s (after loading its weights and optimizer state into
/// `model`, and checking it against `flags`), else `--initial-epoch`, else 0. Prints what was
/// resumed unless `quiet`.
pub fn initial_epoch(
    args: &CheckpointArgs,
    flags: &RunFlags,
    model: &mut Model,
    quiet: bool,
) -> Result<usize, String> {
    let Some(path) = &args.resume else {
        return Ok(flags.initial_epoch.unwrap_or(0));
    };
    let shown = path.display();
    let point = ResumePoint::read(path).map_err(|e| format!("--resume: {e}"))?;
    check_point(&point, flags).map_err(|e| format!("--resume {shown}: {e}"))?;
    model.resume(path).map_err(|e| format!("--resume: {e}"))?;
    if model.network.layers().iter().any(|l| l.kind() == "Dropout") {
        eprintln!(
            "warning: --resume: the model has Dropout layers, whose mask generators are not in \
             the checkpoint: the resumed run trains on, but differs from an uninterrupted one"
        );
    }
    if !quiet {
        println!(
            "Resumed from {shown} after epoch {} (optimizer state after {} steps)",
            point.epoch,
            model.optimizer.iterations()
        );
    }
    Ok(point.epoch)
}

/// Refuses flags that contradict the checkpoint's resume point (each would silently make the
/// resumed run differ from the one it continues).
fn check_point(point: &ResumePoint, flags: &RunFlags) -> Result<(), String> {
    let k = point.epoch;
    if let Some(i) = flags.initial_epoch
        && i != k
    {
        return Err(format!(
            "--initial-epoch {i} contradicts the checkpoint, which was written after epoch {k}; \
             drop --initial-epoch (--resume starts at the checkpoint's epoch), or use --load \
             to start elsewhere from its weights"
        ));
    }
    if flags.dp {
        return Err(
            "DP-SGD cannot be resumed: the privacy accountant is not in the checkpoint, so the \
             reported ε would be wrong"
                .into(),
        );
    }
    if let Some(s) = point.seed
        && s != flags.seed
    {
        return Err(format!(
            "the run was trained with --seed {s}, not {}: resume with --seed {s} (a different \
             seed changes the test split and the shuffles), or use --load to start a new run",
            flags.seed
        ));
    }
    if let Some(b) = point.batch_size
        && b != flags.batch_size
    {
        return Err(format!(
            "the run was trained with --batch-size {b}, not {}: resume with --batch-size {b}, \
             or use --load to start a new run from its weights",
            flags.batch_size
        ));
    }
    if k >= flags.epochs {
        return Err(format!(
            "the checkpoint has already trained {k} epochs and --epochs is {}: nothing left to \
             train (raise --epochs above {k})",
            flags.epochs
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> RunFlags {
        RunFlags {
            initial_epoch: None,
            epochs: 10,
            seed: 3,
            batch_size: 16,
            dp: false,
        }
    }

    #[test]
    fn contradictions_are_refused() {
        let point = ResumePoint {
            epoch: 4,
            seed: Some(3),
            batch_size: Some(16),
        };
        assert!(check_point(&point, &flags()).is_ok());
        let same = RunFlags {
            initial_epoch: Some(4),
            ..flags()
        };
        assert!(check_point(&point, &same).is_ok());
        let cases: [(RunFlags, &str); 5] = [
            (
                RunFlags {
                    initial_epoch: Some(0),
                    ..flags()
                },
                "--initial-epoch 0",
            ),
            (RunFlags { seed: 4, ..flags() }, "--seed 3"),
            (
                RunFlags {
                    batch_size: 8,
                    ..flags()
                },
                "--batch-size 16",
            ),
            (
                RunFlags {
                    epochs: 4,
                    ..flags()
                },
                "already trained 4",
            ),
            (
                RunFlags {
                    dp: true,
                    ..flags()
                },
                "DP-SGD",
            ),
        ];
        for (f, want) in cases {
            let e = check_point(&point, &f).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // A checkpoint that does not record the seed or batch size accepts any.
        let bare = ResumePoint {
            epoch: 4,
            seed: None,
            batch_size: None,
        };
        assert!(check_point(&bare, &RunFlags { seed: 9, ..flags() }).is_ok());
    }
}
