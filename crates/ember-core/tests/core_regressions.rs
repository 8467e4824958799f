//! Regression tests for defects in ember-core's public API found by the property tests
//! (tests/properties.rs) and the panic audit (scripts/panic-audit.sh). Each test is named after
//! its bug and states what must hold: a `Result`-returning call must give `Err` (or a correct
//! value), never panic. Tests of open bugs are `#[ignore]`d with the bug in one line; remove the
//! `ignore` together with the fix.

use ember_core::{DType, Device, Tensor};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f` and fails the test with the panic message if it panics; returns `f`'s value.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}

/// A shape whose element count overflows `usize`.
fn overflowing() -> Vec<usize> {
    vec![usize::MAX, 2]
}

#[test]
// Fixed; was: bug: Tensor::zeros/full multiply the extents unchecked (Shape::elem_count) and panic on overflow; found by proptest (overflowing sizes)
fn zeros_with_overflowing_element_count_panics() {
    let r = no_panic("Tensor::zeros([usize::MAX, 2])", || {
        Tensor::zeros(overflowing(), DType::F32, Device::Cpu)
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: Tensor::from_vec computes the shape's element count unchecked and panics on overflow; found by proptest (overflowing sizes)
fn from_vec_with_overflowing_shape_panics() {
    let r = no_panic("Tensor::from_vec(vec![], [usize::MAX, 2])", || {
        Tensor::from_vec(Vec::<f32>::new(), overflowing(), Device::Cpu)
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: Tensor::reshape to a shape whose element count overflows panics instead of returning Err; found by proptest (overflowing sizes)
fn reshape_to_overflowing_shape_panics() {
    let t = Tensor::zeros(2, DType::F32, Device::Cpu).unwrap();
    let r = no_panic("reshape([usize::MAX, 2])", || t.reshape(overflowing()));
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: broadcast_to accepts a shape whose element count overflows and a later op on the view panics; found by proptest (overflowing sizes)
fn broadcast_to_overflowing_shape_panics() {
    let t = Tensor::zeros(vec![1, 1], DType::F32, Device::Cpu).unwrap();
    let r = no_panic("broadcast_to([usize::MAX, 2])", || {
        t.broadcast_to(overflowing())
            .and_then(|v| v.sum(&[0], false))
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: Tensor::eye(n) computes n * n unchecked and panics for n > 2^32; found by proptest (overflowing sizes)
fn eye_with_overflowing_size_panics() {
    let r = no_panic("Tensor::eye(usize::MAX)", || {
        Tensor::eye(usize::MAX, DType::F32, Device::Cpu)
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: Tensor::arange with an element count beyond usize (end 1e30, step 1) panics with 'capacity overflow'; found by proptest (overflowing sizes)
fn arange_with_overflowing_length_panics() {
    let r = no_panic("Tensor::arange(0, 1e30, 1)", || {
        Tensor::arange(0.0, 1e30, 1.0, DType::F32, Device::Cpu)
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: bug: Tensor::linspace(.., n = usize::MAX) panics with 'capacity overflow'; found by proptest (overflowing sizes)
fn linspace_with_overflowing_length_panics() {
    let r = no_panic("Tensor::linspace(0, 1, usize::MAX)", || {
        Tensor::linspace(0.0, 1.0, usize::MAX, DType::F32, Device::Cpu)
    });
    assert!(r.is_err());
}

#[test]
// Fixed; was: the public Layout::batch_offset divides by a caller's batch extent (0 panics) and indexes strides by batch.len() unchecked; found by the panic audit
fn layout_batch_offset_with_zero_extent_panics() {
    let l = ember_core::Layout::contiguous(&[2, 3]);
    no_panic("Layout::batch_offset(&[0], 0)", || l.batch_offset(&[0], 0));
    no_panic("Layout::batch_offset(&[1, 1, 1], 0)", || {
        l.batch_offset(&[1, 1, 1], 0)
    });
}
