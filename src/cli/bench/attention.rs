//! `ember bench attention`: scaled dot-product attention and one Transformer encoder block.
//!
//! SDPA is timed at the kernel level (ember-cpu's tiled forward, and forward + backward) on
//! f32 `[N, H, T, Dh]` operands at N 32, H 4, Dh 32 and T 128 / 512 (or the `--sizes` T
//! values), without masks; the encoder block (d 128, 4 heads, ff 512, N 32, T 128) is timed
//! through ember-nn: forward and backward of Σ y in training mode without dropout. Each
//! figure is the median wall time per call (the module protocol of `bench.rs`), with the
//! thread's CPU time beside it at one thread. The PyTorch peer is
//! `scripts/peers/attention_py.py` (same shapes, same protocol).

use super::{Out, cpu_per_call, round, time_it};
use ember_core::ember_ops::AttentionSpec;
use ember_cpu::attention as ka;
use serde_json::json;

/// The default sequence lengths.
const LENGTHS: [usize; 2] = [128, 512];

/// Runs the attention cases.
pub(super) fn run(
    threads: usize,
    min_time: f64,
    sizes: &[String],
    out: &Out,
) -> Result<(), String> {
    let lengths: Vec<usize> = if sizes.is_empty() {
        LENGTHS.to_vec()
    } else {
        sizes
            .iter()
            .map(|s| {
                s.trim()
                    .parse()
                    .ok()
                    .filter(|&t: &usize| (1..=8192).contains(&t))
                    .ok_or_else(|| format!("bench attention: '{s}' is not a length T in 1..=8192"))
            })
            .collect::<Result<_, _>>()?
    };
    let (n, h, dh) = (32, 4, 32);
    for &t in &lengths {
        sdpa(n, h, t, dh, threads, min_time, out)?;
    }
    if sizes.is_empty() {
        encoder_block(threads, min_time, out)?;
    }
    Ok(())
}

fn sdpa(
    n: usize,
    h: usize,
    t: usize,
    dh: usize,
    threads: usize,
    min_time: f64,
    out: &Out,
) -> Result<(), String> {
    let spec = AttentionSpec {
        batch: n,
        heads: h,
        tq: t,
        tk: t,
        dh,
        dv: dh,
        causal: false,
        scale: 1.0 / (dh as f64).sqrt(),
    };
    let len = n * h * t * dh;
    let fill = |f: f32| {
        (0..len)
            .map(|i| ((i as f32) * f).sin())
            .collect::<Vec<f32>>()
    };
    let (q, k, v, dout) = (fill(0.37), fill(0.71), fill(0.13), fill(0.29));
    let mut o = vec![0f32; len];
    let mut lse = vec![0f32; n * h * t];
    let (mut dq, mut dk, mut dv) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    let e = |e: ember_cpu::OperandError| format!("bench attention: {e}");
    let mut err = Ok(());
    let mut fwd =
        || err = ka::attention_forward(&spec, &q, &k, &v, None, &mut o, &mut lse).map_err(e);
    let t_fwd = time_it(min_time, &mut fwd);
    let c_fwd = cpu_per_call(threads, &mut fwd);
    err.clone()?;
    let mut both = || {
        err = ka::attention_forward(&spec, &q, &k, &v, None, &mut o, &mut lse)
            .and_then(|_| {
                ka::attention_backward(
                    &spec, &q, &k, &v, None, &o, &lse, &dout, &mut dq, &mut dk, &mut dv,
                )
            })
            .map_err(e)
    };
    let t_all = time_it(min_time, &mut both);
    let c_all = cpu_per_call(threads, &mut both);
    err?;
    // 2 GEMMs forward (4·T²·Dh flops per head), 5 backward (S twice, dP twice, dV, dK, dQ:
    // counted as the 4 useful ones, 8·T²·Dh), as FlashAttention counts.
    let fl = (n * h * t * t * dh) as f64;
    let gf = |sec: f64, f: f64| f * fl / sec / 1e9;
    let cpu = |c: Option<f64>| c.map_or(String::new(), |c| format!(" [cpu {:.2} ms]", c * 1e3));
    out.emit(
        json!({"bench":"attention","op":"sdpa","n":n,"heads":h,"t":t,"dh":dh,"threads":threads,
               "fwd_ms":round(t_fwd*1e3),"fwd_bwd_ms":round(t_all*1e3),
               "fwd_gflops":round(gf(t_fwd,4.0)),"fwd_bwd_gflops":round(gf(t_all,12.0)),
               "cpu_fwd_ms":c_fwd.map(|c| round(c*1e3)),"cpu_fwd_bwd_ms":c_all.map(|c| round(c*1e3))}),
        format!(
            "attention sdpa N{n} H{h} T{t} Dh{dh}  {threads} thr  fwd {:8.2} ms ({:6.1} GFLOP/s){}  \
             fwd+bwd {:8.2} ms ({:6.1} GFLOP/s){}",
            t_fwd * 1e3,
            gf(t_fwd, 4.0),
            cpu(c_fwd),
            t_all * 1e3,
            gf(t_all, 12.0),
            cpu(c_all)
        ),
    );
    Ok(())
}

fn encoder_block(threads: usize, min_time: f64, out: &Out) -> Result<(), String> {
    use ember_core::{DType, Device, Tensor};
    use ember_nn::attention::TransformerEncoderBlock;
    use ember_nn::module::Module;
    use rand::SeedableRng;
    let (n, t, d, heads, ff) = (32, 128, 128, 4, 512);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let e = |e: ember_nn::NnError| format!("bench attention: {e}");
    let block = TransformerEncoderBlock::new(d, heads, ff, 0.0, false, 1, &mut rng).map_err(e)?;
    let x = Tensor::randn(0.0, 1.0, &[n, t, d][..], DType::F32, Device::Cpu, &mut rng)
        .map_err(|e| e.to_string())?
        .as_variable();
    let mut err: Result<(), String> = Ok(());
    let mut step = || {
        err = (|| {
            let y = block.forward(&x, true).map_err(e)?;
            y.sum_all()
                .and_then(|s| s.backward())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })()
    };
    let t_step = time_it(min_time, &mut step);
    let c_step = cpu_per_call(threads, &mut step);
    err?;
    out.emit(
        json!({"bench":"attention","op":"encoder_block","n":n,"t":t,"d":d,"heads":heads,"ff":ff,
               "threads":threads,"fwd_bwd_ms":round(t_step*1e3),
               "cpu_fwd_bwd_ms":c_step.map(|c| round(c*1e3))}),
        format!(
            "attention encoder block N{n} T{t} d{d} {heads} heads ff{ff}  {threads} thr  fwd+bwd {:8.2} ms{}",
            t_step * 1e3,
            c_step.map_or(String::new(), |c| format!(" [cpu {:.2} ms]", c * 1e3))
        ),
    );
    Ok(())
}
