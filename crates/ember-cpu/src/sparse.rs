//! Sparse × dense products for pruned layers: `y = x·Wᵀ + b` with the weight `W` `[out, in]`
//! stored in CSR (compressed sparse rows).
//!
//! Why this layout and loop order. A pruned Dense layer keeps ~10 % of its weights at random
//! positions, so a row-by-row dot product `Σₖ W[o,k]·x[i,k]` would gather scattered `x`
//! values one at a time. Instead the batch is cut into tiles of [`TILE`] examples and each tile
//! is transposed once to `xt[k][j]` (feature-major); then every nonzero `W[o,k]` adds
//! `W[o,k]·xt[k][0..TILE]` to the output row's accumulator, a contiguous multiply-add over the
//! tile that the compiler vectorises (4 × 16 lanes with AVX-512, 8 × 8 with AVX2). The work is
//! proportional to the nonzeros, and a tile's transposed input (`in × TILE` floats, 200 KB for a
//! 784-wide layer) stays in L2 while all output rows stream their nonzeros past it.
//!
//! Output rows are split across rayon workers in fixed blocks, and each output value is one
//! fixed sequence of multiply-adds in CSR order (bias first), so results are bit-identical for
//! any thread count (they differ between ISA paths: the AVX2 and AVX-512 paths fuse the
//! multiply-add, the portable one rounds twice). The SIMD paths keep a row's 64 sums in
//! registers (eight 256-bit or four 512-bit) while the row's nonzeros stream past.

use crate::error::{LengthMismatch, check_len};
use crate::isa::{self, Isa};
use rayon::prelude::*;

/// Examples per tile (a multiple of every vector width).
pub const TILE: usize = 64;
/// Output rows per parallel task.
const ROW_BLOCK: usize = 16;

/// A matrix in compressed sparse row form, f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    /// Number of rows (a Dense layer's outputs).
    pub rows: usize,
    /// Number of columns (its inputs).
    pub cols: usize,
    /// `indptr[r]..indptr[r + 1]` are row `r`'s entries; `rows + 1` values.
    pub indptr: Vec<usize>,
    /// Column of each entry, increasing within a row.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl Csr {
    /// The nonzeros of a row-major `rows × cols` matrix (exact zeros are dropped).
    pub fn from_dense(dense: &[f32], rows: usize, cols: usize) -> Result<Csr, LengthMismatch> {
        check_len(
            "Csr::from_dense",
            "matrix",
            rows.saturating_mul(cols),
            dense.len(),
        )?;
        if cols > u32::MAX as usize {
            return Err(LengthMismatch {
                op: "Csr::from_dense",
                operand: "column count (at most 2³² − 1)",
                expected: u32::MAX as usize,
                got: cols,
            });
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        indptr.push(0);
        for row in dense.chunks(cols.max(1)).take(rows) {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(c as u32);
                    values.push(v);
                }
            }
            indptr.push(values.len());
        }
        // A zero-column matrix has no chunks: every row is empty.
        indptr.resize(rows + 1, values.len());
        Ok(Csr {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Fraction of entries that are stored (1 − sparsity).
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows * self.cols).max(1) as f64
    }

    /// Back to a dense row-major matrix.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for r in 0..self.rows {
            for p in self.indptr[r]..self.indptr[r + 1] {
                out[r * self.cols + self.indices[p] as usize] = self.values[p];
            }
        }
        out
    }

    /// Checks the structure (for a matrix read from a file): `indptr` non-decreasing from 0
    /// to `nnz`, every column inside `0..cols`.
    pub fn validate(&self) -> Result<(), String> {
        if self.indptr.len() != self.rows + 1 || self.indptr.first() != Some(&0) {
            return Err(format!(
                "CSR: indptr must hold rows + 1 = {} values starting at 0, got {}",
                self.rows + 1,
                self.indptr.len()
            ));
        }
        if self.indices.len() != self.values.len() || self.indptr.last() != Some(&self.values.len())
        {
            return Err(format!(
                "CSR: {} indices and {} values, indptr ends at {:?}",
                self.indices.len(),
                self.values.len(),
                self.indptr.last()
            ));
        }
        if self.indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err("CSR: indptr decreases".into());
        }
        if let Some(&c) = self.indices.iter().find(|&&c| c as usize >= self.cols) {
            return Err(format!("CSR: column {c} outside 0..{}", self.cols));
        }
        Ok(())
    }
}

