//! Precompiled kernels: the `EMBER_CUDA_KERNEL_DIR` folder, how a module's file is found in it,
//! and the writer that fills it.
//!
//! Why: by default each module is compiled by NVRTC on first use, so a GPU machine needs the
//! NVRTC library as well as the driver. With kernels compiled elsewhere (any machine with NVRTC,
//! no GPU needed) a machine with only an NVIDIA driver runs ember too, and skips the compile
//! time on every process start. Files are CUBINs for one exact architecture, never PTX: a CUBIN
//! needs no PTX JIT in the driver, which refuses PTX newer than itself.
//!
//! - [`precompile`] writes `<dir>/<module>.<arch>.cubin` for every embedded module (the `wgmma`
//!   module only for `sm_90a`), each atomically (a temporary file, then a rename), so a reader
//!   never sees half a file. The `precompile` example is its command line:
//!   `cargo run -p ember-cuda --example precompile -- DIR sm_80 sm_90a`.
//! - [`locate`] decides, as a pure function of the folder, module, architecture, which files
//!   exist and whether NVRTC is available, whether the loader reads a file or compiles; the
//!   device's module loader ([`crate::CudaDevice::module`]) calls it with `EMBER_CUDA_KERNEL_DIR`.
//!   A module whose file is missing is compiled when NVRTC is available; otherwise the error
//!   names the folder, the module and the architecture.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::compile::{MODULES, SM90A_ONLY, compile_module};
use crate::error::CudaError;

/// The environment variable naming the folder of precompiled CUBINs.
pub const KERNEL_DIR_ENV: &str = "EMBER_CUDA_KERNEL_DIR";

/// The file name of module `module`'s CUBIN for `arch`: `<module>.<arch>.cubin`, e.g.
/// `sgemm.sm_90a.cubin`.
pub fn cubin_file_name(module: &str, arch: &str) -> String {
    format!("{module}.{arch}.cubin")
}

/// Where the loader gets a module's image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleImage {
    /// Read this precompiled CUBIN.
    File(PathBuf),
    /// Compile the embedded source with NVRTC.
    Compile,
}

/// Chooses the image of `module` for a device of architecture `arch` (as
/// [`crate::compile::arch_for_capability`] names it, e.g. `sm_90a`).
///
/// `dir` is the precompiled folder (`EMBER_CUDA_KERNEL_DIR`) if set, `exists` says whether a
/// path is an existing file, and `nvrtc` whether the NVRTC library can be loaded. With a folder:
/// its `<module>.<arch>.cubin` if present, else NVRTC if available, else
/// [`CudaError::PrecompiledMissing`]. Without a folder: NVRTC, or
/// [`CudaError::NvrtcLibraryMissing`]. An unknown module is [`CudaError::UnknownModule`]
/// whatever the folder holds, so no name from outside the embedded list becomes a path.
pub fn locate(
    dir: Option<&Path>,
    module: &str,
    arch: &str,
    exists: impl Fn(&Path) -> bool,
    nvrtc: bool,
) -> Result<ModuleImage, CudaError> {
    if !MODULES.iter().any(|(n, _)| *n == module) {
        return Err(CudaError::UnknownModule(module.to_string()));
    }
    match dir {
        Some(dir) => {
            let path = dir.join(cubin_file_name(module, arch));
            if exists(&path) {
                Ok(ModuleImage::File(path))
            } else if nvrtc {
                Ok(ModuleImage::Compile)
            } else {
                Err(CudaError::PrecompiledMissing {
                    dir: dir.display().to_string(),
                    module: module.to_string(),
                    arch: arch.to_string(),
                })
            }
        }
        None if nvrtc => Ok(ModuleImage::Compile),
        None => Err(CudaError::NvrtcLibraryMissing),
    }
}

/// Checks that `bytes` look like a CUBIN (an ELF image), so a wrong file is reported by name
/// rather than by the driver's generic "invalid image".
pub fn check_cubin(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(b"\x7fELF") {
        Ok(())
    } else if bytes.is_empty() {
        Err("the file is empty".into())
    } else {
        Err("not a CUBIN: no ELF header (a PTX or truncated file?)".into())
    }
}

/// Reads a precompiled CUBIN, refusing files that are not ELF images.
pub fn read_cubin(path: &Path) -> Result<Vec<u8>, CudaError> {
    let kernel_file = |detail: String| CudaError::KernelFile {
        path: path.display().to_string(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| kernel_file(format!("cannot read: {e}")))?;
    check_cubin(&bytes).map_err(kernel_file)?;
    Ok(bytes)
}

/// True for the architecture names NVRTC takes and [`cubin_file_name`] accepts: `sm_` followed
/// by digits and an optional `a` (`sm_80`, `sm_90a`, `sm_120`).
pub fn valid_arch(arch: &str) -> bool {
    let Some(rest) = arch.strip_prefix("sm_") else {
        return false;
    };
    let digits = rest.strip_suffix('a').unwrap_or(rest);
    digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The modules [`precompile`] writes for `arch`: all embedded ones, less the `sm_90a`-only
/// ones on other architectures.
pub fn modules_for(arch: &str) -> Vec<&'static str> {
    MODULES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| arch == "sm_90a" || !SM90A_ONLY.contains(n))
        .collect()
}

