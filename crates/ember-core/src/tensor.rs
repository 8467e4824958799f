//! The `Tensor` handle: creation, metadata, reading values back, variables.
//!
//! A [`Tensor`] is an `Arc` to an immutable node: an id, a shared storage, a layout, a dtype,
//! a device and, when gradients may flow, the [`Op`] that produced it. Cloning is cheap; views
//! share the storage and differ only in layout. The storage sits behind a lock only so that
//! optimizers and `assign` can update parameters in place (under `no_grad`); ops never write to
//! an existing tensor's storage.
//!
//! The ops themselves live in `ops/` (forward) and `backprop.rs` (derivative rules).

use crate::backend;
use crate::dtype::{DType, Device, WithDType};
use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::Layout;
use crate::op::Op;
use crate::shape::Shape;
use crate::storage::{CpuStorage, Storage, StorageData};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A unique id per tensor node (views and copies get their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    /// An id no tensor has (ids start at 1): a filler for fixed-size arrays of ids.
    pub(crate) const NONE: TensorId = TensorId(0);

    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a node knows of how it was made.
pub(crate) enum GraphState {
    /// Nothing recorded: a leaf, a constant, or computed while not recording.
    Leaf,
    /// The op that produced it, with its inputs.
    Recorded(Op),
    /// A `backward` walked through here and freed the op.
    Consumed,
}

impl GraphState {
    fn from(op: Option<Op>) -> Self {
        match op {
            Some(op) => GraphState::Recorded(op),
            None => GraphState::Leaf,
        }
    }
}

pub(crate) struct Node {
    pub(crate) id: TensorId,
    pub(crate) storage: Arc<RwLock<Storage>>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// The recorded op, until a `backward` consumes it (see `backprop.rs`).
    pub(crate) op: Mutex<GraphState>,
    pub(crate) is_variable: bool,
    pub(crate) requires_grad: bool,
}

/// An n-dimensional array with optional gradient tracking. Cheap to clone.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Node>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor[{:?}, {}, {}",
            self.shape(),
            self.dtype(),
            self.device()
        )?;
        if self.elem_count() <= 16
            && let Ok(v) = self.to_vec::<f64>()
        {
            write!(f, ", {v:?}")?;
        }
        write!(f, "]")
    }
}

impl Tensor {
    // ----- construction helpers used by every op -----

    /// A fresh tensor owning `data` with a contiguous layout of `shape`.
    pub(crate) fn from_storage(
        data: impl Into<StorageData>,
        shape: &[usize],
        op: Option<Op>,
    ) -> Tensor {
        let data = data.into();
        let (dtype, device) = (data.dtype(), data.device());
        let requires_grad = op.is_some();
        Tensor(Arc::new(Node {
            id: TensorId::fresh(),
            storage: Arc::new(RwLock::new(Storage::new(data))),
            layout: Layout::contiguous(shape),
            dtype,
            device,
            op: Mutex::new(GraphState::from(op)),
            is_variable: false,
            requires_grad,
        }))
    }

    /// A view of this tensor's storage with another layout.
    pub(crate) fn view(&self, layout: Layout, op: Option<Op>) -> Tensor {
        let requires_grad = op.is_some();
        Tensor(Arc::new(Node {
            id: TensorId::fresh(),
            storage: self.0.storage.clone(),
            layout,
            dtype: self.0.dtype,
            device: self.0.device,
            op: Mutex::new(GraphState::from(op)),
            is_variable: false,
            requires_grad,
        }))
    }

    /// Builds the op record only when recording is on, and keeps it only when some input needs
    /// a gradient (under `no_grad`, e.g. inside backward, nothing is built at all).
    pub(crate) fn record(op: impl FnOnce() -> Op) -> Option<Op> {
        if !is_grad_enabled() {
            return None;
        }
        let op = op();
        let mut needed = false;
        op.visit_inputs(|t| needed |= t.requires_grad());
        needed.then_some(op)
    }

