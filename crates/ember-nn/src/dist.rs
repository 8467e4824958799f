//! Data-parallel training: [`Model::fit`] across processes under an
//! [`ember_comm::Communicator`] (MPI ranks launched by `mpirun`, or one process alone).
//!
//! Set [`FitConfig::distributed`](crate::model::FitConfig) and call `fit` on every rank with
//! the same data, model (same seed or same checkpoint), configuration and seed. Every rank
//! holds the whole data set and derives the same shuffled order from the seed; each global
//! batch is cut into parts, each rank computes the gradient of its parts, the ranks combine
//! them, and every rank applies the same optimizer step to the same summed gradient, so the
//! replicas never drift apart. Parameters are broadcast from rank 0 when `fit` starts (the
//! ranks may have loaded a checkpoint or drawn weights differently).
//!
//! ## Two reductions ([`AllReduce`])
//!
//! **`Tree` (default): bit-identical for any number of ranks.** Floating-point addition is not
//! associative, so summing per-rank gradients with `MPI_Allreduce` gives results that depend
//! on the rank count (and on the MPI library's algorithm). Instead each global batch of B rows
//! is cut into a fixed number M of **micro-shards** whose sizes depend on B and M only (the
//! first `B mod M` shards have ⌈B/M⌉ rows, the rest ⌊B/M⌋; shards of a batch smaller than M
//! may be empty). Shard s's gradient is that of its mean loss times `len_s / B`, so the shard
//! gradients sum to the batch gradient. The sum is a **fixed-shape binary tree** over the M
//! leaves (node `[a, b)` has children `[a, m)` and `[m, b)`, `m = a + (b − a) / 2`). Rank r
//! owns the contiguous shards `[M·r/p, M·(r+1)/p)`; it sums the tree nodes that lie wholly in
//! its range (the O(log M) nodes of the range's canonical cover), the ranks exchange those
//! partial sums (one all-gather-v), and every rank finishes the tree top-down from them, in
//! the same order. Every addition is thus the same on any rank count, including one process
//! (`mpirun -np 1`, or [`ember_comm::SingleProcess`]), and so are the weights after training.
//!
//! Its costs, against plain `fit` and against `Plain`: M forward/backward passes on B/M rows
//! instead of one on B (smaller GEMMs: slower per sample when B/M is small); each rank sends
//! up to ~2·log₂(M/p) gradient-sized vectors instead of a reduce-scatter's share (for M = 8,
//! p = 2: at most 2 vectors per rank, against ~1 for a ring all-reduce). The exchange is cut into
//! gradient buckets ([`Distributed::bucket_bytes`], see [`crate::dist_buckets`]), each started
//! from the gradient-ready hook of the rank's last micro-shard's backward pass; with ember's
//! blocking collectives the exchange runs inside backward rather than beside it. The weights are also **not** bit-identical
//! to plain (non-distributed) `fit`: the batch gradient is a sum of M shard gradients rather
//! than one backward over B rows; they agree to rounding.
//!
//! **`Plain`: `MPI_Allreduce`.** Each rank takes a contiguous `1/p` of every batch, computes its
//! gradient (scaled by its share of the rows) and the ranks sum them with the communicator's
//! all-reduce. One backward per rank on the biggest possible slice, one all-reduce: the fastest,
//! but the result depends on the rank count in the last bits.
//!
//! ## What else follows PyTorch's DistributedDataParallel, and where ember differs
//! - The last partial batch is trained, like plain `fit`: it is cut into the same M (or p)
//!   parts, some possibly empty. PyTorch's `DistributedSampler` instead pads the data set with
//!   repeated samples to a multiple of p (or drops the rest with `drop_last`); ember needs
//!   neither because the global batch, not a per-rank batch, is the unit.
//! - Losses and metrics: every rank gathers the shard losses (summed in shard order) and, when
//!   there are metrics, the outputs of the whole batch, so every rank's `History` — and rank
//!   0's printed line — is what one process in the same mode computes. Only rank 0 prints;
//!   callbacks run on every rank (they see the same logs, so `EarlyStopping` stops every rank
//!   at the same epoch); writing files from rank 0 only is the caller's choice (the CLI does).
//! - Layers with running statistics (BatchNorm) or randomness (Dropout) are refused in `Tree`
//!   mode: their state would advance per shard on whichever rank owns it and the replicas
//!   would drift (DDP without SyncBN has the same per-replica statistics). `Plain` mode allows
//!   them and broadcasts rank 0's buffers after every step, as DDP's `broadcast_buffers`;
//!   Dropout's masks then differ per rank.
//! - DP-SGD is not combined with distribution (refused).
//! - Batches are computed on the host path: gradients travel as host `f32`/`f64` vectors.

