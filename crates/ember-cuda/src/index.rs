//! Index-driven and data-movement kernels (kernels/index.cu): `index_select` and `gather`, their
//! adjoints `index_add` and `scatter_add`, the select `where_cond`, f32/f64 casts, and the
//! copies of a concatenation.
//!
//! The API mirrors ember-cpu's `index` module, with strided inputs: a source is a buffer plus a
//! [`Strided`] view (transposed, sliced or broadcast views are read in place), outputs are
//! contiguous. The indexed axis splits a shape into `[outer, dim, inner]`.
//!
//! Indices are host slices of `usize`. Each function checks every index against the size of the
//! indexed dimension before anything is uploaded, and returns an error naming the op, the index
//! and the size otherwise, so the kernels never read outside a buffer. The indices are then
//! uploaded as i64 (a small copy; ember-core already holds them on the host, since it reads
//! ember's float index tensors back to check they are whole numbers).
//!
//! The adjoints are deterministic and use no atomics: one thread per output element sums its
//! contributions in increasing index position, the order ember-cpu uses, so results are
//! bit-identical to the CPU's (see the header of kernels/index.cu).

use cudarc::driver::{CudaSlice, DevicePtr, PushKernelArg};

use crate::device::{CudaDevice, DevSlice, DevSliceMut, FloatElem};
use crate::error::{CudaError, driver_err, invalid};
use crate::launch::{check_out, grid_1d, launch_err, same_device, to_i64};
use crate::view::{DevView, Strided};
use std::sync::Arc;

/// Checks `v` against its buffer and packs it; a contiguous view is collapsed to one dimension
/// so the kernel's offset decoding costs a single division.
fn kernel_view(
    op: &'static str,
    what: &str,
    v: Strided<'_>,
    buf_len: usize,
) -> Result<DevView, CudaError> {
    let checked = DevView::checked(op, what, v, buf_len)?;
    if v.is_contiguous() {
        Ok(DevView::from_parts(&[(v.elem_count(), 1)], v.offset))
    } else {
        Ok(checked)
    }
}

/// (outer, dim, inner) of `shape` split at `axis` (the caller checked `axis < shape.len()`).
fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<(), CudaError> {
    if axis >= shape.len() {
        return Err(invalid(
            op,
            format!("dimension {axis} out of range for shape {shape:?}"),
        ));
    }
    Ok(())
}

/// Checks that every index lies in `0..size`, naming the first one that does not.
fn check_indices(
    op: &'static str,
    idx: &[usize],
    axis: usize,
    size: usize,
) -> Result<(), CudaError> {
    match idx.iter().find(|&&i| i >= size) {
        Some(&bad) => Err(invalid(
            op,
            format!("index {bad} is out of range for dimension {axis} of size {size}"),
        )),
        None => Ok(()),
    }
}

/// Checks that `a` and `b` agree on every dimension but `axis`.
fn check_same_but(
    op: &'static str,
    what: &str,
    a: &[usize],
    b: &[usize],
    axis: usize,
) -> Result<(), CudaError> {
    let ok = a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(d, (x, y))| d == axis || x == y);
    if !ok {
        return Err(invalid(
            op,
            format!("{what}: shapes {a:?} and {b:?} must agree on every dimension but {axis}"),
        ));
    }
    Ok(())
}

/// Uploads host integers as i64 (at least one element, so an empty list still has an address).
fn upload_i64(
    op: &'static str,
    dev: &Arc<CudaDevice>,
    values: impl Iterator<Item = usize>,
) -> Result<CudaSlice<i64>, CudaError> {
    let mut v: Vec<i64> = values.map(|x| x as i64).collect();
    if v.is_empty() {
        v.push(0);
    }
    dev.stream()
        .clone_htod(&v)
        .map_err(|e| driver_err(format!("{op}: uploading {} indices", v.len()), e))
}

/// The device address of an uploaded index buffer (valid while the buffer lives; it is freed in
/// stream order after the launches that read it).
fn addr(dev: &CudaDevice, s: &CudaSlice<i64>) -> u64 {
    let (p, _guard) = s.device_ptr(dev.stream());
    p
}

