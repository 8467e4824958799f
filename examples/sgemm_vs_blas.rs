//! ember's SGEMM against a BLAS library **in the same process**, in alternating blocks of calls.
//!
//! Comparing two libraries from two processes run one after the other (as
//! `scripts/bench-peers.sh` does) leaves them exposed to different moments of a shared machine's
//! noise; here both multiply the same matrices, block after block (about 60 ms of calls each,
//! the order swapped every round), so each round's ratio of medians compares them under the
//! same conditions, and many rounds show how often one is ahead. The BLAS is loaded at run time
//! from a shared library (numpy's OpenBLAS wheel ships one: `scripts/sgemm-paired.sh` finds it),
//! so nothing here links against it and the example builds anywhere.
//!
//! One thread is the clean case. With several, two thread pools share the cores: OpenBLAS's
//! workers spin for a while after each call (its `THREAD_TIMEOUT`) and take the CPU from
//! rayon's, so the example sleeps between blocks (`--gap-ms`) and the figures still favour
//! whichever library ran second less; use separate processes for multi-threaded comparisons.
//!
//! Run: `cargo run --release --example sgemm_vs_blas -- --lib PATH [--threads 1] [--rounds 30]
//! [--shapes 512,1024,256x784x512]` (shapes M or MxKxN, C[m,n] = A[m,k]·B[k,n], row-major f32).
//! Prints one JSON object per shape: best, fastest-decile and median GFLOP/s of each library,
//! the median and range of the per-round ratios (BLAS time / ember time: above 1, ember is
//! faster) and the number of rounds in which ember was ahead.

use clap::Parser;
use ember_cpu::gemm::{Epilogue, MatMut, MatRef, gemm, gemm_widen};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The BLAS shared library (numpy's `libscipy_openblas64_*.so`, or a system OpenBLAS).
    #[arg(long)]
    lib: std::path::PathBuf,
    /// Threads for both libraries.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Rounds of one block of calls per library.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Shapes: M (square) or MxKxN, comma-separated.
    #[arg(
        long,
        default_value = "512,1024,2048,256x784x512,256x512x512,256x512x10,256x512x1"
    )]
    shapes: String,
    /// Pause before each block, so the other library's threads have gone idle.
    #[arg(long, default_value_t = 300)]
    gap_ms: u64,
    /// `wall` (default) or `cpu`: time each call by the CPU time the whole process consumed
    /// (Linux `CLOCK_PROCESS_CPUTIME_ID`) divided by `--threads`, instead of the wall clock.
    /// On a machine shared with other work the wall clock counts the time this process
    /// waited for a core; CPU time does not (cache pollution by the other work remains, and
    /// threads spinning while idle count as busy).
    #[arg(long, default_value = "wall")]
    clock: String,
    /// Storage type of ember's operands: `f32` (default) or `bf16` (the same values rounded to
    /// bf16, multiplied by `gemm_widen`: the AVX512-BF16 kernel where the CPU has it). The
    /// BLAS always runs `sgemm` on the f32 values; the correctness check then allows bf16's
    /// rounding.
    #[arg(long, default_value = "f32")]
    ember_dtype: String,
}

/// Seconds on the chosen clock (see `--clock`), from an arbitrary origin.
fn clock_now(cpu: bool, origin: Instant) -> f64 {
    if !cpu {
        return origin.elapsed().as_secs_f64();
    }
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux) to `ts`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// CBLAS `sgemm` with integers of type `I`: `i64` in numpy's OpenBLAS (`scipy_cblas_sgemm64_`),
/// `i32` in a system OpenBLAS (`cblas_sgemm`).
type Sgemm<I> = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    I,
    I,
    I,
    f32,
    *const f32,
    I,
    *const f32,
    I,
    f32,
    *mut f32,
    I,
);
/// CBLAS `sgemv` with integers of type `I`.
type Sgemv<I> =
    unsafe extern "C" fn(i32, i32, I, I, f32, *const f32, I, *const f32, I, f32, *mut f32, I);

/// The BLAS entry points this example uses, as found in the library. A product with N = 1
/// goes to `sgemv`, as numpy sends it (OpenBLAS's `sgemm` is several times slower there), so
/// ember meets the BLAS's best routine for each shape.
struct Blas {
    _lib: libloading::Library,
    sgemm: Result<Sgemm<i64>, Sgemm<i32>>,
    sgemv: Result<Sgemv<i64>, Sgemv<i32>>,
    core: String,
}

