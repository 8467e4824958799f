//! Gradient buckets for distributed `fit` ([`crate::dist`]): the exchange of a step is cut
//! into buckets of about [`Distributed::bucket_bytes`](crate::dist::Distributed), and a bucket
//! is exchanged as soon as the backward pass has produced its gradients (the gradient-ready
//! hook, [`ember_core::Tensor::backward_with_hook`]), while the rest of backward is still to
//! run — Horovod's and PyTorch DDP's design.
//!
//! **Buckets.** Parameters are taken in reverse order (the last layer's gradients are final
//! first) and packed greedily: a bucket closes once it holds `bucket_bytes` or more (DDP's
//! `bucket_cap_mb`, default 25 MiB, so a model of a few MB — the 784-512-512-1 MLP's 2.66 MB —
//! is one bucket and is exchanged when backward ends, as before). The parameters are laid out
//! in forward order in the flat gradient, so each bucket is one contiguous range of it.
//!
//! **Same result for any bucket size and rank count.** In `Tree` mode a bucket's exchange is the
//! per-parameter tree of [`crate::dist`] restricted to the bucket's range: each rank sends the
//! cover-node sums of its micro-shards over that range (one all-gather-v per bucket) and every
//! rank finishes the tree on it; each element goes through the same additions as with one
//! bucket, so the weights stay bit-identical for any rank count *and* any bucket size. The hook
//! drives the rank's last micro-shard: the earlier shards' gradients are complete by then. In
//! `Plain` mode each bucket is one all-reduce of the rank's slice gradient over that range;
//! the sums are element-wise, but an MPI library may pick its all-reduce algorithm (and so its
//! order of additions) by message size, so plain results may differ in the last bits between
//! bucket sizes, as they do between rank counts.
//!
//! **Order.** Collectives must be issued in the same order on every rank. Buckets are issued
//! strictly in bucket order (a bucket that completes early waits for the ones before it); a
//! rank with no rows in a step (more ranks than micro-shards, or a tiny last batch) issues them
//! all, in the same order, after its (empty) work. Parameters that get no gradient count as
//! zero and their buckets are issued once backward ends.
//!
//! **What overlaps, and what does not yet.** The [`ember_comm::Communicator`] collectives are
//! blocking, so an exchange issued from the hook runs *inside* backward: buckets start earlier,
//! but the backward of the remaining layers waits for each exchange to return instead of
//! running beside it. Real overlap needs a collective that returns before it completes (MPI's
//! non-blocking `MPI_Iallgatherv`/`MPI_Iallreduce`, which rsmpi exposes as scoped immediate
//! collectives, progressed by `MPI_Test` calls from the hook since Open MPI here has no
//! asynchronous progress thread), or a communication thread that owns the communicator (which
//! needs MPI initialised with `MPI_THREAD_MULTIPLE` or `SERIALIZED` — Open MPI here supports
//! it, ember's `Mpi::init` asks for the default single-thread level — and a `Send`
//! communicator). docs/DISTRIBUTED.md gives the measured effect of bucketing.

use crate::dist::{AllReduce, cover, finish, node_sum_range, part_rows, rank_shards};
use crate::error::{NnError, Result, config_err};
use crate::model::Model;
use crate::module::Module;
use ember_comm::{Communicator, Word};
use ember_core::{Tensor, TensorId, WithDType};
use std::collections::HashMap;

/// How the flat gradient is cut into buckets.
pub(crate) struct Plan {
    /// Element range `[lo, hi)` of each bucket in the flat gradient, in issue order (bucket 0
    /// holds the last parameters).
    pub ranges: Vec<(usize, usize)>,
    /// For each parameter (forward order): its bucket.
    bucket_of: Vec<usize>,
    /// For each parameter: its first element in the flat gradient.
    offsets: Vec<usize>,
    /// Parameters per bucket.
    members: Vec<usize>,
}

