//! Thread CPU time of the pieces of one LSTM training step at issue 15's sequential-MNIST shape
//! (N 64, T 28, H 128; `--h 256 --t 100` for the character LM), at 1 thread on the active
//! kernel path: the recurrence forward and backward (`ember_cpu::recurrent`), and the GEMM
//! shapes inside them on their own (one step's h·W_hhᵀ, one step's dgates·W_hh, the dW_hh
//! product over all steps), each with its GFLOP/s. It is the yardstick for the figures in
//! `recurrent.rs`; CPU time (from `/proc/thread-self/schedstat`, Linux) stays meaningful on a
//! loaded machine, where wall time does not.
//!
//! `cargo run --release -p ember-cpu --example recurrent_cputime -- [N T H]` (default 64 28 128)

use ember_cpu::gemm::{Epilogue, MatMut, MatRef, gemm};
use ember_cpu::recurrent::{
    BackwardArgs, CellKind, ForwardArgs, Grads, RecurrentSpec, backward, forward, saved_len,
};

/// This thread's CPU time in nanoseconds (None off Linux).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median CPU microseconds per call of `f` over 7 rounds of `reps` calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t0 = cpu_ns().unwrap_or(0);
            for _ in 0..reps {
                f();
            }
            (cpu_ns().unwrap_or(0) - t0) as f64 / 1e3 / reps as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[3]
}

fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (x as f32 / (1u32 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn gemm_us(m: usize, n: usize, k: usize, a_cm: bool, reps: usize) -> (f64, f64) {
    let a = vals(m * k, 1);
    let b = vals(k * n, 2);
    let mut c = vec![0f32; m * n];
    let us = time(reps, || {
        gemm(
            m,
            n,
            k,
            1.0,
            MatRef {
                data: &a,
                rs: if a_cm { 1 } else { k },
                cs: if a_cm { m } else { 1 },
            },
            MatRef {
                data: &b,
                rs: n,
                cs: 1,
            },
            0.0,
            MatMut {
                data: &mut c,
                rs: n,
                cs: 1,
            },
            Epilogue::default(),
        )
        .expect("gemm");
    });
    (us, 2.0 * (m * n * k) as f64 / us / 1e3)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (n, t, h) = match args[..] {
        [n, t, h] => (n, t, h),
        _ => (64, 28, 128),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| {
        println!(
            "isa {}, N {n} T {t} H {h}, 1 thread, CPU µs (median of 7)",
            ember_cpu::isa::active()
        );
        let spec = RecurrentSpec {
            kind: CellKind::Lstm,
            n,
            t,
            hidden: h,
            reverse: false,
        };
        let g4 = 4 * h;
        let xp = vals(n * t * g4, 3);
        let h0 = vec![0f32; n * h];
        let c0 = vec![0f32; n * h];
        let w = vals(g4 * h, 4);
        let b = vals(g4, 5);
        let mut out = vec![0f32; n * t * h];
        let mut saved = vec![0f32; saved_len(&spec)];
        let fa = ForwardArgs {
            xp: &xp,
            h0: &h0,
            c0: &c0,
            w_hh: &w,
            b_hh: &b,
            mask: None,
        };
        let fwd = time(20, || {
            forward(&spec, &fa, &mut out, &mut saved).expect("forward")
        });
        let g = vals(n * t * h, 6);
        let mut dxp = vec![0f32; xp.len()];
        let (mut dh0, mut dc0, mut dw, mut db) = (
            vec![0f32; n * h],
            vec![0f32; n * h],
            vec![0f32; w.len()],
            vec![0f32; g4],
        );
        let ba = BackwardArgs {
            h0: &h0,
            c0: &c0,
            w_hh: &w,
            mask: None,
            out: &out,
            saved: &saved,
            g: &g,
        };
        let bwd = time(20, || {
            backward(
                &spec,
                &ba,
                Grads {
                    dxp: &mut dxp,
                    dh0: &mut dh0,
                    dc0: &mut dc0,
                    dw_hh: &mut dw,
                    db_hh: &mut db,
                },
            )
            .expect("backward")
        });
        let step = 2.0 * (n * g4 * h) as f64;
        println!(
            "recurrence forward  {fwd:9.1} µs  ({:.1} GFLOP/s in its GEMMs' terms)",
            t as f64 * step / fwd / 1e3
        );
        println!(
            "recurrence backward {bwd:9.1} µs  ({:.1} GFLOP/s in its GEMMs' terms)",
            2.0 * t as f64 * step / bwd / 1e3
        );
        let (us, gf) = gemm_us(n, g4, h, false, 200);
        println!(
            "  step GEMM h·W_hhᵀ   {n}×{g4}×{h}: {us:8.2} µs  {gf:6.1} GFLOP/s (×{t} = {:.0} µs)",
            us * t as f64
        );
        let (us, gf) = gemm_us(n, h, g4, false, 200);
        println!(
            "  step GEMM dg·W_hh   {n}×{h}×{g4}: {us:8.2} µs  {gf:6.1} GFLOP/s (×{t} = {:.0} µs)",
            us * t as f64
        );
        let (us, gf) = gemm_us(g4, h, n * t, true, 10);
        println!(
            "  dW_hh GEMM dGᵀ·Hprev {g4}×{h}×{}: {us:8.2} µs  {gf:6.1} GFLOP/s",
            n * t
        );
    });
}