impl Blas {
    fn load(path: &std::path::Path, threads: usize) -> Result<Blas, String> {
        // SAFETY: loading a BLAS runs its initialisers, which are trusted like any linked BLAS.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        // SAFETY (each `get`): the symbols have the C signatures of the CBLAS/OpenBLAS API.
        let sgemm = unsafe {
            match lib
                .get::<Sgemm<i64>>(b"scipy_cblas_sgemm64_")
                .or_else(|_| lib.get::<Sgemm<i64>>(b"cblas_sgemm64_"))
            {
                Ok(f) => Ok(*f),
                Err(_) => Err(*lib.get::<Sgemm<i32>>(b"cblas_sgemm").map_err(|e| {
                    format!("{}: no cblas_sgemm (64- or 32-bit): {e}", path.display())
                })?),
            }
        };
        // SAFETY: as above.
        let sgemv = unsafe {
            match lib
                .get::<Sgemv<i64>>(b"scipy_cblas_sgemv64_")
                .or_else(|_| lib.get::<Sgemv<i64>>(b"cblas_sgemv64_"))
            {
                Ok(f) => Ok(*f),
                Err(_) => Err(*lib.get::<Sgemv<i32>>(b"cblas_sgemv").map_err(|e| {
                    format!("{}: no cblas_sgemv (64- or 32-bit): {e}", path.display())
                })?),
            }
        };
        unsafe {
            if let Ok(f) = lib
                .get::<unsafe extern "C" fn(i32)>(b"scipy_openblas_set_num_threads64_")
                .or_else(|_| lib.get::<unsafe extern "C" fn(i32)>(b"openblas_set_num_threads"))
            {
                f(threads as i32);
            }
        }
        let core = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
                b"scipy_openblas_get_corename64_",
            )
            .or_else(|_| lib.get(b"openblas_get_corename"))
            .map(|f| std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into())
        };
        Ok(Blas {
            _lib: lib,
            sgemm,
            sgemv,
            core,
        })
    }

    /// C = A·B, all row-major (`sgemv` when N = 1).
    fn gemm(&self, m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        const ROW_MAJOR: i32 = 101;
        const NO_TRANS: i32 = 111;
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        // SAFETY: the slices hold the m×k, k×n and m×n row-major matrices described (with
        // n = 1, B and C are vectors of k and m values).
        unsafe {
            if n == 1 {
                return match self.sgemv {
                    Ok(f) => f(
                        ROW_MAJOR,
                        NO_TRANS,
                        m as i64,
                        k as i64,
                        1.0,
                        a.as_ptr(),
                        k as i64,
                        b.as_ptr(),
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        1,
                    ),
                    Err(f) => f(
                        ROW_MAJOR,
                        NO_TRANS,
                        m as i32,
                        k as i32,
                        1.0,
                        a.as_ptr(),
                        k as i32,
                        b.as_ptr(),
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        1,
                    ),
                };
            }
            match self.sgemm {
                Ok(f) => f(
                    ROW_MAJOR,
                    NO_TRANS,
                    NO_TRANS,
                    m as i64,
                    n as i64,
                    k as i64,
                    1.0,
                    a.as_ptr(),
                    k as i64,
                    b.as_ptr(),
                    n as i64,
                    0.0,
                    c.as_mut_ptr(),
                    n as i64,
                ),
                Err(f) => f(
                    ROW_MAJOR,
                    NO_TRANS,
                    NO_TRANS,
                    m as i32,
                    n as i32,
                    k as i32,
                    1.0,
                    a.as_ptr(),
                    k as i32,
                    b.as_ptr(),
                    n as i32,
                    0.0,
                    c.as_mut_ptr(),
                    n as i32,
                ),
            }
        }
    }
}

