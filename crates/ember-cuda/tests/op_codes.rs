//! The CUDA sources and the Rust op vocabulary agree: every op code the kernels switch on comes
//! from ember-ops (generated into the NVRTC prelude), no `.cu` file defines its own, and every
//! op in `ALL` has a case in the kernels' switches. Runs without NVRTC or a GPU (text only); the
//! NVRTC compile test then proves each generated name resolves.

use ember_cuda::compile::{COMMON_HEADER, MODULES, module_source};
use ember_ops::{Activation, BinaryOp, ReduceOp, UnaryOp};

/// The source of an embedded module as written (without the prelude).
fn raw(name: &str) -> &'static str {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("module {name} is embedded"))
}

/// The text of the device function starting at `signature`, up to the next top-level item.
fn function<'a>(src: &'a str, signature: &str) -> &'a str {
    let start = src
        .find(signature)
        .unwrap_or_else(|| panic!("{signature} not found"));
    let rest = &src[start..];
    let end = rest[1..].find("\ntemplate").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn no_source_defines_its_own_op_codes() {
    let sources = MODULES
        .iter()
        .map(|(n, s)| (*n, *s))
        .chain([("common.cuh", COMMON_HEADER)]);
    // The names the generated prelude defines.
    let generated: Vec<String> = ember_ops::cuda_defines()
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(generated.len() > 40, "{generated:?}");
    for (name, src) in sources {
        for line in src.lines() {
            let Some(rest) = line.trim_start().strip_prefix("#define ") else {
                continue;
            };
            let defined = rest.split(|c: char| c.is_whitespace() || c == '(').next();
            assert!(
                !defined.is_some_and(|d| generated.iter().any(|g| g == d)),
                "{name} defines an op code by hand ({line}); codes come from ember-ops"
            );
        }
    }
}

#[test]
fn every_op_has_a_case_in_the_kernels() {
    let ew = raw("elementwise");
    let apply = function(ew, "T unary_apply(");
    let deriv = function(ew, "T unary_deriv(");
    for op in UnaryOp::ALL {
        let case = format!("case U_{}:", op.cuda_name());
        assert!(apply.contains(&case), "unary_apply has no {case}");
        assert!(deriv.contains(&case), "unary_deriv has no {case}");
    }
    let binary = function(ew, "T binary_apply(");
    for op in BinaryOp::ALL {
        let case = format!("case B_{}:", op.cuda_name());
        assert!(binary.contains(&case), "binary_apply has no {case}");
    }
    let act = function(COMMON_HEADER, "T apply_act(");
    for a in Activation::ALL {
        if a != Activation::None {
            let case = format!("case ACT_{}:", a.cuda_name());
            assert!(act.contains(&case), "apply_act has no {case}");
        }
    }
    let reduce = raw("reduce");
    for op in ReduceOp::ALL {
        let name = format!("R_{}", op.cuda_name());
        assert!(reduce.contains(&name), "reduce.cu never tests {name}");
    }
}

#[test]
fn the_prelude_carries_the_generated_codes() {
    let src = module_source("elementwise").unwrap();
    for op in UnaryOp::ALL {
        let line = format!("#define U_{} {}\n", op.cuda_name(), op.code());
        assert!(src.contains(&line), "prelude lacks {line:?}");
    }
    let prelude_end = src.find("#line 1 \"elementwise.cu\"").unwrap();
    assert!(src[..prelude_end].contains("#define ACT_GELU_TANH"));
}
