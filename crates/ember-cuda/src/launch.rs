//! Small helpers shared by the launch code: grid sizing and argument checks.
//!
//! Every public kernel function checks its arguments here before any `unsafe` launch: all
//! operands on one device, lengths that cover every element the kernel will touch, sizes that
//! fit the kernels' 64-bit indices. The `// SAFETY:` comments at the launch sites point back to
//! these checks.

use cudarc::driver::LaunchConfig;

use crate::device::{CudaDevice, DevSlice, DevSliceMut};
use crate::error::{CudaError, driver_err, invalid};

/// Threads per block for the one-dimensional (elementwise, loss, optimizer) kernels.
pub(crate) const BLOCK: u32 = 256;

/// A grid-stride launch over `n` items, `per_thread` items per thread per pass, capped at 32
/// blocks per SM (the grid-stride loop covers the rest). Used where the grid shape does not
/// affect results.
pub(crate) fn grid_1d(dev: &CudaDevice, n: usize, per_thread: usize) -> LaunchConfig {
    let per_block = BLOCK as usize * per_thread.max(1);
    let want = n.div_ceil(per_block).max(1);
    let cap = dev.sm_count() * 32;
    LaunchConfig {
        grid_dim: (want.min(cap) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Checks that `other` lives on `dev`.
pub(crate) fn same_device(
    op: &'static str,
    what: &str,
    dev: &CudaDevice,
    other: &CudaDevice,
) -> Result<(), CudaError> {
    if dev.ordinal() != other.ordinal() {
        return Err(invalid(
            op,
            format!(
                "{what} is on cuda:{} but the output is on cuda:{}",
                other.ordinal(),
                dev.ordinal()
            ),
        ));
    }
    Ok(())
}

/// Checks a read operand: same device, exactly `n` elements.
pub(crate) fn check_in<T>(
    op: &'static str,
    what: &str,
    dev: &CudaDevice,
    s: &DevSlice<'_, T>,
    n: usize,
) -> Result<(), CudaError> {
    same_device(op, what, dev, s.dev)?;
    if s.len != n {
        return Err(invalid(
            op,
            format!("{what} has {} elements, expected {n}", s.len),
        ));
    }
    Ok(())
}

/// Checks a written operand: exactly `n` elements.
pub(crate) fn check_out<T>(
    op: &'static str,
    what: &str,
    s: &DevSliceMut<'_, T>,
    n: usize,
) -> Result<(), CudaError> {
    if s.len != n {
        return Err(invalid(
            op,
            format!("{what} has {} elements, expected {n}", s.len),
        ));
    }
    Ok(())
}

/// Converts a count to the kernels' i64, rejecting sizes beyond it.
pub(crate) fn to_i64(op: &'static str, n: usize) -> Result<i64, CudaError> {
    i64::try_from(n).map_err(|_| invalid(op, format!("size {n} exceeds the kernels' 64-bit index")))
}

/// Maps a launch failure to an error naming the kernel.
pub(crate) fn launch_err(kernel: &str, e: cudarc::driver::DriverError) -> CudaError {
    driver_err(format!("launching {kernel}"), e)
}
