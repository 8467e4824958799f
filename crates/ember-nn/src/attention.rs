//! Attention layers for sequences `[N, T, d]` (batch-first): layer norm, multi-head attention,
//! positional embeddings, pre-norm Transformer blocks and masked global pooling.
//!
//! The layers are thin: the arithmetic is in ember-core's fused ops (`Tensor::layer_norm`,
//! [`scaled_dot_product_attention`], `Tensor::linear`), so each forward here is a few lines a
//! reader can check against the paper. Parameter names are PyTorch's (`nn.LayerNorm`,
//! `nn.MultiheadAttention`, `nn.TransformerEncoderLayer`), so a PyTorch `state_dict` loads by
//! name; initialisation follows PyTorch's defaults unless a doc comment says otherwise.
//!
//! Masks follow ember's convention (see `module.rs`): a `[N, T]` float tensor, 1.0 = real step,
//! 0.0 = padding. Attention gives padded keys zero weight (PyTorch's `key_padding_mask` is the
//! opposite, True = ignore); the pooling layers leave padded steps out and drop the mask.

use crate::error::{NnError, Result, config_err};
use crate::layers::{Dense, Dropout};
use crate::module::Module;
use ember_core::{
    Activation, AttentionOptions, DType, Device, Tensor, scaled_dot_product_attention,
};
use rand::Rng;
use rand::rngs::StdRng;

/// Uniform values on `[-bound, bound)` as a trainable tensor of `shape`.
fn uniform(shape: &[usize], bound: f64, rng: &mut StdRng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * bound)
        .collect();
    Ok(Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?
        .to_dtype(DType::F32)?
        .as_variable())
}

/// A constant-filled trainable f32 tensor.
fn filled(shape: &[usize], value: f64) -> Result<Tensor> {
    Ok(Tensor::full(value, shape.to_vec(), DType::F32, Device::Cpu)?.as_variable())
}

/// A Dense layer initialised as PyTorch's `nn.Linear`: weight and bias uniform on
/// ±1/√in_features (Kaiming-uniform with a = √5).
fn torch_linear(
    in_features: usize,
    out_features: usize,
    act: Activation,
    rng: &mut StdRng,
) -> Result<Dense> {
    let bound = 1.0 / (in_features as f64).sqrt();
    let w = uniform(&[out_features, in_features], bound, rng)?;
    let b = uniform(&[out_features], bound, rng)?;
    Dense::from_tensors(w, Some(b), act)
}

