//! Matrix products on the device: the fp32 SGEMM ladder (kernels/sgemm.cu) and the tensor-core
//! GEMM for f16/bf16 inputs with f32 accumulation (kernels/hgemm.cu, `mma.sync`, sm_80+; and an
//! experimental Hopper version in kernels/wgmma.cu, `wgmma`, sm_90a only).
//!
//! The API mirrors ember-cpu's `gemm`: `C[m×n] = alpha·A[m×k]·B[k×n] + beta·C`, then the Dense
//! epilogue (bias per column, activation), with every operand addressed by a row and a column
//! stride so transposes and slices are passed as they lie. `beta == 0` makes C write-only.
//! All versions accept every shape and layout; the faster ones switch to 16-byte loads only
//! where the layout, alignment and tile bounds allow, and fall back to checked scalar loads.

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};

use crate::device::{DevSlice, DevSliceMut, HalfElem};
use crate::error::{CudaError, driver_err, invalid};
use crate::launch::{launch_err, same_device, to_i64};

/// A matrix operand on the device: data starting at element (0, 0), row and column strides.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    /// Data starting at element (0, 0).
    pub data: DevSlice<'a, T>,
    /// Step between rows (elements).
    pub rs: usize,
    /// Step between columns (elements).
    pub cs: usize,
}

/// The destination matrix, like [`MatRef`] but writable.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// Data starting at element (0, 0).
    pub data: DevSliceMut<'a, T>,
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

pub use ember_ops::Activation;

/// What happens to each element of C after the product: bias (length n) added, then `act`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a, T> {
    /// Added to every row of C, before the activation.
    pub bias: Option<DevSlice<'a, T>>,
    /// Applied last.
    pub act: Activation,
}

impl<T> Default for Epilogue<'_, T> {
    fn default() -> Self {
        Epilogue {
            bias: None,
            act: Activation::None,
        }
    }
}

/// The SGEMM versions of the kernel lab, from the textbook loop to the tuned kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SgemmVersion {
    /// v0: one thread per element of C, straight from global memory.
    Naive,
    /// v1: 32×32 shared-memory tiles, one element per thread.
    Tiled,
    /// v2: 128×128 (or 64×64) block tiles, 8×8 (4×4) register tile per thread.
    RegBlocked,
    /// v3: v2 with 16-byte global loads and double buffering.
    Vectorized,
    /// Vectorized, with the block tile chosen by shape (the default).
    Auto,
}

impl SgemmVersion {
    /// All versions, ladder order.
    pub const ALL: [SgemmVersion; 5] = [
        SgemmVersion::Naive,
        SgemmVersion::Tiled,
        SgemmVersion::RegBlocked,
        SgemmVersion::Vectorized,
        SgemmVersion::Auto,
    ];

    /// The name used on the command line and in benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            SgemmVersion::Naive => "naive",
            SgemmVersion::Tiled => "tiled",
            SgemmVersion::RegBlocked => "regblock",
            SgemmVersion::Vectorized => "vec",
            SgemmVersion::Auto => "auto",
        }
    }

    /// Parses [`SgemmVersion::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// Kernel parameters of both GEMM modules (`GemmParams` / `HgemmParams` in the .cu files,
/// identical layouts: 9 i64, 4 pointers, 2 f32, 4 i32).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct GemmParams {
    m: i64,
    n: i64,
    k: i64,
    rsa: i64,
    csa: i64,
    rsb: i64,
    csb: i64,
    rsc: i64,
    csc: i64,
    a: u64,
    b: u64,
    c: u64,
    bias: u64,
    alpha: f32,
    beta: f32,
    act: i32,
    vec_a: i32,
    vec_b: i32,
    last: i32,
}

// SAFETY: plain #[repr(C)] integers and floats, field for field the kernels' parameter struct.
unsafe impl DeviceRepr for GemmParams {}

