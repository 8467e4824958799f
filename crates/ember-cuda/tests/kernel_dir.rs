//! `EMBER_CUDA_KERNEL_DIR`, checked in two parts:
//! - with NVRTC and no GPU: `precompile` writes one CUBIN per module for sm_80 and sm_90a (no
//!   `wgmma` for sm_80), each an ELF image, and `locate` then finds every module's file with
//!   NVRTC marked absent, so a driver-only machine gets a file for each module it loads;
//! - with a GPU: the folder (the one the environment names, as `scripts/gpu-check.sh` sets it, or
//!   one written here for the device's arch) is loaded through the variable by the device's
//!   module loader, and a GEMM from the loaded CUBIN computes the right numbers.
//!
//! This binary holds both tests and sets the environment variable only in the GPU test, before
//! any device call; the NVRTC test never reads it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ember_cuda::compile::MODULES;
use ember_cuda::gemm::{Epilogue, MatMut, MatRef, gemm};
use ember_cuda::precompiled::{
    KERNEL_DIR_ENV, ModuleImage, cubin_file_name, locate, modules_for, precompile, read_cubin,
};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-kernel-dir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn precompile_writes_a_cubin_per_module_and_arch() {
    if !nvrtc_or_skip("kernel_dir::precompile") {
        return;
    }
    let dir = scratch("nvrtc");
    for arch in ["sm_80", "sm_90a"] {
        let files = precompile(&dir, arch).unwrap();
        assert_eq!(files.len(), modules_for(arch).len());
        for (module, _) in MODULES {
            let found = locate(Some(&dir), module, arch, Path::is_file, false);
            if modules_for(arch).contains(module) {
                let want = dir.join(cubin_file_name(module, arch));
                assert_eq!(
                    found,
                    Ok(ModuleImage::File(want.clone())),
                    "{module} {arch}"
                );
                let bytes = read_cubin(&want).unwrap();
                assert!(bytes.len() > 1000, "{module} {arch}: {} bytes", bytes.len());
            } else {
                // wgmma for sm_80 was not written, and without NVRTC that is a named error.
                let msg = found.unwrap_err().to_string();
                assert!(msg.contains(&cubin_file_name(module, arch)), "{msg}");
            }
        }
    }
    // Nothing but the CUBINs is left behind (no temporary files).
    let n = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(n, modules_for("sm_80").len() + modules_for("sm_90a").len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_device_loads_precompiled_modules() {
    let Some(dev) = gpu_or_skip("kernel_dir::device") else {
        return;
    };
    let arch = dev.arch().to_string();
    let (dir, created) = match std::env::var_os(KERNEL_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(d) => (PathBuf::from(d), false),
        None => {
            if !nvrtc_or_skip("kernel_dir::device (no EMBER_CUDA_KERNEL_DIR, no NVRTC)") {
                return;
            }
            let dir = scratch("device");
            precompile(&dir, &arch).unwrap();
            // SAFETY: the only test of this binary that reads the variable sets it here, before
            // its first device call; the other test never reads the environment.
            unsafe { std::env::set_var(KERNEL_DIR_ENV, &dir) };
            (dir, true)
        }
    };
    println!("loading {arch} modules from {}", dir.display());
    for module in modules_for(&arch) {
        let file = dir.join(cubin_file_name(module, &arch));
        assert!(file.is_file(), "{} missing", file.display());
        dev.module(module)
            .unwrap_or_else(|e| panic!("{module} from {}: {e}", file.display()));
    }
    // A kernel from the loaded CUBIN: [[1, 2], [3, 4]] x [[5, 6], [7, 8]].
    let a = dev.upload(&[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let b = dev.upload(&[5.0f32, 6.0, 7.0, 8.0]).unwrap();
    let mut c = dev.alloc::<f32>(4).unwrap();
    gemm(
        2,
        2,
        2,
        1.0,
        MatRef {
            data: a.view(),
            rs: 2,
            cs: 1,
        },
        MatRef {
            data: b.view(),
            rs: 2,
            cs: 1,
        },
        0.0,
        MatMut {
            data: c.view_mut(),
            rs: 2,
            cs: 1,
        },
        Epilogue::default(),
    )
    .unwrap();
    assert_eq!(c.to_host().unwrap(), vec![19.0, 22.0, 43.0, 50.0]);
    if created {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