/// Uploads `idx` and launches `{kernel}_{dtype}` of the index module over `sizes[0]` outputs
/// with the argument list index_select, gather and scatter_add share:
/// (src, view, indices, out, n, dim, count along the axis, inner).
///
/// # Safety
/// The caller has checked that `view` stays inside the source buffer, that every index is
/// below `dim`, and that `out` holds exactly `n` elements: the kernel reads and writes
/// without further checks.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_indexed<T: FloatElem>(
    op: &'static str,
    kernel: &str,
    src: u64,
    view: &DevView,
    idx: &[usize],
    out: u64,
    dev: &Arc<CudaDevice>,
    sizes: [usize; 4],
) -> Result<(), CudaError> {
    let d_idx = upload_i64(op, dev, idx.iter().copied())?;
    let [n, dim, count, inner] = sizes;
    let (n64, dim64, count64, inner64) = (
        to_i64(op, n)?,
        to_i64(op, dim)?,
        to_i64(op, count)?,
        to_i64(op, inner)?,
    );
    let name = format!("{kernel}_{}", T::DTYPE.name());
    let f = dev.function("index", &name)?;
    let ip = addr(dev, &d_idx);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&src)
        .arg(view)
        .arg(&ip)
        .arg(&out)
        .arg(&n64)
        .arg(&dim64)
        .arg(&count64)
        .arg(&inner64);
    // SAFETY: forwarded to the caller (see above).
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// out\[o, j, i\] = x\[o, idx\[j\], i\]: picks entries `idx` along `axis` of the view `xv`.
/// `out` is contiguous with shape `xv.shape` with `axis` replaced by `idx.len()`.
pub fn index_select<T: FloatElem>(
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    axis: usize,
    idx: &[usize],
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "index_select";
    let dev = out.dev;
    same_device(OP, "x", dev, x.dev)?;
    check_axis(OP, xv.shape, axis)?;
    let (outer, dim, inner) = split3(xv.shape, axis);
    check_out(OP, "out", &out, outer * idx.len() * inner)?;
    check_indices(OP, idx, axis, dim)?;
    let view = kernel_view(OP, "x", xv, x.len)?;
    let n = out.len;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: the view is checked to stay inside x; every index is < dim (checked above), so
    // every position read lies in the view; out holds exactly n elements; idx holds n_idx.
    unsafe {
        launch_indexed::<T>(
            OP,
            "index_select",
            x.ptr,
            &view,
            idx,
            out.ptr,
            dev,
            [n, dim, idx.len(), inner],
        )
    }
}

/// The adjoint of [`index_select`]: out\[o, d, i\] = Σ over j with idx\[j\] = d of g\[o, j, i\].
/// `gv` has `out_shape`'s shape with `axis` replaced by `idx.len()`; `out` (contiguous,
/// `out_shape`) is fully overwritten. Deterministic: each output sums its terms in order of j.
pub fn index_add<T: FloatElem>(
    g: DevSlice<'_, T>,
    gv: Strided<'_>,
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "index_add";
    let dev = out.dev;
    same_device(OP, "grad", dev, g.dev)?;
    check_axis(OP, out_shape, axis)?;
    check_same_but(OP, "grad and output", gv.shape, out_shape, axis)?;
    if gv.shape[axis] != idx.len() {
        return Err(invalid(
            OP,
            format!(
                "grad has {} entries along dimension {axis} but there are {} indices",
                gv.shape[axis],
                idx.len()
            ),
        ));
    }
    let (_, dim, inner) = split3(out_shape, axis);
    let n: usize = out_shape.iter().product();
    check_out(OP, "out", &out, n)?;
    check_indices(OP, idx, axis, dim)?;
    let view = kernel_view(OP, "grad", gv, g.len)?;
    if n == 0 {
        return Ok(());
    }
    // Counting sort of the positions by index: positions of index d are seg_pos[seg_off[d]..
    // seg_off[d + 1]], in increasing order.
    let mut seg_off = vec![0usize; dim + 1];
    for &d in idx {
        seg_off[d + 1] += 1;
    }
    for d in 0..dim {
        seg_off[d + 1] += seg_off[d];
    }
    let mut fill = seg_off.clone();
    let mut seg_pos = vec![0usize; idx.len()];
    for (j, &d) in idx.iter().enumerate() {
        seg_pos[fill[d]] = j;
        fill[d] += 1;
    }
    let d_off = upload_i64(OP, dev, seg_off.into_iter())?;
    let d_pos = upload_i64(OP, dev, seg_pos.into_iter())?;
    let (n64, dim64, nidx64, inner64) = (
        to_i64(OP, n)?,
        to_i64(OP, dim)?,
        to_i64(OP, idx.len())?,
        to_i64(OP, inner)?,
    );
    let name = format!("index_add_{}", T::DTYPE.name());
    let f = dev.function("index", &name)?;
    let (op_, pp) = (addr(dev, &d_off), addr(dev, &d_pos));
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g.ptr)
        .arg(&view)
        .arg(&op_)
        .arg(&pp)
        .arg(&out.ptr)
        .arg(&n64)
        .arg(&dim64)
        .arg(&nidx64)
        .arg(&inner64);
    // SAFETY: seg_off has dim + 1 entries and seg_pos lists positions < n_idx = gv.shape[axis];
    // the grad view is checked to stay inside g; out holds exactly n elements.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// out\[o, j, i\] = x\[o, idx\[o, j, i\], i\] along `axis`. `idx` holds `idx_shape` row-major;