/// Prefixes local parameter names (`"weight"` → `"norm1.weight"`).
fn prefixed(prefix: &str, params: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    params
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

/// The per-step width of a sequence input `[N, T, d]`, or an error naming the layer.
fn seq_width(layer: &str, x: &Tensor, want: usize) -> Result<(usize, usize)> {
    match x.shape() {
        &[n, t, d] if d == want => Ok((n, t)),
        s => config_err(format!(
            "{layer}: expected a sequence [batch, steps, {want}], got {s:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------

/// Layer normalisation over the last axis (PyTorch's `nn.LayerNorm(d)`: `weight` ones, `bias`
/// zeros, eps 1e-5).
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    d: usize,
}

impl LayerNorm {
    /// A layer norm over `d` features, eps 1e-5 (PyTorch's default; Keras's is 1e-3).
    pub fn new(d: usize) -> Result<LayerNorm> {
        LayerNorm::with_eps(d, 1e-5)
    }

    /// A layer norm with an explicit eps.
    pub fn with_eps(d: usize, eps: f64) -> Result<LayerNorm> {
        if d == 0 || eps.is_nan() || eps < 0.0 {
            return config_err(format!(
                "LayerNorm: needs d ≥ 1 and eps ≥ 0, got d {d}, eps {eps}"
            ));
        }
        Ok(LayerNorm {
            weight: filled(&[d], 1.0)?,
            bias: filled(&[d], 0.0)?,
            eps,
            d,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        if x.shape().last() != Some(&self.d) {
            return config_err(format!(
                "LayerNorm({}): expected input [..., {}], got {:?}",
                self.d,
                self.d,
                x.shape()
            ));
        }
        Ok(x.layer_norm(Some(&self.weight), Some(&self.bias), self.eps)?)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
    fn kind(&self) -> &'static str {
        "LayerNorm"
    }
    fn describe(&self) -> String {
        format!("LayerNorm {}", self.d)
    }
}

// ---------------------------------------------------------------------------------------------

/// Multi-head attention (Vaswani et al. 2017), PyTorch's `nn.MultiheadAttention(E, heads,
/// batch_first=True)` without attention dropout: `in_proj_weight [3E, E]` (query, key, value
/// projections stacked), `in_proj_bias [3E]`, `out_proj.weight [E, E]`, `out_proj.bias [E]`.
/// Initialised as PyTorch: Xavier-uniform `in_proj_weight`, zero biases, `out_proj.weight`
/// uniform on ±1/√E.
///
/// In a `Sequential` it is self-attention (q = k = v = x) and reads the padding mask (padded
/// keys get zero weight); [`MultiHeadAttention::forward_qkv`] takes separate inputs for
/// cross-attention.
pub struct MultiHeadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Dense,
    e: usize,
    heads: usize,
    causal: bool,
}

impl MultiHeadAttention {
    /// `heads` heads over model width `e` (`e` divisible by `heads`); `causal` masks the future.
    pub fn new(e: usize, heads: usize, causal: bool, rng: &mut StdRng) -> Result<Self> {
        if e == 0 || heads == 0 || !e.is_multiple_of(heads) {
            return config_err(format!(
                "MultiHeadAttention: the width {e} must be a positive multiple of heads {heads}"
            ));
        }
        let xavier = (6.0 / (e + 3 * e) as f64).sqrt();
        let in_proj_weight = uniform(&[3 * e, e], xavier, rng)?;
        let out_w = uniform(&[e, e], 1.0 / (e as f64).sqrt(), rng)?;
        Ok(MultiHeadAttention {
            in_proj_weight,
            in_proj_bias: filled(&[3 * e], 0.0)?,
            out_proj: Dense::from_tensors(out_w, Some(filled(&[e], 0.0)?), Activation::None)?,
            e,
            heads,
            causal,
        })
    }

    /// `[N, T, E]` → `[N, H, T, E/H]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        Ok(
            x.reshape(vec![s[0], s[1], self.heads, self.e / self.heads])?
                .permute(&[0, 2, 1, 3])?,
        )
    }

    /// Attention of queries `q` `[N, Tq, E]` over keys `k` and values `v` (`[N, Tk, E]`):
    /// `[N, Tq, E]`. `key_mask` `[N, Tk]` (1 = attend, 0 = padding) and `causal` (query i sees
    /// keys j ≤ i) mask keys. A query whose keys are all masked gets the output bias alone
    /// (its attention output is zero; PyTorch gives NaN there).
    pub fn forward_qkv(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
        causal: bool,
    ) -> Result<Tensor> {
        let (n, tq) = seq_width("MultiHeadAttention query", q, self.e)?;
        let (nk, tk) = seq_width("MultiHeadAttention key", k, self.e)?;
        let (nv, tv) = seq_width("MultiHeadAttention value", v, self.e)?;
        if nk != n || nv != n || tv != tk {
            return config_err(format!(
                "MultiHeadAttention: query {:?}, key {:?} and value {:?} disagree",
                q.shape(),
                k.shape(),
                v.shape()
            ));
        }
        let e = self.e;
        let proj = |x: &Tensor, part: usize| -> Result<Tensor> {
            let w = self.in_proj_weight.narrow(0, part * e, e)?;
            let b = self.in_proj_bias.narrow(0, part * e, e)?;
            let t = x.shape()[1];
            Ok(x.reshape(vec![n * t, e])?
                .linear(&w, Some(&b), Activation::None)?
                .reshape(vec![n, t, e])?)
        };
        let (qp, kp, vp) = if q.id() == k.id() && k.id() == v.id() {
            // Self-attention: one GEMM for the three projections, then split the columns.
            let all = q
                .reshape(vec![n * tq, e])?
                .linear(
                    &self.in_proj_weight,
                    Some(&self.in_proj_bias),
                    Activation::None,
                )?
                .reshape(vec![n, tq, 3 * e])?;
            (
                all.narrow(2, 0, e)?,
                all.narrow(2, e, e)?,
                all.narrow(2, 2 * e, e)?,
            )
        } else {
            (proj(q, 0)?, proj(k, 1)?, proj(v, 2)?)
        };
        let o = AttentionOptions {
            causal,
            key_mask,
            scale: None,
        };
        let heads = scaled_dot_product_attention(
            &self.split_heads(&qp)?,
            &self.split_heads(&kp)?,
            &self.split_heads(&vp)?,
            o,
        )?;
        let merged = heads.permute(&[0, 2, 1, 3])?.reshape(vec![n, tq, e])?;
        self.out_proj.forward(&merged, false)
    }

    /// Heads.
    pub fn heads(&self) -> usize {
        self.heads
    }
}

impl Module for MultiHeadAttention {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        Ok(self.forward_masked(x, None, training)?.0)
    }
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        _training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let y = self.forward_qkv(x, x, x, mask, self.causal)?;
        Ok((y, mask.cloned()))
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![
            ("in_proj_weight".into(), self.in_proj_weight.clone()),
            ("in_proj_bias".into(), self.in_proj_bias.clone()),
        ];
        p.extend(prefixed("out_proj", self.out_proj.parameters()));
        p
    }
    fn kind(&self) -> &'static str {
        "MultiHeadAttention"
    }
    fn describe(&self) -> String {
        format!(
            "MultiHeadAttention {} heads{}",
            self.heads,
            if self.causal { ", causal" } else { "" }
        )
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [_, d] if *d == self.e => Ok(input.to_vec()),
            _ => config_err(format!(
                "MultiHeadAttention takes [steps, {}] per example, got {input:?}",
                self.e
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Learned positional embedding: a `[max_len, d]` table (`weight`) whose first T rows are added
/// to a `[N, T, d]` input. Initialised N(0, 0.02²), as GPT-2 and BERT initialise theirs (not
/// PyTorch's `nn.Embedding` default N(0, 1)), so it starts small beside the token embeddings.
pub struct PositionalEmbedding {
    weight: Tensor,
    max_len: usize,
    d: usize,
}

impl PositionalEmbedding {
    /// A table for sequences of up to `max_len` steps of width `d`.
    pub fn new(max_len: usize, d: usize, rng: &mut StdRng) -> Result<Self> {
        if max_len == 0 || d == 0 {
            return config_err(format!(
                "PositionalEmbedding: max_len {max_len} and d {d} must be positive"
            ));
        }
        // Box-Muller normal draws.
        let v: Vec<f64> = (0..max_len * d)
            .map(|_| {
                let u1: f64 = rng.random::<f64>().max(1e-300);
                let u2: f64 = rng.random::<f64>();
                0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        let weight = Tensor::from_vec(v, vec![max_len, d], Device::Cpu)?
            .to_dtype(DType::F32)?
            .as_variable();
        Ok(PositionalEmbedding { weight, max_len, d })
    }
}

impl Module for PositionalEmbedding {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (_, t) = seq_width("PositionalEmbedding", x, self.d)?;
        if t > self.max_len {
            return config_err(format!(
                "PositionalEmbedding: the sequence has {t} steps, more than max_len {}",
                self.max_len
            ));
        }
        let table = self.weight.narrow(0, 0, t)?.to_dtype(x.dtype())?;
        Ok(x.add(&table.unsqueeze(0)?)?)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".into(), self.weight.clone())]
    }
    fn kind(&self) -> &'static str {
        "PositionalEmbedding"
    }
    fn describe(&self) -> String {
        format!("PositionalEmbedding {}×{}", self.max_len, self.d)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [t, d] if *d == self.d && *t <= self.max_len => Ok(input.to_vec()),
            _ => config_err(format!(
                "PositionalEmbedding takes [steps ≤ {}, {}] per example, got {input:?}",
                self.max_len, self.d
            )),
        }
    }
}

/// Fixed sinusoidal positions (Vaswani et al. 2017, §3.5) added to `[N, T, d]`:
/// `pe[t, 2i] = sin(t / 10000^(2i/d))`, `pe[t, 2i+1] = cos(t / 10000^(2i/d))`. No parameters,
/// any length.
pub struct SinusoidalPositional {
    d: usize,
}

impl SinusoidalPositional {
    /// Positions of width `d`.
    pub fn new(d: usize) -> Result<Self> {
        if d == 0 {
            return config_err("SinusoidalPositional: d must be positive");
        }
        Ok(SinusoidalPositional { d })
    }

    /// The `[t, d]` table.
    pub fn table(&self, t: usize) -> Result<Tensor> {
        let d = self.d;
        let mut v = vec![0.0f64; t * d];
        for p in 0..t {
            for j in 0..d {
                let angle = p as f64 / 10000f64.powf((2 * (j / 2)) as f64 / d as f64);
                v[p * d + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() };
            }
        }
        Ok(Tensor::from_vec(v, vec![t, d], Device::Cpu)?)
    }
}

impl Module for SinusoidalPositional {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (_, t) = seq_width("SinusoidalPositional", x, self.d)?;
        let pe = self.table(t)?.to_dtype(x.dtype())?.to_device(x.device())?;
        Ok(x.add(&pe.unsqueeze(0)?)?)
    }
    fn kind(&self) -> &'static str {
        "SinusoidalPositional"
    }
}

// ---------------------------------------------------------------------------------------------

/// A pre-norm Transformer encoder block (Xiong et al. 2020; PyTorch's
/// `nn.TransformerEncoderLayer(d, heads, ff, dropout, activation="gelu", batch_first=True,
/// norm_first=True)`): `x = x + Drop(MHA(LN₁(x)))`, then `x = x + Drop(W₂·gelu(W₁·LN₂(x)))`.
/// Parameters carry PyTorch's names (`self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`,
/// `norm2.*`). Differences from PyTorch: no dropout inside the attention or between the two
/// feed-forward layers (only on the two residual branches). With `causal` it is the block of a
/// decoder-only language model (see [`TransformerDecoderBlock`]).
pub struct TransformerEncoderBlock {
    norm1: LayerNorm,
    attn: MultiHeadAttention,
    drop1: Dropout,
    norm2: LayerNorm,
    linear1: Dense,
    linear2: Dense,
    drop2: Dropout,
    d: usize,
    ff: usize,
}

impl TransformerEncoderBlock {
    /// A block of width `d`, `heads` heads, feed-forward width `ff` and residual `dropout`
    /// (masks seeded from `seed`); `causal` masks the future.
    pub fn new(
        d: usize,
        heads: usize,
        ff: usize,
        dropout: f64,
        causal: bool,
        seed: u64,
        rng: &mut StdRng,
    ) -> Result<Self> {
        if ff == 0 {
            return config_err("TransformerEncoderBlock: ff must be positive");
        }
        let attn = MultiHeadAttention::new(d, heads, causal, rng)?;
        let linear1 = torch_linear(d, ff, Activation::Gelu, rng)?;
        let linear2 = torch_linear(ff, d, Activation::None, rng)?;
        Ok(TransformerEncoderBlock {
            norm1: LayerNorm::new(d)?,
            attn,
            drop1: Dropout::new(dropout, seed)?,
            norm2: LayerNorm::new(d)?,
            linear1,
            linear2,
            drop2: Dropout::new(dropout, seed.wrapping_add(0x9e37))?,
            d,
            ff,
        })
    }

    fn block(&self, x: &Tensor, mask: Option<&Tensor>, training: bool) -> Result<Tensor> {
        seq_width(self.kind_name(), x, self.d)?;
        let h = self.norm1.forward(x, training)?;
        let a = self.attn.forward_qkv(&h, &h, &h, mask, self.attn.causal)?;
        let x = x.add(&self.drop1.forward(&a, training)?)?;
        let h = self.norm2.forward(&x, training)?;
        let f = self
            .linear2
            .forward(&self.linear1.forward(&h, training)?, training)?;
        Ok(x.add(&self.drop2.forward(&f, training)?)?)
    }

    fn kind_name(&self) -> &'static str {
        if self.attn.causal {
            "TransformerDecoderBlock"
        } else {
            "TransformerEncoderBlock"
        }
    }
}

