//! General matrix multiply: C = alpha * A * B + beta * C, then an optional Dense epilogue.
//!
//! Every operand is addressed through a row stride and a column stride (in elements), so a
//! transposed or sliced matrix is passed as it lies in memory and never copied by the caller.
//! `beta == 0` means C is write-only: its old contents (even NaN) are ignored, as BLAS does.
//! The epilogue adds a bias per column and applies an activation while C is written, which is
//! a whole Dense forward in one pass.
//!
//! How it is built (the BLIS design), one file per part:
//! - `driver.rs`: the five BLIS loops. Loop 5 walks N in NC-wide panels, loop 4 walks K in
//!   KC-deep slices and packs a KC×NC panel of B, loop 3 walks M in MC-tall blocks and packs an
//!   MC×KC block of A, loops 2 and 1 walk NR-wide and MR-tall tiles and call the microkernel.
//!   With several threads, a wide product is split by columns (each thread runs all five loops
//!   over its own NR slivers, one parallel region) and a narrow one by loop 3's blocks (and,
//!   for short M, loop 2's slivers) behind a shared packing of B; K is
//!   never split, so every element of C sums its products in the same order whatever the
//!   thread count: results are bit-identical for 1, 2 or 64 threads.
//! - `pack.rs`: packing, which is also where arbitrary strides are absorbed.
//! - `shared_a.rs`: one packed copy of A shared by the threads of the split over columns and
//!   by the NC panels of a wide product, each block packed by whichever thread needs it first.
//! - `kernel.rs`: the microkernels (AVX2+FMA and portable) and their block sizes.
//! - `bf16.rs`: bf16 operands on CPUs with AVX512-BF16: pairs of K packed side by side and a
//!   `vdpbf16ps` microkernel (chosen by [`gemm_widen`] at run time).
//! - `mixed.rs`: f32 operands rounded to bf16/f16 with f32 accumulation (mixed-precision
//!   training), the rounding done by the bf16 kernel's packing where that kernel runs.
//! - `small.rs`: tiny products (the seed model's 10×10 layers) and matrix-vector products
//!   (N = 1 or M = 1), where packing would cost more than the arithmetic.
//!
//! The path is chosen once per call from [`crate::isa::active`]; `isa::with` forces one in
//! tests.

pub mod bf16;
mod driver;
mod edge512;
pub mod kernel;
pub mod mixed;
mod pack;
mod prepacked;
mod shared_a;
mod small;
pub(crate) use small::tree;

use crate::element::Float;
use crate::isa::Isa;
pub use kernel::MicroKernel;
pub use prepacked::PackedB;
/// A matrix operand: its data slice (already offset to element (0,0)), row and column strides.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    /// Data starting at element (0, 0).
    pub data: &'a [T],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// The same strides over other data (the same matrix seen as another element type, or a
    /// widened copy laid out alike).
    pub fn with_data<U>(&self, data: &'a [U]) -> MatRef<'a, U> {
        MatRef {
            data,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

/// The destination matrix, like [`MatRef`] but writable.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// Data starting at element (0, 0).
    pub data: &'a mut [T],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

pub use ember_ops::Activation;

/// What happens to each element of C after the product is accumulated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a, T> {
    /// Added to every row of C (length n), before the activation.
    pub bias: Option<&'a [T]>,
    /// Applied last.
    pub act: Activation,
}

/// A microkernel with the block sizes the driver uses around it.
#[derive(Clone, Copy)]
pub struct Kernel<T> {
    /// The instruction set the microkernel is compiled for.
    pub isa: Isa,
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
    /// Rows of A per packed block (a multiple of `mr`; sized for L2).
    pub mc: usize,
    /// Depth of a packed slice of K (sized so a B sliver stays in L1).
    pub kc: usize,
    /// Columns of B per packed panel (a multiple of `nr`; sized for L3).
    pub nc: usize,
    /// The microkernel.
    pub ukr: MicroKernel<T>,
}

impl<T> std::fmt::Debug for Kernel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kernel {{ isa: {}, tile: {}x{}, mc: {}, kc: {}, nc: {} }}",
            self.isa, self.mr, self.nr, self.mc, self.kc, self.nc
        )
    }
}