impl Plan {
    /// Buckets of at least `bucket_bytes` (the last one may be smaller) over parameters of
    /// `sizes` elements of `word` bytes each, packed from the last parameter back.
    pub(crate) fn new(sizes: &[usize], bucket_bytes: usize, word: usize) -> Plan {
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &n in sizes {
            offsets.push(at);
            at += n;
        }
        let mut bucket_of = vec![0; sizes.len()];
        let (mut ranges, mut members) = (Vec::new(), Vec::new());
        let (mut hi, mut bytes, mut count) = (at, 0usize, 0usize);
        for ((&n, &lo), slot) in sizes.iter().zip(&offsets).zip(&mut bucket_of).rev() {
            *slot = ranges.len();
            bytes += n * word;
            count += 1;
            if bytes >= bucket_bytes.max(1) {
                ranges.push((lo, hi));
                members.push(count);
                (hi, bytes, count) = (lo, 0, 0);
            }
        }
        if count > 0 || ranges.is_empty() {
            ranges.push((0, hi));
            members.push(count);
        }
        Plan {
            ranges,
            bucket_of,
            offsets,
            members,
        }
    }
}

/// The gradient of part `i` of the batch (a micro-shard, or a rank's slice), when known.
type Lookup<'a, T> = &'a dyn Fn(usize) -> Option<&'a [T]>;

/// One step's bucketed exchange: issues buckets in order as they become ready and collects the
/// summed gradient.
pub(crate) struct Exchange<'a, T: Word> {
    comm: &'a dyn Communicator,
    mode: AllReduce,
    plan: &'a Plan,
    /// Tree: the cover nodes of this rank's shards, and of every rank's.
    mine: Vec<(usize, usize)>,
    covers: Vec<Vec<(usize, usize)>>,
    /// Parameters of each bucket still to be reported.
    remaining: Vec<usize>,
    /// The next bucket to issue.
    next: usize,
    /// The summed gradient (filled bucket by bucket).
    pub total: Vec<T>,
}

