//! int8 GEMM: `C_i32 = (A_u8 − za) · B_i8`, accumulated exactly in i32, with a fused epilogue
//! that dequantizes to f32 (`acc · scale_a · scale_b[j] + bias[j]`, then an activation) and
//! optionally requantizes to u8. This is the arithmetic of a dynamically quantized Dense layer
//! (PyTorch's `torch.ao.nn.quantized.dynamic.Linear`): weights quantized once per output
//! channel, activations per batch.
//!
//! How it is built:
//! - `B` (the weights) is packed once into a [`PackedB`]: slivers of [`NR`] = 32 columns, each
//!   holding, for every quad of four k, the 4 bytes of each column side by side (the operand
//!   layout of `vpdpbusd`), K zero-padded to a multiple of 4; the column sums `Σ_k B[k,j]` are
//!   kept beside it for the zero-point compensation `−za·Σ_k B[k,j]`. The layout does not depend
//!   on the CPU, so one packed weight runs on every path.
//! - `A` (the activations, row-major u8) is read in place: the microkernel loads four bytes of
//!   each of its MR rows per step and broadcasts them. Only the last partial quad of a row (K
//!   not a multiple of 4) is copied, zero-padded.
//! - The driver walks tiles of MR rows × 32 columns; each tile's i32 sums go to a stack buffer
//!   and the epilogue writes them out. Work items (a B sliver × a block of rows) are shared out
//!   by rayon; every output element is computed whole by one tile, and integer sums are exact,
//!   so the results are bit-identical for any thread count and on every path.
//! - `kernel.rs`: the microkernels (AVX-512 VNNI, AVX-VNNI, AVX2, portable).
//! - `patches.rs`: the u8 patch matrix (im2col) that turns an int8 convolution into one GEMM.
//! - `quant.rs`: choosing scales and zero points, quantizing and dequantizing.
//!
//! **The 7-bit activation range.** The AVX2 path uses `vpmaddubsw`, which adds two u8×i8
//! products into a *saturating* i16. With the full u8 range a pair reaches 2·255·128 = 65280
//! and saturates; with A ≤ 127 it is at most 32512 and exact for every i8 weight. Like
//! PyTorch's dynamic Linear on x86 (fbgemm, `reduce_range=True`), ember therefore quantizes
//! activations to [0, 127] and keeps the weights at full 8 bits ([-127, 127]): one scheme on
//! every path, so a quantized model's outputs never depend on the CPU. The kernel itself
//! accepts any u8; when the AVX2 path would meet an A byte above 127, that call runs the
//! portable kernel instead (exact, slower), so the result is still the exact sum.
//!
//! K is limited to [`MAX_K`] so that no sum can leave i32 (|a·b| ≤ 255·128 per product).
//!
//! The path is chosen per call from [`crate::isa::active`] (see [`QPath::active`]);
//! [`qgemm_with`] forces one in tests and benchmarks.

pub mod kernel;
pub mod patches;
pub mod quant;
#[cfg(test)]
mod tests;

use crate::isa::Isa;
use ember_ops::Activation;
pub use kernel::NR;
use kernel::{MAX_MR, QKernel};
use rayon::prelude::*;

/// The largest K accepted: `MAX_K · 255 · 128` still fits in an i32, so no sum wraps.
pub const MAX_K: usize = (i32::MAX as usize) / (255 * 128);

/// Rows per work item (a multiple of every path's MR).
const ROW_BLOCK: usize = 64;

/// At or above this many multiply-adds (m·n·k) the product is split across rayon threads.
pub const PARALLEL_MIN_MNK: usize = 1 << 21;