use crate::error::{NnError, Result, config_err};
use crate::model::Model;
use crate::module::Module;
use ember_comm::{Communicator, Word};
use ember_core::{DType, GradStore, Tensor, WithDType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the ranks combine gradients; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduce {
    /// Fixed micro-shards summed by a fixed-shape tree: bit-identical for any rank count.
    Tree {
        /// M: micro-shards per global batch (at least 1). The result depends on M, not on
        /// the rank count; ranks beyond M get no work.
        micro_shards: usize,
    },
    /// One slice per rank, summed by the communicator's all-reduce (fastest; not
    /// bit-reproducible across rank counts).
    Plain,
}

impl Default for AllReduce {
    fn default() -> Self {
        AllReduce::Tree { micro_shards: 8 }
    }
}

/// The default gradient bucket: 25 MiB, PyTorch DDP's `bucket_cap_mb` (see
/// [`crate::dist_buckets`]).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// The distributed settings of [`Model::fit`]: the communicator, the reduction and the
/// gradient bucket size.
#[derive(Clone)]
pub struct Distributed {
    /// The group of ranks (MPI, or [`ember_comm::SingleProcess`]).
    pub comm: Arc<dyn Communicator>,
    /// How gradients are combined.
    pub all_reduce: AllReduce,
    /// Gradient bytes per exchange bucket (see [`crate::dist_buckets`]): a bucket is exchanged
    /// as soon as backward has produced it. The weights do not depend on it.
    pub bucket_bytes: usize,
}

impl Distributed {
    /// `comm` and `all_reduce` with the default bucket size ([`DEFAULT_BUCKET_BYTES`]).
    pub fn new(comm: Arc<dyn Communicator>, all_reduce: AllReduce) -> Distributed {
        Distributed {
            comm,
            all_reduce,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed")
            .field("comm", &self.comm.name())
            .field("all_reduce", &self.all_reduce)
            .field("bucket_bytes", &self.bucket_bytes)
            .finish()
    }
}

/// Time spent in the communicator by this process's `fit` so far (all-gathers, all-reduces,
/// broadcasts), for scaling measurements.
static COMM_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds this process has spent inside collective calls made by distributed `fit`.
pub fn comm_seconds() -> f64 {
    Duration::from_nanos(COMM_NANOS.load(std::sync::atomic::Ordering::Relaxed)).as_secs_f64()
}

/// Runs a collective, adds its time to [`comm_seconds`] and turns its error into ember-nn's.
pub(crate) fn timed<T>(op: &str, f: impl FnOnce() -> ember_comm::Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f();
    COMM_NANOS.fetch_add(
        t.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    r.map_err(|e| NnError::Config(format!("distributed fit: {op}: {e}")))
}

/// Row range `[start, end)` of part `i` of `n` rows cut into `parts` near-equal parts, the
/// first `n mod parts` one row longer.
pub fn part_rows(n: usize, parts: usize, i: usize) -> (usize, usize) {
    let (q, r) = (n / parts, n % parts);
    let start = i * q + i.min(r);
    (start, start + q + usize::from(i < r))
}

/// The shards `[lo, hi)` of `m` that rank `rank` of `p` owns (contiguous, near-equal).
pub fn rank_shards(m: usize, p: usize, rank: usize) -> (usize, usize) {
    (m * rank / p, m * (rank + 1) / p)
}

/// Midpoint of tree node `[a, b)`.
fn mid(a: usize, b: usize) -> usize {
    a + (b - a) / 2
}

/// The canonical cover of `[lo, hi)` by nodes of the tree over `[a, b)`, left to right.
pub fn cover(a: usize, b: usize, lo: usize, hi: usize, out: &mut Vec<(usize, usize)>) {
    if hi <= a || b <= lo || a >= b {
        return;
    }
    if lo <= a && b <= hi {
        out.push((a, b));
        return;
    }
    let m = mid(a, b);
    cover(a, m, lo, hi, out);
    cover(m, b, lo, hi, out);
}

/// Sum of the tree node `[a, b)` from `leaf(i)` values, in the tree's fixed order (the
/// reference the tests check [`node_sum_range`]'s bucketed sums against).
#[cfg(test)]
fn node_sum<T: Word>(a: usize, b: usize, leaves: &HashMap<usize, Vec<T>>) -> Result<Vec<T>> {
    if b - a == 1 {
        return match leaves.get(&a) {
            Some(v) => Ok(v.clone()),
            None => config_err(format!("distributed fit: gradient of shard {a} missing")),
        };
    }
    let m = mid(a, b);
    let mut l = node_sum(a, m, leaves)?;
    let r = node_sum(m, b, leaves)?;
    add_into(&mut l, &r);
    Ok(l)
}

/// `acc[i] += x[i]`, element by element.
fn add_into<T: Word>(acc: &mut [T], x: &[T]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = *a + b;
    }
}

/// Sum of tree node `[a, b)` over the elements `[lo, hi)` of the leaves `leaf(i)`, in the
/// tree's fixed order (per element, the additions the whole-vector tree makes).
pub(crate) fn node_sum_range<'a, T: Word>(
    a: usize,
    b: usize,
    (lo, hi): (usize, usize),
    leaf: &'a dyn Fn(usize) -> Option<&'a [T]>,
) -> Result<Vec<T>> {
    if b - a == 1 {
        return match leaf(a).and_then(|v| v.get(lo..hi)) {
            Some(v) => Ok(v.to_vec()),
            None => config_err(format!(
                "distributed fit: gradient of shard {a} missing (elements {lo}..{hi})"
            )),
        };
    }
    let m = mid(a, b);
    let mut l = node_sum_range(a, m, (lo, hi), leaf)?;
    let r = node_sum_range(m, b, (lo, hi), leaf)?;
    add_into(&mut l, &r);
    Ok(l)
}

/// Finishes the tree over `[a, b)` from node sums: a node found in `nodes` is taken as it is,
/// any other is the sum of its children.
pub(crate) fn finish<T: Word>(
    a: usize,
    b: usize,
    nodes: &HashMap<(usize, usize), &[T]>,
) -> Result<Vec<T>> {
    if let Some(v) = nodes.get(&(a, b)) {
        return Ok(v.to_vec());
    }
    if b - a <= 1 {
        return config_err(format!(
            "distributed fit: tree node [{a}, {b}) was sent by no rank"
        ));
    }
    let m = mid(a, b);
    let mut l = finish(a, m, nodes)?;
    let r = finish(m, b, nodes)?;
    add_into(&mut l, &r);
    Ok(l)
}

/// What one distributed step produced, the same on every rank.
pub(crate) struct StepOut {
    /// The batch loss: the sum of the parts' losses (each its mean times its row share).
    pub loss: f64,
    /// The outputs of the whole batch (row-major) when asked for, else empty.
    pub outputs: Vec<f64>,
    /// Output values per row.
    pub cols: usize,
}

impl Model {
    /// Checks what distributed `fit` supports and broadcasts rank 0's parameters and buffers.
    pub(crate) fn dist_begin(&self, d: &Distributed, dp: bool) -> Result<()> {
        if dp {
            return config_err("distributed fit: DP-SGD is not supported with a communicator");
        }
        if let AllReduce::Tree { micro_shards } = d.all_reduce {
            if micro_shards == 0 {
                return config_err("distributed fit: micro_shards must be at least 1");
            }
            for (i, layer) in self.network.layers().iter().enumerate() {
                if !layer.buffers().is_empty() || layer.kind() == "Dropout" {
                    return config_err(format!(
                        "distributed fit: layer {i} ({}) keeps running statistics or draws random \
                         masks per forward pass, which the bit-identical tree reduction cannot \
                         reproduce across rank counts; use AllReduce::Plain (--allreduce plain)",
                        layer.describe()
                    ));
                }
            }
        }
        for (name, t) in self.network.parameters_ref() {
            broadcast_tensor(d.comm.as_ref(), t, name)?;
        }
        for (name, t) in self.network.named_buffers() {
            broadcast_tensor(d.comm.as_ref(), &t, &name)?;
        }
        Ok(())
    }

    /// One distributed optimisation step on the global batch (`x`, `y`), the same rows on
    /// every rank. `outputs`: gather the batch's outputs (for metrics).
    pub(crate) fn dist_step(
        &mut self,
        d: &Distributed,
        x: &Tensor,
        y: &Tensor,
        outputs: bool,
    ) -> Result<StepOut> {
        match self.dtype() {
            DType::F64 => self.dist_step_t::<f64>(d, x, y, outputs),
            _ => self.dist_step_t::<f32>(d, x, y, outputs),
        }
    }

    /// The forward/backward of rows `[s, e)` of the batch of `b` rows: the part's loss
    /// (mean × (e − s)/b), its outputs and its flat gradient in parameter order.
    pub(crate) fn part_grad<T: Word + WithDType>(
        &self,
        x: &Tensor,
        y: &Tensor,
        (s, e): (usize, usize),
        b: usize,
        outputs: bool,
    ) -> Result<(f64, Vec<f64>, Vec<T>)> {
        let (xs, ys) = (x.narrow(0, s, e - s)?, y.narrow(0, s, e - s)?);
        let out = self.network.forward(&xs, true)?;
        let loss = self.training_loss(&xs, &out, &ys)?;
        let loss = loss.mul_scalar((e - s) as f64 / b as f64)?;
        let value = loss.to_scalar::<f64>()?;
        let grads = self.loss_for_backward(&loss)?.backward()?;
        let mut flat = Vec::with_capacity(self.network.parameter_count());
        for (_, p) in self.network.parameters_ref() {
            match grads.get(p) {
                Some(g) => flat.extend(g.to_dtype(p.dtype())?.to_vec::<T>()?),
                None => flat.extend(std::iter::repeat_n(T::default(), p.elem_count())),
            }
        }
        let outs = if outputs {
            out.to_vec::<f64>()?
        } else {
            Vec::new()
        };
        Ok((value, outs, flat))
    }

    fn dist_step_t<T: Word + WithDType>(
        &mut self,
        d: &Distributed,
        x: &Tensor,
        y: &Tensor,
        outputs: bool,
    ) -> Result<StepOut> {
        let comm = d.comm.as_ref();
        let p = comm.size();
        let b = x.shape().first().copied().unwrap_or(0);
        if b == 0 {
            return config_err("distributed fit: empty batch");
        }
        let cols: usize = self
            .network
            .output_shape(x.shape().get(1..).unwrap_or(&[]))?
            .iter()
            .product();
        let n_params = self.network.parameter_count();
        // Parts of the batch: M shards (tree) or one per rank (plain).
        let parts = match d.all_reduce {
            AllReduce::Tree { micro_shards } => micro_shards,
            AllReduce::Plain => p,
        };
        let owner = |r: usize| match d.all_reduce {
            AllReduce::Tree { micro_shards } => rank_shards(micro_shards, p, r),
            AllReduce::Plain => (r, r + 1),
        };
        // This rank's parts, forward and backward, with the gradient exchanged in buckets as
        // backward produces them (see `dist_buckets`).
        let sizes: Vec<usize> = self
            .network
            .parameters_ref()
            .iter()
            .map(|(_, t)| t.elem_count())
            .collect();
        let plan = crate::dist_buckets::Plan::new(&sizes, d.bucket_bytes, std::mem::size_of::<T>());
        let mut ex = crate::dist_buckets::Exchange::<T>::new(comm, d.all_reduce, &plan, n_params);
        let mine = crate::dist_buckets::parts_and_exchange(self, &mut ex, x, y, b, outputs)?;
        let total = std::mem::take(&mut ex.total);
        // This rank's part losses and outputs, in part order, sent as one f64 gather.
        let mut side: Vec<f64> = mine.iter().map(|(l, _)| *l).collect();
        for (_, o) in mine {
            side.extend(o);
        }
        // Losses and outputs of every part, rank by rank (= part order).
        let side_counts: Vec<usize> = (0..p)
            .map(|r| {
                let (l, h) = owner(r);
                let rows = part_rows(b, parts, h.max(l)).0 - part_rows(b, parts, l).0;
                (h - l) + if outputs { rows * cols } else { 0 }
            })
            .collect();
        let all_side = timed("all-gather of losses", || {
            f64::all_gather_v(comm, &side, &side_counts)
        })?;
        let (mut loss, mut outs) = (0.0, Vec::new());
        let mut at = 0;
        for (r, &count) in side_counts.iter().enumerate() {
            let (l, h) = owner(r);
            let chunk = all_side.get(at..at + count).unwrap_or(&[]);
            let (losses, o) = chunk.split_at((h - l).min(chunk.len()));
            for &v in losses {
                loss += v;
            }
            outs.extend_from_slice(o);
            at += count;
        }
        if !loss.is_finite() {
            return Err(NnError::Diverged {
                step: self.optimizer.iterations() + 1,
                epoch: None,
                batch: None,
                loss,
            });
        }
        // Back into per-parameter gradients, then the step every rank takes alike.
        let mut store = GradStore::new();
        let mut at = 0;
        for (name, prm) in self.network.parameters_ref() {
            let n = prm.elem_count();
            let Some(v) = total.get(at..at + n) else {
                return config_err(format!("distributed fit: gradient of {name} missing"));
            };
            let g = Tensor::from_slice(v, prm.shape().to_vec(), ember_core::Device::Cpu)?
                .to_dtype(prm.dtype())?;
            let g = if prm.device() == ember_core::Device::Cpu {
                g
            } else {
                g.to_device(prm.device())?
            };
            store.insert(prm, g);
            at += n;
        }
        // Scaled gradients summed over ranks: an overflow anywhere skips the step everywhere.
        self.apply_gradients(&store)?;
        if d.all_reduce == AllReduce::Plain {
            for (name, t) in self.network.named_buffers() {
                broadcast_tensor(comm, &t, &name)?;
            }
        }
        Ok(StepOut {
            loss,
            outputs: outs,
            cols,
        })
    }
}

/// Overwrites `t` on every rank with rank 0's values.
fn broadcast_tensor(comm: &dyn Communicator, t: &Tensor, name: &str) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let op = format!("broadcast of {name} {:?}", t.shape());
    let v = match t.dtype() {
        DType::F64 => {
            let mut v = t.to_vec::<f64>()?;
            timed(&op, || comm.broadcast_f64(&mut v, 0))?;
            Tensor::from_vec(v, t.shape().to_vec(), ember_core::Device::Cpu)?
        }
        _ => {
            let mut v = t.to_vec::<f32>()?;
            timed(&op, || comm.broadcast_f32(&mut v, 0))?;
            Tensor::from_vec(v, t.shape().to_vec(), ember_core::Device::Cpu)?
        }
    };
    let v = v.to_dtype(t.dtype())?;
    let v = if t.device() == ember_core::Device::Cpu {
        v
    } else {
        v.to_device(t.device())?
    };
    t.assign(&v)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order() {
        for n in 0..20 {
            for parts in 1..9 {
                let mut at = 0;
                for i in 0..parts {
                    let (s, e) = part_rows(n, parts, i);
                    assert_eq!(s, at);
                    assert!(e - s == n / parts || e - s == n / parts + 1);
                    at = e;
                }
                assert_eq!(at, n);
            }
        }
    }

    #[test]
    fn covers_are_tree_nodes_that_partition_the_range() {
        for m in 1..17 {
            for p in 1..6 {
                let mut seen = vec![0; m];
                for r in 0..p {
                    let (lo, hi) = rank_shards(m, p, r);
                    let mut c = Vec::new();
                    cover(0, m, lo, hi, &mut c);
                    for (a, b) in c {
                        assert!(lo <= a && b <= hi && a < b);
                        seen[a..b].iter_mut().for_each(|s| *s += 1);
                    }
                }
                assert!(seen.iter().all(|&s| s == 1), "m {m} p {p}: {seen:?}");
            }
        }
    }

    /// The tree finished from any rank count's covers equals the tree summed in one piece,
    /// bit for bit, on values whose sum depends on the order.
    #[test]
    fn tree_sum_is_the_same_for_any_rank_count() {
        let m = 7;
        // First component: 1 + 1e8 rounds back to 1e8 in f32, so the grouping shows.
        let first = [1.0f32, 1.0e8, 1.0, -1.0e8, 1.0, 1.0, 1.0];
        let leaves: HashMap<usize, Vec<f32>> = (0..m)
            .map(|i| (i, vec![first[i], 1.0 / (i as f32 + 1.0)]))
            .collect();
        let one = node_sum(0, m, &leaves).unwrap();
        let mut sequential = vec![0.0f32; 2];
        for i in 0..m {
            add_into(&mut sequential, &leaves[&i]);
        }
        for p in 1..=m + 1 {
            let mut sums = Vec::new();
            for r in 0..p {
                let (lo, hi) = rank_shards(m, p, r);
                let mut c = Vec::new();
                cover(0, m, lo, hi, &mut c);
                for (a, b) in c {
                    sums.push(((a, b), node_sum(a, b, &leaves).unwrap()));
                }
            }
            let nodes: HashMap<(usize, usize), &[f32]> =
                sums.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let total = finish(0, m, &nodes).unwrap();
            assert_eq!(
                total.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{p} ranks"
            );
        }
        // The check can fail: a left-to-right sum rounds differently here.
        assert_ne!(sequential[0].to_bits(), one[0].to_bits());
    }
}