/// Parses "512" or "256x784x512" into (m, k, n).
fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|e| format!("bad shape {s:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [m] => Ok((m, m, m)),
        [m, k, n] => Ok((m, k, n)),
        _ => Err(format!("bad shape {s:?}: expected M or MxKxN")),
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if args.rounds == 0 || args.threads == 0 {
        return Err("--rounds and --threads must be at least 1".into());
    }
    if args.threads > 1 {
        eprintln!(
            "note: {} threads: two thread pools share the cores (see the module comment)",
            args.threads
        );
    }
    // The global pool, as an application calling ember from its main thread would have it
    // (a 1-thread product then runs on the calling thread, with no hand-off to a worker).
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .map_err(|e| e.to_string())?;
    let blas = Blas::load(&args.lib, args.threads)?;
    let cpu_clock = match args.clock.as_str() {
        "wall" => false,
        "cpu" => true,
        other => return Err(format!("--clock must be wall or cpu, got {other:?}")),
    };
    let origin = Instant::now();
    let ember_bf16 = match args.ember_dtype.as_str() {
        "f32" => false,
        "bf16" => true,
        other => return Err(format!("--ember-dtype must be f32 or bf16, got {other:?}")),
    };
    let per_thread = if cpu_clock { args.threads as f64 } else { 1.0 };
    for shape in args.shapes.split(',').filter(|s| !s.is_empty()) {
        let (m, k, n) = parse_shape(shape)?;
        let a: Vec<f32> = (0..m * k)
            .map(|i| (i * 7919 % 1000) as f32 * 1e-3)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| (i * 104_729 % 1000) as f32 * 1e-3)
            .collect();
        let (mut c_ember, mut c_blas) = (vec![0f32; m * n], vec![0f32; m * n]);
        let (a16, b16): (Vec<half::bf16>, Vec<half::bf16>) = if ember_bf16 {
            (
                a.iter().map(|&x| half::bf16::from_f32(x)).collect(),
                b.iter().map(|&x| half::bf16::from_f32(x)).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let mut call = |which: usize| {
            if which == 0 {
                let (ar, br) = (
                    MatRef {
                        data: &a,
                        rs: k,
                        cs: 1,
                    },
                    MatRef {
                        data: &b,
                        rs: n,
                        cs: 1,
                    },
                );
                let c = MatMut {
                    data: &mut c_ember,
                    rs: n,
                    cs: 1,
                };
                if ember_bf16 {
                    let (ar, br) = (ar.with_data(&a16[..]), br.with_data(&b16[..]));
                    gemm_widen(m, n, k, 1.0, ar, br, 0.0, c, Epilogue::default())
                } else {
                    gemm(m, n, k, 1.0, ar, br, 0.0, c, Epilogue::default())
                }
                .expect("operands sized above");
            } else {
                blas.gemm(m, n, k, &a, &b, &mut c_blas);
            }
        };
        // Blocks of about 60 ms (at least 5 calls), after one warm-up call each.
        let t = Instant::now();
        call(0);
        call(1);
        let per_call = t.elapsed().as_secs_f64() / 2.0;
        let calls = ((0.06 / per_call) as usize).clamp(5, 2000);
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut ratios = Vec::with_capacity(args.rounds);
        for round in 0..args.rounds {
            let mut median = [0.0; 2];
            for slot in 0..2 {
                let which = (slot + round) % 2;
                std::thread::sleep(Duration::from_millis(args.gap_ms));
                // The first two calls of a block wake the threads; they are not counted.
                let mut block: Vec<f64> = (0..calls + 2)
                    .map(|_| {
                        let t = clock_now(cpu_clock, origin);
                        call(which);
                        (clock_now(cpu_clock, origin) - t) / per_thread
                    })
                    .skip(2)
                    .collect();
                block.sort_by(f64::total_cmp);
                median[which] = block[block.len() / 2];
                times[which].extend(block);
            }
            ratios.push(median[1] / median[0]);
        }
        let worst = c_ember
            .iter()
            .zip(&c_blas)
            .map(|(x, y)| ((x - y) / y.abs().max(1.0)).abs())
            .fold(0f32, f32::max);
        // bf16 rounds each input by up to 2^-9 relative: allow that (values here are >= 0).
        if worst > if ember_bf16 { 1e-2 } else { 1e-4 } {
            return Err(format!(
                "{m}x{k}x{n}: ember and the BLAS differ by {worst:e} (relative)"
            ));
        }
        let flop = 2.0 * (m * n * k) as f64;
        for t in times.iter_mut() {
            t.sort_by(f64::total_cmp);
        }
        let gflops =
            |w: usize, q: f64| flop / times[w][((times[w].len() - 1) as f64 * q) as usize] / 1e9;
        ratios.sort_by(f64::total_cmp);
        let ahead = ratios.iter().filter(|&&r| r > 1.0).count();
        println!(
            "{}",
            serde_json::json!({
                "bench": "sgemm_paired", "clock": args.clock, "ember_dtype": args.ember_dtype, "m": m, "k": k, "n": n, "threads": args.threads,
                "blas_core": blas.core, "calls_each": times[0].len(),
                "ember_best": round1(gflops(0, 0.0)), "ember_p10": round1(gflops(0, 0.1)),
                "ember_median": round1(gflops(0, 0.5)),
                "blas_best": round1(gflops(1, 0.0)), "blas_p10": round1(gflops(1, 0.1)),
                "blas_median": round1(gflops(1, 0.5)),
                "ratio_median": (ratios[ratios.len() / 2] * 1000.0).round() / 1000.0,
                "ratio_min": (ratios[0] * 1000.0).round() / 1000.0,
                "ratio_max": (ratios[ratios.len() - 1] * 1000.0).round() / 1000.0,
                "rounds": args.rounds, "rounds_ember_ahead": ahead,
            })
        );
    }
    Ok(())
}

/// One decimal.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
