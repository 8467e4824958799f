//! The device match for the sequence ops (layer norm, attention): each [`StorageData`] method
//! binds every operand to the CPU or one GPU, calls the [`BackendStorage`] method of that
//! device, or reports the devices that differ. Kept apart from `mod.rs` because these ops take
//! more operands (and an optional mask) than the `on_device!` macro covers.

use super::{Arg, BackendStorage, mismatch};
use crate::error::Result;
use crate::storage::{CpuStorage, CudaStorage, StorageData};
use ember_ops::AttentionSpec;

/// Every operand on one device: the CPU storages, or the CUDA ones.
enum On<'a, const N: usize> {
    Cpu([&'a CpuStorage; N]),
    Cuda([&'a CudaStorage; N]),
}

/// The storages of `xs` if all are on the CPU or all on CUDA, else the mismatch error.
fn on<'a, const N: usize>(op: &'static str, xs: [&'a StorageData; N]) -> Result<On<'a, N>> {
    if let Some(c) = xs
        .iter()
        .map(|x| match x {
            StorageData::Cpu(c) => Some(c),
            StorageData::Cuda(_) => None,
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|v| <[&CpuStorage; N]>::try_from(v).ok())
    {
        return Ok(On::Cpu(c));
    }
    if let Some(c) = xs
        .iter()
        .map(|x| match x {
            StorageData::Cuda(c) => Some(c),
            StorageData::Cpu(_) => None,
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|v| <[&CudaStorage; N]>::try_from(v).ok())
    {
        return Ok(On::Cuda(c));
    }
    Err(mismatch(op, &xs.map(|x| x.device())))
}

impl StorageData {
    /// See [`BackendStorage::layer_norm`].
    pub(crate) fn layer_norm(
        (x, xl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
        dims: (usize, usize),
        eps: f64,
    ) -> Result<[StorageData; 3]> {
        Ok(match on("layer_norm", [x, w, b])? {
            On::Cpu([x, w, b]) => {
                CpuStorage::layer_norm((x, xl), (w, wl), (b, bl), dims, eps)?.map(StorageData::Cpu)
            }
            On::Cuda([x, w, b]) => CudaStorage::layer_norm((x, xl), (w, wl), (b, bl), dims, eps)?
                .map(StorageData::Cuda),
        })
    }

    /// See [`BackendStorage::layer_norm_backward`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer_norm_backward(
        (x, xl): Arg<'_, StorageData>,
        (g, gl): Arg<'_, StorageData>,
        (m, ml): Arg<'_, StorageData>,
        (r, rl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        dims: (usize, usize),
        want_dx: bool,
    ) -> Result<(Option<StorageData>, StorageData, StorageData)> {
        use StorageData::{Cpu, Cuda};
        Ok(match on("layer_norm", [x, g, m, r, w])? {
            On::Cpu([x, g, m, r, w]) => {
                let (dx, dw, db) = CpuStorage::layer_norm_backward(
                    (x, xl),
                    (g, gl),
                    (m, ml),
                    (r, rl),
                    (w, wl),
                    dims,
                    want_dx,
                )?;
                (dx.map(Cpu), Cpu(dw), Cpu(db))
            }
            On::Cuda([x, g, m, r, w]) => {
                let (dx, dw, db) = CudaStorage::layer_norm_backward(
                    (x, xl),
                    (g, gl),
                    (m, ml),
                    (r, rl),
                    (w, wl),
                    dims,
                    want_dx,
                )?;
                (dx.map(Cuda), Cuda(dw), Cuda(db))
            }
        })
    }

    /// See [`BackendStorage::attention`].
    pub(crate) fn attention(
        spec: &AttentionSpec,
        (q, ql): Arg<'_, StorageData>,
        (k, kl): Arg<'_, StorageData>,
        (v, vl): Arg<'_, StorageData>,
        keep: Option<Arg<'_, StorageData>>,
    ) -> Result<[StorageData; 2]> {
        const OP: &str = "scaled_dot_product_attention";
        // The mask (when absent, the query stands in for it, unused) goes through the same match.
        let (m, ml) = keep.unwrap_or((q, ql));
        Ok(match on(OP, [q, k, v, m])? {
            On::Cpu([q, k, v, m]) => {
                CpuStorage::attention(spec, (q, ql), (k, kl), (v, vl), keep.map(|_| (m, ml)))?
                    .map(StorageData::Cpu)
            }
            On::Cuda([q, k, v, m]) => {
                CudaStorage::attention(spec, (q, ql), (k, kl), (v, vl), keep.map(|_| (m, ml)))?
                    .map(StorageData::Cuda)
            }
        })
    }

    /// See [`BackendStorage::attention_backward`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_backward(
        spec: &AttentionSpec,
        (q, ql): Arg<'_, StorageData>,
        (k, kl): Arg<'_, StorageData>,
        (v, vl): Arg<'_, StorageData>,
        keep: Option<Arg<'_, StorageData>>,
        (o, ol): Arg<'_, StorageData>,
        (l, ll): Arg<'_, StorageData>,
        (g, gl): Arg<'_, StorageData>,
    ) -> Result<[StorageData; 3]> {
        const OP: &str = "scaled_dot_product_attention";
        let (m, ml) = keep.unwrap_or((q, ql));
        Ok(match on(OP, [q, k, v, m, o, l, g])? {
            On::Cpu([q, k, v, m, o, l, g]) => CpuStorage::attention_backward(
                spec,
                (q, ql),
                (k, kl),
                (v, vl),
                keep.map(|_| (m, ml)),
                (o, ol),
                (l, ll),
                (g, gl),
            )?
            .map(StorageData::Cpu),
            On::Cuda([q, k, v, m, o, l, g]) => CudaStorage::attention_backward(
                spec,
                (q, ql),
                (k, kl),
                (v, vl),
                keep.map(|_| (m, ml)),
                (o, ol),
                (l, ll),
                (g, gl),
            )?
            .map(StorageData::Cuda),
        })
    }
}
