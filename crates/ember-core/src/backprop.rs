//! Reverse-mode automatic differentiation: the backward walk and one rule per primitive op.
//!
//! The walk takes each recorded op out of its node as it goes (unless asked to retain the
//! graph), so the graph is freed as soon as backward is done with it, even if the caller keeps
//! the loss tensor alive.
//!
//! `backward` sorts the recorded graph topologically (inputs before outputs), seeds the output's
//! gradient, and visits nodes from the output back, asking each node's rule for its inputs'
//! gradients and adding them into a store keyed by tensor id. Contributions to a tensor used
//! twice are summed, which is all "diamonds" and reuse need. Rules run under `no_grad`, so they
//! build no graph of their own (gradients are first order).
//!
//! Every rule is a few lines of tensor ops, written as its vector-Jacobian product: given the
//! gradient `g` of the output `y`, return the gradient of each input. The elementwise ops share
//! one rule, `dx = g · f'(x)`, whose derivatives `f'` are the table
//! [`ember_cpu::unary::derivative`] (mirrored by `kernels/elementwise.cu` on a GPU). Fused ops
//! (a Dense layer, a BCE loss) carry their rules in `fused/`.

use crate::error::{Error, Result};
use crate::grad_mode::NoGradGuard;
use crate::id_map::{IdMap, IdSet};
use crate::op::Op;
use crate::tensor::{GraphState, Tensor, TensorId};
use ember_ops::BinaryOp;

/// Gradients from one `backward` call, keyed by tensor.
#[derive(Debug, Default)]
pub struct GradStore(IdMap<Tensor>);

impl GradStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gradient of `t`, if one reached it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }

    /// The gradient stored under `id`.
    pub fn get_id(&self, id: TensorId) -> Option<&Tensor> {
        self.0.get(&id)
    }

    /// Takes the gradient of `t` out of the store.
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }

    /// Sets the gradient of `t`.
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.0.insert(t.id(), grad);
    }

    /// Number of stored gradients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no gradient is stored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Nodes reachable from `root` through recorded ops, each after all of its inputs, with their
