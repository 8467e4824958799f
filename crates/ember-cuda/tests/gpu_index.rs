//! GPU tests of the index kernels (kernels/index.cu: index_select, index_add, gather,
//! scatter_add, where, casts, concat) against their ember-cpu twins, in f32 and f64.
//!
//! These kernels only move values or add them in a fixed order (the same order as the CPU
//! loops), so results must equal the CPU's exactly: the comparisons allow no tolerance. Inputs
//! are random, at sizes 1, 7, 67 and 1000 along the indexed axis, read both contiguously and
//! through non-contiguous views (column-major order, every other element, offset 1; broadcast
//! with stride 0 for `where`), and every output buffer is filled with NaN before the launch, so
//! an element the kernel forgets shows up. Out-of-range indices must be reported as errors
//! naming the op, the index and the dimension size.
//!
//! Without a GPU each test prints one `SKIPPED:` line (or fails under EMBER_REQUIRE_GPU=1).

mod common;

use common::*;
use ember_cpu::strided::Strided as CpuStrided;
use ember_cuda::index::{cast, concat, gather, index_add, index_select, scatter_add, where_cond};
use ember_cuda::{CudaDevice, FloatElem, Strided};
use rand::Rng;
use rand::rngs::StdRng;
use std::sync::Arc;

/// The float types the kernels exist for, with what the CPU twins need.
trait El: FloatElem + ember_cpu::Float + Into<f64> {}
impl El for f32 {}
impl El for f64 {}

/// Extents of the indexed axis.
const NS: [usize; 4] = [1, 7, 67, 1000];

/// A host buffer holding a tensor of `shape`, with the view that reads it.
struct HostView<T> {
    buf: Vec<T>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl<T: El> HostView<T> {
    /// Random values in [-2, 2); contiguous, or column-major with a gap after every element
    /// and one leading pad element (a non-contiguous view whatever the rank).
    fn random(r: &mut StdRng, shape: &[usize], contiguous: bool) -> Self {
        let n: usize = shape.iter().product();
        let (strides, offset, len) = if contiguous {
            (ember_cpu::strided::contiguous_strides(shape), 0, n)
        } else {
            let mut s = vec![0; shape.len()];
            let mut acc = 2;
            for (st, &d) in s.iter_mut().zip(shape) {
                *st = acc;
                acc *= d.max(1);
            }
            (s, 1, 1 + 2 * n)
        };
        let buf = uniform(r, len, -2.0, 2.0)
            .into_iter()
            .map(<T as FloatElem>::from_f64)
            .collect();
        HostView {
            buf,
            shape: shape.to_vec(),
            strides,
            offset,
        }
    }

    fn cpu(&self) -> CpuStrided<'_> {
        CpuStrided::new(&self.shape, &self.strides, self.offset)
    }

    fn gpu(&self) -> Strided<'_> {
        Strided::new(&self.shape, &self.strides, self.offset)
    }

    /// The view's elements, row-major (what ember-core hands the CPU kernels).
    fn dense(&self) -> Vec<T> {
        let mut out = vec![T::default(); self.shape.iter().product()];
        ember_cpu::copy::copy_strided(&self.buf, self.cpu(), &mut out).unwrap();
        out
    }
}

fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// A device buffer of `n` NaNs, so an element the kernel does not write is caught.
fn poisoned<T: El>(dev: &Arc<CudaDevice>, n: usize) -> ember_cuda::DeviceBuffer<T> {
    dev.upload(&vec![<T as FloatElem>::from_f64(f64::NAN); n])
        .unwrap()
}

/// Asserts exact equality (NaN equals NaN).
fn same<T: El>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w): (f64, f64) = (g.into(), w.into());
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: gpu {g} vs cpu {w}"
        );
    }
}

fn random_indices(r: &mut StdRng, n: usize, below: usize) -> Vec<usize> {
    (0..n).map(|_| r.random_range(0..below)).collect()
}

