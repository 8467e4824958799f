//! 2-D convolution (NCHW input, OIHW weight) forward, backward-data and backward-weight, as
//! GEMMs on ember's packed GEMM.
//!
//! A convolution of one image and one channel group is a matrix product. Number the output
//! pixels p = oh·OW + ow (P of them) and the taps of the window k = (c, i, j) over the group's
//! input channels and the kh×kw window (K = C/groups · kh · kw of them). The *patch matrix*
//! `col[k, p]` holds the input element tap k of output pixel p reads (zero in the padding).
//! Then, for the group's weight `W[o, k]` (OIHW flattened: each filter is a row of K values):
//!
//! - forward:          `y[o, p]  = Σ_k W[o, k] · col[k, p]`     (M = O/groups, N = P, K)
//! - backward-data:    `dcol[k, p] = Σ_o W[o, k] · dy[o, p]`    (Wᵀ read through its strides),
//!   then every `dcol[k, p]` is added back to the input element it came from (col2im);
//! - backward-weight:  `dW[o, k] += Σ_p dy[o, p] · col[k, p]`   (colᵀ read through its strides);
//! - bias gradient:    `db[o] = Σ_n Σ_p dy[n, o, p]`.
//!
//! How it is built, and why:
//! - **Patches per column tile.** The patch matrix of a whole image is K·P values (576 × 3136
//!   = 7 MiB for a ResNet 64→64 layer at 56×56), far beyond L2. The output pixels are therefore
//!   cut into tiles of [`tile_cols`] columns, sized so a tile's K×PT patches fill about
//!   [`COL_TILE_BYTES`] (a third of the 1 MiB L2 of the cores ember is tuned on), rounded to a
//!   multiple of 32 (the widest GEMM register tile); small images take one tile. Measured at
//!   the ResNet shape (1 thread, AVX-512, CPU time): 128 KiB tiles ran at 43 GFLOP/s
//!   forward + backward, 384 KiB and 768 KiB at 64, 1.5 MiB at 60, whole images at 51. Each tile is
//!   packed from the image (`im2col.rs`, whole contiguous runs per output row, zero runs for the
//!   padding) and multiplied at once, so the patches are read back from L2 by the GEMM's own
//!   packing. No full im2col buffer exists for any input; scratch is one tile per worker.
//!   Packing the tile straight into the GEMM's private panel layout would save that one L2
//!   pass, but needs the GEMM's internal packing API, which is not public (and is being
//!   retuned); the tile keeps this module on `gemm`'s public entry point only.
//! - **Parallelism.** The forward and backward-data split the batch: each image (all its
//!   groups and tiles) is one rayon task writing its own slice of the output. A GEMM called
//!   inside a task may split further across idle threads (the GEMM decides, and never splits
//!   K). The backward-weight sums over the batch: the batch is cut into at most
//!   [`WEIGHT_PARTIALS`] fixed runs of consecutive images, each run accumulates its own partial
//!   dW (images in order, tiles in order), and the partials are added in run order. The runs
//!   depend only on N, so **every result is bit-identical for any number of threads**.
//! - **Groups** are independent products over their own channel slices; a depthwise
//!   convolution (groups = C) is O/groups = 1 row per product, which the GEMM serves with its
//!   matrix-vector path.
//!
//! Every public function checks the spec ([`Conv2dSpec::validate`]) and the slice lengths
//! first and returns a [`ConvError`] naming the operand; nothing is written on error. All
//! operands are dense NCHW / OIHW slices (ember-core makes strided views dense first).

mod im2col;
#[cfg(test)]
mod tests;

use crate::element::Float;
use crate::gemm::{Epilogue, GemmError, MatMut, MatRef, gemm};
use ember_ops::Conv2dSpec;
use rayon::prelude::*;

/// Target bytes of one tile of patches (K × PT values): a third of a 1 MiB L2, leaving room for
/// the GEMM's packed panels of A and B beside it.
pub const COL_TILE_BYTES: usize = 384 * 1024;

/// At most this many partial weight gradients are accumulated in parallel (one per run of
/// consecutive images); their number depends on N only, never on the thread count.
pub const WEIGHT_PARTIALS: usize = 16;

