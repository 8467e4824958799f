//! Machine-peak probes for `ember bench peak`: floating-point throughput per ISA path and
//! memory copy bandwidth.
//!
//! Percentages of peak are only honest when the peak is measured on the same machine in the
//! same run, so these probes live next to the kernels they judge. The FMA probe keeps twelve
//! independent accumulator chains in flight (enough to cover a 4-5 cycle FMA latency on two
//! pipes) and never touches memory; what it reports is the core's f32 arithmetic ceiling for
//! that instruction set.

use crate::isa::Isa;

/// Runs `iters` rounds of the f32 multiply-add loop for `isa` on the calling thread and returns
/// the number of floating-point operations performed (a multiply-add counts as 2).
///
/// AVX-512: 12 chains of 512-bit FMAs (32 flops each). AVX2: 12 chains of 256-bit FMAs (16
/// flops each). Portable: 12 chains of 4-wide multiply and
/// add (what a baseline SSE2 build issues: 8 flops per pair of instructions).
pub fn fma_flops(isa: Isa, iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && isa.is_supported() {
        // SAFETY: AVX-512F is present (checked just above).
        let sink = unsafe { fma_avx512(iters) };
        std::hint::black_box(sink);
        return iters as f64 * 12.0 * 32.0;
    }
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        let sink = unsafe { fma_avx2(iters) };
        std::hint::black_box(sink);
        return iters as f64 * 12.0 * 16.0;
    }
    let _ = isa;
    let sink = mul_add_portable(iters);
    std::hint::black_box(sink);
    iters as f64 * 12.0 * 8.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    // black_box keeps the constants opaque so nothing is folded at compile time.
    let x = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let y = _mm256_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut out = [0.0f32; 8];
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm256_add_ps(s, *a);
    }
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

/// The AVX-512 probe: 12 chains of 512-bit FMAs (32 flops each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let x = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let y = _mm512_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm512_add_ps(s, *a);
    }
    _mm512_reduce_add_ps(s)
}

fn mul_add_portable(iters: u64) -> f32 {
    use wide::f32x4;
    let mut acc = [f32x4::splat(0.0); 12];
    let x = f32x4::splat(std::hint::black_box(0.999_999f32));
    let y = f32x4::splat(std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * x + y;
        }
    }
    acc.iter().map(|a| a.reduce_add()).sum()
}

/// The operations [`fma_flops`] performs for `iters` rounds, without running it.
pub fn fma_flops_per_call(isa: Isa, iters: u64) -> f64 {
    let per_round = if isa == Isa::Avx512 && isa.is_supported() {
        32.0
    } else if isa.has_avx2() {
        16.0
    } else {
        8.0
    };
    iters as f64 * 12.0 * per_round
}

/// Copies `src` into `dst` (equal lengths) in fixed 1 MiB chunks, in parallel on the current
/// rayon pool; returns the bytes moved (read + written).
pub fn copy_bytes(src: &[f32], dst: &mut [f32]) -> f64 {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 18;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
    (src.len() * 2 * std::mem::size_of::<f32>()) as f64
}