/// Largest MR×NR tile of any kernel (sizes the edge-tile scratch buffer).
pub(crate) const MAX_TILE: usize = 12 * 32;

/// At or below this many multiply-adds (m·n·k) the unpacked small-matrix loop runs instead of
/// the packed driver: it wins at the seed model's shapes, ties at 16³ and loses from 24³ up.
pub const SMALL_MAX_MNK: usize = 16 * 16 * 16;

/// The same limit for f32 on AVX2 with k ≤ 32, where the small path is the explicit intrinsics
/// kernel: it beats the packed driver up to 32³ (docs/PERFLOG.md).
pub const SMALL_MAX_MNK_F32_AVX2: usize = 32 * 32 * 32;

/// At or above this many multiply-adds (m·n·k) the packed driver splits work across rayon
/// threads: two threads lost at 96³ and won from 128³ up on a 2-core Zen 3 (docs/PERFLOG.md).
pub const PARALLEL_MIN_MNK: usize = 112 * 112 * 112;

/// At or above this many elements of A (m·k) a matrix-vector product (N = 1 or M = 1) splits
/// its rows across threads: two threads won from 256×512 up and only tied at 65k elements.
pub const GEMV_PARALLEL_MIN_MK: usize = 1 << 17;

/// The destination, as a raw pointer so disjoint tiles can be written from several threads.
#[derive(Clone, Copy)]
pub(crate) struct CPtr<T> {
    ptr: *mut T,
    rs: usize,
    cs: usize,
}

// SAFETY: a CPtr is only shared between threads that write disjoint elements of C (each work
// item owns distinct rows or columns), and the borrow of C outlives every worker.
unsafe impl<T: Send> Send for CPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for CPtr<T> {}

impl<T> CPtr<T> {
    /// Pointer to element (i, j).
    ///
    /// # Safety
    /// (i, j) must address an element inside the C slice.
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> *mut T {
        // SAFETY: forwarded to the caller.
        unsafe { self.ptr.add(i * self.rs + j * self.cs) }
    }
}

/// Why [`gemm`] refused its operands. Every operand is checked before any kernel runs, so a
/// caller's mistake is this error, never an out-of-bounds access in the unsafe kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GemmError {
    /// The operand's slice ends before its last element (`rows`×`cols` with strides `rs`,
    /// `cs` needs `(rows-1)·rs + (cols-1)·cs + 1` elements).
    TooShort {
        /// "A", "B" or "C".
        operand: &'static str,
        /// Rows of the operand.
        rows: usize,
        /// Columns of the operand.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
        /// Length of the slice given.
        len: usize,
    },
    /// The operand's last element lies past `usize::MAX`.
    Overflow {
        /// "A", "B" or "C".
        operand: &'static str,
    },
    /// C's strides map two different elements to one place (the threads would race on it).
    OverlappingOutput {
        /// Rows of C.
        rows: usize,
        /// Columns of C.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
    },
    /// The epilogue's bias holds fewer than n values.
    BiasTooShort {
        /// Values needed (n).
        need: usize,
        /// Values given.
        len: usize,
    },
}

impl std::fmt::Display for GemmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            GemmError::TooShort {
                operand,
                rows,
                cols,
                rs,
                cs,
                len,
            } => write!(
                f,
                "gemm: {operand} is {rows}x{cols} with strides ({rs}, {cs}), which needs {} \
                 elements, but its slice holds {len}",
                (rows - 1) * rs + (cols - 1) * cs + 1
            ),
            GemmError::Overflow { operand } => {
                write!(f, "gemm: {operand}'s strides overflow the address space")
            }
            GemmError::OverlappingOutput { rows, cols, rs, cs } => write!(
                f,
                "gemm: C is {rows}x{cols} with strides ({rs}, {cs}), which puts two elements \
                 in one place"
            ),
            GemmError::BiasTooShort { need, len } => {
                write!(
                    f,
                    "gemm: the bias holds {len} values, the product has {need} columns"
                )
            }
        }
    }
}