/// Largest element index (m-1)·rs + (n-1)·cs addressed by an m×n operand (None if empty).
fn last_index(
    op: &'static str,
    what: &str,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<Option<usize>, CudaError> {
    if rows == 0 || cols == 0 {
        return Ok(None);
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .map(Some)
        .ok_or_else(|| invalid(op, format!("{what}: strides ({rs}, {cs}) overflow")))
}

fn check_operand(
    op: &'static str,
    what: &str,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    len: usize,
) -> Result<(), CudaError> {
    let last = last_index(op, what, rows, cols, rs, cs)?;
    if let Some(last) = last.filter(|&l| l >= len) {
        return Err(invalid(
            op,
            format!(
                "{what} [{rows}, {cols}] with strides ({rs}, {cs}) reaches element {last} of a slice of {len}"
            ),
        ));
    }
    Ok(())
}

/// True when distinct (i, j) of an m×n matrix with these strides never share an element (so
/// concurrent writes to C cannot race).
fn distinct_elements(m: usize, n: usize, rs: usize, cs: usize) -> bool {
    let mut dims = [(m, rs), (n, cs)];
    dims.sort_by_key(|d| d.1);
    let mut span = 1usize; // elements covered by the inner dimensions
    for (e, s) in dims {
        if e <= 1 {
            continue;
        }
        if s < span {
            return false;
        }
        span = s.saturating_mul(e);
    }
    true
}

/// Checks all operands of a GEMM and packs the shared parameters (pointers, strides, sizes).
#[allow(clippy::too_many_arguments)]
fn pack<TA, TC>(
    op: &'static str,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &MatRef<'_, TA>,
    b: &MatRef<'_, TA>,
    beta: f32,
    c: &MatMut<'_, TC>,
    epi: &Epilogue<'_, TC>,
) -> Result<GemmParams, CudaError> {
    let dev = c.data.dev;
    same_device(op, "A", dev, a.data.dev)?;
    same_device(op, "B", dev, b.data.dev)?;
    check_operand(op, "A", m, k, a.rs, a.cs, a.data.len)?;
    check_operand(op, "B", k, n, b.rs, b.cs, b.data.len)?;
    check_operand(op, "C", m, n, c.rs, c.cs, c.data.len)?;
    if !distinct_elements(m, n, c.rs, c.cs) {
        return Err(invalid(
            op,
            format!(
                "C [{m}, {n}] with strides ({}, {}) maps several elements to one address",
                c.rs, c.cs
            ),
        ));
    }
    let mut bias = 0u64;
    if let Some(bs) = &epi.bias {
        same_device(op, "bias", dev, bs.dev)?;
        if bs.len != n {
            return Err(invalid(
                op,
                format!("bias has {} elements, expected n = {n}", bs.len),
            ));
        }
        bias = bs.ptr;
    }
    Ok(GemmParams {
        m: to_i64(op, m)?,
        n: to_i64(op, n)?,
        k: to_i64(op, k)?,
        rsa: to_i64(op, a.rs)?,
        csa: to_i64(op, a.cs)?,
        rsb: to_i64(op, b.rs)?,
        csb: to_i64(op, b.cs)?,
        rsc: to_i64(op, c.rs)?,
        csc: to_i64(op, c.cs)?,
        a: a.data.ptr,
        b: b.data.ptr,
        c: c.data.ptr,
        bias,
        alpha,
        beta,
        act: epi.act.code() as i32,
        vec_a: 0,
        vec_b: 0,
        last: 0,
    })
}

fn grid2(
    op: &'static str,
    m: usize,
    n: usize,
    bm: usize,
    bn: usize,
) -> Result<(u32, u32, u32), CudaError> {
    let (gx, gy) = (n.div_ceil(bn), m.div_ceil(bm));
    if gx > i32::MAX as usize || gy > 65535 {
        return Err(invalid(
            op,
            format!(
                "[{m}, {n}] output needs a {gy} x {gx} grid of {bm}x{bn} tiles, beyond CUDA's limits"
            ),
        ));
    }
    Ok((gx as u32, gy as u32, 1))
}

/// SGEMM with the default (fastest) version: see [`sgemm_version`].
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), CudaError> {
    sgemm_version(SgemmVersion::Auto, m, n, k, alpha, a, b, beta, c, epi)
}

/// The block tile of the register-blocked SGEMM versions ([`SgemmVersion::RegBlocked`],
/// [`SgemmVersion::Vectorized`], [`SgemmVersion::Auto`]); the naive and tiled versions have one
/// fixed tile each and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SgemmTile {
    /// By shape: 128×128 when those tiles cover every SM at least once, else 64×64 (see
    /// [`SgemmTile::resolve`]).
    #[default]
    Auto,
    /// 64×64 block tiles, 4×4 per thread.
    T64,
    /// 128×128 block tiles, 8×8 per thread.
    T128,
}