/// (shape, axis) cases for extent `n` of the indexed axis: outer only, inner only, both, rank 1.
fn cases(n: usize) -> Vec<(Vec<usize>, usize)> {
    vec![
        (vec![n, 3], 0),
        (vec![3, n], 1),
        (vec![2, n, 3], 1),
        (vec![n], 0),
    ]
}

fn select_and_add<T: El>(dev: &Arc<CudaDevice>, r: &mut StdRng) {
    let ty = T::DTYPE.name();
    for n in NS {
        for (shape, axis) in cases(n) {
            for contiguous in [true, false] {
                let what = format!("{ty} shape {shape:?} axis {axis} contiguous {contiguous}");
                let (outer, dim, inner) = split3(&shape, axis);
                // Repeats and omissions both happen with n random picks from n.
                let idx = random_indices(r, n + 2, dim);
                let x = HostView::<T>::random(r, &shape, contiguous);
                let dx = dev.upload(&x.buf).unwrap();
                let m = outer * idx.len() * inner;
                let mut out = poisoned::<T>(dev, m);
                index_select(dx.view(), x.gpu(), axis, &idx, out.view_mut()).unwrap();
                let mut want = vec![T::default(); m];
                ember_cpu::index::index_select(&x.dense(), outer, dim, inner, &idx, &mut want)
                    .unwrap();
                same(
                    &format!("index_select {what}"),
                    &out.to_host().unwrap(),
                    &want,
                );

                // The adjoint, with a gradient of the selection's shape.
                let mut gshape = shape.clone();
                gshape[axis] = idx.len();
                let g = HostView::<T>::random(r, &gshape, contiguous);
                let dg = dev.upload(&g.buf).unwrap();
                let mut back = poisoned::<T>(dev, x.dense().len());
                index_add(dg.view(), g.gpu(), axis, &idx, &shape, back.view_mut()).unwrap();
                let mut want = vec![T::ZERO; back.len()];
                ember_cpu::index::index_add(&g.dense(), outer, dim, inner, &idx, &mut want)
                    .unwrap();
                same(
                    &format!("index_add {what}"),
                    &back.to_host().unwrap(),
                    &want,
                );
            }
        }
    }
}

fn gather_and_scatter<T: El>(dev: &Arc<CudaDevice>, r: &mut StdRng) {
    let ty = T::DTYPE.name();
    for n in NS {
        for (shape, axis) in cases(n) {
            for picks in [1, 5] {
                for contiguous in [true, false] {
                    let what = format!(
                        "{ty} shape {shape:?} axis {axis} picks {picks} contiguous {contiguous}"
                    );
                    let (outer, dim, inner) = split3(&shape, axis);
                    let mut ishape = shape.clone();
                    ishape[axis] = picks;
                    let m: usize = ishape.iter().product();
                    let idx = random_indices(r, m, dim);
                    let x = HostView::<T>::random(r, &shape, contiguous);
                    let dx = dev.upload(&x.buf).unwrap();
                    let mut out = poisoned::<T>(dev, m);
                    gather(dx.view(), x.gpu(), axis, &idx, &ishape, out.view_mut()).unwrap();
                    let mut want = vec![T::default(); m];
                    ember_cpu::index::gather(&x.dense(), outer, dim, inner, &idx, picks, &mut want)
                        .unwrap();
                    same(&format!("gather {what}"), &out.to_host().unwrap(), &want);

                    let g = HostView::<T>::random(r, &ishape, contiguous);
                    let dg = dev.upload(&g.buf).unwrap();
                    let total = outer * dim * inner;
                    let mut back = poisoned::<T>(dev, total);
                    scatter_add(dg.view(), g.gpu(), axis, &idx, &shape, back.view_mut()).unwrap();
                    let mut want = vec![T::ZERO; total];
                    ember_cpu::index::scatter_add(
                        &g.dense(),
                        outer,
                        dim,
                        inner,
                        &idx,
                        picks,
                        &mut want,
                    )
                    .unwrap();
                    same(
                        &format!("scatter_add {what}"),
                        &back.to_host().unwrap(),
                        &want,
                    );
                }
            }
        }
    }
}

