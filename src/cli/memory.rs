//! Memory estimates: the bytes a command is about to allocate, checked against what this
//! machine can give before anything is allocated, so an impossible size is one line naming the
//! flag instead of an allocation abort or an out-of-memory kill minutes later.
//!
//! The limit is `MemAvailable` from `/proc/meminfo` (Linux), or less when the process has an
//! address-space limit (`ulimit -v`): then the room left under it (the limit minus `VmSize`).
//! Where neither file exists it is a fixed 16 GiB. `EMBER_MEMORY_LIMIT` (bytes, with an optional
//! `K`, `M`, `G` or `T` suffix, powers of 1024) overrides them.

/// The limit used where the operating system does not say how much memory is available.
const FALLBACK_LIMIT: u128 = 16 << 30;

/// The memory a command may use, in bytes, and where that figure comes from.
pub fn limit() -> (u128, String) {
    if let Ok(v) = std::env::var("EMBER_MEMORY_LIMIT")
        && let Some(bytes) = parse_bytes(&v)
    {
        return (bytes, format!("EMBER_MEMORY_LIMIT={v}"));
    }
    let available = match available_from_meminfo() {
        Some(bytes) => (
            bytes,
            "memory available (MemAvailable in /proc/meminfo)".to_string(),
        ),
        None => (
            FALLBACK_LIMIT,
            "ember's default limit (no /proc/meminfo)".to_string(),
        ),
    };
    match address_space_room() {
        Some(room) if room < available.0 => (
            room,
            "room under this process's address-space limit (ulimit -v)".into(),
        ),
        _ => available,
    }
}

/// Bytes left under the soft address-space limit (`RLIMIT_AS`, `ulimit -v`): the limit from
/// `/proc/self/limits` minus `VmSize` from `/proc/self/status`; `None` when unlimited or unknown.
fn address_space_room() -> Option<u128> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft: u128 = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?; // "unlimited" does not parse: no limit
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let vm = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let used_kib: u128 = vm.split_whitespace().nth(1)?.parse().ok()?;
    Some(soft.saturating_sub(used_kib * 1024))
}

/// `MemAvailable` in bytes, where `/proc/meminfo` exists.
fn available_from_meminfo() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `123`, `64K`, `8G`, ... as bytes.
fn parse_bytes(s: &str) -> Option<u128> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        'T' | 't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    num.trim().parse::<u128>().ok()?.checked_mul(1 << shift)
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`12.4 GiB`).
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Refuses `bytes` above the limit, in one line starting with `what` (which names the flag).
pub fn check(what: &str, bytes: u128) -> Result<(), String> {
    let (limit, source) = limit();
    if bytes > limit {
        return Err(format!(
            "{what} would need about {bytes} bytes ({}), more than the {limit} bytes ({}) of {source}",
            human(bytes),
            human(limit)
        ));
    }
    Ok(())
}

/// Bytes `ember train` allocates for a dense network of layer widths `widths` (inputs first,
/// outputs last) trained in f32 on `rows` rows in batches of `batch`, with `buffers` optimizer
/// buffers per parameter: (parameters, gradients, buffers; one batch's activations, their
/// pre-activations and gradients; the table in f64 and its tensors, with the epoch's shuffled
/// copy). Returns (the state's bytes, the activations' bytes, the data's bytes).
pub fn training_bytes(
    widths: &[usize],
    rows: usize,
    batch: usize,
    buffers: usize,
) -> (u128, u128, u128) {
    let f32_bytes = 4u128;
    let params: u128 = widths
        .windows(2)
        .map(|w| (w[0] as u128).saturating_mul(w[1] as u128) + w[1] as u128)
        .fold(0, u128::saturating_add);
    let state = params
        .saturating_mul(2 + buffers as u128)
        .saturating_mul(f32_bytes);
    let units: u128 = widths.iter().map(|&w| w as u128).sum();
    let activations = (batch.min(rows) as u128)
        .saturating_mul(units)
        .saturating_mul(3 * f32_bytes);
    let cells = (rows as u128).saturating_mul(widths[0] as u128 + 1);
    let data = cells.saturating_mul(8 + 2 * f32_bytes);
    (state, activations, data)
}