/// The environment variable that forces the SGEMM block tile: `64`, `128` or `auto` (read
/// once per process; see [`SgemmTile::from_env`]).
pub const SGEMM_TILE_ENV: &str = "EMBER_CUDA_SGEMM_TILE";

impl SgemmTile {
    /// Parses `64`, `128` or `auto` (the values of [`SGEMM_TILE_ENV`]).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "auto" | "" => Some(SgemmTile::Auto),
            "64" => Some(SgemmTile::T64),
            "128" => Some(SgemmTile::T128),
            _ => None,
        }
    }

    /// The tile [`SGEMM_TILE_ENV`] asks for, read once per process: unset means `Auto`; a
    /// value other than `64`, `128` or `auto` is an error at every SGEMM call (not silently
    /// ignored, so a mistyped forcing cannot pass for a tested one).
    pub fn from_env() -> Result<Self, CudaError> {
        static CHOICE: std::sync::OnceLock<Result<SgemmTile, String>> = std::sync::OnceLock::new();
        CHOICE
            .get_or_init(|| match std::env::var(SGEMM_TILE_ENV) {
                Err(_) => Ok(SgemmTile::Auto),
                Ok(v) => SgemmTile::parse(&v).ok_or(v),
            })
            .clone()
            .map_err(|v| {
                invalid(
                    "sgemm",
                    format!("{SGEMM_TILE_ENV}={v:?}: expected 64, 128 or auto"),
                )
            })
    }

    /// The block tile edge (64 or 128) used for an m×n output on a device with `sm_count`
    /// SMs: a forced tile as asked; `Auto` gives 128 when the 128×128 tiles number at least
    /// `sm_count` (every SM gets one), else 64 (more, smaller blocks keep the SMs busy).
    pub fn resolve(self, m: usize, n: usize, sm_count: usize) -> usize {
        match self {
            SgemmTile::T64 => 64,
            SgemmTile::T128 => 128,
            SgemmTile::Auto => {
                if m.div_ceil(128).saturating_mul(n.div_ceil(128)) >= sm_count {
                    128
                } else {
                    64
                }
            }
        }
    }
}

/// C\[m×n\] = act(alpha·A·B + beta·C + bias) in fp32 with the chosen ladder version, the
/// register-blocked tile chosen by shape unless [`SGEMM_TILE_ENV`] forces one.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_version(
    version: SgemmVersion,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), CudaError> {
    let tile = SgemmTile::from_env()?;
    sgemm_with_tile(version, tile, m, n, k, alpha, a, b, beta, c, epi)
}

