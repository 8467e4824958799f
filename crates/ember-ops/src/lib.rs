//! ember-ops: the op vocabulary of ember, defined once and shared by every crate.
//!
//! Every other crate speaks these types: ember-cpu's kernels take them, ember-cuda's kernels take
//! them and receive their numeric codes, ember-core records them in its graph and re-exports them
//! as its public API. Nothing here computes anything; the crate has no dependencies, so it sits
//! below every other crate without pulling anything in.
//!
//! Each enum has `ALL` (one value of every variant; a variant with parameters appears once, with
//! a representative parameter) and `code()` (the number a CUDA kernel switches on). Tests iterate
//! `ALL`, so a new op is tested without editing a list. The CUDA sources never write a code by
//! hand: [`cuda_defines`] generates their `#define U_NEG 0`… lines from these definitions into
//! the NVRTC prelude, so the two cannot drift.
//!
//! Adding an elementwise op: a variant here (with its `ALL` entry, code and name), its formula and
//! derivative in ember-cpu (`unary::apply` / `unary::derivative`) and in
//! `kernels/elementwise.cu` (`unary_apply` / `unary_deriv`), and a tensor method in ember-core.

mod attention;
mod conv;
mod dtype;
mod ops;
mod optim;
mod pad;
mod recurrent;
mod strided;

pub use attention::AttentionSpec;
pub use conv::{Axis, Conv2dSpec, Pool2dSpec, PoolKind};
pub use dtype::DType;
pub use ops::{Activation, BceForm, BinaryOp, ReduceOp, UnaryOp};
pub use optim::{AdagradConfig, AdamConfig, OptimStep, RmspropConfig, SgdConfig};
pub use pad::{Pad2d, PadMode};
pub use recurrent::{CellKind, RecurrentSpec, RnnActivation};
pub use strided::Strided;

/// The `#define` lines that give the CUDA sources every op code: `U_<NAME>` for [`UnaryOp`]
/// (plus `U_IDENTITY`, the copy kernels' op), `B_<NAME>` for [`BinaryOp`], `R_<NAME>` for
/// [`ReduceOp`] and `ACT_<NAME>` for [`Activation`]. ember-cuda prepends them to every module.
pub fn cuda_defines() -> String {
    let mut s = String::from("// Op codes, generated from the ember-ops crate (do not edit).\n");
    let mut emit = |prefix: &str, name: &str, code: u32| {
        s.push_str(&format!("#define {prefix}_{name} {code}\n"));
    };
    for op in UnaryOp::ALL {
        emit("U", op.cuda_name(), op.code());
    }
    emit("U", "IDENTITY", UnaryOp::IDENTITY_CODE);
    for op in BinaryOp::ALL {
        emit("B", op.cuda_name(), op.code());
    }
    for op in ReduceOp::ALL {
        emit("R", op.cuda_name(), op.code());
    }
    for act in Activation::ALL {
        emit("ACT", act.cuda_name(), act.code());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Codes within one enum are distinct and names are distinct C identifiers.
    fn check_unique(what: &str, items: &[(&'static str, u32)]) {
        let codes: HashSet<u32> = items.iter().map(|i| i.1).collect();
        assert_eq!(
            codes.len(),
            items.len(),
            "{what}: duplicate codes in {items:?}"
        );
        let names: HashSet<&str> = items.iter().map(|i| i.0).collect();
        assert_eq!(
            names.len(),
            items.len(),
            "{what}: duplicate names in {items:?}"
        );
        for (n, _) in items {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{what}: {n} is not an upper-case C identifier"
            );
        }
    }

    #[test]
    fn codes_and_names_are_unique() {
        let mut u: Vec<_> = UnaryOp::ALL
            .iter()
            .map(|o| (o.cuda_name(), o.code()))
            .collect();
        u.push(("IDENTITY", UnaryOp::IDENTITY_CODE));
        check_unique("UnaryOp", &u);
        let b: Vec<_> = BinaryOp::ALL
            .iter()
            .map(|o| (o.cuda_name(), o.code()))
            .collect();
        check_unique("BinaryOp", &b);
        let r: Vec<_> = ReduceOp::ALL
            .iter()
            .map(|o| (o.cuda_name(), o.code()))
            .collect();
        check_unique("ReduceOp", &r);
        let a: Vec<_> = Activation::ALL
            .iter()
            .map(|o| (o.cuda_name(), o.code()))
            .collect();
        check_unique("Activation", &a);
        let d: Vec<_> = DType::ALL.iter().map(|o| (o.name(), o.code())).collect();
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn all_lists_every_variant_once() {
        // `code()` is an exhaustive match, so a variant missing from ALL shows up as a gap in
        // the codes 0..len (the codes are dense by construction).
        fn dense(codes: impl Iterator<Item = u32>, n: usize) {
            let mut c: Vec<u32> = codes.collect();
            c.sort();
            assert_eq!(c, (0..n as u32).collect::<Vec<_>>());
        }
        dense(UnaryOp::ALL.iter().map(|o| o.code()), UnaryOp::ALL.len());
        dense(BinaryOp::ALL.iter().map(|o| o.code()), BinaryOp::ALL.len());
        dense(ReduceOp::ALL.iter().map(|o| o.code()), ReduceOp::ALL.len());
        dense(
            Activation::ALL.iter().map(|o| o.code()),
            Activation::ALL.len(),
        );
        dense(DType::ALL.iter().map(|o| o.code()), DType::ALL.len());
        assert_eq!(UnaryOp::IDENTITY_CODE as usize, UnaryOp::ALL.len());
    }

    #[test]
    fn defines_name_every_code() {
        let d = cuda_defines();
        assert!(d.contains("#define U_NEG 0\n"));
        assert!(d.contains(&format!("#define U_IDENTITY {}\n", UnaryOp::IDENTITY_CODE)));
        assert!(d.contains("#define B_ADD 0\n"));
        assert!(d.contains("#define R_SUM 0\n"));
        assert!(d.contains("#define ACT_NONE 0\n"));
        for op in UnaryOp::ALL {
            assert!(d.contains(&format!("#define U_{} {}\n", op.cuda_name(), op.code())));
        }
    }

    #[test]
    fn activation_unary_twins() {
        for a in Activation::ALL {
            match a.as_unary() {
                None => assert_eq!(a, Activation::None),
                Some(u) => assert!(UnaryOp::ALL.iter().any(|o| o.code() == u.code())),
            }
        }
    }
}
