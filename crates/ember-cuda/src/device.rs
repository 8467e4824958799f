//! Devices, streams, the kernel-module cache, and typed device buffers.
//!
//! Discovery never panics: the driver library is probed first (`is_culib_present`), driver calls
//! that could still panic inside cudarc (a driver missing a symbol) run under `catch_unwind`, and
//! every failure becomes a distinct [`CudaError`]: no library, no device, broken driver.
//!
//! One [`CudaDevice`] exists per ordinal per process (cached), holding the primary context and
//! one stream. Everything ember does on a device is queued on that stream in program order, so
//! no cross-stream events are needed; cudarc's per-buffer event tracking is therefore switched
//! off, and launches take raw device pointers checked against buffer lengths on the host.
//!
//! Kernel modules are compiled on first use (NVRTC, exact arch, see [`crate::compile`]) or read
//! from `EMBER_CUDA_KERNEL_DIR` (`<module>.<arch>.cubin`, see [`crate::precompiled`]), loaded
//! once per device and cached with their functions.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUresult;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use crate::compile::{arch_for_capability, compile_module, nvrtc_available};
use crate::error::{CudaError, describe, driver_err, invalid};
use crate::precompiled::{KERNEL_DIR_ENV, ModuleImage, locate, read_cubin};

/// True when the CUDA driver library can be loaded (it says nothing about devices).
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the driver library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Runs a driver call that cudarc may turn into a panic (a symbol missing from an old driver)
/// and converts that panic into [`CudaError::DriverBroken`].
fn guarded<R>(op: &str, f: impl FnOnce() -> R) -> Result<R, CudaError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let detail = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the driver call panicked".into());
        CudaError::DriverBroken {
            op: op.into(),
            detail,
        }
    })
}

/// Number of CUDA devices. `Ok(0)` when the driver is installed but sees no device;
/// `Err(DriverLibraryMissing)` when there is no driver; `Err(DriverBroken)` when it cannot start.
pub fn device_count() -> Result<usize, CudaError> {
    if !driver_available() {
        return Err(CudaError::DriverLibraryMissing);
    }
    match guarded("cuDeviceGetCount", CudaContext::device_count)? {
        Ok(n) => Ok(n.max(0) as usize),
        Err(e) if e.0 == CUresult::CUDA_ERROR_NO_DEVICE => Ok(0),
        Err(e) => Err(CudaError::DriverBroken {
            op: "cuInit/cuDeviceGetCount".into(),
            detail: describe(&e),
        }),
    }
}

