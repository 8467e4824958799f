//! Short row slivers for the AVX-512 12×32 f32 microkernel: the last rows of a block whose
//! height is not a multiple of 12.
//!
//! The driver used to run the full 12-row kernel on such a tile into a scratch tile and merge
//! the valid rows element by element. An LSTM's step GEMMs have M = 64 (the batch): 5 full
//! slivers and one of 4 rows, so an eighth of their multiply-adds was padding, and the merge a
//! scalar loop besides. These kernels compute exactly the `MR` < 12 valid rows of a 32-wide
//! tile straight into C, reading the same packed slivers (A's sliver keeps its 12-value steps).
//!
//! Each C element is the same sequence of operations as in the 12-row kernel (its products
//! summed over k in order by one fused multiply-add chain, then `alpha·acc`, then
//! `beta·C + that` fused), so a row's result does not depend on which kernel computed it.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `MR` rows × 32 columns of C from a 12-row packed A sliver and a 32-column B sliver.
///
/// # Safety
/// AVX-512F is present; `a` holds `kc·12` values, `b` `kc·32`; rows 0..MR of the tile at `c`
/// hold 32 contiguous writable floats each, `rs_c` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_x32<const MR: usize>(
    kc: usize,
    alpha: f32,
    mut a: *const f32,
    mut b: *const f32,
    beta: f32,
    c: *mut f32,
    rs_c: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for _ in 0..kc {
        // SAFETY: a and b advance by 12 and 32 per step over kc steps, inside the slivers.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(12);
            b = b.add(32);
        }
    }
    let va = _mm512_set1_ps(alpha);
    let vb = _mm512_set1_ps(beta);
    for (i, row) in acc.iter().enumerate() {
        for (h, &v) in row.iter().enumerate() {
            // SAFETY: row i of the tile holds 32 contiguous writable floats.
            unsafe {
                let p = c.add(i * rs_c + 16 * h);
                let r = if beta == 0.0 {
                    _mm512_mul_ps(va, v)
                } else {
                    _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), _mm512_mul_ps(va, v))
                };
                _mm512_storeu_ps(p, r);
            }
        }
    }
}

/// Runs the kernel for `rows` (1 to 11) rows; false (nothing done) for any other count.
///
/// # Safety
/// As [`rows_x32`] with MR = `rows`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn short_rows(
    rows: usize,
    kc: usize,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    beta: f32,
    c: *mut f32,
    rs_c: usize,
) -> bool {
    macro_rules! go {
        ($($m:literal)*) => {
            match rows {
                // SAFETY: forwarded to the caller.
                $($m => unsafe { rows_x32::<$m>(kc, alpha, a, b, beta, c, rs_c) },)*
                _ => return false,
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11);
    true
}