/// Writes `bytes` to `dir/name` atomically: a temporary file in the same folder, flushed to
/// disk, then renamed over the target.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, CudaError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let fail = |what: &str, e: std::io::Error| CudaError::KernelFile {
        path: path.display().to_string(),
        detail: format!("cannot {what}: {e}"),
    };
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| fail("write the temporary file", e))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| fail("rename into place", e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Compiles every module for `arch` with NVRTC ([`compile_module`]) and writes each CUBIN to
/// `dir/<module>.<arch>.cubin` (creating `dir`), atomically. Returns the files written.
/// Needs the NVRTC library, not a GPU.
pub fn precompile(dir: &Path, arch: &str) -> Result<Vec<PathBuf>, CudaError> {
    if !valid_arch(arch) {
        return Err(CudaError::InvalidArgument {
            op: "precompile",
            msg: format!("architecture {arch:?} is not of the form sm_XY or sm_XYa"),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| CudaError::KernelFile {
        path: dir.display().to_string(),
        detail: format!("cannot create the folder: {e}"),
    })?;
    let mut written = Vec::new();
    for module in modules_for(arch) {
        let compiled = compile_module(module, arch)?;
        written.push(write_atomic(
            dir,
            &cubin_file_name(module, arch),
            &compiled.cubin,
        )?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &Path) -> bool {
        false
    }

    #[test]
    fn file_name_carries_module_and_arch() {
        assert_eq!(cubin_file_name("sgemm", "sm_90a"), "sgemm.sm_90a.cubin");
        assert_eq!(cubin_file_name("reduce", "sm_80"), "reduce.sm_80.cubin");
    }

    #[test]
    fn a_present_file_wins_over_nvrtc() {
        let dir = Path::new("/opt/cubin");
        let want = dir.join("sgemm.sm_90a.cubin");
        let exists = |p: &Path| p == want;
        for nvrtc in [false, true] {
            assert_eq!(
                locate(Some(dir), "sgemm", "sm_90a", exists, nvrtc),
                Ok(ModuleImage::File(want.clone()))
            );
        }
        // Only the exact arch counts: an sm_90a file does not serve an sm_80 device.
        assert_eq!(
            locate(Some(dir), "sgemm", "sm_80", exists, true),
            Ok(ModuleImage::Compile)
        );
    }

    #[test]
    fn a_missing_file_falls_back_to_nvrtc_or_names_what_is_missing() {
        let dir = Path::new("/opt/cubin");
        assert_eq!(
            locate(Some(dir), "loss", "sm_80", never, true),
            Ok(ModuleImage::Compile)
        );
        let e = locate(Some(dir), "loss", "sm_80", never, false).unwrap_err();
        assert_eq!(
            e,
            CudaError::PrecompiledMissing {
                dir: "/opt/cubin".into(),
                module: "loss".into(),
                arch: "sm_80".into()
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("/opt/cubin") && msg.contains("loss.sm_80.cubin") && msg.contains("NVRTC"),
            "{msg}"
        );
    }

    #[test]
    fn without_a_folder_nvrtc_is_required() {
        assert_eq!(
            locate(None, "optim", "sm_90a", never, true),
            Ok(ModuleImage::Compile)
        );
        assert_eq!(
            locate(None, "optim", "sm_90a", never, false),
            Err(CudaError::NvrtcLibraryMissing)
        );
    }

    #[test]
    fn unknown_modules_never_become_paths() {
        let dir = Path::new("/opt/cubin");
        for name in ["nope", "../etc/passwd", ""] {
            assert_eq!(
                locate(Some(dir), name, "sm_80", |_| true, true),
                Err(CudaError::UnknownModule(name.to_string()))
            );
        }
    }

    #[test]
    fn cubin_check_wants_an_elf_header() {
        assert!(check_cubin(b"\x7fELF\x02\x01\x01").is_ok());
        assert!(check_cubin(b"").unwrap_err().contains("empty"));
        assert!(
            check_cubin(b"//\n.version 9.0")
                .unwrap_err()
                .contains("ELF")
        );
    }

    #[test]
    fn arch_names() {
        for ok in ["sm_80", "sm_86", "sm_90a", "sm_120", "sm_100a"] {
            assert!(valid_arch(ok), "{ok}");
        }
        for bad in [
            "sm_8",
            "sm_",
            "80",
            "sm_90b",
            "sm_9x",
            "sm_80/../x",
            "compute_80",
        ] {
            assert!(!valid_arch(bad), "{bad}");
        }
    }

    #[test]
    fn wgmma_only_for_sm90a() {
        assert!(!modules_for("sm_80").contains(&"wgmma"));
        assert!(modules_for("sm_90a").contains(&"wgmma"));
        assert_eq!(modules_for("sm_90a").len(), MODULES.len());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ember-precompiled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write_atomic(&dir, "x.sm_80.cubin", b"first").unwrap();
        write_atomic(&dir, "x.sm_80.cubin", b"\x7fELF second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"\x7fELF second");
        assert!(read_cubin(&p).is_ok());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.sm_80.cubin")]);
        std::fs::write(&p, b"not elf").unwrap();
        assert!(matches!(read_cubin(&p), Err(CudaError::KernelFile { .. })));
        assert!(matches!(
            read_cubin(&dir.join("missing.cubin")),
            Err(CudaError::KernelFile { detail, .. }) if detail.contains("cannot read")
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn precompile_rejects_bad_arch_before_touching_the_disk() {
        let dir = std::env::temp_dir().join("ember-precompiled-never-created");
        assert!(matches!(
            precompile(&dir, "sm_80/x"),
            Err(CudaError::InvalidArgument { .. })
        ));
        assert!(!dir.exists());
    }
}