impl std::error::Error for GemmError {}

/// Checks that a `rows`×`cols` operand with strides (rs, cs) fits in `len` elements.
#[inline(always)]
fn check_extent(
    operand: &'static str,
    rows: usize,
    cols: usize,
    (rs, cs): (usize, usize),
    len: usize,
) -> Result<(), GemmError> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(r, c)| r.checked_add(c));
    match last {
        Some(last) if last < len => Ok(()),
        _ => Err(extent_error(operand, rows, cols, (rs, cs), len, last)),
    }
}

/// The error of a failed [`check_extent`], built out of line: the check runs on every GEMM
/// call, tiny ones included, and its passing path should be a few compares.
#[cold]
#[inline(never)]
fn extent_error(
    operand: &'static str,
    rows: usize,
    cols: usize,
    (rs, cs): (usize, usize),
    len: usize,
    last: Option<usize>,
) -> GemmError {
    match last {
        None => GemmError::Overflow { operand },
        Some(_) => GemmError::TooShort {
            operand,
            rows,
            cols,
            rs,
            cs,
            len,
        },
    }
}

/// Every check [`gemm`] and [`gemm_widen`] make before running a kernel: each operand inside
/// its slice (A and B only when K > 0: with K = 0 they are never read), C's elements distinct
/// (rows after rows, or columns after columns), and the bias long enough.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn check_operands<S, T>(
    m: usize,
    n: usize,
    k: usize,
    a: &MatRef<'_, S>,
    b: &MatRef<'_, S>,
    c: &MatMut<'_, T>,
    epi: &Epilogue<'_, T>,
) -> Result<(), GemmError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k > 0 {
        check_extent("A", m, k, (a.rs, a.cs), a.data.len())?;
        check_extent("B", k, n, (b.rs, b.cs), b.data.len())?;
    }
    check_extent("C", m, n, (c.rs, c.cs), c.data.len())?;
    // Distinct elements: a row-major-like layout (a row's last element before the next row's
    // first) or a column-major-like one; a single row or column only needs a nonzero step.
    // (check_extent has bounded both products below, so they cannot overflow.)
    let distinct = match (m, n) {
        (1, 1) => true,
        (1, _) => c.cs > 0,
        (_, 1) => c.rs > 0,
        _ => (c.cs > 0 && (n - 1) * c.cs < c.rs) || (c.rs > 0 && (m - 1) * c.rs < c.cs),
    };
    if !distinct {
        return Err(GemmError::OverlappingOutput {
            rows: m,
            cols: n,
            rs: c.rs,
            cs: c.cs,
        });
    }
    if let Some(bias) = epi.bias
        && bias.len() < n
    {
        return Err(GemmError::BiasTooShort {
            need: n,
            len: bias.len(),
        });
    }
    Ok(())
}