/// [`sgemm_version`] with the block tile of the register-blocked versions given explicitly
/// (what the tests use to run the 128×128 kernels on shapes too small to select them).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with_tile(
    version: SgemmVersion,
    tile: SgemmTile,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), CudaError> {
    const OP: &str = "sgemm";
    let mut p = pack(OP, m, n, k, alpha, &a, &b, beta, &c, &epi)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dev = c.data.dev;
    // Layout codes for the loaders (1: A along k / B along n; 2: A along m / B along k).
    let layout_a = if a.cs == 1 && a.rs & 3 == 0 {
        1
    } else if a.rs == 1 && a.cs & 3 == 0 {
        2
    } else {
        0
    };
    let layout_b = if b.cs == 1 && b.rs & 3 == 0 {
        1
    } else if b.rs == 1 && b.cs & 3 == 0 {
        2
    } else {
        0
    };
    let (name, cfg) = match version {
        SgemmVersion::Naive => (
            "sgemm_naive",
            LaunchConfig {
                grid_dim: grid2(OP, m, n, 16, 16)?,
                block_dim: (16, 16, 1),
                shared_mem_bytes: 0,
            },
        ),
        SgemmVersion::Tiled => (
            "sgemm_tiled",
            LaunchConfig {
                grid_dim: grid2(OP, m, n, 32, 32)?,
                block_dim: (32, 32, 1),
                shared_mem_bytes: 0,
            },
        ),
        SgemmVersion::RegBlocked | SgemmVersion::Vectorized | SgemmVersion::Auto => {
            let tile = tile.resolve(m, n, dev.sm_count());
            let big = tile == 128;
            let vec = version != SgemmVersion::RegBlocked;
            if vec {
                // 16-byte loads also need 16-byte aligned bases.
                p.vec_a = if a.data.ptr & 15 == 0 { layout_a } else { 0 };
                p.vec_b = if b.data.ptr & 15 == 0 { layout_b } else { 0 };
            } else {
                p.vec_a = layout_a;
                p.vec_b = layout_b;
            }
            let name = match (vec, big) {
                (true, true) => "sgemm_vec_128",
                (true, false) => "sgemm_vec_64",
                (false, true) => "sgemm_regblock_128",
                (false, false) => "sgemm_regblock_64",
            };
            (
                name,
                LaunchConfig {
                    grid_dim: grid2(OP, m, n, tile, tile)?,
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
            )
        }
    };
    let f = dev.function("sgemm", name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p);
    // SAFETY: pack() checked that A, B and C address only elements inside their slices, that C's
    // elements are distinct, and that the bias has n elements; the kernels bound every access by
    // m, n and k, and the vectorised paths are used only when the host-checked layout and
    // alignment flags hold and the tile lies fully inside the matrix.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(name, e))?;
    Ok(())
}

/// Dynamic shared memory of the tensor-core kernel: 3 stages, each an A slot and a B slot of
/// 128×40 halves (the largest of the padded `[128][32+8]` and `[32][128+8]` tiles), 16-bit elements
/// (must match HGEMM_SMEM_BYTES in kernels/hgemm.cu).
pub const HGEMM_SMEM_BYTES: u32 = 3 * (128 * 40 + 128 * 40) * 2;

/// The tensor-core GEMM kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HgemmVersion {
    /// `ldmatrix` + `mma.sync` with a 3-stage `cp.async` pipeline (sm_80 and newer).
    Mma,
    /// Hopper `wgmma.mma_async` from shared-memory descriptors (sm_90a only). Experimental:
    /// compiled and SASS-checked without a GPU, not yet run on one.
    Wgmma,
}

impl HgemmVersion {
    /// Both versions.
    pub const ALL: [HgemmVersion; 2] = [HgemmVersion::Mma, HgemmVersion::Wgmma];