impl Module for TransformerEncoderBlock {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.block(x, None, training)
    }
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.block(x, mask, training)?, mask.cloned()))
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("self_attn", self.attn.parameters());
        p.extend(prefixed("linear1", self.linear1.parameters()));
        p.extend(prefixed("linear2", self.linear2.parameters()));
        p.extend(prefixed("norm1", self.norm1.parameters()));
        p.extend(prefixed("norm2", self.norm2.parameters()));
        p
    }
    fn kind(&self) -> &'static str {
        self.kind_name()
    }
    fn describe(&self) -> String {
        format!(
            "{} d {}, {} heads, ff {}",
            self.kind_name(),
            self.d,
            self.attn.heads,
            self.ff
        )
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.attn.output_shape(input)
    }
}

/// The causal block of a decoder-only language model: a [`TransformerEncoderBlock`] whose
/// attention lets step t see only steps ≤ t (no cross-attention); same parameters and names.
pub struct TransformerDecoderBlock(TransformerEncoderBlock);

impl TransformerDecoderBlock {
    /// A causal pre-norm block (see [`TransformerEncoderBlock::new`]).
    pub fn new(
        d: usize,
        heads: usize,
        ff: usize,
        dropout: f64,
        seed: u64,
        rng: &mut StdRng,
    ) -> Result<Self> {
        Ok(TransformerDecoderBlock(TransformerEncoderBlock::new(
            d, heads, ff, dropout, true, seed, rng,
        )?))
    }
}

