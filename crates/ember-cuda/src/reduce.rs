//! Reductions over any set of axes, and softmax / log-softmax along rows (kernels/reduce.cu).
//!
//! [`reduce`] mirrors ember-cpu's: the output is contiguous, in keepdim order (the kept extents in
//! their original order). Results are deterministic: the kernels use no atomics, and the way the
//! work is split (strategy, chunk count) depends only on the sizes, never on the device, so the
//! same input gives bit-identical output on every run.

use crate::device::{DevSlice, DevSliceMut, FloatElem};
use crate::error::{CudaError, invalid};
use crate::launch::{BLOCK, check_in, check_out, grid_1d, launch_err, same_device, to_i64};
use crate::view::{DevView, Strided};
use cudarc::driver::{LaunchConfig, PushKernelArg};

pub use ember_ops::ReduceOp;

/// Below this many elements per output, one thread folds a whole output.
const THREAD_INNER_MAX: usize = 16;
/// Elements per block-chunk when one output is split over several blocks.
const CHUNK_TARGET: usize = 16384;
/// Most chunks per output (partials combined by one warp in pass 2).
const MAX_CHUNKS: usize = 1024;

/// Reduces `x` (viewed through `xv`) over `axes` into `out` (length: product of kept extents).
///
/// `ArgMax` / `ArgMin` need exactly one axis with a non-zero extent.
pub fn reduce<T: FloatElem>(
    op: ReduceOp,
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    axes: &[usize],
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "reduce";
    let dev = out.dev;
    same_device(OP, "x", dev, x.dev)?;
    DevView::checked(OP, "x", xv, x.len)?;
    let rank = xv.shape.len();
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != axes.len() || sorted.iter().any(|&a| a >= rank) {
        return Err(invalid(
            OP,
            format!(
                "axes {axes:?} must be distinct and below the rank {rank} of {:?}",
                xv.shape
            ),
        ));
    }
    let kept: Vec<(usize, usize)> = (0..rank)
        .filter(|d| !sorted.contains(d))
        .map(|d| (xv.shape[d], xv.strides[d]))
        .collect();
    let red: Vec<(usize, usize)> = sorted
        .iter()
        .map(|&d| (xv.shape[d], xv.strides[d]))
        .collect();
    let outer: usize = kept.iter().map(|k| k.0).product();
    let inner: usize = red.iter().map(|k| k.0).product();
    check_out(OP, "out", &out, outer)?;
    if op.is_arg() && (red.len() != 1 || inner == 0) {
        return Err(invalid(
            OP,
            format!(
                "{op:?} needs exactly one axis with a non-zero extent; got axes {axes:?} of shape {:?}",
                xv.shape
            ),
        ));
    }
    if outer == 0 {
        return Ok(());
    }
    let kv = DevView::from_parts(&kept, xv.offset);
    let rv = DevView::from_parts(&red, 0);
    let (outer64, inner64) = (to_i64(OP, outer)?, to_i64(OP, inner)?);
    let code = op.code() as i32;
    let sfx = T::DTYPE.name();

    // Thread-per-output when outputs are short, or numerous and adjacent in memory (the reduced
    // axes are the outer ones, e.g. a bias gradient summed over the batch): neighbouring threads
    // then read neighbouring elements.
    let min_kept = kept
        .iter()
        .filter(|k| k.0 > 1)
        .map(|k| k.1)
        .min()
        .unwrap_or(usize::MAX);
    let min_red = red
        .iter()
        .filter(|k| k.0 > 1)
        .map(|k| k.1)
        .min()
        .unwrap_or(usize::MAX);
    let thread_strategy = inner <= THREAD_INNER_MAX || (outer >= 1024 && min_kept < min_red);
    if thread_strategy {
        let name = format!("reduce_thread_{sfx}");
        let f = dev.function("reduce", &name)?;
        let mut l = dev.stream().launch_builder(&f);
        l.arg(&code)
            .arg(&x.ptr)
            .arg(&kv)
            .arg(&rv)
            .arg(&outer64)
            .arg(&inner64)
            .arg(&out.ptr);
        // SAFETY: kv/rv are a permutation of the checked view xv, so every offset they address is
        // inside x; out was checked to hold `outer` elements.
        unsafe { l.launch(grid_1d(dev, outer, 1)) }.map_err(|e| launch_err(&name, e))?;
        return Ok(());
    }

    // Block strategy: split each output's elements into chunks when there are few outputs.
    let nchunks = if outer >= 256 {
        1
    } else {
        inner.div_ceil(CHUNK_TARGET).clamp(1, MAX_CHUNKS)
    };
    let chunk = inner.div_ceil(nchunks).max(1);
    let parts = outer * nchunks;
    let stream = dev.stream();
    // Scratch for partial states (only read when nchunks > 1; one element otherwise).
    let scratch_len = if nchunks > 1 { parts } else { 1 };
    let part_v = dev.alloc::<T>(scratch_len)?;
    let part_i = dev.alloc::<f64>(scratch_len)?; // 8-byte slots holding i64 indices
    let (pv, pi) = (part_v.raw_ptr(), part_i.raw_ptr());
    let name = format!("reduce_block_{sfx}");
    let f = dev.function("reduce", &name)?;
    let (chunk64, nchunks64) = (to_i64(OP, chunk)?, to_i64(OP, nchunks)?);
    let blocks = parts.min(dev.sm_count() * 32).max(1) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = stream.launch_builder(&f);
    l.arg(&code)
        .arg(&x.ptr)
        .arg(&kv)
        .arg(&rv)
        .arg(&outer64)
        .arg(&inner64)
        .arg(&chunk64)
        .arg(&nchunks64)
        .arg(&out.ptr)
        .arg(&pv)
        .arg(&pi);
    // SAFETY: kv/rv address only elements of the checked view; out holds `outer` elements; the
    // partial buffers hold outer * nchunks slots and are only written when nchunks > 1.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    if nchunks > 1 {
        let name = format!("reduce_final_{sfx}");
        let f = dev.function("reduce", &name)?;
        let mut l = stream.launch_builder(&f);
        l.arg(&code)
            .arg(&pv)
            .arg(&pi)
            .arg(&outer64)
            .arg(&inner64)
            .arg(&nchunks64)
            .arg(&out.ptr);
        // SAFETY: reads outer * nchunks partials written above; writes `outer` outputs.
        unsafe { l.launch(grid_1d(dev, outer * 32, 1)) }.map_err(|e| launch_err(&name, e))?;
    }
    // The scratch buffers are freed on the stream after the kernels that use them.
    drop(part_v);
    drop(part_i);
    Ok(())
}