/// C[m×n] = alpha·A[m×k]·B[k×n] + beta·C, then the epilogue.
///
/// Operands that do not fit their slices, strides that overflow, a C whose strides overlap
/// two elements, or a bias shorter than n are a [`GemmError`], found before anything is
/// written.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
    epi: Epilogue<'_, T>,
) -> Result<(), GemmError> {
    check_operands(m, n, k, &a, &b, &c, &epi)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = crate::isa::active();
    let cp = c_ptr(&mut c);
    let mnk = m.saturating_mul(n).saturating_mul(k);
    // Matrix-vector products stream A once, memory-bound: they split by A's size. (The
    // thread count is asked last: it is a thread-local lookup, dear next to a tiny product.)
    let gemv_parallel =
        m.max(n).saturating_mul(k) >= GEMV_PARALLEL_MIN_MK && rayon::current_num_threads() > 1;
    if k == 0 || alpha == T::ZERO {
        scale_c(m, n, beta, cp);
        apply_epilogue(isa, cp, 0..m, 0..n, &epi);
    } else if n == 1 {
        small::gemv(
            isa,
            m,
            k,
            alpha,
            &a,
            b.data,
            b.rs,
            beta,
            cp,
            c.rs,
            gemv_parallel,
        );
        apply_epilogue(isa, cp, 0..m, 0..n, &epi);
    } else if m == 1 {
        // C (1×n) = a (1×k) · B (k×n)  is  Cᵀ (n×1) = Bᵀ (n×k) · aᵀ.
        let bt = MatRef {
            data: b.data,
            rs: b.cs,
            cs: b.rs,
        };
        small::gemv(
            isa,
            n,
            k,
            alpha,
            &bt,
            a.data,
            a.cs,
            beta,
            cp,
            c.cs,
            gemv_parallel,
        );
        apply_epilogue(isa, cp, 0..m, 0..n, &epi);
    } else if takes_small_path::<T>(isa, mnk, k) {
        // The f32 AVX2 kernel applies the bias and ReLU itself; what it leaves runs here.
        let rest = small::small(isa, m, n, k, alpha, &a, &b, beta, cp, epi);
        apply_epilogue(isa, cp, 0..m, 0..n, &rest);
    } else {
        let kern = T::gemm_kernel(packed_isa(isa, n));
        let parallel = packed_parallel(m, n, k, kern.nr);
        driver::packed(&kern, m, n, k, alpha, &a, &b, beta, cp, &epi, parallel);
    }
    Ok(())
}

/// The path whose microkernel the packed driver uses for a product `n` columns wide. A product
/// at most one AVX2 sliver wide (N ≤ 16, a skinny output layer) keeps the AVX2 6×16 kernel on
/// AVX-512 CPUs: per FMA instruction both kernels do the same useful work there (12×N
/// products per 24 zmm FMAs against 6×N per 12 ymm FMAs), and only the AVX2 kernel has the
/// twin that reads a row-major A in place instead of packing it (measured on AVX2: 256×512×10
/// 37 → 42–50 GFLOP/s). Wider products take the 12×32 kernel.
fn packed_isa(isa: crate::isa::Isa, n: usize) -> crate::isa::Isa {
    use crate::isa::Isa;
    if isa == Isa::Avx512 && n <= 16 {
        Isa::Avx2
    } else {
        isa
    }
}

/// Whether the packed driver splits a product across threads: by the work it really does,
/// with N padded to whole NR-wide slivers. A skinny product (256×512×10, an output layer) does
/// as much as one with N = NR, and most of its time is packing A, which splits well: counted
/// by m·n·k it stayed on one thread and ran at 0.41× numpy's speed on 2 threads.
fn packed_parallel(m: usize, n: usize, k: usize, nr: usize) -> bool {
    let work = m.saturating_mul(n.next_multiple_of(nr)).saturating_mul(k);
    work >= PARALLEL_MIN_MNK && rayon::current_num_threads() > 1
}

/// C's raw pointer, for the kernels' unsafe stores (`check_operands` has put every element
/// of C inside the slice).
fn c_ptr<T>(c: &mut MatMut<'_, T>) -> CPtr<T> {
    CPtr {
        ptr: c.data.as_mut_ptr(),
        rs: c.rs,
        cs: c.cs,
    }
}

/// An element type a GEMM operand may be stored in when the product is computed in `T`: `T`
/// itself, or, for `T = f32`, the half-precision types [`f16`](half::f16) and
/// [`bf16`](half::bf16), which are widened (exactly) as they are packed.
pub trait Widen<T>: Copy + Send + Sync + 'static {
    /// The value as a `T`.
    fn widen(self) -> T;
    /// The slice itself when `Self` is `T` (the copy and transpose fast paths need it).
    fn as_native(s: &[Self]) -> Option<&[T]>;
    /// The slice as bf16 when `Self` is [`half::bf16`] (the AVX512-BF16 kernel reads it as
    /// it is); `None` for every other type.
    fn as_bf16(_: &[Self]) -> Option<&[half::bf16]> {
        None
    }
    /// `dst[i] = src[i].widen()` for equal-length slices (vectorised where the type allows).
    fn widen_slice(src: &[Self], dst: &mut [T]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v.widen();
        }
    }
}