/// `idx_shape` matches `xv.shape` on every dimension but `axis`; `out` is contiguous with
/// `idx_shape`.
pub fn gather<T: FloatElem>(
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    axis: usize,
    idx: &[usize],
    idx_shape: &[usize],
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "gather";
    let dev = out.dev;
    same_device(OP, "x", dev, x.dev)?;
    check_axis(OP, xv.shape, axis)?;
    check_same_but(OP, "input and indices", xv.shape, idx_shape, axis)?;
    let n: usize = idx_shape.iter().product();
    if idx.len() != n {
        return Err(invalid(
            OP,
            format!(
                "{} indices for an index shape {idx_shape:?} of {n} elements",
                idx.len()
            ),
        ));
    }
    check_out(OP, "out", &out, n)?;
    let (_, dim, inner) = split3(xv.shape, axis);
    check_indices(OP, idx, axis, dim)?;
    let view = kernel_view(OP, "x", xv, x.len)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: every index is < dim (checked), so each position read lies in the checked view;
    // idx and out hold exactly n elements.
    unsafe {
        launch_indexed::<T>(
            OP,
            "gather",
            x.ptr,
            &view,
            idx,
            out.ptr,
            dev,
            [n, dim, idx_shape[axis], inner],
        )
    }
}

/// The adjoint of [`gather`]: out\[o, d, i\] = Σ over j with idx\[o, j, i\] = d of g\[o, j, i\].
/// `gv` has the index shape (row-major in `idx`), which matches `out_shape` on every dimension
/// but `axis`; `out` (contiguous, `out_shape`) is fully overwritten. Deterministic: each output
/// sums its terms in order of j. Cost: O(output elements × idx extent along `axis`).
pub fn scatter_add<T: FloatElem>(
    g: DevSlice<'_, T>,
    gv: Strided<'_>,
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "scatter_add";
    let dev = out.dev;
    same_device(OP, "grad", dev, g.dev)?;
    check_axis(OP, out_shape, axis)?;
    check_same_but(OP, "grad and output", gv.shape, out_shape, axis)?;
    if idx.len() != gv.elem_count() {
        return Err(invalid(
            OP,
            format!("{} indices for a grad of shape {:?}", idx.len(), gv.shape),
        ));
    }
    let (_, dim, inner) = split3(out_shape, axis);
    let n: usize = out_shape.iter().product();
    check_out(OP, "out", &out, n)?;
    check_indices(OP, idx, axis, dim)?;
    let view = kernel_view(OP, "grad", gv, g.len)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: idx and the grad view cover outer * n_ax * inner positions (checked); the view is
    // checked to stay inside g; out holds exactly n elements.
    unsafe {
        launch_indexed::<T>(
            OP,
            "scatter_add",
            g.ptr,
            &view,
            idx,
            out.ptr,
            dev,
            [n, dim, gv.shape[axis], inner],
        )
    }
}