    /// The name used in benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            HgemmVersion::Mma => "mma",
            HgemmVersion::Wgmma => "wgmma",
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn hgemm_launch<H: HalfElem, TC>(
    op: &'static str,
    version: HgemmVersion,
    out_f32: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, H>,
    b: MatRef<'_, H>,
    beta: f32,
    c: MatMut<'_, TC>,
    epi: Epilogue<'_, TC>,
) -> Result<(), CudaError> {
    let mut p = pack(op, m, n, k, alpha, &a, &b, beta, &c, &epi)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dev = c.data.dev;
    // Layout classes: A contiguous along m ("at") or B along k ("bt") select the kernel that
    // stages them as they lie and transposes in ldmatrix; 16-byte loads also need the other
    // stride to be a multiple of 8 elements and a 16-byte aligned base.
    let aligned = |ptr: u64| ptr & 15 == 0;
    let a_t = version == HgemmVersion::Mma && a.rs == 1 && a.cs != 1 && m > 1;
    let b_t = version == HgemmVersion::Mma && !a_t && b.rs == 1 && b.cs != 1 && k > 1;
    p.vec_a = if a_t {
        a.rs == 1 && a.cs & 7 == 0 && aligned(a.data.ptr)
    } else {
        a.cs == 1 && a.rs & 7 == 0 && aligned(a.data.ptr)
    } as i32;
    p.vec_b = if b_t {
        b.rs == 1 && b.cs & 7 == 0 && aligned(b.data.ptr)
    } else {
        b.cs == 1 && b.rs & 7 == 0 && aligned(b.data.ptr)
    } as i32;
    p.last = out_f32 as i32;
    let bf16 = H::DTYPE == crate::device::DType::BF16;
    let (module, name, smem) = match (version, bf16, a_t, b_t) {
        (HgemmVersion::Mma, true, false, false) => ("hgemm", "hgemm_mma_bf16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Mma, true, true, _) => ("hgemm", "hgemm_mma_at_bf16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Mma, true, false, true) => ("hgemm", "hgemm_mma_bt_bf16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Mma, false, false, false) => ("hgemm", "hgemm_mma_f16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Mma, false, true, _) => ("hgemm", "hgemm_mma_at_f16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Mma, false, false, true) => ("hgemm", "hgemm_mma_bt_f16", HGEMM_SMEM_BYTES),
        (HgemmVersion::Wgmma, true, _, _) => ("wgmma", "hgemm_wgmma_bf16", 0),
        (HgemmVersion::Wgmma, false, _, _) => ("wgmma", "hgemm_wgmma_f16", 0),
    };
    if version == HgemmVersion::Wgmma && dev.arch() != "sm_90a" {
        return Err(invalid(
            op,
            format!(
                "the wgmma kernel needs compute capability 9.0 (sm_90a); {} is {}",
                dev.name(),
                dev.arch()
            ),
        ));
    }
    let f = dev.function(module, name)?;
    if smem > 0 {
        // The attribute call needs this device's context current on the calling thread.
        dev.context()
            .bind_to_thread()
            .map_err(|e| driver_err("binding the context", e))?;
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| driver_err(format!("{name}: raising the shared-memory limit"), e))?;
    }
    let cfg = LaunchConfig {
        grid_dim: grid2(op, m, n, 128, 128)?,
        block_dim: (256, 1, 1),
        shared_mem_bytes: smem,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p);
    // SAFETY: pack() bounded every operand by its slice and checked C's elements are distinct
    // and the bias length; the kernel bounds each access by m, n, k, uses cp.async only when
    // the host-checked contiguity/alignment flags hold and the tile is inside the matrix, and
    // gets the dynamic shared memory it was compiled for (the wgmma kernel uses static memory
    // and plain bounds-checked loads, 16-byte ones only under the same flags).
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(name, e))?;
    Ok(())
}

/// Tensor-core GEMM: 16-bit A and B (f16 or bf16), f32 accumulation, f32 C and bias.
#[allow(clippy::too_many_arguments)]
pub fn hgemm<H: HalfElem>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, H>,
    b: MatRef<'_, H>,
    beta: f32,
    c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) -> Result<(), CudaError> {
    hgemm_launch(
        "hgemm",
        HgemmVersion::Mma,
        true,
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
        c,
        epi,
    )
}

/// Tensor-core GEMM with C and bias in the inputs' 16-bit type (accumulation still f32; the
/// epilogue runs in f32 and rounds once on the store).
#[allow(clippy::too_many_arguments)]
pub fn hgemm_out16<H: HalfElem>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, H>,
    b: MatRef<'_, H>,
    beta: f32,
    c: MatMut<'_, H>,
    epi: Epilogue<'_, H>,
) -> Result<(), CudaError> {
    hgemm_launch(
        "hgemm_out16",
        HgemmVersion::Mma,
        false,
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
        c,
        epi,
    )
}

