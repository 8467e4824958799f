//! The mixed-precision matrix product on host buffers: f32 operands rounded to bf16 or f16,
//! products summed in f32, an f32 result (ember-cpu's `gemm_rounded`).
//!
//! The operands are read in place through their strides (a transposed weight or gradient is
//! not copied here); where the rounding happens — inside the bf16 kernel's packing, or into
//! dense rounded copies for the f32 kernel — is ember-cpu's choice per shape.

use super::{KERNEL_CHECKED, contiguous_slice, zeroed};
use crate::backend::MatmulSpec;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::gemm::mixed::{Half, gemm_rounded};
use ember_cpu::gemm::{Epilogue, MatMut, MatRef};

/// ember-cpu's name for the 16-bit type `half` (bf16 or f16), or an error naming `op`.
pub(crate) fn half_of(op: &'static str, half: DType) -> Result<Half> {
    match half {
        DType::BF16 => Ok(Half::Bf16),
        DType::F16 => Ok(Half::F16),
        other => Err(Error::invalid(
            op,
            format!("the rounding type must be bf16 or f16, got {other:?}"),
        )),
    }
}

/// An f32 operand's buffer from its first element, or an error naming `op`.
fn f32_at<'a>(op: &'static str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v.get(l.offset().min(v.len())..).unwrap_or(&[])),
        other => Err(Error::invalid(
            op,
            format!(
                "mixed-precision operands are f32 (rounded inside the product), got {:?}",
                other.dtype()
            ),
        )),
    }
}

/// act(round(A)·round(B) + bias) for A `[m, k]` and B `[k, n]` (any strides) and an f32 bias of
/// n values; `spec.batch` must be empty.
pub(crate) fn matmul_rounded(
    spec: &MatmulSpec<'_>,
    half: DType,
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> Result<CpuStorage> {
    const OP: &str = "linear_mixed";
    let h = half_of(OP, half)?;
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let (ad, bd) = (f32_at(OP, a, al)?, f32_at(OP, b, bl)?);
    let bias = match bias {
        Some((s, l)) => {
            let CpuStorage::F32(v) = s else {
                return Err(Error::invalid(OP, "the bias must be f32"));
            };
            Some(contiguous_slice(v, l))
        }
        None => None,
    };
    let mut out = zeroed(m * n, 0.0f32);
    if m * n == 0 {
        return Ok(CpuStorage::F32(out));
    }
    // With k == 0 the operands may be empty: the product is then zeros plus the epilogue.
    let (ad, bd) = if k == 0 {
        (&ad[..0], &bd[..0])
    } else {
        (ad, bd)
    };
    gemm_rounded(
        m,
        n,
        k,
        h,
        MatRef {
            data: ad,
            rs: al.strides()[0],
            cs: al.strides()[1],
        },
        MatRef {
            data: bd,
            rs: bl.strides()[0],
            cs: bl.strides()[1],
        },
        MatMut {
            data: &mut out,
            rs: n,
            cs: 1,
        },
        Epilogue {
            bias: bias.as_deref(),
            act: spec.act,
        },
    )
    .map_err(|e| Error::invalid(OP, format!("{e} ({KERNEL_CHECKED})")))?;
    Ok(CpuStorage::F32(out))
}