/// Lets the device's stream-ordered memory pool keep freed memory instead of returning it to
/// the driver at every synchronisation, so the small scratch buffers of reductions and losses
/// are reused rather than re-mapped on every call. Best effort: a failure leaves the default.
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys as d;
    let mut pool: d::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: the context is current (CudaContext::new binds it); `pool` is a valid out-pointer
    // and the attribute value is a u64 as CU_MEMPOOL_ATTR_RELEASE_THRESHOLD requires.
    unsafe {
        if d::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == CUresult::CUDA_SUCCESS {
            let mut threshold: u64 = u64::MAX;
            let _ = d::cuMemPoolSetAttribute(
                pool,
                d::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

/// One GPU: its context, its single stream, its architecture and its cache of loaded kernels.
pub struct CudaDevice {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    capability: (i32, i32),
    arch: String,
    sm_count: usize,
    modules: Mutex<HashMap<String, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(String, String), CudaFunction>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("arch", &self.arch)
            .field("sm_count", &self.sm_count)
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<usize, Arc<CudaDevice>>> {
    static R: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

impl CudaDevice {
    /// The device with this ordinal, created on first call and shared afterwards (one context and
    /// one stream per device per process). Never panics.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>, CudaError> {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = reg.get(&ordinal) {
            return Ok(d.clone());
        }
        let count = device_count()?;
        if count == 0 {
            return Err(CudaError::NoDevice);
        }
        if ordinal >= count {
            return Err(CudaError::InvalidOrdinal { ordinal, count });
        }
        let ctx = guarded("cuCtx", || CudaContext::new(ordinal))?.map_err(|e| {
            if e.0 == CUresult::CUDA_ERROR_NO_DEVICE {
                CudaError::NoDevice
            } else {
                CudaError::DriverBroken {
                    op: format!("creating a context on device {ordinal}"),
                    detail: describe(&e),
                }
            }
        })?;
        // SAFETY: ember queues all work for this device on the single stream created below, so
        // program order already orders every read and write; no cross-stream events are needed.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(|e| driver_err("cuDeviceGetName", e))?;
        let capability = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        if capability.0 < 8 {
            return Err(CudaError::UnsupportedDevice { name, capability });
        }
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| driver_err("multiprocessor count", e))?
            .max(1) as usize;
        let stream = ctx
            .new_stream()
            .map_err(|e| driver_err("cuStreamCreate", e))?;
        if ctx.has_async_alloc() {
            // Best effort, and guarded: an old driver lacking the symbol must not abort.
            let _ = guarded("cuMemPoolSetAttribute", || keep_pool_memory(&ctx));
        }
        let dev = Arc::new(CudaDevice {
            ordinal,
            arch: arch_for_capability(capability.0, capability.1),
            ctx,
            stream,
            name,
            capability,
            sm_count,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        });
        reg.insert(ordinal, dev.clone());
        Ok(dev)
    }

    /// Device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    /// Marketing name, e.g. `NVIDIA H200`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Compute capability (major, minor).
    pub fn capability(&self) -> (i32, i32) {
        self.capability
    }
    /// NVRTC target the kernels are compiled for, e.g. `sm_90a`.
    pub fn arch(&self) -> &str {
        &self.arch
    }
    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }
    /// The cudarc context (for callers that need the raw driver API, e.g. cuBLAS in the lab).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// The device's one stream, on which every ember operation is queued.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// (free, total) device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize), CudaError> {
        self.ctx
            .mem_get_info()
            .map_err(|e| driver_err("cuMemGetInfo", e))
    }
    /// Waits until all queued work has finished; reports any asynchronous kernel error.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(|e| driver_err("cuStreamSynchronize", e))
    }

    /// Loads kernel module `name` and caches it: from `EMBER_CUDA_KERNEL_DIR`'s
    /// `<name>.<arch>.cubin` when that variable is set and the file exists, else compiled by
    /// NVRTC (see [`crate::precompiled::locate`]).
    pub fn module(&self, name: &str) -> Result<Arc<CudaModule>, CudaError> {
        let mut mods = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mods.get(name) {
            return Ok(m.clone());
        }
        let dir = std::env::var_os(KERNEL_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from);
        let exists = |p: &std::path::Path| p.is_file();
        let image = match locate(dir.as_deref(), name, &self.arch, exists, nvrtc_available())? {
            ModuleImage::File(path) => read_cubin(&path)?,
            ModuleImage::Compile => compile_module(name, &self.arch)?.cubin,
        };
        let module = self
            .ctx
            .load_module(Ptx::from_binary(image))
            .map_err(|e| driver_err(format!("loading module {name} for {}", self.arch), e))?;
        mods.insert(name.to_string(), module.clone());
        Ok(module)
    }

    /// The kernel `func` of module `module`, loaded once and cached.
    pub(crate) fn function(&self, module: &str, func: &str) -> Result<CudaFunction, CudaError> {
        let key = (module.to_string(), func.to_string());
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        if func.contains('\0') {
            return Err(invalid("function", "kernel name contains a NUL byte"));
        }
        let f = m
            .load_function(func)
            .map_err(|e| driver_err(format!("loading kernel {module}::{func}"), e))?;
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, f.clone());
        Ok(f)
    }

    /// A buffer of `len` elements with unspecified contents (no fill pass). `len == 0` gives an
    /// empty buffer without calling the driver (which refuses zero-byte allocations).
    pub fn alloc<T: DeviceElem>(
        self: &Arc<Self>,
        len: usize,
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let Some(bytes) = alloc_bytes::<T>("alloc", len)? else {
            return Ok(self.empty());
        };
        // SAFETY: the memory is uninitialised device memory; reading it yields unspecified
        // values but no undefined behaviour on the host, and ember kernels write before reading.
        let data = unsafe { self.stream.alloc::<T>(len) }.map_err(|e| self.alloc_err(bytes, e))?;
        Ok(self.holding(data))
    }

    /// A buffer of `len` zeros (`len == 0`: an empty buffer, no driver call).
    pub fn alloc_zeros<T: DeviceElem>(
        self: &Arc<Self>,
        len: usize,
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let Some(bytes) = alloc_bytes::<T>("alloc_zeros", len)? else {
            return Ok(self.empty());
        };
        let data = self
            .stream
            .alloc_zeros::<T>(len)
            .map_err(|e| self.alloc_err(bytes, e))?;
        Ok(self.holding(data))
    }

    /// Copies a host slice into a new device buffer (an empty slice: an empty buffer, no driver
    /// call).
    pub fn upload<T: DeviceElem>(
        self: &Arc<Self>,
        host: &[T],
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let Some(bytes) = alloc_bytes::<T>("upload", host.len())? else {
            return Ok(self.empty());
        };
        let data = self
            .stream
            .clone_htod(host)
            .map_err(|e| self.alloc_err(bytes, e))?;
        Ok(self.holding(data))
    }

    /// An empty buffer on this device: no device memory behind it.
    fn empty<T: DeviceElem>(self: &Arc<Self>) -> DeviceBuffer<T> {
        DeviceBuffer {
            data: None,
            device: self.clone(),
        }
    }

    /// A buffer owning `data`, which is never empty (see [`alloc_bytes`]).
    fn holding<T: DeviceElem>(self: &Arc<Self>, data: CudaSlice<T>) -> DeviceBuffer<T> {
        DeviceBuffer {
            data: Some(data),
            device: self.clone(),
        }
    }

    fn alloc_err(&self, bytes: usize, e: cudarc::driver::DriverError) -> CudaError {
        if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            CudaError::OutOfMemory {
                bytes,
                ordinal: self.ordinal,
            }
        } else {
            driver_err(format!("allocating {bytes} bytes"), e)
        }
    }
}

