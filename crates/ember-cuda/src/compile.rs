//! Run-time compilation of the embedded kernel sources with NVRTC.
//!
//! The `.cu` files in the crate's `kernels/` are embedded with `include_str!`, so a build needs
//! no CUDA toolkit and no build script. On first use a module is compiled by NVRTC (loaded
//! dynamically) to a CUBIN for the device's exact architecture, which the driver loads without a
//! PTX JIT step. Each source gets `kernels/common.cuh` prepended, with `#line` directives so
//! compiler messages keep the original file names and line numbers.
//!
//! [`compile_module`] needs only NVRTC, not a GPU: the tests use it to compile every module for
//! sm_80 and sm_90a and to read the register, shared-memory and spill figures that
//! `--ptxas-options=-v` writes into the log ([`CompiledModule::resources`]).

use std::ffi::{CStr, CString, c_char};

use cudarc::nvrtc::sys as nv;

use crate::error::CudaError;

/// The header prepended to every module: typedefs, 16-bit conversions, strided views, helpers.
pub const COMMON_HEADER: &str = include_str!("../kernels/common.cuh");

/// Every embedded kernel module: (name, source). The name is the file stem in `kernels/`.
pub const MODULES: &[(&str, &str)] = &[
    ("elementwise", include_str!("../kernels/elementwise.cu")),
    ("index", include_str!("../kernels/index.cu")),
    ("reduce", include_str!("../kernels/reduce.cu")),
    ("loss", include_str!("../kernels/loss.cu")),
    ("optim", include_str!("../kernels/optim.cu")),
    ("sgemm", include_str!("../kernels/sgemm.cu")),
    ("hgemm", include_str!("../kernels/hgemm.cu")),
    ("wgmma", include_str!("../kernels/wgmma.cu")),
    ("conv", include_str!("../kernels/conv.cu")),
    ("pool", include_str!("../kernels/pool.cu")),
    ("qgemm", include_str!("../kernels/qgemm.cu")),
];

/// Modules that use Hopper-only instructions (`wgmma`) and compile only for `sm_90a`.
pub const SM90A_ONLY: &[&str] = &["wgmma"];

/// A compiled module: the CUBIN image and NVRTC's log (warnings and ptxas resource lines).
#[derive(Debug, Clone)]
pub struct CompiledModule {
    /// Module name.
    pub name: String,
    /// Target architecture, e.g. `sm_90a`.
    pub arch: String,
    /// The CUBIN (ELF) image, loadable with `Ptx::from_binary`.
    pub cubin: Vec<u8>,
    /// The compiler log, including the `ptxas info` lines.
    pub log: String,
}

/// Per-kernel resource use, parsed from the `ptxas info` lines of a compile log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// The kernel's (mangled, for templates; plain, for `extern "C"`) name.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Static shared memory per block, bytes.
    pub smem_bytes: u32,
    /// Local-memory stack frame, bytes.
    pub stack_bytes: u32,
    /// Bytes of register spill stores.
    pub spill_stores: u32,
    /// Bytes of register spill loads.
    pub spill_loads: u32,
}

impl CompiledModule {
    /// Parses the `ptxas info` lines of the log into one record per kernel.
    ///
    /// ptxas writes, per function, a `Compiling entry function '<name>'` line, then
    /// `<n> bytes stack frame, <s> bytes spill stores, <l> bytes spill loads`, then
    /// `Used <r> registers, ... <b> bytes smem ...`. Device functions that are not entries are
    /// skipped.
    pub fn resources(&self) -> Vec<KernelResources> {
        let mut out: Vec<KernelResources> = Vec::new();
        let mut current: Option<KernelResources> = None;
        for line in self.log.lines() {
            if let Some(rest) = line.split("Compiling entry function '").nth(1) {
                if let Some(k) = current.take() {
                    out.push(k);
                }
                let name = rest.split('\'').next().unwrap_or("").to_string();
                current = Some(KernelResources {
                    kernel: name,
                    ..Default::default()
                });
            } else if let Some(rest) = line.split("Function properties for ").nth(1) {
                // Properties of a function that is not the current entry (a non-inlined device
                // function) follow: close the entry so its numbers are not overwritten.
                let same = current.as_ref().is_some_and(|k| k.kernel == rest.trim());
                if !same {
                    out.extend(current.take());
                }
            } else if let Some(k) = current.as_mut() {
                if line.contains("bytes stack frame") {
                    k.stack_bytes = number_before(line, "bytes stack frame");
                    k.spill_stores = number_before(line, "bytes spill stores");
                    k.spill_loads = number_before(line, "bytes spill loads");
                } else if line.contains("Used") && line.contains("registers") {
                    k.registers = number_before(line, "registers");
                    k.smem_bytes = number_before(line, "bytes smem");
                }
            }
        }
        if let Some(k) = current.take() {
            out.push(k);
        }
        out
    }
}

