//! `fit`'s checkpoints (`FitConfig::checkpoint`, `ember_nn::model_checkpoint`) and resuming from
//! them: a run interrupted after a checkpoint and resumed from it ends bit-identical to the
//! uninterrupted run, in one process and data-parallel on another rank count (threads of this
//! process, `ember_comm::local`); the schedule (`every`, the last epoch, `save_best_only`); the
//! file is an ordinary checkpoint; resuming refuses files that cannot continue a run.

use ember_comm::local::LocalGroup;
use ember_comm::{Communicator, SingleProcess};
use ember_nn::callbacks::{Callback, Control};
use ember_nn::checkpoint;
use ember_nn::dist::{AllReduce, Distributed};
use ember_nn::model_checkpoint::{META_EPOCH, ResumePoint};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 6-12-8-1 network (weights from `init_seed`) with Adam, on 90 rows: 3 batches of 32 and
/// one of 26 per epoch.
fn model(init_seed: u64) -> (Model, Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(init_seed);
    let net = Sequential::new()
        .add(Dense::new(6, 12, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(12, 8, Activation::Tanh, &mut rng).unwrap())
        .add(Dense::new(8, 1, Activation::None, &mut rng).unwrap());
    let mut m = net.compile(
        Optimizer::adam().with_lr(0.01),
        Loss::BinaryCrossEntropyWithLogits,
        &[Metric::Accuracy],
    );
    m.metadata.insert("ember.note".into(), "kept".into());
    let mut data = StdRng::seed_from_u64(11);
    let x = Tensor::rand(-1.0, 1.0, (90, 6), DType::F32, Device::Cpu, &mut data).unwrap();
    let y = x
        .narrow(1, 0, 1)
        .unwrap()
        .mul(&x.narrow(1, 1, 1).unwrap())
        .unwrap()
        .ge_scalar(0.0)
        .unwrap();
    (m, x, y)
}

/// Fails `fit` at the end of epoch `at` (1-based), before that epoch's checkpoint: the run
/// "dies" during epoch `at` with the previous checkpoint on disk.
struct DieAt(usize);

impl Callback for DieAt {
    fn on_epoch_end(&mut self, logs: &EpochLogs, _: &[(String, Tensor)]) -> Result<Control> {
        if logs.epoch == self.0 {
            return Err(NnError::Config(format!("killed in epoch {}", self.0)));
        }
        Ok(Control::Continue)
    }
}

fn cfg(epochs: usize, initial_epoch: usize, ck: Option<&Path>) -> FitConfig {
    FitConfig {
        epochs,
        initial_epoch,
        batch_size: 32,
        validation_split: 0.2,
        verbose: 0,
        seed: 6,
        checkpoint: ck.map(ModelCheckpoint::new),
        ..FitConfig::default()
    }
}

/// Weights and optimizer state as bits, by name.
type State = Vec<(String, Vec<u32>)>;

/// The [`State`] of a model.
fn state(m: &Model) -> State {
    let mut all = m.network.named_parameters();
    all.extend(m.optimizer.state_tensors());
    all.iter()
        .map(|(n, t)| {
            let v = t.to_vec::<f32>().unwrap();
            (n.clone(), v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let dir = temp_dir("single");
    let (mut whole, x, y) = model(1);
    let h_whole = whole.fit(&x, &y, cfg(6, 0, None)).unwrap();

    // Killed in epoch 4: the checkpoint on disk is epoch 3's.
    let path = dir.join("run.safetensors");
    let (mut first, _, _) = model(1);
    let mut c = cfg(6, 0, Some(&path));
    c.callbacks.push(Box::new(DieAt(4)));
    let e = first.fit(&x, &y, c).unwrap_err();
    assert!(e.to_string().contains("killed in epoch 4"), "{e}");
    let point = ResumePoint::read(&path).unwrap();
    assert_eq!(
        point,
        ResumePoint {
            epoch: 3,
            seed: Some(6),
            batch_size: Some(32)
        }
    );

    // A fresh model (other initial weights, no optimizer state) resumes it.
    let (mut resumed, _, _) = model(99);
    let p = resumed.resume(&path).unwrap();
    assert_eq!(p.epoch, 3);
    let h = resumed.fit(&x, &y, cfg(6, p.epoch, Some(&path))).unwrap();
    assert!(
        state(&resumed) == state(&whole),
        "the resumed run's weights and optimizer state differ from the uninterrupted run's"
    );
    assert_eq!(resumed.optimizer.iterations(), whole.optimizer.iterations());
    // The resumed epochs log what the uninterrupted run logged for them.
    assert_eq!(h.series("loss"), h_whole.series("loss")[3..].to_vec());
    assert_eq!(
        h.series("val_loss"),
        h_whole.series("val_loss")[3..].to_vec()
    );
    // The file now holds the end of the run, and the model's own metadata.
    assert_eq!(ResumePoint::read(&path).unwrap().epoch, 6);
    let meta = checkpoint::read_metadata(&path).unwrap();
    assert_eq!(meta.get("ember.note").map(String::as_str), Some("kept"));
}

#[test]
fn a_checkpoint_is_an_ordinary_loadable_model() {
    let dir = temp_dir("loadable");
    let path = dir.join("mid.safetensors");
    let (mut m, x, y) = model(2);
    let mut c = cfg(5, 0, Some(&path));
    c.callbacks.push(Box::new(DieAt(3)));
    assert!(m.fit(&x, &y, c).is_err());
    // Weights alone, through the plain loader, then evaluated.
    let (fresh, _, _) = model(50);
    let report = checkpoint::load(&path, &fresh.network, None).unwrap();
    assert_eq!(report.tensors, 6);
    let e = fresh.evaluate(&x, &y, 16).unwrap();
    assert!(e.loss.is_finite() && e.get("accuracy").is_some());
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// Which epoch the checkpoint file named at the end of each epoch, before that epoch's own
/// write (a callback reads it: the write comes after the callbacks), then after the run.
fn written_epochs(every: usize, epochs: usize) -> Vec<usize> {
    struct Peek(PathBuf, Rc<RefCell<Vec<usize>>>);
    impl Callback for Peek {
        fn on_epoch_end(&mut self, _: &EpochLogs, _: &[(String, Tensor)]) -> Result<Control> {
            let at = ResumePoint::read(&self.0).map(|p| p.epoch).unwrap_or(0);
            self.1.borrow_mut().push(at);
            Ok(Control::Continue)
        }
    }
    let dir = temp_dir(&format!("sched-{every}-{epochs}"));
    let path = dir.join("s.safetensors");
    let (mut m, x, y) = model(3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut c = cfg(epochs, 0, None);
    c.checkpoint = Some(ModelCheckpoint::new(&path).every(every));
    c.callbacks.push(Box::new(Peek(path.clone(), seen.clone())));
    m.fit(&x, &y, c).unwrap();
    let mut seen = seen.borrow().clone();
    seen.push(ResumePoint::read(&path).map(|p| p.epoch).unwrap_or(0));
    seen
}

#[test]
fn every_n_epochs_and_the_last() {
    // every 3 over 7 epochs: written after 3, 6 and 7.
    assert_eq!(written_epochs(3, 7), vec![0, 0, 0, 3, 3, 3, 6, 7]);
    // every 1: after each.
    assert_eq!(written_epochs(1, 3), vec![0, 1, 2, 3]);
}

#[test]
fn save_best_only_writes_improvements_only() {
    // The file ends holding the epoch with the lowest val_loss of the history.
    let dir = temp_dir("best");
    let path = dir.join("b.safetensors");
    let (mut m, x, y) = model(4);
    let mut c = cfg(8, 0, None);
    c.checkpoint = Some(ModelCheckpoint::new(&path).save_best_only("val_loss"));
    let h = m.fit(&x, &y, c).unwrap();
    let val = h.series("val_loss");
    let best =
        val.iter().enumerate().fold(
            (0, f64::INFINITY),
            |acc, (i, &v)| {
                if v < acc.1 { (i + 1, v) } else { acc }
            },
        );
    assert_eq!(ResumePoint::read(&path).unwrap().epoch, best.0, "{val:?}");
    // An unknown name is an error naming what there is.
    let (mut m, x, y) = model(4);
    let mut c = cfg(2, 0, None);
    c.checkpoint = Some(ModelCheckpoint::new(dir.join("x.safetensors")).save_best_only("nope"));
    let e = m.fit(&x, &y, c).unwrap_err().to_string();
    assert!(e.contains("'nope'") && e.contains("val_loss"), "{e}");
}

#[test]
fn resume_refuses_files_that_cannot_continue_a_run() {
    let dir = temp_dir("refuse");
    let (mut m, x, y) = model(5);
    m.fit(&x, &y, cfg(1, 0, None)).unwrap();
    // Weights only: no optimizer state.
    let weights = dir.join("w.safetensors");
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(META_EPOCH.to_string(), "1".to_string());
    checkpoint::save_with_metadata(&weights, &m.network, None, &meta).unwrap();
    let e = m.resume(&weights).unwrap_err().to_string();
    assert!(e.contains("no optimizer state"), "{e}");
    // No resume point: a plain save.
    let plain = dir.join("p.safetensors");
    checkpoint::save(&plain, &m.network, Some(&m.optimizer)).unwrap();
    let e = m.resume(&plain).unwrap_err().to_string();
    assert!(e.contains(META_EPOCH), "{e}");
    // Another optimizer's state.
    let (mut other, _, _) = model(5);
    other.optimizer = Optimizer::sgd();
    let good = dir.join("g.safetensors");
    m.save_resumable(
        &good,
        ResumePoint {
            epoch: 1,
            seed: None,
            batch_size: None,
        },
    )
    .unwrap();
    let e = other.resume(&good).unwrap_err().to_string();
    assert!(e.contains("adam") && e.contains("sgd"), "{e}");
    // every = 0 is refused before training.
    let mut c = cfg(1, 0, None);
    c.checkpoint = Some(ModelCheckpoint::new(&good).every(0));
    assert!(m.fit(&x, &y, c).is_err());
}

/// Data-parallel: one process trains 5 epochs uninterrupted; 2 ranks train with checkpoints
/// and "die" in epoch 3; 3 ranks resume from the file: the weights are bit-identical.
#[test]
fn distributed_run_resumed_on_another_rank_count_is_bit_identical() {
    let dir = temp_dir("dist");
    let path = dir.join("d.safetensors");
    let tree = AllReduce::Tree { micro_shards: 4 };
    let run = |p: usize, resume: bool, die: Option<usize>| -> Vec<Result<State>> {
        let comms: Vec<Arc<dyn Communicator + Send + Sync>> = if p == 1 {
            vec![Arc::new(SingleProcess)]
        } else {
            LocalGroup::ranks(p, Duration::from_secs(60))
                .into_iter()
                .map(|c| Arc::new(c) as Arc<dyn Communicator + Send + Sync>)
                .collect()
        };
        let handles: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                let path = path.clone();
                std::thread::spawn(move || -> Result<State> {
                    let (mut m, x, y) = model(1 + comm.rank() as u64);
                    let initial = if resume { m.resume(&path)?.epoch } else { 0 };
                    let mut c = cfg(5, initial, Some(&path));
                    if let Some(at) = die {
                        c.callbacks.push(Box::new(DieAt(at)));
                    }
                    c.distributed = Some(Distributed::new(comm as Arc<dyn Communicator>, tree));
                    m.fit(&x, &y, c)?;
                    Ok(state(&m))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread panicked"))
            .collect()
    };
    let whole = run(1, false, None).remove(0).unwrap();
    let _ = std::fs::remove_file(&path);
    for r in run(2, false, Some(3)) {
        assert!(r.is_err(), "the 2-rank run was to die in epoch 3");
    }
    assert_eq!(ResumePoint::read(&path).unwrap().epoch, 2);
    for (rank, r) in run(3, true, None).into_iter().enumerate() {
        assert!(
            r.unwrap() == whole,
            "rank {rank} of 3: the resumed weights differ from the uninterrupted run"
        );
    }
}