fn where_and_concat<T: El>(dev: &Arc<CudaDevice>, r: &mut StdRng) {
    let ty = T::DTYPE.name();
    for n in NS {
        for contiguous in [true, false] {
            let what = format!("{ty} n {n} contiguous {contiguous}");
            let shape = [n, 3];
            // Mask of 0, 1, -2.5 and NaN (NaN selects on_true, as on the CPU).
            let mut c = HostView::<T>::random(r, &shape, contiguous);
            for (i, v) in c.buf.iter_mut().enumerate() {
                *v = <T as FloatElem>::from_f64([0.0, 1.0, 0.0, -2.5, f64::NAN][i % 5]);
            }
            let a = HostView::<T>::random(r, &shape, !contiguous);
            // on_false: one row broadcast over all rows (stride 0).
            let brow = HostView::<T>::random(r, &[1, 3], true);
            let bstrides = [0, 1];
            let bv = Strided::new(&shape, &bstrides, 0);
            let bcpu = CpuStrided::new(&shape, &bstrides, 0);
            let (dc, da, db) = (
                dev.upload(&c.buf).unwrap(),
                dev.upload(&a.buf).unwrap(),
                dev.upload(&brow.buf).unwrap(),
            );
            let mut out = poisoned::<T>(dev, 3 * n);
            where_cond(
                dc.view(),
                c.gpu(),
                da.view(),
                a.gpu(),
                db.view(),
                bv,
                out.view_mut(),
            )
            .unwrap();
            let mut want = vec![T::default(); 3 * n];
            ember_cpu::binary::where_cond(
                &c.buf,
                c.cpu(),
                &a.buf,
                a.cpu(),
                &brow.buf,
                bcpu,
                &mut want,
            )
            .unwrap();
            same(&format!("where {what}"), &out.to_host().unwrap(), &want);

            // concat along each axis of three parts, one of them non-contiguous.
            for axis in [0, 1] {
                let extents = [1, n, 2];
                let parts: Vec<HostView<T>> = extents
                    .iter()
                    .enumerate()
                    .map(|(k, &e)| {
                        let mut s = vec![n, 3];
                        s[axis] = e;
                        HostView::random(r, &s, contiguous || k != 1)
                    })
                    .collect();
                let bufs: Vec<_> = parts.iter().map(|p| dev.upload(&p.buf).unwrap()).collect();
                let views: Vec<_> = parts
                    .iter()
                    .zip(&bufs)
                    .map(|(p, b)| (b.view(), p.gpu()))
                    .collect();
                let total: usize = parts.iter().map(|p| p.dense().len()).sum();
                let mut out = poisoned::<T>(dev, total);
                concat(&views, axis, out.view_mut()).unwrap();
                let dense: Vec<Vec<T>> = parts.iter().map(|p| p.dense()).collect();
                let inner: usize = if axis == 0 { 3 } else { 1 };
                let outer: usize = if axis == 0 { 1 } else { n };
                let cpu_parts: Vec<(&[T], usize)> = dense
                    .iter()
                    .zip(&parts)
                    .map(|(d, p)| (d.as_slice(), p.shape[axis] * inner))
                    .collect();
                let mut want = vec![T::default(); total];
                ember_cpu::copy::concat(&cpu_parts, outer, &mut want).unwrap();
                same(
                    &format!("concat axis {axis} {what}"),
                    &out.to_host().unwrap(),
                    &want,
                );
            }
        }
    }
}

#[test]
fn index_select_and_index_add_match_the_cpu_exactly() {
    let Some(dev) = gpu_or_skip("gpu_index::select") else {
        return;
    };
    let mut r = rng("index_select");
    select_and_add::<f32>(&dev, &mut r);
    select_and_add::<f64>(&dev, &mut r);
}

#[test]
fn gather_and_scatter_add_match_the_cpu_exactly() {
    let Some(dev) = gpu_or_skip("gpu_index::gather") else {
        return;
    };
    let mut r = rng("gather");
    gather_and_scatter::<f32>(&dev, &mut r);
    gather_and_scatter::<f64>(&dev, &mut r);
}

