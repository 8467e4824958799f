//! Copies, casts and fills of host buffers: the backend of `ops/view.rs` and of tensor creation.
//!
//! These work on all four storage dtypes as they are (a copy of f16 data stays f16), so they
//! match on the storage instead of widening through [`super::operand`].

use super::{KERNEL_CHECKED, fill, zeroed};
use crate::dtype::DType;
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::copy::{cast_strided, copy_strided};

/// A contiguous copy of the view, in the same dtype.
pub(crate) fn contiguous(s: &CpuStorage, l: &Layout) -> CpuStorage {
    let n = l.elem_count();
    match s {
        CpuStorage::F32(v) => CpuStorage::F32(fill(n, |o| {
            copy_strided(v, l.strided(), o).expect(KERNEL_CHECKED)
        })),
        CpuStorage::F64(v) => CpuStorage::F64(fill(n, |o| {
            copy_strided(v, l.strided(), o).expect(KERNEL_CHECKED)
        })),
        CpuStorage::F16(v) => {
            let mut o = zeroed(n, half::f16::ZERO);
            copy_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
            CpuStorage::F16(o)
        }
        CpuStorage::BF16(v) => {
            let mut o = zeroed(n, half::bf16::ZERO);
            copy_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
            CpuStorage::BF16(o)
        }
    }
}

/// The view's elements converted to `dtype`, contiguous.
pub(crate) fn cast(s: &CpuStorage, l: &Layout, dtype: DType) -> CpuStorage {
    fn to<S: Copy + ember_cpu::copy::Cast<D>, D: Copy + Default>(v: &[S], l: &Layout) -> Vec<D> {
        let mut o = zeroed(l.elem_count(), D::default());
        cast_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
        o
    }
    macro_rules! from {
        ($v:expr) => {
            match dtype {
                DType::F32 => CpuStorage::F32(to($v, l)),
                DType::F64 => CpuStorage::F64(to($v, l)),
                DType::F16 => CpuStorage::F16(to($v, l)),
                DType::BF16 => CpuStorage::BF16(to($v, l)),
            }
        };
    }
    match s {
        CpuStorage::F32(v) => from!(v),
        CpuStorage::F64(v) => from!(v),
        CpuStorage::F16(v) => from!(v),
        CpuStorage::BF16(v) => from!(v),
    }
}

/// Storage of `dtype` holding `values` (converted from f64).
pub(crate) fn from_f64(values: &[f64], dtype: DType) -> CpuStorage {
    // Converted straight into the target type (the same `Cast` rounding as `cast`), without an
    // f64 copy first: every loss value becomes a tensor through here, once per step.
    fn to<D: Copy>(values: &[f64]) -> Vec<D>
    where
        f64: ember_cpu::copy::Cast<D>,
    {
        values
            .iter()
            .map(|&v| ember_cpu::copy::Cast::cast(v))
            .collect()
    }
    match dtype {
        DType::F32 => CpuStorage::F32(to(values)),
        DType::F64 => CpuStorage::F64(values.to_vec()),
        DType::F16 => CpuStorage::F16(to(values)),
        DType::BF16 => CpuStorage::BF16(to(values)),
    }
}

/// `n` copies of `value` (rounded once to `dtype`).
pub(crate) fn filled(value: f64, n: usize, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(vec![value as f32; n]),
        DType::F64 => CpuStorage::F64(vec![value; n]),
        DType::F16 => CpuStorage::F16(vec![half::f16::from_f64(value); n]),
        DType::BF16 => CpuStorage::BF16(vec![half::bf16::from_f64(value); n]),
    }
}

/// The parts joined along `axis` (each read dense; ember-cpu's concat kernel interleaves the
/// rows of every outer index).
pub(crate) fn concat(parts: &[(&CpuStorage, &Layout)], axis: usize) -> CpuStorage {
    let dense: Vec<CpuStorage> = parts.iter().map(|&(s, l)| contiguous(s, l)).collect();
    let Some(&(_, first)) = parts.first() else {
        return CpuStorage::F32(Vec::new());
    };
    let outer: usize = first.shape()[..axis].iter().product();
    let inner: usize = first.shape()[axis + 1..].iter().product();
    macro_rules! go {
        ($variant:ident, $zero:expr) => {{
            let slices: Vec<(&[_], usize)> = dense
                .iter()
                .zip(parts)
                .map(|(p, (_, l))| match p {
                    CpuStorage::$variant(v) => (v.as_slice(), l.shape()[axis] * inner),
                    _ => unreachable!("cat parts share a dtype (checked by cat)"),
                })
                .collect();
            let total: usize = dense.iter().map(|p| p.len()).sum();
            let mut out = zeroed(total, $zero);
            ember_cpu::copy::concat(&slices, outer, &mut out).expect(KERNEL_CHECKED);
            CpuStorage::$variant(out)
        }};
    }
    match dense[0].dtype() {
        DType::F32 => go!(F32, 0f32),
        DType::F64 => go!(F64, 0f64),
        DType::F16 => go!(F16, half::f16::ZERO),
        DType::BF16 => go!(BF16, half::bf16::ZERO),
    }
}