/// The integer just before `marker` in `line` (0 if absent).
fn number_before(line: &str, marker: &str) -> u32 {
    let Some(pos) = line.find(marker) else {
        return 0;
    };
    line[..pos]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The source of module `name` with the common header prepended, as NVRTC receives it.
pub fn module_source(name: &str) -> Result<String, CudaError> {
    let (_, src) = MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| CudaError::UnknownModule(name.to_string()))?;
    Ok(with_header(name, src))
}

/// Prepends the op codes generated from ember-ops ([`ember_ops::cuda_defines`]) and the common
/// header, with `#line` directives so messages name `common.cuh` or `<name>.cu` and their own
/// line numbers.
fn with_header(name: &str, src: &str) -> String {
    let codes = ember_ops::cuda_defines();
    format!(
        "#line 1 \"ember_ops_codes.h\"\n{codes}#line 1 \"common.cuh\"\n{COMMON_HEADER}\n#line 1 \"{name}.cu\"\n{src}\n"
    )
}

/// True when the NVRTC library can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { nv::is_culib_present() }
}

/// NVRTC's version as (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::NvrtcLibraryMissing);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are valid for writes.
    let r = unsafe { nv::nvrtcVersion(&mut major, &mut minor) };
    check(r, "nvrtcVersion")?;
    Ok((major, minor))
}

