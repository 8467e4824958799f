//! Recurrent layers: SimpleRNN, LSTM and GRU over batch-first sequences `[N, T, F]`.
//!
//! One type, [`Recurrent`], built by [`Recurrent::simple_rnn`], [`Recurrent::lstm`] or
//! [`Recurrent::gru`], covers the three cells, stacked layers (`num_layers`) and bidirectional
//! runs. Each layer and direction is computed in two parts: the input projection of every
//! step at once (`x·W_ihᵀ + b_ih` over `[N·T, F]`, one GEMM) and the recurrence, ember-core's
//! fused [`recurrent`] op (one GEMM and one fused cell kernel per step, exact BPTT). The
//! equations are PyTorch's ([`CellKind`] lists them: LSTM gates `i, f, g, o`, GRU gates
//! `r, z, n` with the reset gate applied to `W_hn h + b_hn`, as PyTorch and Keras's
//! `reset_after=True`), with both biases.
//!
//! Parameters carry PyTorch's names and shapes, so a PyTorch `state_dict` loads by name
//! ([`Recurrent::load_named`]) and checkpoints round-trip: `weight_ih_l{k}` `[G·H, F]`,
//! `weight_hh_l{k}` `[G·H, H]`, `bias_ih_l{k}`, `bias_hh_l{k}` `[G·H]`, and the same with a
//! `_reverse` suffix for the backward direction. Initialisation is PyTorch's: every parameter
//! uniform on `[−1/√H, 1/√H)` (Keras instead uses Glorot/orthogonal kernels and zero biases
//! with a unit LSTM forget bias).
//!
//! Output: with `return_sequences`, the hidden state of every step `[N, T, D·H]` (D = 2 when
//! bidirectional: forward and backward states concatenated, PyTorch's order); otherwise the
//! final state `[N, D·H]` — the forward direction's state after the last step and the
//! backward direction's after step 0. Masks (`forward_masked`, Keras's convention: 1 = real
//! step, 0 = padding): a padded step carries the state over and outputs it, so for a masked
//! batch the final state is each row's state after its last real step, and the mask is passed
//! on only with `return_sequences`.

use crate::error::{NnError, Result};
use crate::module::Module;
use ember_core::{
    CellKind, DType, Device, RecurrentInputs, RnnActivation, Tensor, no_grad, recurrent,
};
use rand::Rng;
use rand::rngs::StdRng;

/// Options shared by the three recurrent layers; `Default` is one unidirectional layer
/// returning its last state, f32 on the CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecurrentOptions {
    /// Output every step's state `[N, T, D·H]` (true) or the final state `[N, D·H]` (false).
    pub return_sequences: bool,
    /// Run a second layer backward in time and concatenate its states (PyTorch's
    /// `bidirectional=True`, Keras's `Bidirectional(..., merge_mode="concat")`).
    pub bidirectional: bool,
    /// Stacked layers; layer k > 0 reads the full output sequence of layer k − 1.
    pub num_layers: usize,
    /// Element type of the parameters.
    pub dtype: DType,
    /// Where the parameters live.
    pub device: Device,
}