/// The byte count of a `len`-element allocation of `T`: `None` when `len == 0`, meaning "make an
/// empty buffer and do not call the driver" (`cuMemAllocAsync` rejects zero bytes), an error
/// when the count overflows.
fn alloc_bytes<T>(op: &'static str, len: usize) -> Result<Option<usize>, CudaError> {
    if len == 0 {
        return Ok(None);
    }
    len.checked_mul(std::mem::size_of::<T>())
        .map(Some)
        .ok_or_else(|| invalid(op, format!("{len} elements overflow the byte count")))
}

/// Element types a device buffer can hold. Sealed: f32, f64, and the 16-bit floats (which the
/// kernels treat as raw `u16` bit patterns).
pub trait DeviceElem:
    DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + Unpin + 'static + sealed::Sealed
{
    /// The element's dtype.
    const DTYPE: DType;
}

/// Float types the elementwise, reduction, loss and optimizer kernels compute in.
pub trait FloatElem: DeviceElem {
    /// Rounds an f64 to this type (how host-side parameters reach a kernel).
    fn from_f64(v: f64) -> Self;
}

/// The 16-bit input types of the tensor-core GEMM.
pub trait HalfElem: DeviceElem {
    /// Rounds an f32 to this type (nearest even).
    fn from_f32(v: f32) -> Self;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

impl DeviceElem for f32 {
    const DTYPE: DType = DType::F32;
}
impl DeviceElem for f64 {
    const DTYPE: DType = DType::F64;
}
impl DeviceElem for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl DeviceElem for half::bf16 {
    const DTYPE: DType = DType::BF16;
}
impl FloatElem for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FloatElem for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl HalfElem for half::f16 {
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}
impl HalfElem for half::bf16 {
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

pub use ember_ops::DType;

/// A typed buffer in device memory, owned; freed (asynchronously, on its stream) when dropped.
///
/// An empty buffer holds no device allocation at all (the driver refuses zero-byte
/// allocations): its address is 0, copies to and from it do nothing, and the kernels, which all
/// return early on zero elements, never dereference it.
pub struct DeviceBuffer<T: DeviceElem> {
    /// The allocation; `None` exactly when the buffer is empty.
    data: Option<CudaSlice<T>>,
    device: Arc<CudaDevice>,
}

impl<T: DeviceElem> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>[{}] on cuda:{}",
            T::DTYPE.name(),
            self.len(),
            self.device.ordinal
        )
    }
}