/// The int8 kernel paths, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QPath {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit registers), with AVX-512F/BW.
    Avx512Vnni,
    /// AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd`).
    AvxVnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd`), exact for A ≤ 127 (see the module docs).
    Avx2,
    /// Plain Rust; runs everywhere; the bit-exact reference.
    Portable,
}

impl QPath {
    /// Every path, best first.
    pub const ALL: [QPath; 4] = [
        QPath::Avx512Vnni,
        QPath::AvxVnni,
        QPath::Avx2,
        QPath::Portable,
    ];

    /// The lowercase name used in reports and benchmark labels.
    pub fn name(self) -> &'static str {
        match self {
            QPath::Avx512Vnni => "avx512-vnni",
            QPath::AvxVnni => "avx-vnni",
            QPath::Avx2 => "avx2",
            QPath::Portable => "portable",
        }
    }

    /// True when this CPU can run the path.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                QPath::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                QPath::AvxVnni => {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
                }
                QPath::Avx2 => is_x86_feature_detected!("avx2"),
                QPath::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == QPath::Portable
        }
    }

    /// Every path this CPU can run, best first (tests iterate over it).
    pub fn supported() -> Vec<QPath> {
        QPath::ALL
            .into_iter()
            .filter(|p| p.is_supported())
            .collect()
    }

    /// The path for the f32 kernels' current choice [`crate::isa::active`]: under `avx512`
    /// the best of AVX-512 VNNI, AVX-VNNI, AVX2; under `avx2` AVX-VNNI where present, else
    /// AVX2 (so `EMBER_CPU_ISA=avx2` measures the AVX2 kernel on an AVX-512 machine without
    /// AVX-VNNI); under `portable`, portable.
    pub fn active() -> QPath {
        let candidates: &[QPath] = match crate::isa::active() {
            Isa::Avx512 => &[QPath::Avx512Vnni, QPath::AvxVnni, QPath::Avx2],
            Isa::Avx2 => &[QPath::AvxVnni, QPath::Avx2],
            _ => &[],
        };
        candidates
            .iter()
            .copied()
            .find(|p| p.is_supported())
            .unwrap_or(QPath::Portable)
    }

    /// The microkernel and its tile height.
    fn kernel(self) -> (QKernel, usize) {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                QPath::Avx512Vnni => (kernel::ukr_avx512_vnni, 8),
                QPath::AvxVnni => (kernel::ukr_avx_vnni, 2),
                QPath::Avx2 => (kernel::ukr_avx2, 2),
                QPath::Portable => (kernel::ukr_portable, 4),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            (kernel::ukr_portable, 4)
        }
    }

    /// The kernel and tile height for a sliver with at most 16 live columns (the main kernel
    /// where the path has no narrow one).
    fn narrow_kernel(self) -> (QKernel, usize) {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                QPath::Avx512Vnni => (kernel::ukr_avx512_vnni_narrow, 16),
                QPath::Avx2 => (kernel::ukr_avx2_narrow, 4),
                other => other.kernel(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.kernel()
        }
    }
}

impl std::fmt::Display for QPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an int8 GEMM or a quantization refused its operands. Every check runs before any
/// kernel, so a caller's mistake is this error, never an out-of-bounds access.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QError {
    /// A slice is shorter than its shape needs.
    TooShort {
        /// The operation ("qgemm", "pack_b", "quantize", ...).
        op: &'static str,
        /// Which operand.
        operand: &'static str,
        /// Elements needed.
        need: usize,
        /// Elements given.
        len: usize,
    },
    /// A shape or parameter is out of range (the message says which and why).
    Invalid {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The requested path cannot run on this CPU.
    Unsupported(QPath),
}

impl std::fmt::Display for QError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QError::TooShort {
                op,
                operand,
                need,
                len,
            } => write!(
                f,
                "{op}: {operand} needs {need} elements, but its slice holds {len}"
            ),
            QError::Invalid { op, message } => write!(f, "{op}: {message}"),
            QError::Unsupported(p) => write!(f, "qgemm: this CPU cannot run the {p} kernel"),
        }
    }
}

impl std::error::Error for QError {}

/// A short-slice error.
fn too_short(op: &'static str, operand: &'static str, need: usize, len: usize) -> QError {
    QError::TooShort {
        op,
        operand,
        need,
        len,
    }
}

/// Elements a `rows`×`cols` row-major matrix with leading dimension `ld` spans, or an error
/// when `ld < cols` or the extent overflows.
fn extent(
    op: &'static str,
    operand: &'static str,
    rows: usize,
    cols: usize,
    ld: usize,
) -> Result<usize, QError> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    if ld < cols {
        return Err(QError::Invalid {
            op,
            message: format!(
                "{operand} is {rows}x{cols} with leading dimension {ld}, smaller than its {cols} columns"
            ),
        });
    }
    (rows - 1)
        .checked_mul(ld)
        .and_then(|v| v.checked_add(cols))
        .ok_or_else(|| QError::Invalid {
            op,
            message: format!("{operand} of {rows}x{cols} with leading dimension {ld} overflows"),
        })
}

/// The weights `B` (K×N, i8) packed once for every path, with their column sums.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// `[sliver][quad][column in sliver][4 bytes]`, zero-padded in K and N.
    data: Vec<i8>,
    /// `Σ_k B[k, j]` for the zero-point compensation.
    col_sums: Vec<i32>,
}

impl PackedB {
    /// Packs the K×N matrix `B` given as its transpose: `bt` holds N rows of K values (row j =
    /// column j of B) with leading dimension `ldb` — the `[out, in]` layout of a Dense weight,
    /// so a layer's weight is packed without a transpose.
    pub fn from_transposed(k: usize, n: usize, bt: &[i8], ldb: usize) -> Result<PackedB, QError> {
        let need = extent("pack_b", "the weight [n, k]", n, k, ldb)?;
        if bt.len() < need {
            return Err(too_short("pack_b", "the weight [n, k]", need, bt.len()));
        }
        if k > MAX_K {
            return Err(QError::Invalid {
                op: "pack_b",
                message: format!("K = {k} exceeds the largest depth {MAX_K} whose sums fit i32"),
            });
        }
        let kq = k.div_ceil(4);
        let slivers = n.div_ceil(NR);
        let mut data = vec![0i8; slivers * kq * NR * 4];
        let mut col_sums = vec![0i32; n];
        for (j, sum) in col_sums.iter_mut().enumerate() {
            let col = &bt[j * ldb..j * ldb + k];
            *sum = col.iter().map(|&v| i32::from(v)).sum();
            let (s, c) = (j / NR, j % NR);
            for (p, &v) in col.iter().enumerate() {
                data[((s * kq + p / 4) * NR + c) * 4 + p % 4] = v;
            }
        }
        Ok(PackedB {
            k,
            n,
            data,
            col_sums,
        })
    }

    /// Packs a K×N matrix `B` stored row-major with leading dimension `ldb`.
    pub fn from_rows(k: usize, n: usize, b: &[i8], ldb: usize) -> Result<PackedB, QError> {
        let need = extent("pack_b", "B [k, n]", k, n, ldb)?;
        if b.len() < need {
            return Err(too_short("pack_b", "B [k, n]", need, b.len()));
        }
        let bt: Vec<i8> = (0..n)
            .flat_map(|j| (0..k).map(move |p| b[p * ldb + j]))
            .collect();
        PackedB::from_transposed(k, n, &bt, k.max(1))
    }

    /// K (rows of B).
    pub fn k(&self) -> usize {
        self.k
    }

    /// N (columns of B).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `Σ_k B[k, j]` for every column j.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// B[p, j] read back from the packing (for checks and for saving).
    pub fn get(&self, p: usize, j: usize) -> Option<i8> {
        if p >= self.k || j >= self.n {
            return None;
        }
        let kq = self.k.div_ceil(4);
        self.data
            .get((((j / NR) * kq + p / 4) * NR + j % NR) * 4 + p % 4)
            .copied()
    }

    /// The bytes of sliver `s`.
    fn sliver(&self, s: usize) -> &[i8] {
        let len = self.k.div_ceil(4) * NR * 4;
        &self.data[s * len..(s + 1) * len]
    }
}

/// The f32 epilogue: `y[i,j] = act(f32(acc[i,j]) · (a_scale · b_scales[j]) + bias[j])`, where
/// `acc` already includes the zero-point compensation. The scale product is rounded to f32
/// once per column and the multiply and add are separate roundings (never fused), so every
/// path writes the same bits.
#[derive(Debug, Clone, Copy)]
pub struct Dequant<'a> {
    /// Scale of A (per tensor).
    pub a_scale: f32,
    /// Scale of each column of B (per output channel), length n.
    pub b_scales: &'a [f32],
    /// Added per column after scaling, length n.
    pub bias: Option<&'a [f32]>,
    /// Applied last, in f32.
    pub act: Activation,
}

/// Requantization of the f32 result to u8: `q = clamp(round_half_even(y / scale) + zero_point,
/// 0, qmax)`.
#[derive(Debug, Clone, Copy)]
pub struct Requant {
    /// Output scale (positive, finite).
    pub scale: f32,
    /// Output zero point, in [0, qmax].
    pub zero_point: i32,
    /// Largest code (127 for the 7-bit activations ember uses, up to 255).
    pub qmax: i32,
}

/// Where the product goes (row-major, leading dimension `ldc`).
#[derive(Debug)]
pub enum QOut<'a> {
    /// The exact i32 sums `Σ_k (A[i,k] − za)·B[k,j]`.
    I32 {
        /// Destination.
        c: &'a mut [i32],
        /// Leading dimension.
        ldc: usize,
    },
    /// Dequantized f32.
    F32 {
        /// Destination.
        c: &'a mut [f32],
        /// Leading dimension.
        ldc: usize,
        /// The scales, bias and activation.
        dq: Dequant<'a>,
    },
    /// Dequantized, then requantized to u8.
    U8 {
        /// Destination.
        c: &'a mut [u8],
        /// Leading dimension.
        ldc: usize,
        /// The scales, bias and activation.
        dq: Dequant<'a>,
        /// The output quantization.
        rq: Requant,
    },
}

