//! Checkpoints in the `.safetensors` format: weights, buffers and optimizer state.
//!
//! Names: `layers.{k}.weight` `[out, in]` and `layers.{k}.bias` `[out]` for the k-th Dense layer
//! (PyTorch `nn.Linear` layout), other layers' tensors under their `Sequential` names, and the
//! optimizer's buffers as `optimizer.{parameter}.{buffer}` (e.g. `optimizer.layers.0.weight.m`).
//! The optimizer's name and step count go in the header's metadata (`ember.optimizer`,
//! `ember.optimizer.iterations`).
//!
//! Saving writes a temporary file next to the target, flushes it to disk and renames it over
//! the target, so a crash mid-save leaves the previous checkpoint intact. The temporary file is
//! `.NAME.tmp-PID`; one left by a save that was killed is removed by the next save of the same
//! target (see [`write_atomic`]). Loading checks every
//! name, shape and dtype before it changes anything, and says which one is wrong.

use crate::error::{NnError, Result};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::sequential::Sequential;
use ember_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

const META_OPTIMIZER: &str = "ember.optimizer";
const META_ITERATIONS: &str = "ember.optimizer.iterations";

fn ck_err(path: &Path, message: impl Into<String>) -> NnError {
    NnError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
        source: None,
    }
}

/// A checkpoint error caused by a library call's error `e`, which is kept as its `source()`.
fn ck_src(
    path: &Path,
    message: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> NnError {
    NnError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
        source: Some(Box::new(e)),
    }
}

/// The safetensors dtype for an ember dtype.
fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
    }
}

/// A tensor's values as little-endian bytes of its own dtype.
fn to_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    })
}

/// A tensor of `dtype` and `shape` from little-endian bytes (already checked to match).
fn from_bytes(bytes: &[u8], dtype: DType, shape: &[usize], device: Device) -> Result<Tensor> {
    let t = match dtype {
        DType::F32 => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?
        }
        DType::F64 => {
            let v: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?
        }
        DType::F16 => {
            let v: Vec<half::f16> = bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?
        }
        DType::BF16 => {
            let v: Vec<half::bf16> = bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?
        }
    };
    Ok(if device == Device::Cpu {
        t
    } else {
        t.to_device(device)?
    })
}

/// Saves the network's parameters and buffers, and the optimizer's state if given, to `path`
/// atomically.
pub fn save(path: &Path, network: &Sequential, optimizer: Option<&Optimizer>) -> Result<()> {
    save_with_metadata(path, network, optimizer, &BTreeMap::new())
}

/// Like [`save`], with `extra` key/value text added to the header's metadata (keys starting
/// with `ember.optimizer` and `format` are ember's own and are refused).
pub fn save_with_metadata(
    path: &Path,
    network: &Sequential,
    optimizer: Option<&Optimizer>,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let mut named = network.named_parameters();
    named.extend(network.named_buffers());
    let mut metadata = HashMap::new();
    for (k, v) in extra {
        if k == "format" || k.starts_with(META_OPTIMIZER) {
            return Err(ck_err(path, format!("metadata key '{k}' is reserved")));
        }
        metadata.insert(k.clone(), v.clone());
    }
    metadata.insert("format".to_string(), "pt".to_string());
    if let Some(opt) = optimizer {
        named.extend(opt.state_tensors());
        metadata.insert(META_OPTIMIZER.to_string(), opt.algorithm.name().to_string());
        metadata.insert(META_ITERATIONS.to_string(), opt.iterations().to_string());
    }
    let mut data = Vec::with_capacity(named.len());
    for (name, t) in &named {
        data.push((name.clone(), t.dtype(), t.shape().to_vec(), to_bytes(t)?));
    }
    let mut views = Vec::with_capacity(data.len());
    for (name, dtype, shape, bytes) in &data {
        let view = TensorView::new(st_dtype(*dtype), shape.clone(), bytes)
            .map_err(|e| ck_src(path, format!("tensor '{name}': {e}"), e))?;
        views.push((name.clone(), view));
    }
    let mut bytes = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| ck_src(path, e.to_string(), e))?;
    sort_header(&mut bytes);
    write_atomic(path, &bytes)
}

