//! GPU tests of zero-length buffers and empty tensors: the driver refuses zero-byte allocations
//! (`cuMemAllocAsync(0)` is an error), so an empty `DeviceBuffer` owns no device memory, and
//! every kernel must return before launching on zero elements. These tests allocate, upload,
//! copy and compute on empty operands, then check that the device still works (a bad launch
//! would leave a sticky error that the final synchronisation reports). GEMMs with k = 0 must
//! still write C = act(beta·C + bias). Without a GPU each prints one `SKIPPED:` line.

mod common;

use common::*;
use ember_cuda::elementwise::{BinaryOp, UnaryOp, binary, unary};
use ember_cuda::gemm::{
    Activation, Epilogue, HgemmVersion, MatMut, MatRef, SgemmTile, SgemmVersion, hgemm_version,
    sgemm_with_tile,
};
use ember_cuda::optim::{SgdConfig, sgd_step};
use ember_cuda::reduce::{ReduceOp, reduce, softmax_rows};
use ember_cuda::{CudaError, DeviceBuffer, Strided};

#[test]
fn empty_buffers_hold_no_allocation() {
    let Some(dev) = gpu_or_skip("gpu_empty::buffers") else {
        return;
    };
    let a = dev.alloc::<f32>(0).unwrap();
    let z = dev.alloc_zeros::<f64>(0).unwrap();
    let u = dev.upload::<f32>(&[]).unwrap();
    let h = dev.upload::<half::bf16>(&[]).unwrap();
    for (len, empty, ptr, none) in [
        (a.len(), a.is_empty(), a.raw_ptr(), a.cuda_slice().is_none()),
        (z.len(), z.is_empty(), z.raw_ptr(), z.cuda_slice().is_none()),
        (u.len(), u.is_empty(), u.raw_ptr(), u.cuda_slice().is_none()),
        (h.len(), h.is_empty(), h.raw_ptr(), h.cuda_slice().is_none()),
    ] {
        assert_eq!((len, empty, ptr, none), (0, true, 0, true));
    }
    assert!(a.to_host().unwrap().is_empty());
    assert!(z.to_host().unwrap().is_empty());
    assert!(h.to_host().unwrap().is_empty());
    let mut b = dev.alloc::<f32>(0).unwrap();
    b.copy_from_host(&[]).unwrap();
    b.copy_from_device(&u).unwrap();
    assert!(matches!(
        b.copy_from_host(&[1.0]),
        Err(CudaError::InvalidArgument { .. })
    ));
    assert_eq!(b.slice(0..0).unwrap().len(), 0);
    assert!(b.slice(0..1).is_err());
    // A non-empty buffer beside them works and round-trips.
    let full = dev.upload(&[1.5f32, -2.0]).unwrap();
    let mut copy = dev.alloc::<f32>(2).unwrap();
    copy.copy_from_device(&full).unwrap();
    assert_eq!(copy.to_host().unwrap(), vec![1.5, -2.0]);
    drop((a, z, u, h, b));
    dev.synchronize().unwrap();
}

#[test]
fn elementwise_reduce_and_optim_on_empty_tensors() {
    let Some(dev) = gpu_or_skip("gpu_empty::kernels") else {
        return;
    };
    let x = dev.alloc::<f32>(0).unwrap();
    // Unary and binary over [0, 3] and [4, 0].
    for shape in [[0usize, 3], [4, 0]] {
        let strides = [shape[1], 1];
        let v = Strided::new(&shape, &strides, 0);
        let mut out = dev.alloc::<f32>(0).unwrap();
        unary(UnaryOp::Relu, x.view(), v, out.view_mut()).unwrap();
        binary(BinaryOp::Add, x.view(), v, x.view(), v, out.view_mut()).unwrap();
    }
    // Reducing [0, 5] over axis 1: no outputs. Reducing [0, 3] over axis 0: three outputs of an
    // empty set (sum 0, max -inf), with x holding no memory at all.
    let (s05, st05) = ([0usize, 5], [5usize, 1]);
    let mut none = dev.alloc::<f32>(0).unwrap();
    reduce(
        ReduceOp::Sum,
        x.view(),
        Strided::new(&s05, &st05, 0),
        &[1],
        none.view_mut(),
    )
    .unwrap();
    let (s03, st03) = ([0usize, 3], [3usize, 1]);
    let mut three = dev.upload(&[f32::NAN; 3]).unwrap();
    reduce(
        ReduceOp::Sum,
        x.view(),
        Strided::new(&s03, &st03, 0),
        &[0],
        three.view_mut(),
    )
    .unwrap();
    assert_eq!(three.to_host().unwrap(), vec![0.0; 3]);
    reduce(
        ReduceOp::Max,
        x.view(),
        Strided::new(&s03, &st03, 0),
        &[0],
        three.view_mut(),
    )
    .unwrap();
    assert_eq!(three.to_host().unwrap(), vec![f32::NEG_INFINITY; 3]);
    // Softmax of zero rows, an SGD step on an empty parameter.
    let mut sm = dev.alloc::<f32>(0).unwrap();
    softmax_rows(x.view(), 4, sm.view_mut(), false).unwrap();
    let mut p = dev.alloc::<f32>(0).unwrap();
    let mut vel = dev.alloc::<f32>(0).unwrap();
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    sgd_step(&cfg, p.view_mut(), x.view(), vel.view_mut()).unwrap();
    dev.synchronize().unwrap();
}