/// Tensor-core GEMM with an explicit kernel version; `C` is f32 (`TC = f32`) or the inputs'
/// 16-bit type (`TC = H`), and so is the bias.
#[allow(clippy::too_many_arguments)]
pub fn hgemm_version<H: HalfElem, TC: crate::device::DeviceElem>(
    version: HgemmVersion,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_, H>,
    b: MatRef<'_, H>,
    beta: f32,
    c: MatMut<'_, TC>,
    epi: Epilogue<'_, TC>,
) -> Result<(), CudaError> {
    const OP: &str = "hgemm_version";
    let out_f32 = if TC::DTYPE == crate::device::DType::F32 {
        true
    } else if TC::DTYPE == H::DTYPE {
        false
    } else {
        return Err(invalid(
            OP,
            format!(
                "C must be f32 or {:?} like the inputs, not {:?}",
                H::DTYPE,
                TC::DTYPE
            ),
        ));
    };
    hgemm_launch(OP, version, out_f32, m, n, k, alpha, a, b, beta, c, epi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinctness_of_output_strides() {
        assert!(distinct_elements(3, 4, 4, 1));
        assert!(distinct_elements(3, 4, 1, 3));
        assert!(distinct_elements(1, 4, 0, 1));
        assert!(!distinct_elements(3, 4, 0, 1));
        assert!(!distinct_elements(3, 4, 1, 1));
        assert!(distinct_elements(3, 4, 8, 2));
    }

    #[test]
    fn params_layout_matches_the_kernels() {
        // 9 i64 + 4 pointers + 2 f32 + 4 i32 = 128 bytes, no padding.
        assert_eq!(std::mem::size_of::<GemmParams>(), 128);
    }

    #[test]
    fn tile_choice() {
        // 132 SMs (H100 SXM / H200): 128x128 tiles once there are at least 132 of them.
        assert_eq!(SgemmTile::Auto.resolve(1024, 1024, 132), 64); // 64 tiles
        assert_eq!(SgemmTile::Auto.resolve(1536, 1408, 132), 128); // 12 x 11 = 132
        assert_eq!(SgemmTile::Auto.resolve(1536, 1407, 132), 128); // ragged: still 12 x 11
        assert_eq!(SgemmTile::Auto.resolve(1536, 1280, 132), 64); // 12 x 10 = 120
        assert_eq!(SgemmTile::Auto.resolve(2048, 2048, 132), 128);
        assert_eq!(SgemmTile::Auto.resolve(129, 130, 4), 128); // 2 x 2 on a 4-SM device
        assert_eq!(SgemmTile::Auto.resolve(usize::MAX, usize::MAX, 132), 128); // no overflow
        // Forced tiles ignore the shape.
        assert_eq!(SgemmTile::T128.resolve(1, 1, 132), 128);
        assert_eq!(SgemmTile::T64.resolve(8192, 8192, 132), 64);
    }

    #[test]
    fn tile_names_parse() {
        assert_eq!(SgemmTile::parse("128"), Some(SgemmTile::T128));
        assert_eq!(SgemmTile::parse(" 64\n"), Some(SgemmTile::T64));
        assert_eq!(SgemmTile::parse("auto"), Some(SgemmTile::Auto));
        assert_eq!(SgemmTile::parse(""), Some(SgemmTile::Auto));
        assert_eq!(SgemmTile::parse("256"), None);
        assert_eq!(SgemmTile::parse("big"), None);
    }

    #[test]
    fn version_names_round_trip() {
        for v in SgemmVersion::ALL {
            assert_eq!(SgemmVersion::from_name(v.name()), Some(v));
        }
        assert_eq!(SgemmVersion::from_name("fast"), None);
    }

    #[test]
    fn smem_constant_matches_the_source() {
        let src = include_str!("../kernels/hgemm.cu");
        assert!(src.contains("#define HSTAGES 3") && src.contains("#define HBM 128"));
        assert!(src.contains("#define HBK 32") && src.contains("#define HBN 128"));
        assert!(src.contains("#define A_STAGE (HBM * A_LD)"));
        assert!(src.contains("#define B_STAGE (HBN * BT_LD)"));
        // A_LD = BT_LD = 32 + 8; AT_LD = B_LD = 128 + 8; 40 * 128 >= 136 * 32.
        assert_eq!(HGEMM_SMEM_BYTES, 61440);
    }
}