/// Why a convolution kernel refused its operands. Nothing has been written when it is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvError {
    /// The spec itself is invalid (zero stride, channels not divisible by groups, window larger
    /// than the padded input, ...).
    Spec {
        /// The kernel ("conv2d", "conv2d_backward_data", ...).
        op: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An operand's slice does not hold exactly the values its shape needs.
    Length {
        /// The kernel.
        op: &'static str,
        /// "input", "weight", "bias", "output", "output gradient", ...
        operand: &'static str,
        /// The shape the spec gives it.
        shape: Vec<usize>,
        /// Values given.
        len: usize,
    },
    /// The sizes overflow `usize`.
    Overflow {
        /// The kernel.
        op: &'static str,
    },
    /// The GEMM refused an operand (a bug in this module: the shapes are checked above).
    Gemm(GemmError),
}

impl std::fmt::Display for ConvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvError::Spec { op, problem } => write!(f, "{op}: {problem}"),
            ConvError::Length {
                op,
                operand,
                shape,
                len,
            } => write!(
                f,
                "{op}: the {operand} of shape {shape:?} needs {} values, its slice holds {len}",
                shape.iter().product::<usize>()
            ),
            ConvError::Overflow { op } => write!(f, "{op}: the sizes overflow usize"),
            ConvError::Gemm(e) => write!(f, "conv2d: {e}"),
        }
    }
}

impl std::error::Error for ConvError {}

impl From<GemmError> for ConvError {
    fn from(e: GemmError) -> ConvError {
        ConvError::Gemm(e)
    }
}

/// The derived sizes every kernel here uses, computed once from a validated spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    pub spec: Conv2dSpec,
    /// Input channels per group.
    pub cg: usize,
    /// Output channels per group.
    pub og: usize,
    /// Taps per filter: cg · kh · kw.
    pub k: usize,
    /// Output pixels per image: OH · OW.
    pub p: usize,
    /// Output width.
    pub ow: usize,
    /// Input values per image: C · H · W.
    pub in_image: usize,
    /// Output values per image: O · P.
    pub out_image: usize,
}

impl Geom {
    /// Validates `spec` and derives the sizes; `op` names the kernel in errors.
    fn new(op: &'static str, spec: &Conv2dSpec) -> Result<Geom, ConvError> {
        spec.validate()
            .map_err(|problem| ConvError::Spec { op, problem })?;
        let of = || ConvError::Overflow { op };
        let cg = spec.in_channels / spec.groups;
        let og = spec.out_channels / spec.groups;
        let (oh, ow) = (spec.out_h(), spec.out_w());
        let k = cg
            .checked_mul(spec.h.kernel)
            .and_then(|v| v.checked_mul(spec.w.kernel))
            .ok_or_else(of)?;
        let p = oh.checked_mul(ow).ok_or_else(of)?;
        let in_image = spec
            .in_channels
            .checked_mul(spec.h.input)
            .and_then(|v| v.checked_mul(spec.w.input))
            .ok_or_else(of)?;
        let out_image = spec.out_channels.checked_mul(p).ok_or_else(of)?;
        // Every whole-tensor size must fit too.
        for v in [
            in_image.checked_mul(spec.batch),
            out_image.checked_mul(spec.batch),
            spec.out_channels.checked_mul(k),
            k.checked_mul(p),
        ] {
            v.ok_or_else(of)?;
        }
        Ok(Geom {
            spec: *spec,
            cg,
            og,
            k,
            p,
            ow,
            in_image,
            out_image,
        })
    }

    /// Weight values: O · K.
    fn weight_len(&self) -> usize {
        self.spec.out_channels * self.k
    }

    /// Checks that `len` is the element count of `shape`.
    fn check(
        &self,
        op: &'static str,
        operand: &'static str,
        shape: &[usize],
        len: usize,
    ) -> Result<(), ConvError> {
        if shape.iter().product::<usize>() == len {
            Ok(())
        } else {
            Err(ConvError::Length {
                op,
                operand,
                shape: shape.to_vec(),
                len,
            })
        }
    }

