//! Plain-data descriptors of the attention family: the geometry and options of one scaled
//! dot-product attention call, shared by ember-core (which validates and records it) and the
//! kernels (which read it). No arithmetic lives here.

/// One scaled dot-product attention call over dense operands: queries `[batch·heads, tq, dh]`,
/// keys `[batch·heads, tk, dh]`, values `[batch·heads, tk, dv]`, output
/// `[batch·heads, tq, dv]`. An optional key keep-mask is `[batch, tk]` (shared by the heads of
/// one example).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Examples (N); the key mask has one row per example.
    pub batch: usize,
    /// Heads per example (H); 1 for 3-D operands.
    pub heads: usize,
    /// Query positions.
    pub tq: usize,
    /// Key (and value) positions.
    pub tk: usize,
    /// Width of a query and a key.
    pub dh: usize,
    /// Width of a value (and of the output).
    pub dv: usize,
    /// Query i sees key j only when j ≤ i (PyTorch's `is_causal`: top-left aligned).
    pub causal: bool,
    /// The factor on q·k (PyTorch's default is 1/√dh).
    pub scale: f64,
}

impl AttentionSpec {
    /// Query-key-value groups (N·H).
    pub fn groups(&self) -> usize {
        self.batch * self.heads
    }
}