impl Module for TransformerDecoderBlock {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.0.forward(x, training)
    }
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.0.forward_masked(x, mask, training)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.0.parameters()
    }
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.0.output_shape(input)
    }
}

// ---------------------------------------------------------------------------------------------

/// Whether pooling averages or takes the maximum.
#[derive(Clone, Copy, PartialEq)]
enum Pool1d {
    Avg,
    Max,
}

/// The masked pooling over T shared by the two layers: `[N, T, F]` → `[N, F]`.
fn pool_1d(kind: Pool1d, name: &str, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (n, t) = match x.shape() {
        &[n, t, _] => (n, t),
        s => {
            return config_err(format!(
                "{name}: expected [batch, steps, features], got {s:?}"
            ));
        }
    };
    let Some(m) = mask else {
        return Ok(match kind {
            Pool1d::Avg => x.mean(&[1], false)?,
            Pool1d::Max => x.max(&[1], false)?,
        });
    };
    if m.shape() != [n, t] {
        return config_err(format!(
            "{name}: mask {:?} does not match input {:?}",
            m.shape(),
            x.shape()
        ));
    }
    let m = m.to_dtype(x.dtype())?.detach();
    let m3 = m.unsqueeze(2)?;
    // Real steps per example (0 for an all-padded one, whose result is zeros).
    let count = m.sum(&[1], true)?;
    let any = count.gt_scalar(0.0)?;
    match kind {
        Pool1d::Avg => {
            let s = x.mul(&m3)?.sum(&[1], false)?;
            Ok(s.div(&count.clamp(1.0, f64::INFINITY)?)?)
        }
        Pool1d::Max => {
            let neg = Tensor::full(f64::NEG_INFINITY, vec![1], x.dtype(), x.device())?;
            let mx = m3.where_cond(x, &neg)?.max(&[1], false)?;
            let zero = Tensor::zeros(vec![1], x.dtype(), x.device())?;
            Ok(any.where_cond(&mx, &zero)?)
        }
    }
}

