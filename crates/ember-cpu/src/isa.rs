//! Run-time choice of the instruction set the hot kernels use.
//!
//! A backend library is built by its users without special flags, so ember never relies on
//! compile-time CPU features. Each hot kernel has a variant compiled with
//! `#[target_feature(enable = "avx2,fma")]` and a portable variant, and [`active`] says which one
//! runs. The choice is made once per process: from the `EMBER_CPU_ISA` environment variable
//! (`avx512`, `avx2` or `portable`) when it is set, otherwise from `is_x86_feature_detected!`.
//!
//! `avx512` is the AVX2 path everywhere plus a 512-bit f32 GEMM microkernel (with short-row
//! twins for a block's last rows, `gemm/edge512.rs`), 16-lane copies of exact GELU and erf
//! (`verf`) and of the recurrent cell passes (`recurrent`), chosen by
//! detection on CPUs with AVX-512F (`EMBER_CPU_ISA=avx2` keeps the 256-bit kernel there), and,
//! where the CPU also has AVX512-BF16 ([`avx512bf16_detected`]), a bf16 GEMM kernel built on
//! `vdpbf16ps` (`gemm::bf16`; elsewhere bf16 operands are widened to f32 while packed). On a
//! machine without AVX-512 the f32 microkernel is verified in two parts: its logic (tiles,
//! edges, strides, the packed driver around it) through an instance of the same macro on
//! emulated 16-lane vectors in the test suite, and its real machine code, taken from a release
//! build, on the emulated AVX-512 CPU of Bochs (`scripts/avx512-emulate.py`, run by CI): exact
//! results for every case (the bf16 kernel is skipped there while the emulated CPU model lacks
//! AVX512-BF16). On a machine that has AVX-512, [`supported`] lists it, so the test suite runs
//! every kernel on it there; both kernels were measured on a Zen 4 (benches/results/efd952a).
//!
//! Tests and benchmarks can change it: [`force`] for the whole process, [`with`] for the calls
//! made by one closure on the current thread (every kernel reads the ISA once on entry, on the
//! calling thread, and hands it to its workers, so a scoped override also covers the parallel
//! parts of that call).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set family a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// x86-64 with AVX-512F as well: the AVX2 kernels plus a 512-bit f32 GEMM microkernel
    /// (see the module docs for how it is verified).
    Avx512,
    /// x86-64 with AVX2 and FMA (256-bit vectors, fused multiply-add).
    Avx2,
    /// Plain Rust compiled for the target's baseline (SSE2 on x86-64); runs everywhere.
    Portable,
}

impl Isa {
    /// The lowercase name used by `EMBER_CPU_ISA`, `ember bench --isa` and `ember info`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Parses a name as written by [`Isa::name`] (case-insensitive).
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512" => Some(Isa::Avx512),
            "avx2" => Some(Isa::Avx2),
            "portable" => Some(Isa::Portable),
            _ => None,
        }
    }

    /// True when this CPU can run code compiled for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2 => avx2_fma_detected(),
            Isa::Avx512 => avx2_fma_detected() && avx512f_detected(),
        }
    }

    /// True when this path runs the AVX2+FMA kernels (AVX2 itself, and AVX-512, which keeps
    /// them for everything but its own GEMM microkernel) and the CPU supports it.
    #[inline]
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512) && self.is_supported()
    }

    /// Width of one vector register in bytes for this path (for peak estimates and reports).
    pub fn vector_bytes(self) -> usize {
        match self {
            Isa::Avx512 => 64,
            Isa::Avx2 => 32,
            Isa::Portable => 16,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Returned by [`force`] and [`with`] when the CPU cannot run the requested path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedIsa(pub Isa);

impl fmt::Display for UnsupportedIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this CPU cannot run the {} kernels", self.0)
    }
}

impl std::error::Error for UnsupportedIsa {}

/// True when the CPU has both AVX2 and FMA.
pub fn avx2_fma_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the CPU (and the operating system's saved state) supports AVX-512F.
pub fn avx512f_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the CPU supports AVX512-BF16 (`vdpbf16ps`), which the bf16 GEMM uses on the
/// AVX-512 path (`gemm::bf16`).
pub fn avx512bf16_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The path used when nothing overrides it: the best one the CPU supports (AVX-512, then
/// AVX2+FMA, then portable).
pub fn detected() -> Isa {
    if Isa::Avx512.is_supported() {
        Isa::Avx512
    } else if avx2_fma_detected() {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

const UNSET: u8 = 0;
const AVX2: u8 = 1;
const PORTABLE: u8 = 2;
const AVX512: u8 = 3;

static GLOBAL: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static SCOPED: Cell<Option<Isa>> = const { Cell::new(None) };
}

fn encode(isa: Isa) -> u8 {
    match isa {
        Isa::Avx2 => AVX2,
        Isa::Portable => PORTABLE,
        Isa::Avx512 => AVX512,
    }
}

/// The process-wide choice: `EMBER_CPU_ISA` if set and supported, else [`detected`].
fn initial() -> Isa {
    match std::env::var("EMBER_CPU_ISA")
        .ok()
        .and_then(|s| Isa::parse(&s))
    {
        Some(isa) if isa.is_supported() => isa,
        _ => detected(),
    }
}

/// The path kernels called from this thread use now.
#[inline]
pub fn active() -> Isa {
    if let Some(isa) = SCOPED.with(Cell::get) {
        return isa;
    }
    match GLOBAL.load(Ordering::Relaxed) {
        AVX2 => Isa::Avx2,
        PORTABLE => Isa::Portable,
        AVX512 => Isa::Avx512,
        _ => {
            let isa = initial();
            GLOBAL.store(encode(isa), Ordering::Relaxed);
            isa
        }
    }
}

/// Makes every later kernel call in this process use `isa` (unless a [`with`] scope overrides it).
pub fn force(isa: Isa) -> Result<(), UnsupportedIsa> {
    if !isa.is_supported() {
        return Err(UnsupportedIsa(isa));
    }
    GLOBAL.store(encode(isa), Ordering::Relaxed);
    Ok(())
}

/// Runs `f` with kernels called from this thread using `isa`, then restores the previous choice.
pub fn with<R>(isa: Isa, f: impl FnOnce() -> R) -> Result<R, UnsupportedIsa> {
    if !isa.is_supported() {
        return Err(UnsupportedIsa(isa));
    }
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(isa))));
    Ok(f())
}

/// Every path this CPU can run, best first (tests iterate over it).
pub fn supported() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_override_restores() {
        let before = active();
        let inside = with(Isa::Portable, active).expect("portable always runs");
        assert_eq!(inside, Isa::Portable);
        assert_eq!(active(), before);
    }

    #[test]
    fn names_round_trip() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse("avx1024"), None);
    }
}
