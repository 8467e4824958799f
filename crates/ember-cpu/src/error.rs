//! The error ember-cpu's lockstep slice kernels report: operands whose lengths do not match.
//!
//! Kernels that walk a parameter and its gradient and state buffers (the optimizer steps), or
//! predictions and targets (the losses), in lockstep check the lengths first. Without the
//! check, zipping slices of different lengths would quietly process only the shorter prefix —
//! a wrong answer with no sign of it. ember-core checks shapes before it calls a kernel; this
//! guards everyone who calls the kernels directly.

/// An operand of a slice kernel holds a different number of values than the kernel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthMismatch {
    /// The kernel, e.g. "adam_step".
    pub op: &'static str,
    /// The operand, e.g. "gradient".
    pub operand: &'static str,
    /// The length the kernel needs (the first operand's).
    pub expected: usize,
    /// The length given.
    pub got: usize,
}

impl std::fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the {} holds {} values, expected {}",
            self.op, self.operand, self.got, self.expected
        )
    }
}

impl std::error::Error for LengthMismatch {}

/// `Err` naming `operand` when `got != expected`.
pub(crate) fn check_len(
    op: &'static str,
    operand: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), LengthMismatch> {
    if got == expected {
        Ok(())
    } else {
        Err(LengthMismatch {
            op,
            operand,
            expected,
            got,
        })
    }
}