/// `out[i, o] = bias[o] + Σₖ W[o,k]·x[i,k]` for `n` examples: `x` is `n × w.cols` row-major,
/// `out` is `n × w.rows`. `w` must be valid ([`Csr::validate`]; [`Csr::from_dense`] makes
/// valid ones).
pub fn csr_linear(
    x: &[f32],
    n: usize,
    w: &Csr,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), LengthMismatch> {
    check_len("csr_linear", "input", n * w.cols, x.len())?;
    check_len("csr_linear", "output", n * w.rows, out.len())?;
    if let Some(b) = bias {
        check_len("csr_linear", "bias", w.rows, b.len())?;
    }
    check_len("csr_linear", "indptr", w.rows + 1, w.indptr.len())?;
    check_len("csr_linear", "indices", w.values.len(), w.indices.len())?;
    if w.indptr.last() != Some(&w.values.len())
        || w.indptr.windows(2).any(|p| p[0] > p[1])
        || w.indices.iter().any(|&c| c as usize >= w.cols)
    {
        return Err(LengthMismatch {
            op: "csr_linear",
            operand: "CSR structure (indptr/indices; see Csr::validate)",
            expected: w.values.len(),
            got: w.indptr.last().copied().unwrap_or(0),
        });
    }
    let isa = isa::active();
    let mut xt = vec![0.0f32; w.cols * TILE];
    let mut yt = vec![0.0f32; w.rows * TILE];
    for start in (0..n).step_by(TILE) {
        let nb = TILE.min(n - start);
        // Transpose the tile: xt[k][j] = x[start + j][k]; unused lanes are zero. Blocks of 8
        // features × all examples keep the writes within a few cache lines at a time.
        if nb < TILE {
            xt.iter_mut().for_each(|v| *v = 0.0);
        }
        let rows = &x[start * w.cols..(start + nb) * w.cols];
        for k0 in (0..w.cols).step_by(8) {
            let k1 = (k0 + 8).min(w.cols);
            for (j, row) in rows.chunks_exact(w.cols).enumerate() {
                for k in k0..k1 {
                    xt[k * TILE + j] = row[k];
                }
            }
        }
        let xt = &xt;
        yt.par_chunks_mut(ROW_BLOCK * TILE)
            .enumerate()
            .for_each(|(blk, acc)| {
                let r0 = blk * ROW_BLOCK;
                rows_kernel(isa, w, bias, xt, r0, acc);
            });
        for j in 0..nb {
            let dst = &mut out[(start + j) * w.rows..(start + j + 1) * w.rows];
            for (o, d) in dst.iter_mut().enumerate() {
                *d = yt[o * TILE + j];
            }
        }
    }
    Ok(())
}

/// Rows `r0..` of the transposed output tile (`acc` holds whole rows of `TILE` values).
fn rows_kernel(isa: Isa, w: &Csr, bias: Option<&[f32]>, xt: &[f32], r0: usize, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && isa.is_supported() {
            // SAFETY: AVX-512F is present (checked just above).
            unsafe { rows_avx512(w, bias, xt, r0, acc) };
            return;
        }
        if isa.has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked by `has_avx2`).
            unsafe { rows_avx2(w, bias, xt, r0, acc) };
            return;
        }
    }
    let _ = isa;
    rows_portable(w, bias, xt, r0, acc)
}

/// The entries of CSR row `r` as (column, value) pairs.
#[inline(always)]
fn row_entries(w: &Csr, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
    let span = w.indptr[r]..w.indptr[r + 1];
    w.indices[span.clone()]
        .iter()
        .zip(&w.values[span])
        .map(|(&k, &v)| (k as usize, v))
}

/// Plain Rust: any CPU.
fn rows_portable(w: &Csr, bias: Option<&[f32]>, xt: &[f32], r0: usize, acc: &mut [f32]) {
    for (i, a) in acc.chunks_exact_mut(TILE).enumerate() {
        let r = r0 + i;
        let b = bias.map_or(0.0, |b| b[r]);
        let mut sum = [b; TILE];
        for (k, v) in row_entries(w, r) {
            let x = &xt[k * TILE..(k + 1) * TILE];
            for (s, &x) in sum.iter_mut().zip(x) {
                *s += v * x;
            }
        }
        a.copy_from_slice(&sum);
    }
}