/// The quantized activations: M×K u8, row-major with leading dimension `lda`, and their zero
/// point `za` (subtracted through the column sums).
#[derive(Debug, Clone, Copy)]
pub struct QActs<'a> {
    /// The codes.
    pub data: &'a [u8],
    /// Rows.
    pub m: usize,
    /// Leading dimension (≥ K).
    pub lda: usize,
    /// Zero point of A (any i32; 0 for a plain u8 product).
    pub zero_point: i32,
}

/// `C = (A − za)·B` with the output's epilogue, on the path [`QPath::active`] picks.
pub fn qgemm(a: QActs<'_>, b: &PackedB, out: QOut<'_>) -> Result<(), QError> {
    qgemm_with(QPath::active(), a, b, out)
}

/// [`qgemm`] on a given path (an error if this CPU cannot run it).
pub fn qgemm_with(path: QPath, a: QActs<'_>, b: &PackedB, mut out: QOut<'_>) -> Result<(), QError> {
    if !path.is_supported() {
        return Err(QError::Unsupported(path));
    }
    let (m, n, k) = (a.m, b.n, b.k);
    let need_a = extent("qgemm", "A [m, k]", m, k, a.lda)?;
    if a.data.len() < need_a {
        return Err(too_short("qgemm", "A [m, k]", need_a, a.data.len()));
    }
    check_out(m, n, &out)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    // vpmaddubsw is exact only for A ≤ 127 (module docs): otherwise this call runs portable.
    let path = if path == QPath::Avx2 && has_high_byte(&a, k) {
        QPath::Portable
    } else {
        path
    };
    let dst = OutPtr::new(&mut out);
    let row_blocks = m.div_ceil(ROW_BLOCK);
    let slivers = n.div_ceil(NR);
    let items = row_blocks * slivers;
    let run = |item: usize| {
        // Sliver-major order: consecutive items share a B sliver (it stays in L1/L2).
        let (s, rb) = (item / row_blocks, item % row_blocks);
        let rows = rb * ROW_BLOCK..((rb + 1) * ROW_BLOCK).min(m);
        // A sliver with at most 16 live columns runs the path's narrow kernel.
        let (ukr, mr) = if n - s * NR <= NR / 2 {
            path.narrow_kernel()
        } else {
            path.kernel()
        };
        run_item(ukr, mr, &a, b, s, rows, &dst);
    };
    let work = m.saturating_mul(slivers * NR).saturating_mul(k);
    if work >= PARALLEL_MIN_MNK && items > 1 && rayon::current_num_threads() > 1 {
        (0..items).into_par_iter().for_each(run);
    } else {
        (0..items).for_each(run);
    }
    Ok(())
}