/// Rewrites the JSON header of serialized safetensors bytes with its keys sorted, in place.
///
/// safetensors writes the metadata map from a `HashMap`, whose order changes from process to
/// process, so two saves of the same weights differed in a few header bytes. Sorting keeps the
/// header's content and length (compact JSON either way), so a checkpoint of the same state is
/// the same bytes every time. Anything unexpected (a header that does not parse, or would change
/// length) leaves the bytes as safetensors wrote them.
fn sort_header(bytes: &mut [u8]) {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    else {
        return;
    };
    let Some(end) = usize::try_from(len).ok().and_then(|n| n.checked_add(8)) else {
        return;
    };
    let Some(header) = bytes.get_mut(8..end) else {
        return;
    };
    let text_len = header.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    // serde_json's `Map` is a BTreeMap (its `preserve_order` feature is off), so re-encoding
    // a parsed `Value` sorts every object's keys.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&header[..text_len]) else {
        return;
    };
    if let Ok(sorted) = serde_json::to_vec(&value)
        && sorted.len() == text_len
    {
        header[..text_len].copy_from_slice(&sorted);
    }
}

/// Writes `bytes` to a temporary file beside `path` (`.NAME.tmp-PID`), syncs it and renames
/// it onto `path`.
///
/// First it removes what earlier saves of the same `path` left behind when they were killed
/// mid-write: only files named exactly `.NAME.tmp-PID` (PID in decimal) whose process is gone
/// (`/proc/PID` absent; where `/proc` is not mounted, files last modified over an hour ago).
/// Other files, and temporary files of running saves, are left alone.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| ck_err(path, "the path has no file name"))?
        .to_string_lossy()
        .to_string();
    remove_stale_temps(path, &file_name);
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |e: std::io::Error| ck_src(path, e.to_string(), e);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Removes temporary files of killed saves of `path` (see [`write_atomic`]); failures to
/// read the directory or remove a file are ignored (the save itself reports real problems).
fn remove_stale_temps(path: &Path, file_name: &str) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{file_name}.tmp-");
    let have_proc = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let gone = if have_proc {
            !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600)
        };
        if gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What [`load`] restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Number of parameter and buffer tensors restored.
    pub tensors: usize,
    /// Whether optimizer state was restored (and its step count).
    pub optimizer_iterations: Option<u64>,
}

/// Loads weights and buffers into `network` and, if `optimizer` is given and the file holds
/// state of the same optimizer, that state. Every name, shape and dtype is checked before any
/// value is changed.
pub fn load(
    path: &Path,
    network: &Sequential,
    optimizer: Option<&mut Optimizer>,
) -> Result<LoadReport> {
    let bytes = std::fs::read(path).map_err(|e| ck_src(path, e.to_string(), e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| ck_src(path, format!("not a safetensors file: {e}"), e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ck_src(path, format!("not a safetensors file: {e}"), e))?;
    let meta = meta.metadata().clone().unwrap_or_default();

    let mut expected = network.named_parameters();
    expected.extend(network.named_buffers());
    let expected_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();

    // 1. Unknown names (other than optimizer state) mean a different architecture.
    for name in st.names() {
        if !name.starts_with("optimizer.") && !expected_names.contains(&name) {
            return Err(ck_err(
                path,
                format!(
                    "unexpected tensor '{name}': the model has no such tensor (it has {})",
                    expected_names.join(", ")
                ),
            ));
        }
    }
    // 2. Every model tensor must be present (checked for all names first, so a model with
    //    more layers is reported as a missing tensor, not as a shape mismatch)...
    let stored = st.names();
    for (name, target) in &expected {
        if !stored.contains(&name.as_str()) {
            return Err(ck_err(
                path,
                format!("missing tensor '{name}' (shape {:?})", target.shape()),
            ));
        }
    }
    // ... with the same shape and dtype.
    let mut loaded = Vec::with_capacity(expected.len());
    for (name, target) in &expected {
        let view = st
            .tensor(name)
            .map_err(|e| ck_src(path, format!("tensor '{name}': {e}"), e))?;
        let t = check_view(
            path,
            name,
            &view,
            target.shape(),
            target.dtype(),
            target.device(),
        )?;
        loaded.push((target, t));
    }
    // 3. Optimizer state, if requested and present.
    let mut restored_opt = None;
    if let (Some(opt), Some(saved_name)) = (optimizer, meta.get(META_OPTIMIZER)) {
        {
            if saved_name != opt.algorithm.name() {
                return Err(ck_err(
                    path,
                    format!(
                        "optimizer state is for '{saved_name}', but the model's optimizer is '{}'",
                        opt.algorithm.name()
                    ),
                ));
            }
            let iterations: u64 = meta
                .get(META_ITERATIONS)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    ck_err(
                        path,
                        format!("metadata '{META_ITERATIONS}' is missing or not a number"),
                    )
                })?;
            let buffer_names = opt.algorithm.buffer_names();
            let mut state = BTreeMap::new();
            for (param, target) in network.named_parameters() {
                let mut bufs = Vec::new();
                for b in &buffer_names {
                    let name = format!("optimizer.{param}.{b}");
                    if let Ok(view) = st.tensor(&name) {
                        bufs.push(check_view(
                            path,
                            &name,
                            &view,
                            target.shape(),
                            target.dtype(),
                            target.device(),
                        )?);
                    }
                }
                if bufs.len() == buffer_names.len() && !bufs.is_empty() {
                    state.insert(param.clone(), bufs);
                } else if !bufs.is_empty() {
                    return Err(ck_err(
                        path,
                        format!(
                            "optimizer state of '{param}' is incomplete: expected buffers {}",
                            buffer_names.join(", ")
                        ),
                    ));
                }
            }
            for name in st.names() {
                if let Some(rest) = name.strip_prefix("optimizer.") {
                    let known = network
                        .named_parameters()
                        .iter()
                        .any(|(p, _)| buffer_names.iter().any(|b| rest == format!("{p}.{b}")));
                    if !known {
                        return Err(ck_err(
                            path,
                            format!(
                                "unexpected optimizer tensor '{name}' for {}",
                                opt.algorithm.name()
                            ),
                        ));
                    }
                }
            }
            restored_opt = Some((opt, iterations, state));
        }
    }
    // All checks passed: now write.
    for (target, t) in &loaded {
        target.assign(t)?;
    }
    let optimizer_iterations = match restored_opt {
        Some((opt, iterations, state)) => {
            opt.set_state(iterations, state)?;
            Some(iterations)
        }
        None => None,
    };
    Ok(LoadReport {
        tensors: loaded.len(),
        optimizer_iterations,
    })
}