impl Default for RecurrentOptions {
    fn default() -> Self {
        RecurrentOptions {
            return_sequences: false,
            bidirectional: false,
            num_layers: 1,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// The four parameters of one layer and direction.
#[derive(Debug, Clone)]
struct Direction {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

/// A SimpleRNN, LSTM or GRU layer (stacked, optionally bidirectional). See the module docs.
#[derive(Debug, Clone)]
pub struct Recurrent {
    kind: CellKind,
    input_size: usize,
    units: usize,
    opts: RecurrentOptions,
    /// `layers[k][d]`, d = 0 forward, 1 backward.
    layers: Vec<Vec<Direction>>,
}

fn config<T>(msg: String) -> Result<T> {
    Err(NnError::Config(msg))
}

impl Recurrent {
    /// A simple (Elman) recurrent layer with `activation` (PyTorch's `nn.RNN`, Keras's
    /// `SimpleRNN`).
    pub fn simple_rnn(
        input_size: usize,
        units: usize,
        activation: RnnActivation,
        opts: RecurrentOptions,
        rng: &mut StdRng,
    ) -> Result<Recurrent> {
        Recurrent::new(CellKind::Rnn(activation), input_size, units, opts, rng)
    }

    /// An LSTM layer (PyTorch's `nn.LSTM`).
    pub fn lstm(
        input_size: usize,
        units: usize,
        opts: RecurrentOptions,
        rng: &mut StdRng,
    ) -> Result<Recurrent> {
        Recurrent::new(CellKind::Lstm, input_size, units, opts, rng)
    }

    /// A GRU layer (PyTorch's `nn.GRU`; Keras's `GRU` with `reset_after=True`).
    pub fn gru(
        input_size: usize,
        units: usize,
        opts: RecurrentOptions,
        rng: &mut StdRng,
    ) -> Result<Recurrent> {
        Recurrent::new(CellKind::Gru, input_size, units, opts, rng)
    }

    /// A layer of any cell kind, parameters drawn in PyTorch's order (per layer, per direction:
    /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`) from U(−1/√H, 1/√H).
    pub fn new(
        kind: CellKind,
        input_size: usize,
        units: usize,
        opts: RecurrentOptions,
        rng: &mut StdRng,
    ) -> Result<Recurrent> {
        let name = kind_name(kind);
        if input_size == 0 || units == 0 || opts.num_layers == 0 {
            return config(format!(
                "{name}: input size {input_size}, units {units} and num_layers {} must be positive",
                opts.num_layers
            ));
        }
        let g = kind.gates() * units;
        let dirs = if opts.bidirectional { 2 } else { 1 };
        let k = 1.0 / (units as f64).sqrt();
        let mut draw = |shape: &[usize]| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-k..k)).collect();
            let t = Tensor::from_vec(v, shape.to_vec(), Device::Cpu)?.to_dtype(opts.dtype)?;
            let t = if opts.device == Device::Cpu {
                t
            } else {
                t.to_device(opts.device)?
            };
            Ok(t.as_variable())
        };
        let mut layers = Vec::with_capacity(opts.num_layers);
        for l in 0..opts.num_layers {
            let inp = if l == 0 { input_size } else { dirs * units };
            let mut ds = Vec::with_capacity(dirs);
            for _ in 0..dirs {
                ds.push(Direction {
                    w_ih: draw(&[g, inp])?,
                    w_hh: draw(&[g, units])?,
                    b_ih: draw(&[g])?,
                    b_hh: draw(&[g])?,
                });
            }
            layers.push(ds);
        }
        Ok(Recurrent {
            kind,
            input_size,
            units,
            opts,
            layers,
        })
    }

    /// Builds the layer a model file describes: per-example input `shape` `[T, features]`,
    /// `(return_sequences, bidirectional, num_layers)`, f32 on `device`.
    pub fn from_spec(
        kind: CellKind,
        units: usize,
        (return_sequences, bidirectional, num_layers): (bool, bool, usize),
        shape: &[usize],
        device: Device,
        rng: &mut StdRng,
    ) -> Result<Recurrent> {
        let [_, f] = shape else {
            return config(format!(
                "{} takes [steps, features] per example, got {shape:?}",
                kind_name(kind)
            ));
        };
        let opts = RecurrentOptions {
            return_sequences,
            bidirectional,
            num_layers,
            device,
            ..RecurrentOptions::default()
        };
        Recurrent::new(kind, *f, units, opts, rng)
    }

    /// The cell kind.
    pub fn cell(&self) -> CellKind {
        self.kind
    }

    /// Hidden units per direction.
    pub fn units(&self) -> usize {
        self.units
    }

    /// Output features per step: units × directions.
    pub fn output_size(&self) -> usize {
        self.units * if self.opts.bidirectional { 2 } else { 1 }
    }

    /// Copies values into the parameters by PyTorch's names (`weight_ih_l0`, …,
    /// `bias_hh_l1_reverse`), as from an `nn.LSTM`/`nn.GRU`/`nn.RNN` `state_dict`. Every
    /// parameter must be present with its shape; values are converted to the parameters'
    /// dtype and device. Checks everything before changing anything; unknown names are an
    /// error too (they would be silently dropped weights).
    pub fn load_named(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let params = self.parameters();
        for (name, t) in tensors {
            if !params.iter().any(|(p, _)| p == name) {
                return config(format!(
                    "{}: no parameter named {name:?} (expected {:?})",
                    self.describe(),
                    params.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
                ));
            }
            let _ = t;
        }
        let mut plan = Vec::with_capacity(params.len());
        for (name, p) in &params {
            let Some((_, t)) = tensors.iter().find(|(n, _)| n == name) else {
                return config(format!("{}: missing parameter {name:?}", self.describe()));
            };
            if t.shape() != p.shape() {
                return config(format!(
                    "{}: {name} has shape {:?}, expected {:?}",
                    self.describe(),
                    t.shape(),
                    p.shape()
                ));
            }
            plan.push((
                p,
                t.to_dtype(p.dtype())?.to_device(p.device())?.contiguous()?,
            ));
        }
        no_grad(|| -> Result<()> {
            for (p, t) in plan {
                p.assign(&t)?;
            }
            Ok(())
        })
    }

    /// Runs one direction of one layer over `x` `[N, T, F]`: `(sequence, final state)`.
    fn run(
        &self,
        d: &Direction,
        x: &Tensor,
        mask: Option<&Tensor>,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let s = x.shape();
        let (n, t, f) = (s[0], s[1], s[2]);
        let g = d.w_ih.shape()[0];
        let xp = x
            .reshape(vec![n * t, f])?
            .linear(&d.w_ih, Some(&d.b_ih), ember_core::Activation::None)?
            .reshape(vec![n, t, g])?;
        let out = recurrent(
            self.kind,
            reverse,
            RecurrentInputs {
                x_proj: &xp,
                h0: None,
                c0: None,
                w_hh: &d.w_hh,
                b_hh: &d.b_hh,
                mask,
            },
        )?;
        Ok((out.output, out.h_n))
    }

    fn run_all(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 3 || s[2] != self.input_size {
            return config(format!(
                "{}: expected input [batch, steps, {}], got {s:?}",
                self.describe(),
                self.input_size
            ));
        }
        let mask = match mask {
            Some(m) if m.shape() != &s[..2] => {
                return config(format!(
                    "{}: mask {:?} must be [batch, steps] = {:?} of the input {s:?}",
                    self.describe(),
                    m.shape(),
                    &s[..2]
                ));
            }
            Some(m) if m.dtype() != x.dtype() => Some(m.to_dtype(x.dtype())?),
            Some(m) => Some(m.clone()),
            None => None,
        };
        let mut input = x.clone();
        let last_layer = self.layers.len() - 1;
        for (l, dirs) in self.layers.iter().enumerate() {
            let mut seqs = Vec::with_capacity(2);
            let mut finals = Vec::with_capacity(2);
            for (di, d) in dirs.iter().enumerate() {
                let (seq, fin) = self.run(d, &input, mask.as_ref(), di == 1)?;
                seqs.push(seq);
                finals.push(fin);
            }
            if l == last_layer && !self.opts.return_sequences {
                return Ok(if finals.len() == 1 {
                    finals.swap_remove(0)
                } else {
                    Tensor::cat(&[&finals[0], &finals[1]], 1)?
                });
            }
            input = if seqs.len() == 1 {
                seqs.swap_remove(0)
            } else {
                Tensor::cat(&[&seqs[0], &seqs[1]], 2)?
            };
        }
        Ok(input)
    }
}

fn kind_name(kind: CellKind) -> &'static str {
    match kind {
        CellKind::Rnn(_) => "SimpleRNN",
        CellKind::Lstm => "LSTM",
        CellKind::Gru => "GRU",
    }
}

impl Module for Recurrent {
    /// `[N, T, F]` → `[N, T, D·H]` (return_sequences) or `[N, D·H]`.
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        self.run_all(x, None)
    }

    /// As [`Module::forward`], reading the padding mask; the mask is returned with
    /// `return_sequences` and dropped (`None`) with the final state.
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        _training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let y = self.run_all(x, mask)?;
        let m = if self.opts.return_sequences {
            mask.cloned()
        } else {
            None
        };
        Ok((y, m))
    }

    /// PyTorch's names and order: per layer k, forward then `_reverse`: `weight_ih_l{k}`,
    /// `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`.
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (l, dirs) in self.layers.iter().enumerate() {
            for (di, d) in dirs.iter().enumerate() {
                let sfx = if di == 1 { "_reverse" } else { "" };
                v.push((format!("weight_ih_l{l}{sfx}"), d.w_ih.clone()));
                v.push((format!("weight_hh_l{l}{sfx}"), d.w_hh.clone()));
                v.push((format!("bias_ih_l{l}{sfx}"), d.b_ih.clone()));
                v.push((format!("bias_hh_l{l}{sfx}"), d.b_hh.clone()));
            }
        }
        v
    }

    fn kind(&self) -> &'static str {
        kind_name(self.kind)
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", kind_name(self.kind), self.units);
        if let CellKind::Rnn(RnnActivation::Relu) = self.kind {
            s.push_str(", relu");
        }
        if self.opts.num_layers > 1 {
            s.push_str(&format!(", {} layers", self.opts.num_layers));
        }
        if self.opts.bidirectional {
            s.push_str(", bidirectional");
        }
        if self.opts.return_sequences {
            s.push_str(", sequences");
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.len() != 2 || input[1] != self.input_size {
            return config(format!(
                "{}: expected [steps, {}] per example, got {input:?}",
                self.describe(),
                self.input_size
            ));
        }
        Ok(if self.opts.return_sequences {
            vec![input[0], self.output_size()]
        } else {
            vec![self.output_size()]
        })
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
