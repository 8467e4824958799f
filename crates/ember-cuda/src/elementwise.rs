//! Elementwise kernels: unary maps forward and backward, binary maps with broadcasting, strided
//! copies and 16-bit casts (kernels/elementwise.cu).
//!
//! The API mirrors ember-cpu's `unary`, `unary_backward` and `binary`: inputs are a buffer plus a
//! [`Strided`] view, outputs are contiguous. Contiguous inputs take the 16-byte vectorised kernel;
//! any other view takes the strided kernel. Broadcasting is expressed by the caller with stride-0
//! dimensions, exactly as on the CPU.

use crate::device::{DevSlice, DevSliceMut, FloatElem, HalfElem};
use crate::error::{CudaError, invalid};
use crate::launch::{check_in, check_out, grid_1d, launch_err, same_device, to_i64};
use crate::view::{DevView, Strided};
use cudarc::driver::PushKernelArg;

pub use ember_ops::{BinaryOp, UnaryOp};

fn unary_launch<T: FloatElem>(
    op_name: &'static str,
    op: Option<UnaryOp>,
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    let dev = out.dev;
    same_device(op_name, "x", dev, x.dev)?;
    let n = xv.elem_count();
    check_out(op_name, "out", &out, n)?;
    let view = DevView::checked(op_name, "x", xv, x.len)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(op_name, n)?;
    // `None` is the identity map (the copy kernels).
    let (code, (p0, p1)) = match op {
        Some(u) => (u.code(), u.params()),
        None => (UnaryOp::IDENTITY_CODE, (0.0, 0.0)),
    };
    let (op, p0, p1) = (code as i32, T::from_f64(p0), T::from_f64(p1));
    let sfx = T::DTYPE.name();
    if xv.is_contiguous() {
        let name = format!("unary_contig_{sfx}");
        let f = dev.function("elementwise", &name)?;
        let xp = x.ptr + (xv.offset * std::mem::size_of::<T>()) as u64;
        let cfg = grid_1d(dev, n, 16 / std::mem::size_of::<T>());
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&op)
            .arg(&p0)
            .arg(&p1)
            .arg(&xp)
            .arg(&out.ptr)
            .arg(&n64);
        // SAFETY: the view is contiguous and DevView::checked proved offset + n <= x.len; out has
        // exactly n elements; both are live device allocations on this device.
        unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    } else {
        let name = format!("unary_strided_{sfx}");
        let f = dev.function("elementwise", &name)?;
        let cfg = grid_1d(dev, n, 1);
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&op)
            .arg(&p0)
            .arg(&p1)
            .arg(&x.ptr)
            .arg(&view)
            .arg(&out.ptr)
            .arg(&n64);
        // SAFETY: DevView::checked proved every offset the view addresses is < x.len; out has
        // exactly n = elem_count elements.
        unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    }
    Ok(())
}

/// out\[i\] = op(x\[view element i\]) for every element of `xv` in row-major order; `out` is
/// contiguous with `xv.elem_count()` elements.
pub fn unary<T: FloatElem>(
    op: UnaryOp,
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    unary_launch("unary", Some(op), x, xv, out)
}

/// Gathers the view `xv` of `x` into contiguous `out` (ember-core's `contiguous()`).
pub fn copy_strided<T: FloatElem>(
    x: DevSlice<'_, T>,
    xv: Strided<'_>,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    unary_launch("copy_strided", None, x, xv, out)
}

/// dx\[i\] = dy\[i\] * op'(x\[i\]), using the forward output `y` where the rule needs it.
/// All four operands are contiguous and of equal length.
pub fn unary_backward<T: FloatElem>(
    op: UnaryOp,
    x: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    dy: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "unary_backward";
    let dev = dx.dev;
    let n = dx.len;
    check_in(OP, "x", dev, &x, n)?;
    check_in(OP, "y", dev, &y, n)?;
    check_in(OP, "dy", dev, &dy, n)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let (code, (p0, p1)) = (op.code() as i32, op.params());
    let (p0, p1) = (T::from_f64(p0), T::from_f64(p1));
    let name = format!("unary_bwd_{}", T::DTYPE.name());
    let f = dev.function("elementwise", &name)?;
    let cfg = grid_1d(dev, n, 16 / std::mem::size_of::<T>());
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&code)
        .arg(&p0)
        .arg(&p1)
        .arg(&x.ptr)
        .arg(&y.ptr)
        .arg(&dy.ptr)
        .arg(&dx.ptr)
        .arg(&n64);
    // SAFETY: all four operands were checked to have exactly n elements on this device.
    unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// out\[i\] = op(a\[i\], b\[i\]) over views that already have the output's shape (stride 0 along