    /// Read access to the storage (a poisoned lock is still readable: data is never left
    /// half-written by ember, which writes only whole kernels' results).
    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// True when both tensors are views of one buffer (and so one lock).
    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Read guards on the storages of `N` tensors, one guard per distinct storage (see
    /// [`ReadSet`]).
    pub(crate) fn read_set<'a, const N: usize>(tensors: [&'a Tensor; N]) -> ReadSet<'a, N> {
        let mut guards: [Option<RwLockReadGuard<'a, Storage>>; N] = std::array::from_fn(|_| None);
        let mut slot = [0usize; N];
        for (i, t) in tensors.iter().enumerate() {
            slot[i] = match (0..i).find(|&j| t.shares_storage(tensors[j])) {
                Some(j) => slot[j],
                None => {
                    guards[i] = Some(t.storage());
                    i
                }
            };
        }
        ReadSet { guards, slot }
    }

    /// Read guards on the storages of any number of tensors, one per distinct storage (the
    /// slice form of [`Tensor::read_set`], for `cat`).
    pub(crate) fn read_many<'a>(tensors: &[&'a Tensor]) -> ReadMany<'a> {
        let mut guards = Vec::with_capacity(tensors.len());
        let mut slot = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            let first = (0..i).find(|&j| t.shares_storage(tensors[j]));
            slot.push(match first {
                Some(j) => slot[j],
                None => {
                    guards.push(t.storage());
                    guards.len() - 1
                }
            });
        }
        ReadMany { guards, slot }
    }

    /// Runs `f` on this tensor's storage and layout under a read lock. Ops pass a method of
    /// [`StorageData`] (the dispatch seam in `backend/`), so nothing here branches on a device.
    pub(crate) fn with_storage<R>(&self, f: impl FnOnce(&StorageData, &Layout) -> R) -> R {
        let s = self.storage();
        f(s.data(), &self.0.layout)
    }

    /// Locks this node's graph state (backward reads or takes the recorded op through it).
    pub(crate) fn graph_state(&self) -> std::sync::MutexGuard<'_, GraphState> {
        self.0.op.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- creation -----

    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    pub fn full(
        value: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.checked_elem_count("full")?;
        reserve("full", n, dtype)?;
        let data = backend::filled(value, n, dtype);
        Tensor::from_storage(data, shape.dims(), None).to_device(device)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(0.0, shape, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(1.0, shape, dtype, device)
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }

    /// A tensor owning `data`, laid out row-major as `shape`.
    pub fn from_vec<T: WithDType>(
        data: Vec<T>,
        shape: impl Into<Shape>,
        device: Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let expected = shape.checked_elem_count("from_vec")?;
        if data.len() != expected {
            return Err(Error::ElementCount {
                op: "from_vec",
                shape: shape.into_dims(),
                expected,
                got: data.len(),
            });
        }
        let storage = to_cpu_storage(data);
        Tensor::from_storage(storage, shape.dims(), None).to_device(device)
    }

    /// A tensor copying `data`, laid out row-major as `shape`.
    pub fn from_slice<T: WithDType>(
        data: &[T],
        shape: impl Into<Shape>,
        device: Device,
    ) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape, device)
    }

    /// Values `start, start+step, ..` below `end` (above `end` for a negative step).
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!(
                    "start {start}, end {end} and step {step} must be finite with a non-zero step"
                ),
            ));
        }
        let count = ((end - start) / step).ceil().max(0.0);
        if count >= usize::MAX as f64 {
            return Err(Error::OutOfMemory {
                op: "arange",
                bytes: usize::MAX,
            });
        }
        let n = count as usize;
        reserve("arange", n, DType::F64)?;
        let values: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Tensor::from_storage(backend::from_f64(&values, dtype), &[n], None).to_device(device)
    }

    /// `n` evenly spaced values from `start` to `end` inclusive.
    pub fn linspace(
        start: f64,
        end: f64,
        n: usize,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        reserve("linspace", n, DType::F64)?;
        let values: Vec<f64> = match n {
            0 => vec![],
            1 => vec![start],
            _ => (0..n)
                .map(|i| start + (end - start) * i as f64 / (n - 1) as f64)
                .collect(),
        };
        Tensor::from_storage(backend::from_f64(&values, dtype), &[n], None).to_device(device)
    }

    /// The n×n identity matrix.
    pub fn eye(n: usize, dtype: DType, device: Device) -> Result<Tensor> {
        let count = Shape::from((n, n)).checked_elem_count("eye")?;
        reserve("eye", count, DType::F64)?;
        let mut values = vec![0.0; count];
        for i in 0..n {
            values[i * n + i] = 1.0;
        }
        Tensor::from_storage(backend::from_f64(&values, dtype), &[n, n], None).to_device(device)
    }

    /// Uniform samples in `[lo, hi)` from `rng`.
    pub fn rand(
        lo: f64,
        hi: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: Device,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor> {
        if lo >= hi || !lo.is_finite() || !hi.is_finite() {
            return Err(Error::invalid(
                "rand",
                format!("need finite lo < hi, got lo {lo}, hi {hi}"),
            ));
        }
        let shape = shape.into();
        let n = shape.checked_elem_count("rand")?;
        reserve("rand", n, DType::F64)?;
        let values: Vec<f64> = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f64>())
            .collect();
        Tensor::from_storage(backend::from_f64(&values, dtype), shape.dims(), None)
            .to_device(device)
    }

    /// Normal samples with the given mean and standard deviation from `rng`.
    pub fn randn(
        mean: f64,
        std: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: Device,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor> {
        let normal = rand_distr::Normal::new(mean, std)
            .map_err(|e| Error::invalid("randn", format!("mean {mean}, std {std}: {e}")))?;
        let shape = shape.into();
        let n = shape.checked_elem_count("randn")?;
        reserve("randn", n, DType::F64)?;
        let values: Vec<f64> = (0..n).map(|_| rand::Rng::sample(rng, normal)).collect();
        Tensor::from_storage(backend::from_f64(&values, dtype), shape.dims(), None)
            .to_device(device)
    }

    // ----- metadata -----

    /// The extents of each dimension.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// Same as [`Tensor::shape`].
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.0.layout.elem_count()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// Where the storage lives.
    pub fn device(&self) -> Device {
        self.0.device
    }

    /// This node's unique id (the key of its gradient in a `GradStore`).
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The view's layout (shape, strides, offset).
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// True when elements are dense and row-major.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// True for a variable created by [`Tensor::as_variable`].
    pub fn is_variable(&self) -> bool {
        self.0.is_variable
    }

    /// True when a gradient can flow to this tensor (it is a variable or computed from one while
    /// recording).
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    // ----- reading back -----

    /// All elements in row-major order, converted to `T`.
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        self.with_storage(|s, l| {
            let (host, hl) = StorageData::on_host(s, l)?;
            Ok(read_as::<T>(&host, &hl))
        })
    }

    /// The rows of a rank-2 tensor.
    pub fn to_vec2<T: WithDType>(&self) -> Result<Vec<Vec<T>>> {
        if self.rank() != 2 {
            return Err(Error::shape(
                "to_vec2",
                format!("needs a rank-2 tensor, got shape {:?}", self.shape()),
            ));
        }
        let cols = self.shape()[1];
        let flat = self.to_vec::<T>()?;
        if cols == 0 {
            return Ok(vec![vec![]; self.shape()[0]]);
        }
        Ok(flat.chunks(cols).map(|r| r.to_vec()).collect())
    }

    /// The single element of a one-element tensor.
    pub fn to_scalar<T: WithDType>(&self) -> Result<T> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "to_scalar",
                format!("needs exactly one element, got shape {:?}", self.shape()),
            ));
        }
        // On the CPU the one element is read in place (a loss read every step should not
        // allocate); converting through f64 is exact for every ember dtype, so this equals the
        // cast `to_vec` does.
        if let Some(v) = self.with_storage(|s, l| s.host_value(l.offset())) {
            return Ok(T::from_f64(v));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    // ----- variables -----

    /// A leaf that records gradients, sharing this tensor's storage.
    pub fn as_variable(&self) -> Tensor {
        Tensor(Arc::new(Node {
            id: TensorId::fresh(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            dtype: self.0.dtype,
            device: self.0.device,
            op: Mutex::new(GraphState::Leaf),
            is_variable: true,
            requires_grad: true,
        }))
    }

    /// The same values with no history: gradients stop here.
    pub fn detach(&self) -> Tensor {
        self.view(self.0.layout.clone(), None)
    }

    /// Copies `src`'s values into this tensor's storage in place.
    ///
    /// This is for parameters (loading checkpoints, restoring best weights): shapes and dtypes
    /// must match and this tensor must be contiguous (a whole, fresh buffer), so no other view
    /// sees a partial write.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if self.shape() != src.shape() {
            return Err(Error::shape(
                "assign",
                format!(
                    "target shape {:?} and source shape {:?} differ",
                    self.shape(),
                    src.shape()
                ),
            ));
        }
        if self.dtype() != src.dtype() {
            return Err(Error::DTypeMismatch {
                op: "assign",
                lhs: self.dtype(),
                rhs: src.dtype(),
            });
        }
        let layout = &self.0.layout;
        if !layout.is_contiguous() {
            return Err(Error::invalid(
                "assign",
                format!(
                    "target of shape {:?} is a strided view; assign needs a contiguous tensor",
                    self.shape()
                ),
            ));
        }
        // Take a dense copy of the source on this tensor's device before locking, so assigning a
        // tensor to itself (or to a view of itself) neither deadlocks nor reads a half-written
        // buffer.
        let src = src.to_device(self.device())?;
        let values = src.with_storage(StorageData::contiguous)?;
        let mut guard = self.storage_mut();
        StorageData::write(guard.data_mut(), layout, &values)?;
        Ok(())
    }
}