fn nvrtc_error_string(r: nv::nvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
    unsafe {
        let p = nv::nvrtcGetErrorString(r);
        if p.is_null() {
            format!("{r:?}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

fn check(r: nv::nvrtcResult, op: &str) -> Result<(), CudaError> {
    if r == nv::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(CudaError::Nvrtc {
            op: op.to_string(),
            detail: nvrtc_error_string(r),
        })
    }
}

/// Owns an NVRTC program and destroys it on every exit path.
struct Program(nv::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the handle came from nvrtcCreateProgram and is destroyed once.
        unsafe {
            nv::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

/// Compiles embedded module `name` with NVRTC to a CUBIN for `arch` (`sm_80`, `sm_90a`, ...).
///
/// Needs only the NVRTC library, no GPU. Options: C++17, `-lineinfo` (for profilers),
/// `--ptxas-options=-v` (resource figures in the log). No fast-math: the kernels choose their
/// approximations explicitly, and the optimizer steps rely on IEEE division and square root.
pub fn compile_module(name: &str, arch: &str) -> Result<CompiledModule, CudaError> {
    let source = module_source(name)?;
    compile_full_source(name, source, arch)
}

/// Compiles kernel source `src` (a module of your own, e.g. a kernel-lab experiment) exactly as
/// the embedded modules are: common header prepended, messages attributed to `<name>.cu`.
pub fn compile_source(name: &str, src: &str, arch: &str) -> Result<CompiledModule, CudaError> {
    compile_full_source(name, with_header(name, src), arch)
}

fn compile_full_source(
    name: &str,
    source: String,
    arch: &str,
) -> Result<CompiledModule, CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::NvrtcLibraryMissing);
    }
    let bad = |what: &str| CudaError::Nvrtc {
        op: "compile_module".into(),
        detail: format!("{what} contains a NUL byte"),
    };
    let c_src = CString::new(source).map_err(|_| bad("source"))?;
    let c_name = CString::new(format!("{name}.cu")).map_err(|_| bad("name"))?;
    let options = [
        format!("--gpu-architecture={arch}"),
        "-std=c++17".to_string(),
        "-lineinfo".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    let c_opts: Vec<CString> = options
        .iter()
        .map(|o| CString::new(o.as_str()).map_err(|_| bad("option")))
        .collect::<Result<_, _>>()?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();

    let mut prog = Program(std::ptr::null_mut());
    // SAFETY: the library is present; source and name are valid C strings that outlive the call;
    // no headers are passed (count 0, null arrays).
    let r = unsafe {
        nv::nvrtcCreateProgram(
            &mut prog.0,
            c_src.as_ptr(),
            c_name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    check(r, "nvrtcCreateProgram")?;
    // SAFETY: prog is a live program; opt_ptrs holds opt_ptrs.len() valid C strings.
    let compiled =
        unsafe { nv::nvrtcCompileProgram(prog.0, opt_ptrs.len() as i32, opt_ptrs.as_ptr()) };
    let log = program_log(&prog)?;
    if compiled != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(CudaError::Compile {
            module: name.to_string(),
            arch: arch.to_string(),
            log,
        });
    }
    let mut size = 0usize;
    // SAFETY: prog compiled successfully; size is a valid out-pointer.
    check(
        unsafe { nv::nvrtcGetCUBINSize(prog.0, &mut size) },
        "nvrtcGetCUBINSize",
    )?;
    let mut cubin = vec![0u8; size];
    // SAFETY: cubin has exactly the size NVRTC reported.
    check(
        unsafe { nv::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char) },
        "nvrtcGetCUBIN",
    )?;
    Ok(CompiledModule {
        name: name.to_string(),
        arch: arch.to_string(),
        cubin,
        log,
    })
}

fn program_log(prog: &Program) -> Result<String, CudaError> {
    let mut size = 0usize;
    // SAFETY: prog is live; size is a valid out-pointer.
    check(
        unsafe { nv::nvrtcGetProgramLogSize(prog.0, &mut size) },
        "nvrtcGetProgramLogSize",
    )?;
    let mut buf = vec![0u8; size.max(1)];
    // SAFETY: buf holds at least the reported size.
    check(
        unsafe { nv::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr() as *mut c_char) },
        "nvrtcGetProgramLog",
    )?;
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The NVRTC target for a compute capability: `sm_XY`, with the `a` suffix on 9.0 (Hopper's
/// architecture-specific features, `wgmma` and `setmaxnreg`, need `sm_90a`).
pub fn arch_for_capability(major: i32, minor: i32) -> String {
    if (major, minor) == (9, 0) {
        "sm_90a".to_string()
    } else {
        format!("sm_{major}{minor}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_lines() {
        let m = CompiledModule {
            name: "x".into(),
            arch: "sm_80".into(),
            cubin: vec![],
            log: "ptxas info    : Compiling entry function 'k1' for 'sm_80'\n\
                  ptxas info    : Function properties for k1\n\
                  \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
                  ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]\n\
                  ptxas info    : Compiling entry function 'k2' for 'sm_80'\n\
                  ptxas info    : Function properties for k2\n\
                  \x20   0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                  ptxas info    : Used 8 registers, 360 bytes cmem[0]\n"
                .into(),
        };
        let r = m.resources();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            KernelResources {
                kernel: "k1".into(),
                registers: 40,
                smem_bytes: 2048,
                stack_bytes: 8,
                spill_stores: 4,
                spill_loads: 12
            }
        );
        assert_eq!(
            (r[1].registers, r[1].spill_stores, r[1].smem_bytes),
            (8, 0, 0)
        );
    }

    #[test]
    fn arch_names() {
        assert_eq!(arch_for_capability(9, 0), "sm_90a");
        assert_eq!(arch_for_capability(8, 6), "sm_86");
    }

    #[test]
    fn unknown_module_is_an_error() {
        assert!(matches!(
            module_source("nope"),
            Err(CudaError::UnknownModule(_))
        ));
    }
}