/// True when some byte of A (its M×K elements) is above 127.
fn has_high_byte(a: &QActs<'_>, k: usize) -> bool {
    (0..a.m).any(|i| {
        a.data[i * a.lda..i * a.lda + k]
            .iter()
            .fold(0u8, |acc, &v| acc | v)
            >= 0x80
    })
}

/// The checks on the destination and the epilogue's vectors.
fn check_out(m: usize, n: usize, out: &QOut<'_>) -> Result<(), QError> {
    let (len, ldc, dq) = match out {
        QOut::I32 { c, ldc } => (c.len(), *ldc, None),
        QOut::F32 { c, ldc, dq } => (c.len(), *ldc, Some(dq)),
        QOut::U8 { c, ldc, dq, rq } => {
            let valid = rq.scale.is_finite()
                && rq.scale > 0.0
                && (1..=255).contains(&rq.qmax)
                && (0..=rq.qmax).contains(&rq.zero_point);
            if !valid {
                return Err(QError::Invalid {
                    op: "qgemm",
                    message: format!(
                        "requantization needs a positive finite scale and 0 <= zero_point <= qmax <= 255, got scale {}, zero_point {}, qmax {}",
                        rq.scale, rq.zero_point, rq.qmax
                    ),
                });
            }
            (c.len(), *ldc, Some(dq))
        }
    };
    let need = extent("qgemm", "C [m, n]", m, n, ldc)?;
    if len < need {
        return Err(too_short("qgemm", "C [m, n]", need, len));
    }
    if let Some(dq) = dq {
        if dq.b_scales.len() < n {
            return Err(too_short("qgemm", "b_scales", n, dq.b_scales.len()));
        }
        if let Some(bias) = dq.bias
            && bias.len() < n
        {
            return Err(too_short("qgemm", "bias", n, bias.len()));
        }
    }
    Ok(())
}