/// Checks one stored tensor against the expected shape and dtype and converts it.
fn check_view(
    path: &Path,
    name: &str,
    view: &TensorView<'_>,
    shape: &[usize],
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    if view.shape() != shape {
        return Err(ck_err(
            path,
            format!(
                "tensor '{name}' has shape {:?} in the file, the model expects {:?}",
                view.shape(),
                shape
            ),
        ));
    }
    if view.dtype() != st_dtype(dtype) {
        return Err(ck_err(
            path,
            format!(
                "tensor '{name}' has dtype {:?} in the file, the model expects {dtype}",
                view.dtype()
            ),
        ));
    }
    from_bytes(view.data(), dtype, shape, device)
}

/// The text metadata of a checkpoint's header (`format`, `ember.optimizer`, `ember.model`, …),
/// read without loading any tensor.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| ck_src(path, e.to_string(), e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| ck_src(path, format!("not a safetensors file: {e}"), e))?;
    Ok(meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// The name of the optimizer whose state `path` holds (`None` for a weights-only file), read
/// from the header without loading any tensor.
pub fn stored_optimizer(path: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(path).map_err(|e| ck_src(path, e.to_string(), e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| ck_src(path, format!("not a safetensors file: {e}"), e))?;
    Ok(meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_OPTIMIZER).cloned()))
}

impl Model {
    /// Saves weights, buffers, optimizer state and [`Model::metadata`] to `path`
    /// (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_with_metadata(path, &self.network, Some(&self.optimizer), &self.metadata)
    }

    /// Loads weights, buffers and (when the file has it for the same optimizer) optimizer state.
    pub fn load(&mut self, path: &Path) -> Result<LoadReport> {
        load(path, &self.network, Some(&mut self.optimizer))
    }
}

#[cfg(test)]
mod header_tests {
    use super::sort_header;

    fn framed(header: &str) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn header_keys_are_sorted_in_place() {
        let mut b = framed(r#"{"__metadata__":{"z":"1","format":"pt"},"w":{"a":1},"b":{"a":2}}  "#);
        sort_header(&mut b);
        assert_eq!(
            b,
            framed(r#"{"__metadata__":{"format":"pt","z":"1"},"b":{"a":2},"w":{"a":1}}  "#)
        );
    }

    #[test]
    fn anything_unexpected_is_left_alone() {
        for bad in [framed("{not json}   "), vec![1, 2, 3], framed("")] {
            let mut b = bad.clone();
            sort_header(&mut b);
            assert_eq!(b, bad);
        }
        // A length field pointing past the end.
        let mut b = framed("{}");
        b[0] = 200;
        let before = b.clone();
        sort_header(&mut b);
        assert_eq!(b, before);
    }
}
