//! Data-parallel `fit` with 1, 2 and 3 ranks (threads of this process, `ember_comm::local`):
//! the tree reduction gives bit-identical weights for every rank count; the plain all-reduce
//! trains to the same weights up to rounding; a rank that stops makes the others fail within
//! the group's timeout. The same properties over real MPI processes are checked by the CLI's
//! tests/mpi.rs (feature `mpi`).

use ember_comm::local::LocalGroup;
use ember_comm::{Communicator, SingleProcess};
use ember_nn::dist::{AllReduce, DEFAULT_BUCKET_BYTES, Distributed};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;

/// The seed network (10-10-5-1, relu, relu, sigmoid; Adam; BCE) on 150 synthetic rows, or a
/// wider MLP (`wide`: 784-512-512-1 shape scaled down to 64-48-48-1 to stay quick in debug).
fn model(wide: bool) -> Result<(Model, Tensor, Tensor)> {
    let mut rng = StdRng::seed_from_u64(7);
    let (inputs, net) = if wide {
        let net = Sequential::new()
            .add(Dense::new(64, 48, Activation::Relu, &mut rng)?)
            .add(Dense::new(48, 48, Activation::Relu, &mut rng)?)
            .add(Dense::new(48, 1, Activation::None, &mut rng)?);
        (64, net)
    } else {
        let net = Sequential::new()
            .add(Dense::new(10, 10, Activation::Relu, &mut rng)?)
            .add(Dense::new(10, 5, Activation::Relu, &mut rng)?)
            .add(Dense::new(5, 1, Activation::Sigmoid, &mut rng)?);
        (10, net)
    };
    let loss = if wide {
        Loss::BinaryCrossEntropyWithLogits
    } else {
        Loss::BinaryCrossEntropy
    };
    let m = net.compile(Optimizer::adam(), loss, &[Metric::Accuracy]);
    let x = Tensor::rand(0.0, 1.0, (150, inputs), DType::F32, Device::Cpu, &mut rng)?;
    let y = x
        .narrow(1, 0, 1)?
        .add(&x.narrow(1, 1, 1)?)?
        .ge_scalar(1.0)?;
    Ok((m, x, y))
}

/// Trains on every rank of `comms` (one thread each; rank 0 gets a differently seeded
/// initialisation on the others, which the start-up broadcast must overwrite) and returns
/// each rank's weights (as bits) and rank 0's history.
fn train(
    comms: Vec<Arc<dyn Communicator + Send + Sync>>,
    all_reduce: AllReduce,
    wide: bool,
) -> Vec<(Vec<u32>, Vec<f64>)> {
    train_buckets(comms, all_reduce, wide, DEFAULT_BUCKET_BYTES)
}

/// [`train`] with gradient buckets of `bucket_bytes`.
fn train_buckets(
    comms: Vec<Arc<dyn Communicator + Send + Sync>>,
    all_reduce: AllReduce,
    wide: bool,
    bucket_bytes: usize,
) -> Vec<(Vec<u32>, Vec<f64>)> {
    let handles: Vec<_> = comms
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || -> Result<(Vec<u32>, Vec<f64>)> {
                let (mut m, x, y) = model(wide)?;
                if comm.rank() != 0 {
                    // Different starting weights: rank 0's must win.
                    for (_, p) in m.network.parameters_ref() {
                        p.assign(&p.mul_scalar(-3.0)?)?;
                    }
                }
                let h = m.fit(
                    &x,
                    &y,
                    FitConfig {
                        epochs: 2,
                        batch_size: 32, // 150 rows: four full batches and one of 22
                        verbose: 0,
                        seed: 3,
                        distributed: Some(Distributed {
                            comm: comm as Arc<dyn Communicator>,
                            all_reduce,
                            bucket_bytes,
                        }),
                        ..FitConfig::default()
                    },
                )?;
                let mut bits = Vec::new();
                for (_, p) in m.network.parameters_ref() {
                    bits.extend(p.to_vec::<f32>()?.iter().map(|v| v.to_bits()));
                }
                let mut logs = h.series("loss");
                logs.extend(h.series("accuracy"));
                Ok((bits, logs))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .expect("rank thread panicked")
                .expect("rank failed")
        })
        .collect()
}

fn ranks(p: usize) -> Vec<Arc<dyn Communicator + Send + Sync>> {
    if p == 1 {
        return vec![Arc::new(SingleProcess)];
    }
    LocalGroup::ranks(p, Duration::from_secs(120))
        .into_iter()
        .map(|c| Arc::new(c) as Arc<dyn Communicator + Send + Sync>)
        .collect()
}