/// ops. With `retain == false` the ops are taken out of the nodes, which frees the graph as soon
/// as this walk's list is dropped; a node found already consumed is an error, not a silent zero.
fn topo_order(root: &Tensor, retain: bool) -> Result<Vec<(Tensor, Op)>> {
    // Room for a small network's graph up front, so a training step does not regrow these.
    let mut order = Vec::with_capacity(16);
    let mut seen = IdSet::new();
    // Iterative post-order DFS (deep graphs must not overflow the stack).
    let mut stack: Vec<(Tensor, Option<Op>)> = Vec::with_capacity(32);
    stack.push((root.clone(), None));
    let mut inputs: Vec<Tensor> = Vec::with_capacity(4);
    while let Some((t, op)) = stack.pop() {
        if let Some(op) = op {
            order.push((t, op));
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        let op = {
            let mut state = t.graph_state();
            match &*state {
                GraphState::Leaf => None,
                GraphState::Consumed => {
                    return Err(Error::invalid(
                        "backward",
                        format!(
                            "the graph through a tensor of shape {:?} was freed by an earlier backward; \
                             recompute the forward pass (or use backward_retain to walk a graph twice)",
                            t.shape()
                        ),
                    ));
                }
                GraphState::Recorded(op) if retain => Some(op.clone()),
                GraphState::Recorded(_) => {
                    match std::mem::replace(&mut *state, GraphState::Consumed) {
                        GraphState::Recorded(op) => Some(op),
                        _ => unreachable!("matched Recorded just above"),
                    }
                }
            }
        };
        if let Some(op) = op {
            // The node goes below its inputs on the stack, so it is emitted after them.
            // (`inputs` is one scratch buffer reused for every node.)
            op.visit_inputs(|input| {
                if input.requires_grad() && !seen.contains(input.id()) {
                    inputs.push(input.clone());
                }
            });
            stack.push((t, Some(op)));
            stack.extend(inputs.drain(..).map(|i| (i, None)));
        }
    }
    Ok(order)
}

impl Tensor {
    /// Gradients of this one-element tensor with respect to every tensor it was computed from.
    ///
    /// The walk frees the graph behind this tensor (memory stays flat however long the loss is
    /// kept); a second `backward` through the same graph is an error. Use
    /// [`Tensor::backward_retain`] to walk it more than once.
    pub fn backward(&self) -> Result<GradStore> {
        self.backward_seeded(None, false)
    }

    /// Like [`Tensor::backward`] but keeps the graph, so it can be walked again.
    pub fn backward_retain(&self) -> Result<GradStore> {
        self.backward_seeded(None, true)
    }

    /// Gradients given the gradient `grad` of this tensor (same shape and dtype); frees the graph.
    pub fn backward_with(&self, grad: &Tensor) -> Result<GradStore> {
        self.backward_seeded(Some(grad), false)
    }

    /// [`Tensor::backward`] that calls `ready(leaf, grad)` for each leaf tensor that needs a
    /// gradient (a parameter) as soon as its gradient is final — right after the last node
    /// that consumes it has run — while the rest of the walk continues. This is the
    /// gradient-ready hook of data-parallel training (PyTorch's `register_post_accumulate_
    /// grad_hook`, which DDP and Horovod use to start all-reducing a bucket of gradients
    /// before backward ends): for a `Sequential` the last layer's parameters are ready first.
    /// Each leaf is reported once, in the walk's order, with the gradient the returned store
    /// holds (the walk and its sums are those of `backward`: the same bits); an error from
    /// `ready` stops the walk and is returned. "As soon as" is within that fixed walk, which
    /// is a topological order but not always the earliest one: a leaf consumed through an
    /// unfused broadcast (`matmul` then `add` of a bias) is reported when the walk reaches
    /// the broadcast node, possibly at the end; the fused `linear` of a Dense layer takes its
    /// parameters directly, so a `Sequential`'s are reported layer by layer.
    pub fn backward_with_hook(
        &self,
        ready: &mut dyn FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<GradStore> {
        self.backward_walk(None, false, Some(ready))
    }

    fn backward_seeded(&self, grad: Option<&Tensor>, retain: bool) -> Result<GradStore> {
        self.backward_walk(grad, retain, None)
    }

    fn backward_walk(
        &self,
        grad: Option<&Tensor>,
        retain: bool,
        mut ready: Option<&mut ReadyHook<'_>>,
    ) -> Result<GradStore> {
        let grad = match grad {
            Some(g) => g.clone(),
            None => {
                if self.elem_count() != 1 {
                    return Err(Error::shape(
                        "backward",
                        format!(
                            "needs a one-element output (or use backward_with), got shape {:?}",
                            self.shape()
                        ),
                    ));
                }
                Tensor::ones(self.shape().to_vec(), self.dtype(), self.device())?
            }
        };
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                "backward_with",
                format!(
                    "gradient shape {:?} differs from output shape {:?}",
                    grad.shape(),
                    self.shape()
                ),
            ));
        }
        if grad.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "backward_with",
                lhs: self.dtype(),
                rhs: grad.dtype(),
            });
        }
        let _no_grad = NoGradGuard::new();
        let order = topo_order(self, retain)?;
        // Sized up front: every recorded node and each of its inputs may get an entry.
        let mut grads: IdMap<Tensor> =
            IdMap::with_capacity_and_hasher(3 * order.len() + 1, Default::default());
        // A caller's gradient is detached (the store must not keep its graph alive); the ones
        // made above are a fresh leaf already.
        let seed = if grad.requires_grad() {
            grad.detach()
        } else {
            grad
        };
        grads.insert(self.id(), seed);
        // With a hook: the leaves each node is the last consumer of (walk index → leaves).
        let finals = match ready {
            Some(_) => last_consumers(&order),
            None => Vec::new(),
        };
        for (step, (node, op)) in order.iter().rev().enumerate() {
            if let (Some(hook), Some(leaves)) = (ready.as_mut(), finals.get(step)) {
                // The previous node was the last consumer of these leaves.
                fire(&mut **hook, leaves, &grads)?;
            }
            let Some(g) = grads.get(&node.id()).cloned() else {
                continue;
            };
            for (input, ig) in input_grads(node, op, &g)? {
                if !input.requires_grad() {
                    continue;
                }
                let total = match grads.remove(&input.id()) {
                    Some(prev) => prev.add(&ig)?,
                    None => ig,
                };
                grads.insert(input.id(), total);
            }
        }
        if let (Some(hook), Some(leaves)) = (ready.as_mut(), finals.get(order.len())) {
            fire(&mut **hook, leaves, &grads)?;
        }
        Ok(GradStore(grads))
    }
}

