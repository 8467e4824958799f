//! `ember info`: what this machine offers and which kernel path ember chose for each op family.
//!
//! Reads the CPU model from `/proc/cpuinfo` where it exists (Linux) and says "unknown"
//! elsewhere; ISA extensions come from the same run-time detection the kernels use. The `gpu:`
//! line names CUDA device 0 or says why there is none (no driver, no device). The `caches:` line
//! is what `ember_cpu::cache` detected, and the GEMM line the blocking derived from it.

use ember_cpu::isa::{self, Isa};

/// Runs `ember info`.
pub fn run() -> Result<(), String> {
    let model = cpu_model().unwrap_or_else(|| "unknown".into());
    println!("cpu:      {model}");
    println!(
        "cores:    {} logical",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("isa:      {}", extensions().join(" "));
    if let Ok(v) = std::env::var("EMBER_CPU_ISA") {
        let note = match Isa::parse(&v) {
            None => " (not a known path: ignored)",
            Some(i) if !i.is_supported() => " (not supported by this CPU: ignored)",
            Some(_) => "",
        };
        println!("override: EMBER_CPU_ISA={v}{note}");
    }
    println!("caches:   {}", ember_cpu::cache::detected());
    let active = isa::active();
    println!(
        "kernels:  (chosen at run time, best supported first; EMBER_CPU_ISA overrides; avx512{})",
        if Isa::Avx512.is_supported() {
            ", supported here"
        } else {
            ", not supported by this CPU"
        }
    );
    for (family, what) in paths(active) {
        println!("  {family:<12} {what}");
    }
    println!(
        "threads:  {} (rayon; set RAYON_NUM_THREADS to change)",
        rayon::current_num_threads()
    );
    println!("gpu:      {}", gpu());
    println!("communicator: {}", super::dist::describe());
    Ok(())
}

/// The CUDA device ember would use (`--device cuda` is device 0), or why there is none.
fn gpu() -> String {
    match ember_cuda::CudaDevice::get(0) {
        Ok(dev) => format!(
            "{} ({}, {} SMs) as cuda:0",
            dev.name(),
            dev.arch(),
            dev.sm_count()
        ),
        Err(e) => {
            let why = e.to_string();
            let first = why.lines().next().unwrap_or("unknown error");
            format!("none ({first})")
        }
    }
}

/// The kernel path per op family for `isa`.
fn paths(isa: Isa) -> Vec<(&'static str, String)> {
    let k32 = ember_cpu::gemm::kernel::kernel_f32(isa);
    let k64 = ember_cpu::gemm::kernel::kernel_f64(isa);
    let simd = match isa {
        Isa::Avx512 => "avx2+fma, 8 x f32 lanes (the avx512 path changes only the f32 GEMM)",
        Isa::Avx2 => "avx2+fma, 8 x f32 lanes",
        Isa::Portable => "portable (baseline SSE2 on x86-64)",
        // `Isa` is non-exhaustive: a family added to ember-cpu later is named as it is.
        other => other.name(),
    };
    vec![
        (
            "gemm",
            format!(
                "{} microkernel f32 {}x{} / f64 {}x{}; blocking from the caches: f32 MC {} KC {} \
                 NC {}, f64 MC {} KC {} NC {}",
                k32.isa,
                k32.mr,
                k32.nr,
                k64.mr,
                k64.nr,
                k32.mc,
                k32.kc,
                k32.nc,
                k64.mc,
                k64.kc,
                k64.nc
            ),
        ),
        ("gemm bf16", {
            if isa == Isa::Avx512 && ember_cpu::gemm::bf16::supported() {
                let b = ember_cpu::gemm::bf16::blocking();
                format!(
                    "avx512bf16 vdpbf16ps microkernel 12x32 (K in pairs, f32 accumulation); \
                     MC {} KC {} NC {}",
                    b.mc, b.kc, b.nc
                )
            } else {
                "widened to f32 while packed, then the f32 kernel (no avx512bf16 on this path)"
                    .to_string()
            }
        }),
        ("elementwise", simd.to_string()),
        ("reductions", simd.to_string()),
        ("losses", simd.to_string()),
        ("optimizers", simd.to_string()),
    ]
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn extensions() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!(
            "sse2",
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512bf16"
        );
    }
    if found.is_empty() {
        found.push("none detected");
    }
    found
}