/// Softmax (or log-softmax when `log`) of each row of a contiguous `[rows, cols]` matrix.
/// Subtracts the row maximum first, so large inputs never overflow.
pub fn softmax_rows<T: FloatElem>(
    x: DevSlice<'_, T>,
    cols: usize,
    out: DevSliceMut<'_, T>,
    log: bool,
) -> Result<(), CudaError> {
    const OP: &str = "softmax_rows";
    let dev = out.dev;
    check_in(OP, "x", dev, &x, out.len)?;
    if cols == 0 || out.len == 0 {
        return Ok(());
    }
    if (out.len / cols) * cols != out.len {
        return Err(invalid(
            OP,
            format!("{} elements do not form rows of {cols}", out.len),
        ));
    }
    let rows = out.len / cols;
    let (rows64, cols64) = (to_i64(OP, rows)?, to_i64(OP, cols)?);
    let lg = log as i32;
    let sfx = T::DTYPE.name();
    let (name, cfg) = if cols <= 1024 {
        // One warp per row, 8 rows per 256-thread block.
        (format!("softmax_warp_{sfx}"), grid_1d(dev, rows * 32, 1))
    } else {
        let blocks = rows.min(dev.sm_count() * 32) as u32;
        (
            format!("softmax_block_{sfx}"),
            LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            },
        )
    };
    let f = dev.function("reduce", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr)
        .arg(&out.ptr)
        .arg(&rows64)
        .arg(&cols64)
        .arg(&lg);
    // SAFETY: x and out both hold rows * cols elements on this device.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}