/// broadcast dimensions); `out` is contiguous.
pub fn binary<T: FloatElem>(
    op: BinaryOp,
    a: DevSlice<'_, T>,
    av: Strided<'_>,
    b: DevSlice<'_, T>,
    bv: Strided<'_>,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "binary";
    let dev = out.dev;
    same_device(OP, "a", dev, a.dev)?;
    same_device(OP, "b", dev, b.dev)?;
    if av.shape != bv.shape {
        return Err(invalid(
            OP,
            format!(
                "operand shapes {:?} and {:?} differ (broadcast them to the output shape first)",
                av.shape, bv.shape
            ),
        ));
    }
    let n = av.elem_count();
    check_out(OP, "out", &out, n)?;
    let adv = DevView::checked(OP, "a", av, a.len)?;
    let bdv = DevView::checked(OP, "b", bv, b.len)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let code = op.code() as i32;
    let sfx = T::DTYPE.name();
    let sz = std::mem::size_of::<T>() as u64;
    if av.is_contiguous() && bv.is_contiguous() {
        let name = format!("binary_contig_{sfx}");
        let f = dev.function("elementwise", &name)?;
        let ap = a.ptr + av.offset as u64 * sz;
        let bp = b.ptr + bv.offset as u64 * sz;
        let cfg = grid_1d(dev, n, 16 / sz as usize);
        let mut l = dev.stream().launch_builder(&f);
        l.arg(&code).arg(&ap).arg(&bp).arg(&out.ptr).arg(&n64);
        // SAFETY: both views are contiguous and checked to end inside their buffers; out has n.
        unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    } else {
        let name = format!("binary_strided_{sfx}");
        let f = dev.function("elementwise", &name)?;
        let cfg = grid_1d(dev, n, 1);
        let mut l = dev.stream().launch_builder(&f);
        l.arg(&code)
            .arg(&a.ptr)
            .arg(&adv)
            .arg(&b.ptr)
            .arg(&bdv)
            .arg(&out.ptr)
            .arg(&n64);
        // SAFETY: DevView::checked bounds every addressed offset by its buffer; out has n.
        unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    }
    Ok(())
}

/// Rounds contiguous f32 values to a 16-bit float type (round to nearest even).
pub fn cast_from_f32<H: HalfElem>(
    x: DevSlice<'_, f32>,
    out: DevSliceMut<'_, H>,
) -> Result<(), CudaError> {
    const OP: &str = "cast_from_f32";
    let dev = out.dev;
    check_in(OP, "x", dev, &x, out.len)?;
    if out.len == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, out.len)?;
    let name = format!("cast_f32_to_{}", H::DTYPE.name());
    let f = dev.function("elementwise", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr).arg(&out.ptr).arg(&n64);
    // SAFETY: x and out were checked to have the same length n on this device.
    unsafe { l.launch(grid_1d(dev, out.len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Widens contiguous 16-bit floats to f32 (exact).
pub fn cast_to_f32<H: HalfElem>(
    x: DevSlice<'_, H>,
    out: DevSliceMut<'_, f32>,
) -> Result<(), CudaError> {
    const OP: &str = "cast_to_f32";
    let dev = out.dev;
    check_in(OP, "x", dev, &x, out.len)?;
    if out.len == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, out.len)?;
    let name = format!("cast_{}_to_f32", H::DTYPE.name());
    let f = dev.function("elementwise", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr).arg(&out.ptr).arg(&n64);
    // SAFETY: x and out were checked to have the same length n on this device.
    unsafe { l.launch(grid_1d(dev, out.len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}