/// AVX2: the row's 64 sums live in eight 256-bit registers while its nonzeros stream past.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(w: &Csr, bias: Option<&[f32]>, xt: &[f32], r0: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    const V: usize = 8;
    for (i, a) in acc.chunks_exact_mut(TILE).enumerate() {
        let r = r0 + i;
        let mut sum = [_mm256_set1_ps(bias.map_or(0.0, |b| b[r])); TILE / V];
        for (k, v) in row_entries(w, r) {
            let x = &xt[k * TILE..(k + 1) * TILE];
            let vv = _mm256_set1_ps(v);
            for (j, s) in sum.iter_mut().enumerate() {
                // SAFETY: x holds TILE = 8·V floats, so x[j·V..j·V + V] is in bounds.
                let xv = unsafe { _mm256_loadu_ps(x.as_ptr().add(j * V)) };
                *s = _mm256_fmadd_ps(vv, xv, *s);
            }
        }
        for (j, s) in sum.iter().enumerate() {
            // SAFETY: a holds TILE floats (chunks_exact_mut), j·V + V ≤ TILE.
            unsafe { _mm256_storeu_ps(a.as_mut_ptr().add(j * V), *s) };
        }
    }
}

/// AVX-512: the same with four 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn rows_avx512(w: &Csr, bias: Option<&[f32]>, xt: &[f32], r0: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    const V: usize = 16;
    for (i, a) in acc.chunks_exact_mut(TILE).enumerate() {
        let r = r0 + i;
        let mut sum = [_mm512_set1_ps(bias.map_or(0.0, |b| b[r])); TILE / V];
        for (k, v) in row_entries(w, r) {
            let x = &xt[k * TILE..(k + 1) * TILE];
            let vv = _mm512_set1_ps(v);
            for (j, s) in sum.iter_mut().enumerate() {
                // SAFETY: x holds TILE = 4·V floats, so x[j·V..j·V + V] is in bounds.
                let xv = unsafe { _mm512_loadu_ps(x.as_ptr().add(j * V)) };
                *s = _mm512_fmadd_ps(vv, xv, *s);
            }
        }
        for (j, s) in sum.iter().enumerate() {
            // SAFETY: a holds TILE floats (chunks_exact_mut), j·V + V ≤ TILE.
            unsafe { _mm512_storeu_ps(a.as_mut_ptr().add(j * V), *s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_ref(x: &[f32], n: usize, w: &[f32], rows: usize, cols: usize, b: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; n * rows];
        for i in 0..n {
            for o in 0..rows {
                let mut s = b[o] as f64;
                for k in 0..cols {
                    s += w[o * cols + k] as f64 * x[i * cols + k] as f64;
                }
                y[i * rows + o] = s;
            }
        }
        y
    }

    #[test]
    fn matches_the_dense_product_on_every_path() {
        let (rows, cols) = (37, 53);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| {
                if (i * 7919) % 10 < 8 {
                    0.0
                } else {
                    ((i as f32) * 0.37).sin()
                }
            })
            .collect();
        let b: Vec<f32> = (0..rows).map(|o| o as f32 * 0.01).collect();
        let csr = Csr::from_dense(&w, rows, cols).unwrap();
        assert!(csr.validate().is_ok());
        assert_eq!(csr.to_dense(), w);
        for n in [1, 63, 64, 65, 130] {
            let x: Vec<f32> = (0..n * cols).map(|i| ((i as f32) * 0.11).cos()).collect();
            let want = dense_ref(&x, n, &w, rows, cols, &b);
            for isa in isa::supported() {
                let mut out = vec![0.0; n * rows];
                isa::with(isa, || csr_linear(&x, n, &csr, Some(&b), &mut out))
                    .unwrap()
                    .unwrap();
                for (g, r) in out.iter().zip(&want) {
                    assert!((*g as f64 - r).abs() < 1e-4, "{isa:?} n {n}: {g} vs {r}");
                }
            }
        }
    }

    #[test]
    fn bit_identical_for_any_thread_count() {
        let (rows, cols, n) = (70, 40, 100);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| if i % 3 == 0 { (i as f32).sin() } else { 0.0 })
            .collect();
        let csr = Csr::from_dense(&w, rows, cols).unwrap();
        let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.3).sin()).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0; n * rows];
            pool.install(|| csr_linear(&x, n, &csr, None, &mut out))
                .unwrap();
            out
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn bad_operands_are_errors() {
        let csr = Csr::from_dense(&[1.0, 0.0, 0.0, 2.0], 2, 2).unwrap();
        let mut out = vec![0.0; 2];
        assert!(csr_linear(&[1.0], 1, &csr, None, &mut out).is_err());
        assert!(csr_linear(&[1.0, 2.0], 1, &csr, Some(&[0.0]), &mut out).is_err());
        let mut bad = csr.clone();
        bad.indices[0] = 9;
        assert!(bad.validate().is_err());
        assert!(csr_linear(&[1.0, 2.0], 1, &bad, None, &mut out).is_err());
        assert!(Csr::from_dense(&[1.0], 2, 2).is_err());
    }
}