    /// Columns per patch tile for values of `bytes` bytes (see the module doc).
    fn tile(&self, bytes: usize) -> usize {
        tile_cols(self.k, self.p, bytes)
    }
}

/// Output pixels per patch tile for K taps, P pixels per image and `bytes`-byte values: all of
/// P when the whole patch matrix fits [`COL_TILE_BYTES`], else the largest multiple of 32 that
/// does (at least 32).
pub fn tile_cols(k: usize, p: usize, bytes: usize) -> usize {
    let per_col = k.max(1).saturating_mul(bytes.max(1));
    let fit = COL_TILE_BYTES / per_col;
    if fit >= p {
        p.max(1)
    } else {
        (fit / 32 * 32).max(32).min(p.max(1))
    }
}

/// `y = conv2d(x, w) + bias`: x `[N, C, H, W]`, w `[O, C/groups, kh, kw]`, bias `[O]`, y
/// `[N, O, OH, OW]` (overwritten). PyTorch's `torch.nn.functional.conv2d` (a cross-correlation:
/// the window is not flipped).
pub fn conv2d_forward<T: Float>(
    spec: &Conv2dSpec,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) -> Result<(), ConvError> {
    const OP: &str = "conv2d";
    let g = Geom::new(OP, spec)?;
    g.check(OP, "input", &spec.input_shape(), x.len())?;
    g.check(OP, "weight", &spec.weight_shape(), w.len())?;
    g.check(OP, "output", &spec.output_shape(), y.len())?;
    if let Some(b) = bias {
        g.check(OP, "bias", &[spec.out_channels], b.len())?;
    }
    if y.is_empty() {
        return Ok(());
    }
    let pt = g.tile(std::mem::size_of::<T>());
    let run = |col: &mut Vec<T>, (img, yn): (usize, &mut [T])| -> Result<(), ConvError> {
        let xn = &x[img * g.in_image..(img + 1) * g.in_image];
        for grp in 0..spec.groups {
            let wg = &w[grp * g.og * g.k..(grp + 1) * g.og * g.k];
            let yg = &mut yn[grp * g.og * g.p..(grp + 1) * g.og * g.p];
            for p0 in (0..g.p).step_by(pt) {
                let n = pt.min(g.p - p0);
                let col = &mut col[..g.k * n];
                im2col::gather(&g, xn, grp * g.cg, p0, n, col);
                gemm(
                    g.og,
                    n,
                    g.k,
                    T::ONE,
                    MatRef {
                        data: wg,
                        rs: g.k,
                        cs: 1,
                    },
                    MatRef {
                        data: col,
                        rs: n,
                        cs: 1,
                    },
                    T::ZERO,
                    MatMut {
                        data: &mut yg[p0..],
                        rs: g.p,
                        cs: 1,
                    },
                    Epilogue::default(),
                )?;
            }
        }
        if let Some(b) = bias {
            for (row, &bo) in yn.chunks_exact_mut(g.p).zip(b) {
                for v in row {
                    *v += bo;
                }
            }
        }
        Ok(())
    };
    per_image(y.chunks_mut(g.out_image), g.k * pt, run)
}