/// Checks that `n` elements of `dtype` can be allocated before a creation op builds them: the
/// byte count must fit in `isize` and the allocator must grant it (probed with `try_reserve`,
/// released at once), so a caller's huge size is an [`Error::OutOfMemory`] naming the op and
/// the bytes, not an abort.
pub(crate) fn reserve(op: &'static str, n: usize, dtype: DType) -> Result<()> {
    let bytes = n
        .checked_mul(dtype.size_in_bytes())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(Error::OutOfMemory {
            op,
            bytes: n.saturating_mul(dtype.size_in_bytes()),
        })?;
    // Small buffers are always granted; probing them would cost an allocation per tensor.
    if bytes > 1 << 30 {
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(bytes)
            .map_err(|_| Error::OutOfMemory { op, bytes })?;
    }
    Ok(())
}

/// Moves a typed vector into storage.
pub(crate) fn to_cpu_storage<T: WithDType>(data: Vec<T>) -> CpuStorage {
    // Each WithDType maps to exactly one variant; go through Any to pick it without unsafe.
    let any: Box<dyn std::any::Any> = Box::new(data);
    let any = match any.downcast::<Vec<f32>>() {
        Ok(v) => return CpuStorage::F32(*v),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<f64>>() {
        Ok(v) => return CpuStorage::F64(*v),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<half::f16>>() {
        Ok(v) => return CpuStorage::F16(*v),
        Err(a) => a,
    };
    match any.downcast::<Vec<half::bf16>>() {
        Ok(v) => CpuStorage::BF16(*v),
        Err(_) => unreachable!("WithDType is sealed to the four storage types"),
    }
}

/// Reads a view as `T`, converting the dtype.
fn read_as<T: WithDType>(s: &CpuStorage, l: &Layout) -> Vec<T> {
    let converted = backend::cpu::view::cast(s, l, T::DTYPE);
    let any: Box<dyn std::any::Any> = match converted {
        CpuStorage::F32(v) => Box::new(v),
        CpuStorage::F64(v) => Box::new(v),
        CpuStorage::F16(v) => Box::new(v),
        CpuStorage::BF16(v) => Box::new(v),
    };
    match any.downcast::<Vec<T>>() {
        Ok(v) => *v,
        Err(_) => unreachable!("cast produced T::DTYPE"),
    }
}

/// Read access to the storages of several operands, taking each distinct storage's lock once.
///
/// Two read locks on one storage from the same thread can deadlock: std's `RwLock` lets a
/// writer that is already waiting (another thread's optimizer step, say) go before a second
/// reader, and that writer waits for the first read guard. Operands often share a storage
/// (`x.mul(&x)`, a tensor and its view, a flat parameter buffer with views for weight and
/// bias), so every op that reads several operands at once goes through this.
pub(crate) struct ReadSet<'a, const N: usize> {
    guards: [Option<RwLockReadGuard<'a, Storage>>; N],
    /// Operand i's guard is `guards[slot[i]]`.
    slot: [usize; N],
}

impl<const N: usize> ReadSet<'_, N> {
    /// The storage data of operand `i` (in the order given to [`Tensor::read_set`]).
    pub(crate) fn data(&self, i: usize) -> &StorageData {
        match &self.guards[self.slot[i]] {
            Some(guard) => guard.data(),
            None => unreachable!("read_set fills the slot of every first occurrence"),
        }
    }
}

/// Read access to the storages of a slice of operands (see [`ReadSet`]).
pub(crate) struct ReadMany<'a> {
    guards: Vec<RwLockReadGuard<'a, Storage>>,
    /// Operand i's guard is `guards[slot[i]]`.
    slot: Vec<usize>,
}

impl ReadMany<'_> {
    /// The storage data of operand `i`.
    pub(crate) fn data(&self, i: usize) -> &StorageData {
        self.guards[self.slot[i]].data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_set_locks_each_storage_once() {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], 4, Device::Cpu).unwrap();
        let view = x.narrow(0, 1, 2).unwrap();
        let y = Tensor::from_vec(vec![5.0f32], 1, Device::Cpu).unwrap();
        let set = Tensor::read_set([&x, &view, &y, &x]);
        assert_eq!(set.guards.iter().flatten().count(), 2);
        assert_eq!(set.slot, [0, 0, 2, 0]);
        assert!(std::ptr::eq(set.data(1), set.data(0)));
        assert!(!std::ptr::eq(set.data(2), set.data(0)));
    }
}
