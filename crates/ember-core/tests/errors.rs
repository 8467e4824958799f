//! Every error kind comes back as an `Err` whose message names the op and the shapes, dtypes,
//! devices or values involved. Nothing here panics.

use ember_core::{DType, Device, Reduction, Tensor, loss};

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape.to_vec(), DType::F32, Device::Cpu).unwrap()
}

fn msg<T: std::fmt::Debug>(r: ember_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn unbroadcastable_shapes() {
    assert_eq!(
        msg(t(&[2, 3]).add(&t(&[4, 3]))),
        "add: shapes [2, 3] and [4, 3] cannot be broadcast together"
    );
    assert!(msg(t(&[2]).broadcast_to((3,))).contains("cannot broadcast shape [2] to [3]"));
}

#[test]
fn matmul_inner_dimensions() {
    assert_eq!(
        msg(t(&[2, 3]).matmul(&t(&[4, 5]))),
        "matmul: lhs [2, 3] and rhs [4, 5]: inner dimensions 3 and 4 differ"
    );
    assert!(msg(t(&[2, 2, 3]).matmul(&t(&[3, 3, 4]))).contains("batch dimensions"));
    assert!(
        msg(t(&[4, 3]).linear(&t(&[2, 5]), None, ember_core::Activation::None)).contains("[4, 3]")
    );
}

#[test]
fn bad_axes() {
    assert_eq!(
        msg(t(&[2, 3]).sum(&[2], false)),
        "sum: axis 2 is out of range for a tensor of shape [2, 3] (rank 2)"
    );
    assert!(msg(t(&[2, 3]).softmax(5)).contains("axis 5"));
    assert!(msg(t(&[2, 3]).transpose(0, 3)).contains("[2, 3]"));
    assert!(msg(t(&[2, 3]).sum(&[1, 1], false)).contains("repeat"));
    assert!(msg(t(&[2, 3]).squeeze(0)).contains("extent 2, not 1"));
}

#[test]
fn rank_mismatch() {
    assert!(msg(t(&[2, 3, 4]).to_vec2::<f32>()).contains("rank-2"));
    assert!(msg(t(&[2, 3]).permute(&[0])).contains("not a permutation"));
    assert!(
        msg(Tensor::cat(&[&t(&[2, 3]), &t(&[2, 3, 1])], 0)).contains("differ outside dimension 0")
    );
}

#[test]
fn dtype_and_device_mismatch() {
    let a = t(&[2]);
    let b = Tensor::zeros(2, DType::F64, Device::Cpu).unwrap();
    assert_eq!(msg(a.add(&b)), "add: dtypes differ: lhs is f32, rhs is f64");
    let e = msg(Tensor::zeros(2, DType::F32, Device::Cuda(0)));
    assert!(e.contains("cuda:0"), "{e}");
    assert!(msg(a.to_device(Device::Cuda(1))).contains("cuda:1"));
}

#[test]
fn element_count_mismatch() {
    assert_eq!(
        msg(Tensor::from_vec(vec![1.0f32; 5], (2, 3), Device::Cpu)),
        "from_vec: shape [2, 3] holds 6 elements but 5 were given"
    );
    assert!(
        msg(t(&[2, 3]).reshape((4, 2)))
            .contains("cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)")
    );
}

#[test]
fn bad_indices_and_values() {
    let x = t(&[3, 2]);
    let idx = Tensor::from_vec(vec![0.0f32, 3.0], 2, Device::Cpu).unwrap();
    assert_eq!(
        msg(x.index_select(&idx, 0)),
        "index_select: index 3 is not an integer in 0..3"
    );
    let frac = Tensor::from_vec(vec![0.5f32], 1, Device::Cpu).unwrap();
    assert!(msg(Tensor::one_hot(&frac, 3, DType::F32)).contains("index 0.5"));
    assert!(msg(x.narrow(0, 2, 5)).contains("range 2..7"));
    assert!(msg(t(&[3]).clamp(1.0, 0.0)).contains("lower bound"));
    assert!(msg(Tensor::arange(0.0, 1.0, 0.0, DType::F32, Device::Cpu)).contains("non-zero step"));
    assert!(msg(t(&[2, 2]).to_scalar::<f32>()).contains("exactly one element"));
}

#[test]
fn loss_shape_mismatch() {
    assert!(
        msg(loss::binary_cross_entropy(
            &t(&[4, 1]),
            &t(&[4]),
            Reduction::Mean
        ))
        .contains("[4, 1] and target [4]")
    );
    assert!(msg(loss::cross_entropy(&t(&[4, 3]), &t(&[3]), Reduction::Mean)).contains("[4, 3]"));
}

/// A device-layer failure keeps the device layer's error whole: `source()` downcasts to
/// `ember_cuda::CudaError`, and the message is the one the text-only form printed.
#[test]
fn device_call_errors_keep_the_cuda_error_as_source() {
    use std::error::Error as _;
    let e =
        ember_core::Error::device_call("matmul", Device::Cuda(0), ember_cuda::CudaError::NoDevice);
    assert_eq!(
        e.to_string(),
        "matmul on cuda:0: the CUDA driver reports no device"
    );
    let source = e.source().expect("the CUDA error is kept");
    assert_eq!(
        source.downcast_ref::<ember_cuda::CudaError>(),
        Some(&ember_cuda::CudaError::NoDevice)
    );
    // Clone keeps the same source, and equality holds.
    assert_eq!(e.clone(), e);
    // Errors ember-core finds itself have no underlying error.
    assert!(t(&[2, 3]).add(&t(&[4, 3])).unwrap_err().source().is_none());
}