/// `dx` from `dy`: the adjoint of [`conv2d_forward`] in its input (also the forward of a
/// transposed convolution). dy `[N, O, OH, OW]`, w `[O, C/groups, kh, kw]`, dx `[N, C, H, W]`
/// (overwritten), plus `bias[c]` added to every value of channel c of dx when given (the
/// transposed convolution's bias, `[C]`).
pub fn conv2d_backward_data<T: Float>(
    spec: &Conv2dSpec,
    dy: &[T],
    w: &[T],
    bias: Option<&[T]>,
    dx: &mut [T],
) -> Result<(), ConvError> {
    const OP: &str = "conv2d_backward_data";
    let g = Geom::new(OP, spec)?;
    g.check(OP, "output gradient", &spec.output_shape(), dy.len())?;
    g.check(OP, "weight", &spec.weight_shape(), w.len())?;
    g.check(OP, "input gradient", &spec.input_shape(), dx.len())?;
    if let Some(b) = bias {
        g.check(OP, "bias", &[spec.in_channels], b.len())?;
    }
    if dx.is_empty() {
        return Ok(());
    }
    let pt = g.tile(std::mem::size_of::<T>());
    let hw = spec.h.input * spec.w.input;
    let run = |dcol: &mut Vec<T>, (img, dxn): (usize, &mut [T])| -> Result<(), ConvError> {
        let dyn_ = &dy[img * g.out_image..(img + 1) * g.out_image];
        dxn.fill(T::ZERO);
        for grp in 0..spec.groups {
            let wg = &w[grp * g.og * g.k..(grp + 1) * g.og * g.k];
            let dyg = &dyn_[grp * g.og * g.p..(grp + 1) * g.og * g.p];
            for p0 in (0..g.p).step_by(pt) {
                let n = pt.min(g.p - p0);
                let dcol = &mut dcol[..g.k * n];
                gemm(
                    g.k,
                    n,
                    g.og,
                    T::ONE,
                    MatRef {
                        data: wg,
                        rs: 1,
                        cs: g.k,
                    },
                    MatRef {
                        data: &dyg[p0..],
                        rs: g.p,
                        cs: 1,
                    },
                    T::ZERO,
                    MatMut {
                        data: dcol,
                        rs: n,
                        cs: 1,
                    },
                    Epilogue::default(),
                )?;
                im2col::scatter_add(&g, dcol, grp * g.cg, p0, n, dxn);
            }
        }
        if let Some(b) = bias {
            for (plane, &bc) in dxn.chunks_exact_mut(hw.max(1)).zip(b) {
                for v in plane {
                    *v += bc;
                }
            }
        }
        Ok(())
    };
    per_image(dx.chunks_mut(g.in_image), g.k * pt, run)
}