impl<'a, T: Word> Exchange<'a, T> {
    pub(crate) fn new(
        comm: &'a dyn Communicator,
        mode: AllReduce,
        plan: &'a Plan,
        n_params: usize,
    ) -> Exchange<'a, T> {
        let (rank, p) = (comm.rank(), comm.size());
        let (mut mine, mut covers) = (Vec::new(), Vec::new());
        if let AllReduce::Tree { micro_shards } = mode {
            for r in 0..p {
                let (l, h) = rank_shards(micro_shards, p, r);
                let mut c = Vec::new();
                cover(0, micro_shards, l, h, &mut c);
                if r == rank {
                    mine = c.clone();
                }
                covers.push(c);
            }
        }
        Exchange {
            comm,
            mode,
            plan,
            mine,
            covers,
            remaining: plan.members.clone(),
            next: 0,
            total: vec![T::default(); n_params],
        }
    }

    /// Parameter `param`'s gradient is final in every part this rank computes: issues the
    /// buckets that are now complete, in order.
    pub(crate) fn ready(&mut self, param: usize, parts: Lookup<'_, T>) -> Result<()> {
        if let Some(b) = self.plan.bucket_of.get(param).copied()
            && let Some(left) = self.remaining.get_mut(b)
        {
            *left = left.saturating_sub(1);
        }
        while self.remaining.get(self.next) == Some(&0) {
            self.issue(self.next, parts)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Issues every bucket not issued yet, in order (after backward, or with no work).
    pub(crate) fn flush(&mut self, parts: Lookup<'_, T>) -> Result<()> {
        while self.next < self.plan.ranges.len() {
            self.issue(self.next, parts)?;
            self.next += 1;
        }
        Ok(())
    }

    /// The exchange of bucket `b`.
    fn issue(&mut self, b: usize, parts: Lookup<'_, T>) -> Result<()> {
        let Some(&(lo, hi)) = self.plan.ranges.get(b) else {
            return config_err(format!("distributed fit: no bucket {b}"));
        };
        let len = hi - lo;
        let out = match self.mode {
            AllReduce::Plain => {
                let rank = self.comm.rank();
                let mut buf = match parts(rank).and_then(|g| g.get(lo..hi)) {
                    Some(g) => g.to_vec(),
                    None => vec![T::default(); len],
                };
                crate::dist::timed("all-reduce of a gradient bucket", || {
                    T::all_reduce_sum(self.comm, &mut buf)
                })?;
                buf
            }
            AllReduce::Tree { micro_shards } => {
                let mut send = Vec::with_capacity(self.mine.len() * len);
                for &(a, z) in &self.mine {
                    send.extend(node_sum_range(a, z, (lo, hi), parts)?);
                }
                let counts: Vec<usize> = self.covers.iter().map(|c| c.len() * len).collect();
                let all = crate::dist::timed("all-gather of gradient subtrees", || {
                    T::all_gather_v(self.comm, &send, &counts)
                })?;
                let mut nodes: HashMap<(usize, usize), &[T]> = HashMap::new();
                for (i, node) in self.covers.iter().flatten().enumerate() {
                    let Some(v) = all.get(i * len..(i + 1) * len) else {
                        return config_err("distributed fit: short gradient all-gather");
                    };
                    nodes.insert(*node, v);
                }
                finish(0, micro_shards, &nodes)?
            }
        };
        match self.total.get_mut(lo..hi) {
            Some(dst) if dst.len() == out.len() => dst.copy_from_slice(&out),
            _ => {
                return config_err(format!(
                    "distributed fit: bucket [{lo}, {hi}) came back with {} values",
                    out.len()
                ));
            }
        }
        Ok(())
    }
}

impl Model {
    /// The forward/backward of rows `[s, e)` of the batch of `b` rows, as `part_grad` in
    /// [`crate::dist`], but reporting each parameter to `ex` as its gradient becomes final
    /// (part `part` is the one being computed; `done` holds the gradients of the parts this
    /// rank computed before). Returns the part's loss, outputs and flat gradient.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn part_grad_bucketed<T: Word + WithDType>(
        &self,
        x: &Tensor,
        y: &Tensor,
        (s, e): (usize, usize),
        b: usize,
        outputs: bool,
        part: usize,
        done: &HashMap<usize, Vec<T>>,
        ex: &mut Exchange<'_, T>,
    ) -> Result<(f64, Vec<f64>, Vec<T>)> {
        let (xs, ys) = (x.narrow(0, s, e - s)?, y.narrow(0, s, e - s)?);
        let out = self.network.forward(&xs, true)?;
        let loss = self.training_loss(&xs, &out, &ys)?;
        let loss = loss.mul_scalar((e - s) as f64 / b as f64)?;
        let value = loss.to_scalar::<f64>()?;
        let params = self.network.parameters_ref();
        let index: HashMap<TensorId, usize> = params
            .iter()
            .enumerate()
            .map(|(i, (_, p))| (p.id(), i))
            .collect();
        let mut flat = vec![T::default(); self.network.parameter_count()];
        let mut failed: Option<NnError> = None;
        let mut hook = |leaf: &Tensor, g: &Tensor| -> ember_core::Result<()> {
            let Some(&i) = index.get(&leaf.id()) else {
                return Ok(()); // not a parameter of the network (e.g. a teacher's)
            };
            let mut step = || -> Result<()> {
                let (Some(&at), Some((_, p))) = (ex.plan.offsets.get(i), params.get(i)) else {
                    return config_err("distributed fit: parameter index out of range");
                };
                let v = g.to_dtype(p.dtype())?.to_vec::<T>()?;
                match flat.get_mut(at..at + v.len()) {
                    Some(dst) => dst.copy_from_slice(&v),
                    None => {
                        return config_err("distributed fit: gradient larger than its parameter");
                    }
                }
                let lookup = |k: usize| -> Option<&[T]> {
                    if k == part {
                        Some(flat.as_slice())
                    } else {
                        done.get(&k).map(Vec::as_slice)
                    }
                };
                ex.ready(i, &lookup)
            };
            step().map_err(|e| {
                let detail = e.to_string();
                failed = Some(e);
                ember_core::Error::Invalid {
                    op: "distributed fit",
                    detail,
                }
            })
        };
        let walked = self.loss_for_backward(&loss)?.backward_with_hook(&mut hook);
        if let Some(e) = failed {
            return Err(e);
        }
        walked?;
        let outs = if outputs {
            out.to_vec::<f64>()?
        } else {
            Vec::new()
        };
        Ok((value, outs, flat))
    }
}