#[test]
fn where_and_concat_match_the_cpu_exactly() {
    let Some(dev) = gpu_or_skip("gpu_index::where_concat") else {
        return;
    };
    let mut r = rng("where_concat");
    where_and_concat::<f32>(&dev, &mut r);
    where_and_concat::<f64>(&dev, &mut r);
}

#[test]
fn casts_match_the_cpu_exactly() {
    let Some(dev) = gpu_or_skip("gpu_index::cast") else {
        return;
    };
    let mut r = rng("cast");
    for n in NS {
        for contiguous in [true, false] {
            let what = format!("n {n} contiguous {contiguous}");
            let shape = [n, 3];
            // f64 -> f32 must round to nearest even, as `as f32` does.
            let x = HostView::<f64>::random(&mut r, &shape, contiguous);
            let dx = dev.upload(&x.buf).unwrap();
            let mut out = poisoned::<f32>(&dev, 3 * n);
            cast(dx.view(), x.gpu(), out.view_mut()).unwrap();
            let mut want = vec![0f32; 3 * n];
            ember_cpu::copy::cast_strided(&x.buf, x.cpu(), &mut want).unwrap();
            same(&format!("f64->f32 {what}"), &out.to_host().unwrap(), &want);

            let y = HostView::<f32>::random(&mut r, &shape, contiguous);
            let dy = dev.upload(&y.buf).unwrap();
            let mut out = poisoned::<f64>(&dev, 3 * n);
            cast(dy.view(), y.gpu(), out.view_mut()).unwrap();
            let mut want = vec![0f64; 3 * n];
            ember_cpu::copy::cast_strided(&y.buf, y.cpu(), &mut want).unwrap();
            same(&format!("f32->f64 {what}"), &out.to_host().unwrap(), &want);

            let mut out = poisoned::<f32>(&dev, 3 * n);
            cast(dy.view(), y.gpu(), out.view_mut()).unwrap();
            same(
                &format!("f32->f32 {what}"),
                &out.to_host().unwrap(),
                &y.dense(),
            );
        }
    }
}

#[test]
fn bad_indices_and_shapes_are_errors() {
    let Some(dev) = gpu_or_skip("gpu_index::errors") else {
        return;
    };
    let x = dev.upload(&[1.0f32; 12]).unwrap();
    let (shape, strides) = ([4usize, 3], [3usize, 1]);
    let v = Strided::new(&shape, &strides, 0);
    let mut out = dev.upload(&[0.0f32; 6]).unwrap();
    let e = index_select(x.view(), v, 0, &[1, 4], out.view_mut())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("index_select") && e.contains("index 4") && e.contains("size 4"),
        "{e}"
    );
    let e = gather(x.view(), v, 1, &[0, 1, 2, 3], &[4, 1], out.view_mut())
        .unwrap_err()
        .to_string();
    assert!(e.contains("gather") && e.contains("6 elements"), "{e}");
    let mut out4 = dev.upload(&[0.0f32; 4]).unwrap();
    let e = gather(x.view(), v, 1, &[0, 1, 7, 2], &[4, 1], out4.view_mut())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gather") && e.contains("index 7") && e.contains("size 3"),
        "{e}"
    );
    let mut back = dev.upload(&[0.0f32; 12]).unwrap();
    let g = dev.upload(&[1.0f32; 6]).unwrap();
    let (gs, gst) = ([2usize, 3], [3usize, 1]);
    let e = index_add(
        g.view(),
        Strided::new(&gs, &gst, 0),
        0,
        &[0, 9],
        &shape,
        back.view_mut(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("index_add") && e.contains("index 9"), "{e}");
    // A view that leaves its buffer is rejected before any launch.
    let far = Strided::new(&shape, &strides, 1);
    let mut out3 = dev.upload(&[0.0f32; 3]).unwrap();
    let e = index_select(x.view(), far, 0, &[0], out3.view_mut())
        .unwrap_err()
        .to_string();
    assert!(e.contains("buffer of 12"), "{e}");
}