/// `dw` (and `db`) from x and dy: the adjoint of [`conv2d_forward`] in its weight. x
/// `[N, C, H, W]`, dy `[N, O, OH, OW]`, dw `[O, C/groups, kh, kw]` (overwritten), db `[O]`
/// (overwritten, `Σ` of dy over N, OH, OW) when given.
pub fn conv2d_backward_weight<T: Float>(
    spec: &Conv2dSpec,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
) -> Result<(), ConvError> {
    const OP: &str = "conv2d_backward_weight";
    let g = Geom::new(OP, spec)?;
    g.check(OP, "input", &spec.input_shape(), x.len())?;
    g.check(OP, "output gradient", &spec.output_shape(), dy.len())?;
    g.check(OP, "weight gradient", &spec.weight_shape(), dw.len())?;
    if let Some(db) = &db {
        g.check(OP, "bias gradient", &[spec.out_channels], db.len())?;
    }
    if let Some(db) = db {
        bias_grad_unchecked(spec.batch, spec.out_channels, g.p, dy, db);
    }
    let n = spec.batch;
    if n == 0 || g.p == 0 {
        dw.fill(T::ZERO);
        return Ok(());
    }
    let runs = n.min(WEIGHT_PARTIALS);
    let per_run = n.div_ceil(runs);
    let runs = n.div_ceil(per_run);
    let pt = g.tile(std::mem::size_of::<T>());
    // One partial per run of images: run r covers images r·per_run .. (r+1)·per_run.
    let partial = |r: usize, out: &mut [T]| -> Result<(), ConvError> {
        out.fill(T::ZERO);
        let mut col = vec![T::ZERO; g.k * pt];
        for img in r * per_run..((r + 1) * per_run).min(n) {
            let xn = &x[img * g.in_image..(img + 1) * g.in_image];
            let dyn_ = &dy[img * g.out_image..(img + 1) * g.out_image];
            for grp in 0..spec.groups {
                let dyg = &dyn_[grp * g.og * g.p..(grp + 1) * g.og * g.p];
                let dwg = &mut out[grp * g.og * g.k..(grp + 1) * g.og * g.k];
                for p0 in (0..g.p).step_by(pt) {
                    let cols = pt.min(g.p - p0);
                    let col = &mut col[..g.k * cols];
                    im2col::gather(&g, xn, grp * g.cg, p0, cols, col);
                    gemm(
                        g.og,
                        g.k,
                        cols,
                        T::ONE,
                        MatRef {
                            data: &dyg[p0..],
                            rs: g.p,
                            cs: 1,
                        },
                        MatRef {
                            data: col,
                            rs: 1,
                            cs: cols,
                        },
                        T::ONE,
                        MatMut {
                            data: dwg,
                            rs: g.k,
                            cs: 1,
                        },
                        Epilogue::default(),
                    )?;
                }
            }
        }
        Ok(())
    };
    if runs == 1 {
        return partial(0, dw);
    }
    let wl = g.weight_len();
    let mut parts = vec![T::ZERO; wl * runs];
    parts
        .par_chunks_mut(wl)
        .enumerate()
        .try_for_each(|(r, out)| partial(r, out))?;
    // Fixed-order combination: dw = ((p0 + p1) + p2) + ...
    dw.copy_from_slice(&parts[..wl]);
    for part in parts.chunks_exact(wl).skip(1) {
        for (d, &v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    Ok(())
}

/// `db[c] = Σ_n Σ_p dy[n, c, p]` for dy `[N, C, P]` (P = the spatial extent, flattened): the
/// bias gradient of a convolution (C = its output channels) or of a transposed convolution.
/// Summed per channel in a fixed order (8 interleaved partial sums along p, then n in order).
pub fn bias_grad<T: Float>(
    batch: usize,
    channels: usize,
    p: usize,
    dy: &[T],
    db: &mut [T],
) -> Result<(), ConvError> {
    const OP: &str = "conv_bias_grad";
    let need = batch
        .checked_mul(channels)
        .and_then(|v| v.checked_mul(p))
        .ok_or(ConvError::Overflow { op: OP })?;
    if dy.len() != need {
        return Err(ConvError::Length {
            op: OP,
            operand: "output gradient",
            shape: vec![batch, channels, p],
            len: dy.len(),
        });
    }
    if db.len() != channels {
        return Err(ConvError::Length {
            op: OP,
            operand: "bias gradient",
            shape: vec![channels],
            len: db.len(),
        });
    }
    bias_grad_unchecked(batch, channels, p, dy, db);
    Ok(())
}

/// [`bias_grad`] after its checks.
fn bias_grad_unchecked<T: Float>(batch: usize, channels: usize, p: usize, dy: &[T], db: &mut [T]) {
    let body = |(c, out): (usize, &mut T)| {
        let mut total = T::ZERO;
        for n in 0..batch {
            let row = &dy[(n * channels + c) * p..(n * channels + c + 1) * p];
            let mut acc = [T::ZERO; 8];
            let mut chunks = row.chunks_exact(8);
            for ch in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(ch) {
                    *a += v;
                }
            }
            let mut s =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for &v in chunks.remainder() {
                s += v;
            }
            total += s;
        }
        *out = total;
    };
    if batch * channels * p >= crate::par::PAR_MIN {
        db.par_iter_mut().enumerate().for_each(body);
    } else {
        db.iter_mut().enumerate().for_each(body);
    }
}

/// Runs `f` on each (image index, output image) pair, in parallel when there are several
/// images and threads; the first error wins. `f` gets a scratch buffer of `scratch` values
/// (reused across the images one worker runs: every use overwrites what it reads, so results
/// do not depend on which images shared it).
fn per_image<T: Float>(
    outputs: std::slice::ChunksMut<'_, T>,
    scratch: usize,
    f: impl Fn(&mut Vec<T>, (usize, &mut [T])) -> Result<(), ConvError> + Sync + Send,
) -> Result<(), ConvError> {
    let init = || vec![T::ZERO; scratch];
    if outputs.len() > 1 && rayon::current_num_threads() > 1 {
        let mut pairs: Vec<(usize, &mut [T])> = outputs.enumerate().collect();
        pairs
            .par_iter_mut()
            .try_for_each_init(init, |buf, (i, o)| f(buf, (*i, o)))
    } else {
        let mut buf = init();
        outputs.enumerate().try_for_each(|item| f(&mut buf, item))
    }
}