/// C = act(alpha·A·B + beta·C + bias) with k = 0 is act(beta·C + bias): A and B are empty.
fn k0_reference(c: &[f32], bias: &[f32], beta: f32, cols: usize) -> Vec<f32> {
    c.iter()
        .enumerate()
        .map(|(i, &v)| (beta * v + bias[i % cols]).max(0.0))
        .collect()
}

#[test]
fn sgemm_with_empty_dimensions() {
    let Some(dev) = gpu_or_skip("gpu_empty::sgemm") else {
        return;
    };
    let empty = dev.alloc::<f32>(0).unwrap();
    let (m, n) = (3usize, 5usize);
    let c0: Vec<f32> = (0..m * n).map(|i| i as f32 - 7.0).collect();
    let bias: Vec<f32> = (0..n).map(|j| 0.5 * j as f32 - 1.0).collect();
    let dbias = dev.upload(&bias).unwrap();
    let want = k0_reference(&c0, &bias, 0.5, n);
    for version in SgemmVersion::ALL {
        for tile in [SgemmTile::Auto, SgemmTile::T64, SgemmTile::T128] {
            // k = 0: only the epilogue remains.
            let mut c = dev.upload(&c0).unwrap();
            sgemm_with_tile(
                version,
                tile,
                m,
                n,
                0,
                1.0,
                MatRef {
                    data: empty.view(),
                    rs: 0,
                    cs: 1,
                },
                MatRef {
                    data: empty.view(),
                    rs: n,
                    cs: 1,
                },
                0.5,
                MatMut {
                    data: c.view_mut(),
                    rs: n,
                    cs: 1,
                },
                Epilogue {
                    bias: Some(dbias.view()),
                    act: Activation::Relu,
                },
            )
            .unwrap();
            assert_eq!(c.to_host().unwrap(), want, "{version:?} {tile:?} k = 0");
            // m = 0 and n = 0: nothing to write, and C may be empty too.
            for (mm, nn) in [(0usize, n), (m, 0usize)] {
                let mut c = dev.alloc::<f32>(0).unwrap();
                sgemm_with_tile(
                    version,
                    tile,
                    mm,
                    nn,
                    4,
                    1.0,
                    MatRef {
                        data: empty.view(),
                        rs: 4,
                        cs: 1,
                    },
                    MatRef {
                        data: empty.view(),
                        rs: nn,
                        cs: 1,
                    },
                    0.0,
                    MatMut {
                        data: c.view_mut(),
                        rs: nn,
                        cs: 1,
                    },
                    Epilogue::default(),
                )
                .unwrap();
            }
        }
    }
    dev.synchronize().unwrap();
}

#[test]
fn hgemm_with_k_zero() {
    let Some(dev) = gpu_or_skip("gpu_empty::hgemm") else {
        return;
    };
    let empty: DeviceBuffer<half::f16> = dev.alloc(0).unwrap();
    let (m, n) = (3usize, 5usize);
    let c0: Vec<f32> = (0..m * n).map(|i| i as f32 - 7.0).collect();
    let bias: Vec<f32> = (0..n).map(|j| 0.5 * j as f32 - 1.0).collect();
    let dbias = dev.upload(&bias).unwrap();
    let want = k0_reference(&c0, &bias, 0.5, n);
    for version in HgemmVersion::ALL {
        if version == HgemmVersion::Wgmma && dev.arch() != "sm_90a" {
            continue;
        }
        let mut c = dev.upload(&c0).unwrap();
        hgemm_version(
            version,
            m,
            n,
            0,
            1.0,
            MatRef {
                data: empty.view(),
                rs: 0,
                cs: 1,
            },
            MatRef {
                data: empty.view(),
                rs: n,
                cs: 1,
            },
            0.5,
            MatMut {
                data: c.view_mut(),
                rs: n,
                cs: 1,
            },
            Epilogue {
                bias: Some(dbias.view()),
                act: Activation::Relu,
            },
        )
        .unwrap();
        assert_eq!(c.to_host().unwrap(), want, "{version:?} k = 0");
    }
    dev.synchronize().unwrap();
}