/// For [`Tensor::backward_with_hook`]: at index `s` (a step of the walk over the reversed
/// `order`, `0..=order.len()`), the leaves that need a gradient and whose last consumer ran at
/// step `s - 1`: their gradient is final before step `s` runs.
fn last_consumers(order: &[(Tensor, Op)]) -> Vec<Vec<Tensor>> {
    let nodes: IdSet = {
        let mut s = IdSet::new();
        for (t, _) in order {
            s.insert(t.id());
        }
        s
    };
    let mut last: IdMap<(usize, Tensor)> = IdMap::default();
    for (step, (_, op)) in order.iter().rev().enumerate() {
        op.visit_inputs(|input| {
            if input.requires_grad() && !nodes.contains(input.id()) {
                last.insert(input.id(), (step, input.clone()));
            }
        });
    }
    // By step, then by id (creation order), so that the hook's order is deterministic.
    let mut by_step: Vec<(usize, Tensor)> = last.into_values().collect();
    by_step.sort_by_key(|(step, t)| (*step, t.id()));
    let mut out: Vec<Vec<Tensor>> = vec![Vec::new(); order.len() + 1];
    for (step, t) in by_step {
        if let Some(slot) = out.get_mut(step + 1) {
            slot.push(t);
        }
    }
    out
}

/// The gradient-ready hook of [`Tensor::backward_with_hook`]: `(leaf, its final gradient)`.
type ReadyHook<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<()> + 'a;

/// Calls the gradient-ready hook for `leaves` (skipping any no gradient reached).
fn fire(hook: &mut ReadyHook<'_>, leaves: &[Tensor], grads: &IdMap<Tensor>) -> Result<()> {
    for leaf in leaves {
        if let Some(g) = grads.get(&leaf.id()) {
            hook(leaf, g)?;
        }
    }
    Ok(())
}

/// Sums `g` (of a broadcast result's shape) back down to `shape`.
fn unbroadcast(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let lead = g.rank() - shape.len();
    let mut axes: Vec<usize> = (0..lead).collect();
    for (i, &e) in shape.iter().enumerate() {
        if e == 1 && g.shape()[lead + i] != 1 {
            axes.push(lead + i);
        }
    }
    if axes.is_empty() {
        return g.reshape(shape.to_vec());
    }
    g.sum(&axes, true)?.reshape(shape.to_vec())
}

