//! How a 2-D padding fills the border it adds (PyTorch's `F.pad` modes), shared by every
//! device's pad kernels.
//!
//! Padding is given per side of the last two dimensions, in PyTorch's order
//! `(left, right, top, bottom)`. ember pads only outward (no negative, cropping pads).

/// The value a pad writes into the border.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PadMode {
    /// Every border element is this value (PyTorch's `mode="constant"`, `value=`).
    Constant(f64),
    /// The input mirrored about its edge elements, the edge not repeated (PyTorch's
    /// `mode="reflect"`: `[1 2 3]` padded by 2 on each side is `[3 2 1 2 3 2 1]`). Each pad must
    /// be smaller than the extent it pads.
    Reflect,
}

impl PadMode {
    /// One of each mode, for tests.
    pub const ALL: [PadMode; 2] = [PadMode::Constant(0.0), PadMode::Reflect];

    /// The numeric code a CUDA kernel switches on.
    pub fn code(self) -> u32 {
        match self {
            PadMode::Constant(_) => 0,
            PadMode::Reflect => 1,
        }
    }
}

/// Padding of the last two dimensions, per side, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pad2d {
    /// Columns added before the first.
    pub left: usize,
    /// Columns added after the last.
    pub right: usize,
    /// Rows added before the first.
    pub top: usize,
    /// Rows added after the last.
    pub bottom: usize,
}

impl Pad2d {
    /// From PyTorch's `(left, right, top, bottom)` order.
    pub fn new(left: usize, right: usize, top: usize, bottom: usize) -> Pad2d {
        Pad2d {
            left,
            right,
            top,
            bottom,
        }
    }

    /// The same amount on all four sides.
    pub fn uniform(p: usize) -> Pad2d {
        Pad2d::new(p, p, p, p)
    }

    /// The padded extents of an `h`×`w` plane (`None` when they overflow).
    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((
            h.checked_add(self.top)?.checked_add(self.bottom)?,
            w.checked_add(self.left)?.checked_add(self.right)?,
        ))
    }

    /// Checks the pads against an `h`×`w` plane for `mode` (reflect pads must be smaller than
    /// the extent they pad, as PyTorch requires).
    pub fn validate(&self, mode: PadMode, h: usize, w: usize) -> Result<(), String> {
        if self.output(h, w).is_none() {
            return Err(format!("padding {self:?} of a {h}×{w} plane overflows"));
        }
        if let PadMode::Reflect = mode {
            if self.left.max(self.right) >= w.max(1) || self.top.max(self.bottom) >= h.max(1) {
                return Err(format!(
                    "reflect padding (left {}, right {}, top {}, bottom {}) must be smaller than \
                     the padded extents (height {h}, width {w})",
                    self.left, self.right, self.top, self.bottom
                ));
            }
            if h == 0 || w == 0 {
                return Err(format!("reflect padding of an empty {h}×{w} plane"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_pads_must_be_smaller_than_the_extent() {
        let p = Pad2d::new(2, 2, 0, 0);
        assert!(p.validate(PadMode::Reflect, 1, 3).is_ok());
        assert!(
            p.validate(PadMode::Reflect, 1, 2)
                .unwrap_err()
                .contains("smaller")
        );
        assert!(p.validate(PadMode::Constant(0.0), 1, 2).is_ok());
        assert_eq!(p.output(1, 3), Some((1, 7)));
        assert_eq!(Pad2d::uniform(usize::MAX).output(1, 1), None);
    }

    #[test]
    fn codes_are_dense() {
        let c: Vec<u32> = PadMode::ALL.iter().map(|m| m.code()).collect();
        assert_eq!(c, vec![0, 1]);
    }
}