/// out\[k\] = c\[k\] != 0 ? a\[k\] : b\[k\] over three views of one shape (stride 0 along
/// broadcast dimensions); a NaN in the mask selects `a`, as on the CPU. `out` is contiguous.
#[allow(clippy::too_many_arguments)]
pub fn where_cond<T: FloatElem>(
    c: DevSlice<'_, T>,
    cv: Strided<'_>,
    a: DevSlice<'_, T>,
    av: Strided<'_>,
    b: DevSlice<'_, T>,
    bv: Strided<'_>,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "where_cond";
    let dev = out.dev;
    same_device(OP, "cond", dev, c.dev)?;
    same_device(OP, "on_true", dev, a.dev)?;
    same_device(OP, "on_false", dev, b.dev)?;
    if cv.shape != av.shape || av.shape != bv.shape {
        return Err(invalid(
            OP,
            format!(
                "operand shapes {:?}, {:?} and {:?} differ (broadcast them to the output shape \
                 first)",
                cv.shape, av.shape, bv.shape
            ),
        ));
    }
    let n = av.elem_count();
    check_out(OP, "out", &out, n)?;
    let (cdv, adv, bdv) = (
        kernel_view(OP, "cond", cv, c.len)?,
        kernel_view(OP, "on_true", av, a.len)?,
        kernel_view(OP, "on_false", bv, b.len)?,
    );
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let name = format!("where_{}", T::DTYPE.name());
    let f = dev.function("index", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&c.ptr)
        .arg(&cdv)
        .arg(&a.ptr)
        .arg(&adv)
        .arg(&b.ptr)
        .arg(&bdv)
        .arg(&out.ptr)
        .arg(&n64);
    // SAFETY: each view is checked to stay inside its buffer; out holds exactly n elements.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Converts the view `xv` of `x` into contiguous `out` of another (or the same) float type:
/// f64 → f32 rounds to nearest even (Rust's `as f32`), f32 → f64 is exact.
pub fn cast<S: FloatElem, D: FloatElem>(
    x: DevSlice<'_, S>,
    xv: Strided<'_>,
    out: DevSliceMut<'_, D>,
) -> Result<(), CudaError> {
    const OP: &str = "cast";
    let dev = out.dev;
    same_device(OP, "x", dev, x.dev)?;
    let n = xv.elem_count();
    check_out(OP, "out", &out, n)?;
    let view = kernel_view(OP, "x", xv, x.len)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let name = format!("cast_{}_to_{}", S::DTYPE.name(), D::DTYPE.name());
    let f = dev.function("index", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr).arg(&view).arg(&out.ptr).arg(&n64);
    // SAFETY: the view is checked to stay inside x; out holds exactly n elements of D.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Joins the views `parts` along `axis` into contiguous `out`. All parts have one rank and agree
/// on every dimension but `axis`; `out` has their shape with `axis` extents summed. One launch
/// per non-empty part.
pub fn concat<T: FloatElem>(
    parts: &[(DevSlice<'_, T>, Strided<'_>)],
    axis: usize,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "concat";
    let dev = out.dev;
    let Some((_, first)) = parts.first() else {
        return Err(invalid(OP, "needs at least one part"));
    };
    check_axis(OP, first.shape, axis)?;
    let mut views = Vec::with_capacity(parts.len());
    for (k, (s, v)) in parts.iter().enumerate() {
        same_device(OP, "part", dev, s.dev)?;
        check_same_but(OP, &format!("part {k}"), first.shape, v.shape, axis)?;
        views.push(kernel_view(OP, "part", *v, s.len)?);
    }
    let total: usize = parts.iter().map(|(_, v)| v.shape[axis]).sum();
    let (outer, _, inner) = split3(first.shape, axis);
    check_out(OP, "out", &out, outer * total * inner)?;
    let name = format!("concat_part_{}", T::DTYPE.name());
    let out_row = to_i64(OP, total * inner)?;
    let mut off = 0usize;
    for ((s, v), view) in parts.iter().zip(&views) {
        let block = v.shape[axis] * inner;
        let n = outer * block;
        if n > 0 {
            let f = dev.function("index", &name)?;
            let (n64, block64, off64) =
                (to_i64(OP, n)?, to_i64(OP, block)?, to_i64(OP, off * inner)?);
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&s.ptr)
                .arg(view)
                .arg(&out.ptr)
                .arg(&n64)
                .arg(&block64)
                .arg(&out_row)
                .arg(&off64);
            // SAFETY: the part's view is checked to stay inside its buffer; it writes rows
            // o * out_row + off*inner + [0, block), and off*inner + block <= out_row, so every
            // write lies in out's outer * total * inner elements.
            unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
        }
        off += v.shape[axis];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_checks_name_the_op_index_and_size() {
        let e = check_indices("index_select", &[0, 5, 9], 1, 5).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("index_select") && msg.contains("index 5") && msg.contains("size 5"),
            "{msg}"
        );
        assert!(check_indices("gather", &[0, 4], 0, 5).is_ok());
        assert!(check_same_but("cat", "p", &[2, 3], &[2, 4], 1).is_ok());
        assert!(check_same_but("cat", "p", &[2, 3], &[3, 4], 1).is_err());
        assert!(check_axis("gather", &[2], 1).is_err());
    }
}