impl<T: Float> Widen<T> for T {
    #[inline(always)]
    fn widen(self) -> T {
        self
    }
    #[inline(always)]
    fn as_native(s: &[T]) -> Option<&[T]> {
        Some(s)
    }
}

macro_rules! widen_half {
    ($t:ty, $as_bf16:expr) => {
        impl Widen<f32> for $t {
            #[inline(always)]
            fn as_bf16(s: &[Self]) -> Option<&[half::bf16]> {
                $as_bf16(s)
            }
            #[inline(always)]
            fn widen(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn as_native(_: &[Self]) -> Option<&[f32]> {
                None
            }
            /// `half`'s slice conversion: 8 at a time with F16C where the CPU has it
            /// (detected at run time), a bit shift for bf16.
            fn widen_slice(src: &[Self], dst: &mut [f32]) {
                use half::slice::HalfFloatSliceExt;
                src.convert_to_f32_slice(dst);
            }
        }
    };
}
widen_half!(half::f16, |_| None);
widen_half!(half::bf16, Some);

/// [`gemm`] for operands stored as f16 or bf16 (or f32), computed and accumulated in f32.
///
/// On the packed path (everything but tiny products, matrix-vector products and empty K) the
/// operands are widened while they are packed: each input is read once, in place, with its
/// strides, and no widened copy of A or B is ever made. The other paths widen the operands into
/// dense f32 copies first, which for those shapes costs about as much as the product.
///
/// bf16 operands on the packed path go to the AVX512-BF16 kernel instead (`bf16.rs`) where the
/// CPU has it and the AVX-512 path is active: products of pairs with `vdpbf16ps`, accumulated in
/// f32. Its results differ from the widening path's in the last bits (another order of
/// additions; denormals flushed to zero, as the instruction does) and, like every path, do not
/// depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn gemm_widen<S: Widen<f32>>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, S>,
    b: MatRef<'_, S>,
    beta: f32,
    mut c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), GemmError> {
    check_operands(m, n, k, &a, &b, &c, &epi)?;
    if let (Some(ad), Some(bd)) = (S::as_native(a.data), S::as_native(b.data)) {
        return gemm(
            m,
            n,
            k,
            alpha,
            a.with_data(ad),
            b.with_data(bd),
            beta,
            c,
            epi,
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = crate::isa::active();
    let mnk = m.saturating_mul(n).saturating_mul(k);
    let packed = k > 0 && alpha != 0.0 && m > 1 && n > 1 && !takes_small_path::<f32>(isa, mnk, k);
    if !packed {
        let dense = |rows: usize, cols: usize, x: &MatRef<'_, S>| -> Vec<f32> {
            if x.cs == 1 && cols > 0 {
                // Rows are runs: the vectorised slice conversion, row by row.
                let mut out = vec![0.0f32; rows * cols];
                for (i, row) in out.chunks_exact_mut(cols).enumerate() {
                    S::widen_slice(&x.data[i * x.rs..i * x.rs + cols], row);
                }
                return out;
            }
            (0..rows)
                .flat_map(|i| (0..cols).map(move |j| x.data[i * x.rs + j * x.cs].widen()))
                .collect()
        };
        let (aw, bw) = (dense(m, k, &a), dense(k, n, &b));
        let a = MatRef {
            data: &aw,
            rs: k,
            cs: 1,
        };
        let b = MatRef {
            data: &bw,
            rs: n,
            cs: 1,
        };
        return gemm(m, n, k, alpha, a, b, beta, c, epi);
    }
    let cp = c_ptr(&mut c);
    // At most one 16-wide sliver (a skinny output layer) keeps the widening path and its
    // 6×16 kernel, as f32 does (`packed_isa`): a 32-wide bf16 tile would be mostly padding
    // (measured at 256×512×10: 15–23 GFLOP/s against 55–60 widened).
    if isa == Isa::Avx512
        && n > 16
        && bf16::supported()
        && let (Some(ad), Some(bd)) = (S::as_bf16(a.data), S::as_bf16(b.data))
    {
        let parallel = packed_parallel(m, n, k, 32);
        // SAFETY: AVX512-BF16 is present (just checked); the operands passed
        // `check_operands`; m, n > 1 and k > 0 (the packed path); C is owned by this call.
        unsafe {
            bf16::gemm_bf16(
                m,
                n,
                k,
                alpha,
                &a.with_data(ad),
                &b.with_data(bd),
                beta,
                cp,
                &epi,
                parallel,
            )
        };
        return Ok(());
    }
    let kern = f32::gemm_kernel(packed_isa(isa, n));
    let parallel = packed_parallel(m, n, k, kern.nr);
    driver::packed(&kern, m, n, k, alpha, &a, &b, beta, cp, &epi, parallel);
    Ok(())
}

/// True when a product of `mnk` multiply-adds and depth `k` (with m, n > 1) runs the unpacked
/// small-matrix loop rather than the packed driver (the limits above).
pub(crate) fn takes_small_path<T: Float>(isa: Isa, mnk: usize, k: usize) -> bool {
    mnk <= SMALL_MAX_MNK || (mnk <= SMALL_MAX_MNK_F32_AVX2 && small::has_f32_kernel::<T>(isa, k))
}

/// C = beta·C (with beta == 0 writing zeros without reading C).
fn scale_c<T: Float>(m: usize, n: usize, beta: T, c: CPtr<T>) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) is inside C (checked in `gemm`).
            let cij = unsafe { &mut *c.at(i, j) };
            *cij = if beta == T::ZERO {
                T::ZERO
            } else {
                beta * *cij
            };
        }
    }
}