/// Elements one example keeps alive in a layer beyond its output and the output's gradient
/// (which the caller counts): what the layer saves for its backward and the scratch its forward
/// and backward build, for the layers where that dwarfs the output. `input` and `output` are
/// the layer's per-example shapes; `weight_per_out` is the size of the weight's slice per
/// output channel (a convolution's `C·kh·kw`).
///
/// - Conv2d: the patch matrix of the GEMM-based kernel, `OH·OW·C·kh·kw`, in the forward and
///   again in the backward (weight gradient and data gradient), and the output before its
///   activation with its gradient (`2·O·OH·OW`). Measured on examples/models/mnist_cnn.toml
///   (batch 512, `ulimit -v`): training needs 400–440 MiB of address space; this estimate
///   is 430 MiB, with the process itself about 460 MiB (it was 155 MiB without these terms).
/// - SimpleRNN, LSTM, GRU: for each of `T` steps, direction and stacked layer, the input
///   projections and the saved gates (`G·H` each, G = 1, 4, 3) and the states (`2·H`), and
///   their gradients in the backward.
/// - MultiHeadAttention, TransformerEncoder/Decoder: the scores and their softmax per head
///   (`heads·T·T` each) and their gradients, the Q, K, V and context projections (`4·T·d`) and
///   a Transformer block's feed-forward hidden layer (`T·ff`) with their gradients.
pub fn layer_scratch(
    spec: &ember_nn::spec::LayerSpec,
    input: &[usize],
    output: &[usize],
    weight_per_out: usize,
) -> u128 {
    use ember_nn::spec::LayerSpec as L;
    let n = |v: usize| v as u128;
    // The last two extents of a `[T, d]` input; 1 when the shape is shorter.
    let (t, d) = match input {
        [.., t, d] => (n(*t), n(*d)),
        [d] => (1, n(*d)),
        [] => (1, 1),
    };
    let recurrent = |gates: u128, units: usize, bidirectional: bool, layers: usize| {
        let dirs = if bidirectional { 2 } else { 1 };
        let h = n(units);
        2 * t * dirs * n(layers.max(1)) * (2 * gates * h + 2 * h)
    };
    let attention = |heads: usize| 2 * (2 * n(heads) * t * t + 4 * t * d);
    match spec {
        L::Conv2d { .. } => match output {
            [c, oh, ow] => 2 * n(*oh) * n(*ow) * (n(weight_per_out) + n(*c)),
            _ => 0,
        },
        L::SimpleRnn {
            units,
            bidirectional,
            num_layers,
            ..
        } => recurrent(1, *units, *bidirectional, *num_layers),
        L::Lstm {
            units,
            bidirectional,
            num_layers,
            ..
        } => recurrent(4, *units, *bidirectional, *num_layers),
        L::Gru {
            units,
            bidirectional,
            num_layers,
            ..
        } => recurrent(3, *units, *bidirectional, *num_layers),
        L::MultiHeadAttention { heads, .. } => attention(*heads),
        L::TransformerEncoder { heads, ff, .. } | L::TransformerDecoder { heads, ff, .. } => {
            attention(*heads) + 2 * t * n(*ff)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_units() {
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 << 29), "1.5 GiB");
        // 2-3-1 with Adam (2 buffers): 13 parameters × 4 copies × 4 bytes.
        let (state, act, data) = training_bytes(&[2, 3, 1], 10, 4, 2);
        assert_eq!(state, 13 * 4 * 4);
        assert_eq!(act, 4 * 6 * 12);
        assert_eq!(data, 10 * 3 * 16);
        // The case: 30 inputs, --hidden 100000000, two classes.
        let (state, _, _) = training_bytes(&[30, 100_000_000, 1], 569, 10, 2);
        assert!(state > 40 << 30, "{}", human(state));
    }
}