/// The distributed step's gradient exchange: computes this rank's parts (the last one with the
/// gradient-ready hook) and exchanges the gradient in buckets; returns the summed gradient and
/// the parts' (loss, outputs) in part order.
pub(crate) fn parts_and_exchange<T: Word + WithDType>(
    model: &Model,
    ex: &mut Exchange<'_, T>,
    x: &Tensor,
    y: &Tensor,
    b: usize,
    outputs: bool,
) -> Result<Vec<(f64, Vec<f64>)>> {
    let (rank, p) = (ex.comm.rank(), ex.comm.size());
    let (parts, (lo, hi)) = match ex.mode {
        AllReduce::Tree { micro_shards } => (micro_shards, rank_shards(micro_shards, p, rank)),
        AllReduce::Plain => (p, (rank, rank + 1)),
    };
    let n_params = model.network.parameter_count();
    let mut done: HashMap<usize, Vec<T>> = HashMap::new();
    let mut side = Vec::new();
    for part in lo..hi {
        let (s, e) = part_rows(b, parts, part);
        if s == e {
            side.push((0.0, Vec::new()));
            done.insert(part, vec![T::default(); n_params]);
            continue;
        }
        let (loss, outs, flat) = if part + 1 == hi {
            model.part_grad_bucketed::<T>(x, y, (s, e), b, outputs, part, &done, ex)?
        } else {
            model.part_grad::<T>(x, y, (s, e), b, outputs)?
        };
        side.push((loss, outs));
        done.insert(part, flat);
    }
    let lookup = |k: usize| -> Option<&[T]> { done.get(&k).map(Vec::as_slice) };
    ex.flush(&lookup)?;
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_pack_from_the_last_parameter_into_contiguous_ranges() {
        // Parameters of 6, 2, 4 and 3 elements (4 bytes each): flat [0,6) [6,8) [8,12) [12,15).
        let sizes = [6, 2, 4, 3];
        let one = Plan::new(&sizes, 25 << 20, 4);
        assert_eq!(one.ranges, vec![(0, 15)]);
        assert_eq!(one.members, vec![4]);
        // 16 bytes: [12,15) is 12 bytes, + [8,12) = 28 → closes; [6,8) 8 + [0,6) 24 → closes.
        let two = Plan::new(&sizes, 16, 4);
        assert_eq!(two.ranges, vec![(8, 15), (0, 8)]);
        assert_eq!(two.bucket_of, vec![1, 1, 0, 0]);
        // 0 bytes: one bucket per parameter, last first.
        let each = Plan::new(&sizes, 0, 4);
        assert_eq!(each.ranges, vec![(12, 15), (8, 12), (6, 8), (0, 6)]);
        assert_eq!(each.members, vec![1, 1, 1, 1]);
        // 36 bytes: [6,15) reaches exactly 36 and closes; the remainder [0,6) gets its own.
        let rest = Plan::new(&sizes, 36, 4);
        assert_eq!(rest.ranges, vec![(6, 15), (0, 6)]);
        // Every element is in exactly one bucket.
        for plan in [one, two, each, rest] {
            let mut seen = [0; 15];
            for (lo, hi) in plan.ranges {
                seen[lo..hi].iter_mut().for_each(|s| *s += 1);
            }
            assert!(seen.iter().all(|&s| s == 1));
        }
        // No parameters: one empty bucket.
        assert_eq!(Plan::new(&[], 8, 4).ranges, vec![(0, 0)]);
    }
}