/// The vector-Jacobian product of one recorded op: (input, gradient of that input) pairs.
fn input_grads(y: &Tensor, op: &Op, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
    Ok(match op {
        // d/dx f(x) = f'(x), e.g. d sigmoid = y(1-y), d tanh = 1-y², d relu = [x>0].
        Op::Unary(u, x) => vec![(x.clone(), Tensor::unary_backward(*u, x, y, g)?)],
        Op::Binary(b, lhs, rhs) => binary_grads(*b, y, lhs, rhs, g)?,
        // Every summed element gets the gradient of its sum.
        Op::Sum(x) => vec![(x.clone(), g.broadcast_to(x.shape())?)],
        // Only the extreme elements matter; ties share the gradient equally.
        Op::Extremum(x, axes) => {
            let mask = x.eq(&y.broadcast_to(x.shape())?)?;
            let count = mask.sum(axes, true)?;
            vec![(
                x.clone(),
                g.div(&count)?.broadcast_to(x.shape())?.mul(&mask)?,
            )]
        }
        // C = A·B: dA = g·Bᵀ, dB = Aᵀ·g (transposes are views; the GEMM reads them by stride).
        Op::Matmul(a, b) => vec![
            (a.clone(), g.matmul(&b.t()?)?),
            (b.clone(), a.t()?.matmul(g)?),
        ],
        // softmax: dx = y ⊙ (g − Σ g⊙y).
        Op::Softmax(x) => {
            let last = y.rank() - 1;
            let dot = g.mul(y)?.sum(&[last], true)?;
            vec![(x.clone(), y.mul(&g.sub(&dot)?)?)]
        }
        // log_softmax: dx = g − softmax(x) · Σ g.
        Op::LogSoftmax(x) => {
            let last = y.rank() - 1;
            let s = g.sum(&[last], true)?;
            vec![(x.clone(), g.sub(&y.exp()?.mul(&s)?)?)]
        }
        Op::Reshape(x) => vec![(x.clone(), g.reshape(x.shape().to_vec())?)],
        // Undo the permutation: inverse[perm[i]] = i.
        Op::Permute(x, perm) => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![(x.clone(), g.permute(&inverse)?)]
        }
        // The narrowed range gets g; the rest of the input gets zeros.
        Op::Narrow(x, dim, start) => {
            let (dim, start) = (*dim, *start);
            let mut before = x.shape().to_vec();
            before[dim] = start;
            let mut after = x.shape().to_vec();
            after[dim] = x.shape()[dim] - start - g.shape()[dim];
            let zb = Tensor::zeros(before, g.dtype(), g.device())?;
            let za = Tensor::zeros(after, g.dtype(), g.device())?;
            vec![(x.clone(), Tensor::cat(&[&zb, g, &za], dim)?)]
        }
        // Repeated elements collect the gradients of all their copies.
        Op::Broadcast(x) => vec![(x.clone(), unbroadcast(g, x.shape())?)],
        // A copy, cast or device move passes the gradient through, converted back to the
        // input's device and dtype.
        Op::Copy(x) => vec![(x.clone(), g.to_device(x.device())?.to_dtype(x.dtype())?)],
        // Each input gets its own slice of g.
        Op::Cat(xs, dim) => {
            let mut off = 0;
            let mut v = Vec::with_capacity(xs.len());
            for x in xs {
                let len = x.shape()[*dim];
                v.push((x.clone(), g.narrow(*dim, off, len)?));
                off += len;
            }
            v
        }
        // Picked rows send their gradients back to where they came from (summed on repeats).
        Op::IndexSelect(x, idx, dim) => vec![(x.clone(), g.index_add_to(x.shape(), *dim, idx)?)],
        Op::Gather(x, idx, dim) => vec![(x.clone(), g.scatter_add_to(x.shape(), *dim, idx)?)],
        // The chosen branch gets g, the other zeros.
        Op::Where(c, a, b) => {
            let zeros = g.zeros_like()?;
            vec![
                (a.clone(), c.where_cond(g, &zeros)?),
                (b.clone(), c.where_cond(&zeros, g)?),
            ]
        }
        // A fused op (Dense layer, BCE loss) carries its own rule (`fused/`).
        Op::Fused(op) => op.backward(y, g)?,
    })
}

/// Rules for the differentiable binary ops (operands already share the output's shape).
fn binary_grads(
    op: BinaryOp,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
) -> Result<Vec<(Tensor, Tensor)>> {
    let (da, db) = match op {
        BinaryOp::Add => (g.clone(), g.clone()),
        BinaryOp::Sub => (g.clone(), g.neg()?),
        BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
        // d(a/b) = g/b, −g·a/b² = −g·y/b
        BinaryOp::Div => (g.div(b)?, g.mul(y)?.div(b)?.neg()?),
        // d(a^b) = g·b·a^(b−1), g·y·ln a, masked as PyTorch does where the formula is 0·∞:
        // the base gets 0 where b = 0 (0^0 has slope 0 in a), the exponent gets 0 where a = 0
        // and b ≥ 0 (y·ln a → 0).
        BinaryOp::Pow => {
            let zeros = a.zeros_like()?;
            let slope = b.mul(&a.pow(&b.sub_scalar(1.0)?)?)?;
            let da = g.mul(&b.eq(&zeros)?.where_cond(&zeros, &slope)?)?;
            let zero_base = a.eq(&zeros)?.mul(&b.ge(&zeros)?)?;
            let dlog = y.mul(&a.log()?)?;
            (da, g.mul(&zero_base.where_cond(&zeros, &dlog)?)?)
        }
        // The larger (smaller) operand gets g; a tie splits it equally, as PyTorch does and as
        // the max/min reductions do.
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let wins = if op == BinaryOp::Maximum {
                a.gt(b)?
            } else {
                a.lt(b)?
            };
            let share = wins.add(&a.eq(b)?.mul_scalar(0.5)?)?;
            let da = g.mul(&share)?;
            (da.clone(), g.sub(&da)?)
        }
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            return Ok(vec![]);
        }
    };
    Ok(vec![(a.clone(), da), (b.clone(), db)])
}