#[test]
fn tree_reduction_is_bit_identical_for_1_2_and_3_ranks() {
    for wide in [false, true] {
        let tree = AllReduce::Tree { micro_shards: 8 };
        let one = train(ranks(1), tree, wide).remove(0);
        for p in [2, 3] {
            for (r, got) in train(ranks(p), tree, wide).into_iter().enumerate() {
                assert!(
                    got.0 == one.0,
                    "wide {wide}: rank {r} of {p}: weights differ from one process"
                );
                assert_eq!(got.1, one.1, "wide {wide}: rank {r} of {p}: logs differ");
            }
        }
    }
}

#[test]
fn more_ranks_than_shards_still_agree() {
    let tree = AllReduce::Tree { micro_shards: 2 };
    let one = train(ranks(1), tree, false).remove(0);
    for got in train(ranks(3), tree, false) {
        assert!(got.0 == one.0, "3 ranks over 2 shards: weights differ");
    }
}

#[test]
fn plain_all_reduce_trains_like_one_process_up_to_rounding() {
    let one = train(ranks(1), AllReduce::Plain, false).remove(0);
    let two = train(ranks(2), AllReduce::Plain, false);
    // Every rank holds the same weights.
    assert!(two[0].0 == two[1].0);
    for (a, b) in one.0.iter().zip(&two[0].0) {
        let (a, b) = (f32::from_bits(*a), f32::from_bits(*b));
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn layers_with_state_are_refused_by_the_tree_reduction() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut m = Sequential::new()
        .add(Dense::new(4, 4, Activation::Relu, &mut rng).unwrap())
        .add(Dropout::new(0.5, 1).unwrap())
        .add(Dense::new(4, 1, Activation::Sigmoid, &mut rng).unwrap())
        .compile(Optimizer::adam(), Loss::BinaryCrossEntropy, &[]);
    let x = Tensor::rand(0.0, 1.0, (8, 4), DType::F32, Device::Cpu, &mut rng).unwrap();
    let y = x.narrow(1, 0, 1).unwrap().ge_scalar(0.5).unwrap();
    let e = m
        .fit(
            &x,
            &y,
            FitConfig {
                verbose: 0,
                distributed: Some(Distributed {
                    comm: Arc::new(SingleProcess),
                    all_reduce: AllReduce::default(),
                    bucket_bytes: DEFAULT_BUCKET_BYTES,
                }),
                ..FitConfig::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("Dropout") && e.contains("plain"), "{e}");
}

#[test]
fn a_rank_that_stops_makes_the_others_fail_within_the_timeout() {
    let mut comms = LocalGroup::ranks(2, Duration::from_millis(500));
    let _dead = comms.pop(); // rank 1 never calls fit
    let comm = comms.pop().unwrap();
    let (mut m, x, y) = model(false).unwrap();
    let t = std::time::Instant::now();
    let e = m
        .fit(
            &x,
            &y,
            FitConfig {
                verbose: 0,
                distributed: Some(Distributed {
                    comm: Arc::new(comm),
                    all_reduce: AllReduce::default(),
                    bucket_bytes: DEFAULT_BUCKET_BYTES,
                }),
                ..FitConfig::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("waited"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

/// Buckets (one per parameter, or a few hundred bytes each) start each exchange as soon as
/// backward has produced it; the tree's weights stay bit-identical to one process with one
/// bucket, for 1, 2 and 3 ranks.
#[test]
fn gradient_buckets_keep_the_tree_bit_identical() {
    let tree = AllReduce::Tree { micro_shards: 8 };
    let one = train(ranks(1), tree, true).remove(0);
    for (p, bytes) in [(1, 0), (2, 0), (3, 0), (2, 600), (3, 10_000)] {
        for (r, got) in train_buckets(ranks(p), tree, true, bytes)
            .into_iter()
            .enumerate()
        {
            assert!(
                got.0 == one.0,
                "{bytes}-byte buckets: rank {r} of {p}: weights differ from one process"
            );
            assert_eq!(
                got.1, one.1,
                "{bytes}-byte buckets: rank {r} of {p}: logs differ"
            );
        }
    }
    // 64 micro-shards of a 32-row batch: half the shards are empty, so some ranks' last shard
    // has no rows and they issue every bucket after their (partly empty) work.
    let sparse = AllReduce::Tree { micro_shards: 64 };
    let one = train(ranks(1), sparse, false).remove(0);
    for p in [2, 3] {
        for got in train_buckets(ranks(p), sparse, false, 0) {
            assert!(
                got.0 == one.0,
                "64 shards, {p} ranks, 6 buckets: weights differ"
            );
        }
    }
    // Plain: the local group sums each element in rank order, whatever the bucket.
    let whole = train(ranks(2), AllReduce::Plain, true);
    let split = train_buckets(ranks(2), AllReduce::Plain, true, 0);
    assert!(whole[0].0 == split[0].0 && split[0].0 == split[1].0);
}
