//! Writes every kernel module's CUBIN for the given architectures into a folder, for
//! `EMBER_CUDA_KERNEL_DIR` on a machine that has an NVIDIA driver but no NVRTC:
//!
//! ```text
//! precompile DIR [ARCH...]        (default: sm_80 sm_90a)
//! cargo run -p ember-cuda --example precompile -- .cache/cubin sm_80 sm_90a
//! ```
//!
//! Files are named `<module>.<arch>.cubin` and written atomically. Needs the NVRTC library
//! (`source scripts/cuda-wheels.sh`), no GPU. Exit status: 0 when every file was written, 2
//! when NVRTC cannot be loaded, 1 on any other failure, 64 on a usage error.

use std::path::PathBuf;

use ember_cuda::CudaError;
use ember_cuda::precompiled::precompile;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().filter(|a| !a.starts_with('-')) else {
        eprintln!("usage: precompile DIR [ARCH...]   (default archs: sm_80 sm_90a)");
        std::process::exit(64);
    };
    let dir = PathBuf::from(dir);
    let mut archs: Vec<String> = args.collect();
    if archs.is_empty() {
        archs = vec!["sm_80".into(), "sm_90a".into()];
    }
    for arch in &archs {
        let start = std::time::Instant::now();
        match precompile(&dir, arch) {
            Ok(files) => {
                let bytes: u64 = files
                    .iter()
                    .filter_map(|f| std::fs::metadata(f).ok())
                    .map(|m| m.len())
                    .sum();
                println!(
                    "{arch}: {} modules, {bytes} bytes, {:.1}s -> {}",
                    files.len(),
                    start.elapsed().as_secs_f64(),
                    dir.display()
                );
            }
            Err(e) => {
                eprintln!("precompile {arch}: {e}");
                let code = if e == CudaError::NvrtcLibraryMissing {
                    2
                } else {
                    1
                };
                std::process::exit(code);
            }
        }
    }
}