impl<T: DeviceElem> DeviceBuffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }
    /// True when the buffer holds no element (and so no device memory).
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
    }
    /// The device holding the buffer.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }
    /// Copies the buffer to a new host vector (waits for queued work first).
    pub fn to_host(&self) -> Result<Vec<T>, CudaError> {
        let v = match &self.data {
            Some(d) => self
                .device
                .stream
                .clone_dtoh(d)
                .map_err(|e| driver_err("copy device to host", e))?,
            None => Vec::new(),
        };
        // A copy to pageable memory completes before returning; synchronising anyway also
        // surfaces any asynchronous kernel error here, next to the read that observes it.
        self.device.synchronize()?;
        Ok(v)
    }
    /// Overwrites the buffer with `host`, which must have the same length.
    pub fn copy_from_host(&mut self, host: &[T]) -> Result<(), CudaError> {
        if host.len() != self.len() {
            return Err(invalid(
                "copy_from_host",
                format!(
                    "host slice has {} elements, buffer {}",
                    host.len(),
                    self.len()
                ),
            ));
        }
        let Some(data) = self.data.as_mut() else {
            return Ok(()); // both empty
        };
        self.device
            .stream
            .memcpy_htod(host, data)
            .map_err(|e| driver_err("copy host to device", e))
    }
    /// Copies the whole of `src` (same length, same device) into this buffer on the device.
    pub fn copy_from_device(&mut self, src: &DeviceBuffer<T>) -> Result<(), CudaError> {
        if src.len() != self.len() || src.device.ordinal != self.device.ordinal {
            return Err(invalid(
                "copy_from_device",
                format!(
                    "source [{}] on cuda:{} vs destination [{}] on cuda:{}",
                    src.len(),
                    src.device.ordinal,
                    self.len(),
                    self.device.ordinal
                ),
            ));
        }
        let (Some(from), Some(to)) = (src.data.as_ref(), self.data.as_mut()) else {
            return Ok(()); // both empty
        };
        self.device
            .stream
            .memcpy_dtod(from, to)
            .map_err(|e| driver_err("copy device to device", e))
    }
    /// The whole buffer as a read-only slice for kernel calls.
    pub fn view(&self) -> DevSlice<'_, T> {
        DevSlice {
            ptr: self.raw_ptr(),
            len: self.len(),
            dev: &self.device,
            _m: PhantomData,
        }
    }
    /// The whole buffer as a writable slice for kernel calls.
    pub fn view_mut(&mut self) -> DevSliceMut<'_, T> {
        DevSliceMut {
            ptr: self.raw_ptr(),
            len: self.len(),
            dev: &self.device,
            _m: PhantomData,
        }
    }
    /// Elements `start..end` as a read-only slice.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<DevSlice<'_, T>, CudaError> {
        self.check_range(&range)?;
        Ok(DevSlice {
            ptr: self.raw_ptr() + (range.start * std::mem::size_of::<T>()) as u64,
            len: range.end - range.start,
            dev: &self.device,
            _m: PhantomData,
        })
    }
    /// Elements `start..end` as a writable slice.
    pub fn slice_mut(
        &mut self,
        range: std::ops::Range<usize>,
    ) -> Result<DevSliceMut<'_, T>, CudaError> {
        self.check_range(&range)?;
        Ok(DevSliceMut {
            ptr: self.raw_ptr() + (range.start * std::mem::size_of::<T>()) as u64,
            len: range.end - range.start,
            dev: &self.device,
            _m: PhantomData,
        })
    }
    fn check_range(&self, r: &std::ops::Range<usize>) -> Result<(), CudaError> {
        if r.start > r.end || r.end > self.len() {
            return Err(invalid(
                "slice",
                format!(
                    "range {}..{} outside buffer of {}",
                    r.start,
                    r.end,
                    self.len()
                ),
            ));
        }
        Ok(())
    }
    /// The raw device address of element 0 (0 for an empty buffer, which owns no memory).
    pub fn raw_ptr(&self) -> u64 {
        // With event tracking off the guard does nothing; the address stays valid while `self`
        // lives, which the borrow in DevSlice enforces.
        self.data.as_ref().map_or(0, |d| {
            let (p, _guard) = d.device_ptr(&self.device.stream);
            p
        })
    }
    /// The underlying cudarc slice (for cuBLAS and other raw uses); `None` for an empty buffer.
    pub fn cuda_slice(&self) -> Option<&CudaSlice<T>> {
        self.data.as_ref()
    }
    /// The underlying cudarc slice, writable; `None` for an empty buffer.
    pub fn cuda_slice_mut(&mut self) -> Option<&mut CudaSlice<T>> {
        self.data.as_mut()
    }
}

/// A borrowed, read-only run of elements in device memory: what a kernel reads.
/// Obtained from [`DeviceBuffer::view`] or [`DeviceBuffer::slice`].
#[derive(Debug, Clone, Copy)]
pub struct DevSlice<'a, T> {
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    pub(crate) dev: &'a Arc<CudaDevice>,
    _m: PhantomData<&'a T>,
}

/// A borrowed, writable run of elements in device memory: what a kernel writes.
#[derive(Debug)]
pub struct DevSliceMut<'a, T> {
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    pub(crate) dev: &'a Arc<CudaDevice>,
    _m: PhantomData<&'a mut T>,
}

impl<T> DevSlice<'_, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device holding the elements.
    pub fn device(&self) -> &Arc<CudaDevice> {
        self.dev
    }
}

impl<'a, T> DevSliceMut<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device holding the elements.
    pub fn device(&self) -> &Arc<CudaDevice> {
        self.dev
    }
    /// Reborrows as a shorter-lived writable slice.
    pub fn reborrow(&mut self) -> DevSliceMut<'_, T> {
        DevSliceMut {
            ptr: self.ptr,
            len: self.len,
            dev: self.dev,
            _m: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_elements_never_reach_the_allocator() {
        assert_eq!(alloc_bytes::<f32>("alloc", 0), Ok(None));
        assert_eq!(alloc_bytes::<f64>("upload", 0), Ok(None));
        assert_eq!(alloc_bytes::<f32>("alloc", 1), Ok(Some(4)));
        assert_eq!(alloc_bytes::<half::bf16>("alloc", 3), Ok(Some(6)));
        assert!(matches!(
            alloc_bytes::<f64>("alloc_zeros", usize::MAX / 4),
            Err(CudaError::InvalidArgument {
                op: "alloc_zeros",
                ..
            })
        ));
    }
}