/// Adds the bias and applies the activation to C[rows, cols].
fn apply_epilogue<T: Float>(
    isa: Isa,
    c: CPtr<T>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    epi: &Epilogue<'_, T>,
) {
    let act = epi.act.as_unary();
    if epi.bias.is_none() && act.is_none() {
        return;
    }
    if c.cs == 1 && c.rs == cols.len() && !rows.is_empty() {
        // Dense rows back to back (a contiguous C written whole, as tiny Dense layers are):
        // bias row by row, then one activation pass over the whole block instead of one call
        // per row, which dominates when rows are 5 or 10 elements long.
        // SAFETY: rows × cols of C are contiguous here, inside C, and owned by this call.
        let block = unsafe {
            std::slice::from_raw_parts_mut(c.at(rows.start, cols.start), rows.len() * c.rs)
        };
        if let Some(bias) = epi.bias {
            for row in block.chunks_exact_mut(c.rs) {
                for (v, &b) in row.iter_mut().zip(&bias[cols.clone()]) {
                    *v += b;
                }
            }
        }
        if let Some(op) = act {
            crate::unary::map_in_place_isa(isa, op, block);
        }
        return;
    }
    for i in rows {
        if c.cs == 1 {
            // SAFETY: the row segment lies inside C and no other reference to it is live (this
            // work item owns these rows and columns).
            let row = unsafe { std::slice::from_raw_parts_mut(c.at(i, cols.start), cols.len()) };
            if let Some(bias) = epi.bias {
                for (v, &b) in row.iter_mut().zip(&bias[cols.clone()]) {
                    *v += b;
                }
            }
            if let Some(op) = act {
                crate::unary::map_in_place_isa(isa, op, row);
            }
        } else {
            for j in cols.clone() {
                // SAFETY: (i, j) is inside C and owned by this work item.
                let cij = unsafe { &mut *c.at(i, j) };
                if let Some(bias) = epi.bias {
                    *cij += bias[j];
                }
                if let Some(op) = act {
                    *cij = crate::unary::apply(op, *cij);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_rng {
    //! The deterministic generator the crate's tests share.
    pub(crate) use super::tests::Rng;
}