/// The destination as raw parts, so disjoint tiles can be written from several threads.
struct OutPtr<'a> {
    kind: OutKind,
    ptr: *mut u8,
    ldc: usize,
    dq: Option<Dequant<'a>>,
    rq: Option<Requant>,
    /// The f32 elementwise path for the activation (read once, on the calling thread).
    isa: Isa,
}

#[derive(Clone, Copy)]
enum OutKind {
    I32,
    F32,
    U8,
}

// SAFETY: work items write disjoint tiles of C (each element belongs to exactly one item) and
// the borrow of C outlives the parallel loop.
unsafe impl Send for OutPtr<'_> {}
// SAFETY: as above.
unsafe impl Sync for OutPtr<'_> {}

impl<'a> OutPtr<'a> {
    fn new(out: &'a mut QOut<'_>) -> OutPtr<'a> {
        match out {
            QOut::I32 { c, ldc } => OutPtr {
                kind: OutKind::I32,
                ptr: c.as_mut_ptr() as *mut u8,
                ldc: *ldc,
                dq: None,
                rq: None,
                isa: crate::isa::active(),
            },
            QOut::F32 { c, ldc, dq } => OutPtr {
                kind: OutKind::F32,
                ptr: c.as_mut_ptr() as *mut u8,
                ldc: *ldc,
                dq: Some(*dq),
                rq: None,
                isa: crate::isa::active(),
            },
            QOut::U8 { c, ldc, dq, rq } => OutPtr {
                kind: OutKind::U8,
                ptr: c.as_mut_ptr(),
                ldc: *ldc,
                dq: Some(*dq),
                rq: Some(*rq),
                isa: crate::isa::active(),
            },
        }
    }
}

