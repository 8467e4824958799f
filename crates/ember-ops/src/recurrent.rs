//! The recurrent cells ember runs, as plain data shared by the kernels, the tensor op and the
//! layers.
//!
//! A recurrent layer splits into an input projection for every time step at once (one GEMM,
//! `x·W_ihᵀ + b_ih`, an ordinary Linear) and the recurrence proper, which a fused op runs step
//! by step: `h_{t-1}·W_hhᵀ + b_hh`, then the cell's gate nonlinearities and state update. The
//! cell kind decides how many gate blocks of `hidden` columns the projections have
//! ([`CellKind::gates`]) and what the update is. The equations are PyTorch's (`nn.RNN`,
//! `nn.LSTM`, `nn.GRU`), gate blocks in PyTorch's order, both biases present:
//!
//! - `Rnn(act)`: `h = act(x_t + W_hh h + b_hh)` (act = tanh or relu).
//! - `Lstm`, gates `i, f, g, o`: `i = σ(·)`, `f = σ(·)`, `g = tanh(·)`, `o = σ(·)`,
//!   `c = f·c' + i·g`, `h = o·tanh(c)`.
//! - `Gru`, gates `r, z, n`: `r = σ(x_r + W_hr h + b_hr)`, `z = σ(x_z + W_hz h + b_hz)`,
//!   `n = tanh(x_n + r·(W_hn h + b_hn))`, `h = (1 − z)·n + z·h'` — the reset gate applied after
//!   the recurrent product, as PyTorch and Keras's `reset_after=True` do.

/// The nonlinearity of a simple (Elman) recurrent cell, PyTorch's `nonlinearity=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RnnActivation {
    /// tanh (PyTorch's and Keras's default).
    Tanh,
    /// max(x, 0).
    Relu,
}

/// Which recurrent cell a sequence op runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// A simple recurrent cell with one gate block.
    Rnn(RnnActivation),
    /// Long short-term memory: four gate blocks `i, f, g, o` and a cell state.
    Lstm,
    /// Gated recurrent unit: three gate blocks `r, z, n`.
    Gru,
}

impl CellKind {
    /// One of each kind, for tests.
    pub const ALL: [CellKind; 4] = [
        CellKind::Rnn(RnnActivation::Tanh),
        CellKind::Rnn(RnnActivation::Relu),
        CellKind::Lstm,
        CellKind::Gru,
    ];

    /// Gate blocks of `hidden` columns in the projections (`W_ih` is `[gates·hidden, F]`).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn(_) => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the cell carries a second state (LSTM's `c`).
    pub fn has_cell_state(self) -> bool {
        matches!(self, CellKind::Lstm)
    }

    /// A short lowercase name: `rnn_tanh`, `rnn_relu`, `lstm`, `gru`.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn(RnnActivation::Tanh) => "rnn_tanh",
            CellKind::Rnn(RnnActivation::Relu) => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// The numeric code a CUDA kernel switches on.
    pub fn code(self) -> u32 {
        match self {
            CellKind::Rnn(RnnActivation::Tanh) => 0,
            CellKind::Rnn(RnnActivation::Relu) => 1,
            CellKind::Lstm => 2,
            CellKind::Gru => 3,
        }
    }

    /// Values the forward saves per (step, row) for the backward, beyond the outputs:
    /// none for a simple cell (its derivative comes from h), the four activated gates and c
    /// for an LSTM, the three activated gates and `W_hn h + b_hn` for a GRU.
    pub fn saved_per_row(self, hidden: usize) -> usize {
        match self {
            CellKind::Rnn(_) => 0,
            CellKind::Lstm => 5 * hidden,
            CellKind::Gru => 4 * hidden,
        }
    }
}

/// The geometry of one recurrent sequence op: batch-first `[n, t, ·]` sequences, `hidden`
/// units, run forward in time or (`reverse`) from the last step to the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecurrentSpec {
    /// The cell.
    pub kind: CellKind,
    /// Batch size N.
    pub n: usize,
    /// Time steps T.
    pub t: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Run from step T−1 down to 0 (the backward direction of a bidirectional layer); outputs
    /// stay at their own step's position.
    pub reverse: bool,
}

impl RecurrentSpec {
    /// Columns of the gate projections, `gates·hidden`.
    pub fn gate_width(&self) -> usize {
        self.kind.gates() * self.hidden
    }

    /// The time index of the `s`-th step processed (`s` in 0..t).
    pub fn step(&self, s: usize) -> usize {
        if self.reverse { self.t - 1 - s } else { s }
    }
}