/// Mean over the time axis, `[N, T, F]` → `[N, F]` (Keras's `GlobalAveragePooling1D`): with a
/// mask, padded steps are left out (an all-padded example gives zeros); the mask stops here.
pub struct GlobalAveragePooling1D;

/// Maximum over the time axis, `[N, T, F]` → `[N, F]` (Keras's `GlobalMaxPooling1D`): with a
/// mask, padded steps are left out (an all-padded example gives zeros); the mask stops here.
pub struct GlobalMaxPooling1D;

macro_rules! pooling_module {
    ($ty:ident, $kind:expr, $name:literal) => {
        impl Module for $ty {
            fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
                pool_1d($kind, $name, x, None)
            }
            fn forward_masked(
                &self,
                x: &Tensor,
                mask: Option<&Tensor>,
                _training: bool,
            ) -> Result<(Tensor, Option<Tensor>)> {
                Ok((pool_1d($kind, $name, x, mask)?, None))
            }
            fn kind(&self) -> &'static str {
                $name
            }
            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                match input {
                    [_, f] => Ok(vec![*f]),
                    _ => Err(NnError::Config(format!(
                        "{} takes [steps, features] per example, got {input:?}",
                        $name
                    ))),
                }
            }
        }
    };
}
pooling_module!(
    GlobalAveragePooling1D,
    Pool1d::Avg,
    "GlobalAveragePooling1D"
);
pooling_module!(GlobalMaxPooling1D, Pool1d::Max, "GlobalMaxPooling1D");