/// One work item: sliver `s` of B against `rows` of A, tile by tile.
fn run_item(
    ukr: QKernel,
    mr: usize,
    a: &QActs<'_>,
    b: &PackedB,
    s: usize,
    rows: std::ops::Range<usize>,
    dst: &OutPtr<'_>,
) {
    let k = b.k;
    let kq_full = k / 4;
    let rem = k % 4;
    let bs = b.sliver(s);
    let cols = s * NR..((s + 1) * NR).min(b.n);
    let mut acc = [0i32; MAX_MR * NR];
    let mut i0 = rows.start;
    while i0 < rows.end {
        let h = mr.min(rows.end - i0);
        // Rows past the end repeat the last valid row; their sums are not written.
        // (wrapping_add: with K = 0 the pointers are never read and may lie past A.)
        let row_ptrs: [*const u8; MAX_MR] = std::array::from_fn(|r| {
            let i = i0 + r.min(h - 1);
            a.data.as_ptr().wrapping_add(i * a.lda)
        });
        let tail: [i32; MAX_MR] = std::array::from_fn(|r| {
            let i = i0 + r.min(h - 1);
            let mut q = [0u8; 4];
            if rem > 0 {
                let start = i * a.lda + 4 * kq_full;
                q[..rem].copy_from_slice(&a.data[start..start + rem]);
            }
            i32::from_le_bytes(q)
        });
        // SAFETY: each row pointer addresses a row of A with at least k ≥ 4·kq_full bytes
        // (checked in qgemm_with), the sliver holds kq_full + (rem > 0) quads, and the path
        // was checked to be supported by this CPU.
        unsafe {
            ukr(
                kq_full,
                &row_ptrs,
                (rem > 0).then_some(&tail),
                bs.as_ptr(),
                &mut acc,
            )
        };
        write_tile(&acc, a.zero_point, b, i0..i0 + h, cols.clone(), dst);
        i0 += h;
    }
}

/// The epilogue for one tile: subtract `za·Σ_k B[k,j]`, then store i32, or dequantize (and
/// requantize) and store. The f32 arithmetic is the same code for every path: one product
/// `a_scale·b_scale[j]` per column, one multiply, one add (never fused), then the activation
/// through the f32 kernels' own elementwise code, as the f32 Dense applies it.
fn write_tile(
    acc: &[i32; MAX_MR * NR],
    za: i32,
    b: &PackedB,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    dst: &OutPtr<'_>,
) {
    let (j0, w) = (cols.start, cols.len());
    let comp: [i32; NR] = std::array::from_fn(|c| {
        if c < w {
            za.wrapping_mul(b.col_sums[j0 + c])
        } else {
            0
        }
    });
    let Some(dq) = dst.dq else {
        for (r, i) in rows.enumerate() {
            let row: [i32; NR] = std::array::from_fn(|c| acc[r * NR + c].wrapping_sub(comp[c]));
            // SAFETY: row i, columns j0..j0+w are inside C (check_out) and owned by this
            // work item; `row` holds NR >= w values.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    (dst.ptr as *mut i32).add(i * dst.ldc + j0),
                    w,
                )
            };
        }
        return;
    };
    let scales: [f32; NR] = std::array::from_fn(|c| {
        if c < w {
            dq.a_scale * dq.b_scales[j0 + c]
        } else {
            0.0
        }
    });
    let bias: Option<[f32; NR]> = dq
        .bias
        .map(|bv| std::array::from_fn(|c| if c < w { bv[j0 + c] } else { 0.0 }));
    let act = dq.act.as_unary();
    // The whole tile in f32 first, so the activation runs once per tile (one call of the
    // elementwise kernel over MR·32 values instead of one per row; padding columns hold
    // act(0) and are not stored).
    let h = rows.len();
    let mut y = [0f32; MAX_MR * NR];
    for r in 0..h {
        let row = &mut y[r * NR..(r + 1) * NR];
        for (c, v) in row.iter_mut().enumerate() {
            *v = acc[r * NR + c].wrapping_sub(comp[c]) as f32 * scales[c];
        }
        if let Some(bv) = &bias {
            for (v, &bj) in row.iter_mut().zip(bv) {
                *v += bj;
            }
        }
    }
    if let Some(op) = act {
        crate::unary::map_in_place_isa(dst.isa, op, &mut y[..h * NR]);
    }
    for (r, i) in rows.enumerate() {
        let row = &y[r * NR..r * NR + w];
        match (dst.kind, dst.rq) {
            (OutKind::U8, Some(rq)) => {
                for (c, &v) in row.iter().enumerate() {
                    let q = quant::quantize_one(v, rq.scale, rq.zero_point, 0, rq.qmax);
                    // SAFETY: row i, columns j0..j0+w are inside C (check_out) and owned by
                    // this work item.
                    unsafe { *dst.ptr.add(i * dst.ldc + j0 + c) = q as u8 };
                }
            }
            // SAFETY: as above; `row` holds w values.
            _ => unsafe {
                std::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    (dst.ptr as *mut f32).add(i * dst.ldc + j0),
                    w,
                )
            },
        }
    }
}
