//! `ember bench`: the kernel lab. Times ember's CPU kernels and prints each result beside the
//! machine's peak, measured on the spot in the same process.
//!
//! Cases: `gemm` (GFLOP/s vs the FMA peak of the chosen ISA × threads), `elementwise` and
//! `loss` (GB/s vs the measured copy bandwidth), `mlp` (a full training step: forward, backward,
//! Adam), `sparse` (pruned Dense layers, CSR against the dense GEMM), `lstm` (a
//! sequential-MNIST LSTM training step, `bench/lstm.rs`), `peak` (the yardsticks themselves)
//! and `all`. Timing follows the peer scripts'
//! protocol (`scripts/peers/sgemm_py.py`): warm up, repeat each call until one sample takes at
//! least 2 ms, sample until `--min-time` has passed (at least 5 samples), report the median.
//! The yardsticks (FMA peak, copy bandwidth) are the *fastest* of their samples, since a peak
//! is a maximum and the median of a probe disturbed by other work understates it. No GEMM can
//! beat the FMA peak, so a gemm figure still above 100 % means the probe was disturbed (the
//! machine was busy while it ran): it is printed with a note saying so, and
//! `"peak_disturbed":true` in JSON. Bandwidth figures above 100 % are possible without any
//! disturbance: the copy yardstick streams 128 MiB from memory, while a small buffer stays in
//! cache.
//! Sizes are checked against the memory available before any operand is allocated.
//! `--json` prints one object per case so scripts can line ember up with other libraries.

mod attention;
mod lstm;
mod quant;

use ember_cpu::isa::{self, Isa};
use serde_json::{Value, json};
use std::time::Instant;

/// Which benchmark family to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Matrix multiply (square sizes and the MLP shapes).
    Gemm,
    /// Activations over large contiguous f32 buffers.
    Elementwise,
    /// Softmax rows and fused BCE forward + backward.
    Loss,
    /// FMA throughput per ISA and memory copy bandwidth.
    Peak,
    /// One full training step (forward, backward, Adam) of the seed model and of 784-512-512-1.
    Mlp,
    /// conv2d forward, backward-data and backward-weight at the MNIST-CNN and ResNet shapes.
    Conv,
    /// A pruned Dense layer: CSR sparse × dense (`ember_cpu::sparse`) against the dense GEMM,
    /// at the 784-512-512-10 MLP's shapes (batch 256) and sparsities 50–99 %.
    Sparse,
    /// A sequential-MNIST training step: LSTM(128) over 28 steps of 28 → Dense 10, batch 64,
    /// cross-entropy, Adam (issue 15's task; peer: `seq_cnn_peers.py --task lstm`).
    Lstm,
    /// Scaled dot-product attention (forward, forward + backward) and one encoder block.
    Attention,
    /// The MNIST CNN's layers and whole network in int8 (`ember_nn::quantize`) against f32.
    Quant,
    /// Everything above.
    All,
}

/// Arguments of `ember bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to benchmark.
    #[arg(value_enum, default_value = "all")]
    pub case: Case,
    /// rayon threads (default: all cores; at least 1).
    #[arg(long, allow_negative_numbers = true, value_parser = super::whole_number)]
    pub threads: Option<usize>,
    /// Sizes: for gemm `N` (square) or `MxKxN`; for elementwise element counts (`16M` allowed);
    /// for mlp the model names (`seed`, `784-512-512-1`). Ignored by `all`.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// Kernel path: avx512, avx2 or portable (default: the best this CPU supports).
    #[arg(long)]
    pub isa: Option<String>,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With `--device cuda`: small sizes and short batches, a smoke test of every kernel path.
    #[arg(long)]
    pub quick: bool,
    /// Seconds of sampling per case.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub min_time: f64,
    /// Storage type of gemm's operands: f32, f64 (against half the f32 FMA peak: an f64 FMA
    /// has half the lanes), or f16 / bf16 (widened to f32 while packed; the product is
    /// accumulated and written in f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Precision policy of the ember-nn model in `bench mlp` (f32, bf16 or f16; see
    /// `ember_nn::mixed`); its rows are labelled `nn-bf16` / `nn-f16`.
    #[arg(long, default_value = "f32", value_name = "f32|bf16|f16")]
    pub precision: String,
}

/// Runs `ember bench`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    super::check_threads(args.threads)?;
    if !(args.min_time >= 0.0 && args.min_time.is_finite()) {
        return Err(format!(
            "--min-time must be a non-negative number of seconds, got {}",
            args.min_time
        ));
    }
    match args.device.as_str() {
        "cpu" if args.quick => return Err("bench: --quick applies to --device cuda".into()),
        "cpu" => {}
        "cuda" => return run_cuda(&args),
        other => {
            return Err(format!(
                "bench: unknown device '{other}' (expected cpu or cuda)"
            ));
        }
    }
    check_sizes(&args)?;
    let isa = match &args.isa {
        None => isa::active(),
        Some(s) => {
            let isa = Isa::parse(s).ok_or_else(|| {
                format!("bench: unknown ISA '{s}' (expected avx512, avx2 or portable)")
            })?;
            if !isa.is_supported() {
                return Err(format!("bench: this CPU cannot run the {isa} kernels"));
            }
            isa
        }
    };
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("bench: cannot start {threads} threads: {e}"))?;
    let out = Out { json: args.json };
    pool.install(|| {
        isa::with(isa, || run_cases(&args, isa, threads, &out))
            .map_err(|e| format!("bench: {e}"))?
    })
}

/// `--device cuda`: hands over to ember-cuda's kernel lab (`ember_cuda::bench`), which times
/// the CUDA kernels against cuBLAS and the device's copy bandwidth.
fn run_cuda(args: &BenchArgs) -> Result<(), String> {
    use ember_cuda::bench::{BenchOptions, Suite};
    let suite = match args.case {
        Case::Gemm => Suite::Gemm,
        Case::Elementwise => Suite::Elementwise,
        Case::Loss => Suite::Loss,
        Case::All => Suite::All,
        Case::Peak
        | Case::Mlp
        | Case::Conv
        | Case::Sparse
        | Case::Lstm
        | Case::Attention
        | Case::Quant => {
            let name = match args.case {
                Case::Peak => "peak",
                Case::Mlp => "mlp",
                Case::Sparse => "sparse",
                Case::Lstm => "lstm",
                Case::Attention => "attention",
                Case::Quant => "quant",
                _ => "conv",
            };
            return Err(format!(
                "bench: the {name} case runs on the CPU only (on CUDA: gemm, elementwise, loss, all)"
            ));
        }
    };
    let dev = ember_cuda::CudaDevice::get(0).map_err(|e| format!("bench: no usable GPU: {e}"))?;
    let mut opts = if args.quick {
        BenchOptions::quick(suite)
    } else {
        BenchOptions {
            suite,
            ..BenchOptions::default()
        }
    };
    if args.case == Case::Gemm && !args.sizes.is_empty() {
        opts.sgemm_sizes = args
            .sizes
            .iter()
            .map(|s| parse_count(s))
            .collect::<Result<_, _>>()?;
    }
    let records = ember_cuda::bench::run(&dev, &opts).map_err(|e| format!("bench: {e}"))?;
    if args.json {
        for r in &records {
            println!("{}", r.to_json());
        }
    } else {
        println!(
            "device: {} ({}, {} SMs)",
            dev.name(),
            dev.arch(),
            dev.sm_count()
        );
        print!("{}", ember_cuda::bench::table(&records));
    }
    Ok(())
}

struct Out {
    json: bool,
}

impl Out {
    fn emit(&self, v: Value, text: String) {
        if self.json {
            println!("{v}");
        } else {
            println!("{text}");
        }
    }
}

/// The yardsticks, measured once per run.
struct Peak {
    /// f32 GFLOP/s of the chosen ISA on all `threads` threads.
    gflops: f64,
    /// Copy bandwidth on all threads, GB/s (read + write bytes).
    copy_gbs: f64,
}

fn run_cases(args: &BenchArgs, isa: Isa, threads: usize, out: &Out) -> Result<(), String> {
    let want = |c: Case| args.case == c || args.case == Case::All;
    if !out.json {
        println!(
            "ember bench: isa {isa}, {threads} thread(s), median of samples over {:.1} s per case",
            args.min_time
        );
    }
    // The yardsticks are measured only when a case needs them (mlp reports times, not ratios).
    let needs_peak = [
        Case::Peak,
        Case::Gemm,
        Case::Elementwise,
        Case::Loss,
        Case::Conv,
    ]
    .iter()
    .any(|&c| want(c));
    let peak = if needs_peak {
        measure_peak(isa, threads, args.min_time.min(0.5), out, want(Case::Peak))
    } else {
        Peak {
            gflops: f64::NAN,
            copy_gbs: f64::NAN,
        }
    };
    if want(Case::Gemm) {
        bench_gemm(args, isa, threads, &peak, out)?;
    }
    if want(Case::Elementwise) {
        bench_elementwise(args, isa, threads, &peak, out)?;
    }
    if want(Case::Loss) {
        bench_loss(args, isa, threads, &peak, out)?;
    }
    if want(Case::Conv) {
        bench_conv(args, isa, threads, &peak, out)?;
    }
    if want(Case::Sparse) {
        bench_sparse(args, threads, out)?;
    }
    if want(Case::Quant) {
        quant::run(threads, args.min_time, out)?;
    }
    if want(Case::Lstm) {
        lstm::run(threads, args.min_time, out)?;
    }
    if want(Case::Attention) {
        let only: &[String] = if args.case == Case::Attention {
            &args.sizes
        } else {
            &[]
        };
        attention::run(threads, args.min_time, only, out)?;
    }
    if want(Case::Mlp) {
        let only: &[String] = if args.case == Case::Mlp {
            &args.sizes
        } else {
            &[]
        };
        let precision = ember_nn::mixed::Precision::parse(&args.precision)
            .map_err(|e| format!("--precision: {e}"))?;
        mlp::run(threads, args.min_time, only, precision, out)?;
    }
    Ok(())
}

/// Median seconds per call of `f` (see the module docs for the protocol).
pub(crate) fn time_it(min_time: f64, f: impl FnMut()) -> f64 {
    time_stats(min_time, f).0
}

/// (median, fastest) seconds per call of `f`.
pub(crate) fn time_stats(min_time: f64, mut f: impl FnMut()) -> (f64, f64) {
    let t0 = Instant::now();
    let mut calls = 0u32;
    while calls < 3 || (t0.elapsed().as_secs_f64() < 0.05 && calls < 1000) {
        f();
        calls += 1;
    }
    let per = t0.elapsed().as_secs_f64() / calls as f64;
    let inner = ((0.002 / per).ceil() as usize).max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed().as_secs_f64() < min_time && samples.len() < 300) {
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() / inner as f64);
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[0])
}

fn measure_peak(isa: Isa, threads: usize, min_time: f64, out: &Out, print: bool) -> Peak {
    use rayon::prelude::*;
    const ITERS: u64 = 200_000;
    let mut per_isa = Vec::new();
    let candidates: Vec<Isa> = if print { isa::supported() } else { vec![isa] };
    for cand in candidates {
        let (_, t) = time_stats(min_time, || {
            (0..threads).into_par_iter().for_each(|_| {
                ember_cpu::peak::fma_flops(cand, ITERS);
            })
        });
        let per_call = threads as f64 * ember_cpu::peak::fma_flops_per_call(cand, ITERS);
        let gflops = per_call / t / 1e9;
        if print {
            out.emit(
                json!({"bench":"peak","kind":"fma_f32","isa":cand.name(),"threads":threads,"gflops":round(gflops)}),
                format!("peak  fma f32 {:<9} {threads} thr  {gflops:8.1} GFLOP/s", cand.name()),
            );
        }
        per_isa.push((cand, gflops));
    }
    let n = 32 << 20; // 32 Mi f32 = 128 MiB per buffer, far beyond L3
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let mut bytes = 0.0;
    let (_, t) = time_stats(min_time, || {
        bytes = ember_cpu::peak::copy_bytes(&src, &mut dst)
    });
    let copy_gbs = bytes / t / 1e9;
    if print {
        out.emit(
            json!({"bench":"peak","kind":"copy","bytes":bytes,"threads":threads,"gbs":round(copy_gbs)}),
            format!("peak  copy 128 MiB       {threads} thr  {copy_gbs:8.1} GB/s (read + write)"),
        );
    }
    let gflops = per_isa
        .iter()
        .find(|(i, _)| *i == isa)
        .map_or(f64::NAN, |p| p.1);
    Peak { gflops, copy_gbs }
}

/// The note printed after a gemm figure above 100 % of the FMA peak: no kernel can beat the
/// peak, so its probe ran slower than it can, disturbed by other work on the machine.
fn pct_note(pct: f64) -> &'static str {
    if pct > 100.0 {
        "  [peak probe disturbed: the machine was busy; rerun when idle]"
    } else {
        ""
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn parse_count(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('M') | Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('K') | Some('k') => (&s[..s.len() - 1], 1 << 10),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|v| v.checked_mul(mul))
        .ok_or_else(|| format!("bench: cannot read size '{s}'"))
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let v: Vec<usize> = s.split('x').map(parse_count).collect::<Result<_, _>>()?;
    match v[..] {
        [n] => Ok((n, n, n)),
        [m, k, n] => Ok((m, k, n)),
        _ => Err(format!("bench: gemm size '{s}' is neither N nor MxKxN")),
    }
}

/// The gemm shapes to time: `--sizes` for the gemm case, a fixed list otherwise.
fn gemm_shapes(args: &BenchArgs) -> Result<Vec<(usize, usize, usize)>, String> {
    let dtype = args.dtype.as_str();
    if !matches!(dtype, "f32" | "f64" | "f16" | "bf16") {
        return Err(format!(
            "bench: unknown --dtype '{dtype}' for gemm (expected f32, f64, f16 or bf16)"
        ));
    }
    if args.sizes.is_empty() || args.case == Case::All {
        [
            "64",
            "128",
            "256",
            "512",
            "1024",
            "2048",
            "256x784x512",
            "256x512x512",
            "256x512x1",
            "10x10x10",
            "10x10x5",
            "10x5x1",
        ]
        .iter()
        .map(|s| parse_shape(s))
        .collect()
    } else {
        args.sizes.iter().map(|s| parse_shape(s)).collect()
    }
}

/// The element counts the elementwise case times: `--sizes` for that case, 1 Mi and 16 Mi
/// otherwise.
fn elementwise_sizes(args: &BenchArgs) -> Result<Vec<usize>, String> {
    if args.sizes.is_empty() || args.case != Case::Elementwise {
        Ok(vec![1 << 20, 16 << 20])
    } else {
        args.sizes.iter().map(|s| parse_count(s)).collect()
    }
}

/// Checks every size the run will allocate against the memory available, before the peak is
/// measured or any operand allocated, naming the `--sizes` entry that does not fit.
fn check_sizes(args: &BenchArgs) -> Result<(), String> {
    // The entry of --sizes that gave size `i` of `case`, or the built-in size's own name.
    let named = |case: Case, i: usize, default: String| match args.sizes.get(i) {
        Some(s) if args.case == case => format!("--sizes {}", s.trim()),
        _ => format!("built-in size {default}"),
    };
    if matches!(args.case, Case::Gemm | Case::All) {
        let dtype = args.dtype.as_str();
        for (i, (m, k, n)) in gemm_shapes(args)?.into_iter().enumerate() {
            let (mk, kn, mn) = (
                m as u128 * k as u128,
                k as u128 * n as u128,
                m as u128 * n as u128,
            );
            // A and B in f32, their copies in the operand type, C in the result type.
            let (copy, c) = match dtype {
                "f16" | "bf16" => (2, 4),
                "f64" => (8, 8),
                _ => (0, 4),
            };
            let name = named(Case::Gemm, i, format!("{m}x{k}x{n}"));
            super::memory::check(
                &format!("{name}: the operands of gemm {m}x{k}x{n} ({dtype})"),
                (mk + kn) * (4 + copy) + mn * c,
            )?;
        }
    }
    if args.case == Case::Mlp {
        mlp::check_names(&args.sizes)?;
    }
    if matches!(args.case, Case::Elementwise | Case::All) {
        for (i, n) in elementwise_sizes(args)?.into_iter().enumerate() {
            // x, |x| + 0.01 and y, in f32.
            let name = named(Case::Elementwise, i, n.to_string());
            super::memory::check(
                &format!("{name}: the elementwise buffers of {n} elements"),
                3 * 4 * n as u128,
            )?;
        }
    }
    Ok(())
}

/// The conv shapes of `ember bench conv`: (name, batch, in, out, extent, kernel, padding); the
/// MNIST CNN's two layers and a ResNet 3×3 layer. `scripts/peers/conv_py.py` times the same in
/// PyTorch.
const CONV_SHAPES: [(&str, usize, usize, usize, usize, usize, usize); 3] = [
    ("mnist_conv1", 64, 1, 32, 28, 3, 0),
    ("mnist_conv2", 64, 32, 64, 13, 3, 0),
    ("resnet_3x3", 32, 64, 64, 56, 3, 1),
];

/// f32 conv2d at [`CONV_SHAPES`] (or the names in `--sizes`): forward (with bias),
/// backward-data, backward-weight (with the bias gradient) and their sum, each as GFLOP/s
/// (2 flops per multiply-add; each of the three passes does the forward's multiply-adds) and
/// the fraction of the FMA peak.
fn bench_conv(
    args: &BenchArgs,
    _isa: Isa,
    threads: usize,
    peak: &Peak,
    out: &Out,
) -> Result<(), String> {
    use ember_core::ember_ops::{Axis, Conv2dSpec};
    use ember_cpu::conv;
    let only: &[String] = if args.case == Case::Conv {
        &args.sizes
    } else {
        &[]
    };
    for name in only {
        if !CONV_SHAPES.iter().any(|s| s.0 == name.trim()) {
            let known: Vec<&str> = CONV_SHAPES.iter().map(|s| s.0).collect();
            return Err(format!(
                "bench conv: unknown shape '{name}' (expected one of {})",
                known.join(", ")
            ));
        }
    }
    for &(name, n, c, o, hw, k, p) in &CONV_SHAPES {
        if !only.is_empty() && !only.iter().any(|s| s.trim() == name) {
            continue;
        }
        let axis = Axis {
            pad_begin: p,
            pad_end: p,
            ..Axis::new(hw, k)
        };
        let spec = Conv2dSpec {
            batch: n,
            in_channels: c,
            out_channels: o,
            groups: 1,
            h: axis,
            w: axis,
        };
        let len = |s: [usize; 4]| s.iter().product::<usize>();
        let fill = |m: usize, f: f32| (0..m).map(|i| ((i as f32) * f).sin()).collect::<Vec<f32>>();
        let x = fill(len(spec.input_shape()), 0.37);
        let w = fill(len(spec.weight_shape()), 0.71);
        let b = fill(o, 0.13);
        let dy = fill(len(spec.output_shape()), 0.29);
        let mut y = vec![0.0f32; dy.len()];
        let mut dx = vec![0.0f32; x.len()];
        let mut dw = vec![0.0f32; w.len()];
        let mut db = vec![0.0f32; o];
        let e = |e: conv::ConvError| format!("bench conv: {e}");
        let mut err = Ok(());
        let mut fwd = || err = conv::conv2d_forward(&spec, &x, &w, Some(&b), &mut y).map_err(e);
        let t_fwd = time_it(args.min_time, &mut fwd);
        let c_fwd = cpu_per_call(threads, &mut fwd);
        err.clone()?;
        let mut bdx = || err = conv::conv2d_backward_data(&spec, &dy, &w, None, &mut dx).map_err(e);
        let t_dx = time_it(args.min_time, &mut bdx);
        let c_dx = cpu_per_call(threads, &mut bdx);
        err.clone()?;
        let mut bdw = || {
            err = conv::conv2d_backward_weight(&spec, &x, &dy, &mut dw, Some(&mut db)).map_err(e)
        };
        let t_dw = time_it(args.min_time, &mut bdw);
        let c_dw = cpu_per_call(threads, &mut bdw);
        err?;
        let flops = 2.0 * spec.macs() as f64;
        let g = |t: f64, passes: f64| passes * flops / t / 1e9;
        let total = t_fwd + t_dx + t_dw;
        let pct = 100.0 * g(total, 3.0) / peak.gflops;
        let cpu = match (c_fwd, c_dx, c_dw) {
            (Some(a), Some(b), Some(c)) => Some(a + b + c),
            _ => None,
        };
        let cpu_text = cpu.map_or(String::new(), |c| {
            format!(
                "  [cpu time: fwd+bwd {:.2} ms, {:.1} GFLOP/s, {:.1} % of peak]",
                c * 1e3,
                g(c, 3.0),
                100.0 * g(c, 3.0) / peak.gflops
            )
        });
        out.emit(
            json!({"bench":"conv","shape":name,"batch":n,"in":c,"out":o,"extent":hw,"kernel":k,
                   "padding":p,"threads":threads,"fwd_ms":round(t_fwd*1e3),"dx_ms":round(t_dx*1e3),
                   "dw_ms":round(t_dw*1e3),"fwd_bwd_ms":round(total*1e3),
                   "fwd_gflops":round(g(t_fwd,1.0)),"fwd_bwd_gflops":round(g(total,3.0)),
                   "pct_peak":round(pct),
                   "cpu_fwd_ms":c_fwd.map(|t| round(t*1e3)),
                   "cpu_dx_ms":c_dx.map(|t| round(t*1e3)),
                   "cpu_dw_ms":c_dw.map(|t| round(t*1e3)),
                   "cpu_fwd_bwd_ms":cpu.map(|t| round(t*1e3)),
                   "cpu_fwd_bwd_gflops":cpu.map(|t| round(g(t,3.0)))}),
            format!(
                "conv  {name:<12} N{n} {c}->{o} {hw}x{hw} k{k} p{p}  {threads} thr  fwd {:7.2} ms \
                 ({:6.1} GFLOP/s)  dx {:7.2} ms  dw {:7.2} ms  fwd+bwd {:7.2} ms ({:6.1} GFLOP/s, \
                 {pct:4.1} % of peak){}{cpu_text}",
                t_fwd * 1e3,
                g(t_fwd, 1.0),
                t_dx * 1e3,
                t_dw * 1e3,
                total * 1e3,
                g(total, 3.0),
                pct_note(pct)
            ),
        );
    }
    Ok(())
}

/// The MLP layers a pruned model runs, (batch, in, out).
const SPARSE_SHAPES: [(usize, usize, usize); 2] = [(256, 784, 512), (256, 512, 512)];
/// Fractions of zero weights tried.
const SPARSITIES: [f64; 6] = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98];

/// `y = x·Wᵀ` with W pruned to each sparsity: the CSR kernel against the dense packed GEMM on
/// the same (mostly zero) W, interleaved per sparsity; the ratio is dense time / sparse time.
fn bench_sparse(args: &BenchArgs, threads: usize, out: &Out) -> Result<(), String> {
    use ember_cpu::gemm::{Epilogue, MatMut, MatRef, gemm};
    use ember_cpu::sparse::{Csr, csr_linear};
    for &(n, k, o) in &SPARSE_SHAPES {
        let x: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.37).sin()).collect();
        for &s in &SPARSITIES {
            // A deterministic pseudo-random pattern keeping a fraction 1 − s of the weights.
            let w: Vec<f32> = (0..o * k)
                .map(|i| {
                    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    if (h as f64) / ((1u64 << 24) as f64) < s {
                        0.0
                    } else {
                        ((i as f32) * 0.11).cos()
                    }
                })
                .collect();
            let csr = Csr::from_dense(&w, o, k).map_err(|e| format!("bench sparse: {e}"))?;
            let mut y = vec![0.0f32; n * o];
            let mut failure: Option<String> = None;
            let mut dense = || {
                let a = MatRef {
                    data: &x,
                    rs: k,
                    cs: 1,
                };
                let b = MatRef {
                    data: &w,
                    rs: 1,
                    cs: k,
                };
                let c = MatMut {
                    data: &mut y,
                    rs: o,
                    cs: 1,
                };
                let epi = Epilogue {
                    bias: None,
                    act: ember_core::Activation::None,
                };
                if let Err(e) = gemm(n, o, k, 1.0, a, b, 0.0, c, epi) {
                    failure.get_or_insert(e.to_string());
                }
            };
            let t_dense = time_it(args.min_time, &mut dense);
            let c_dense = cpu_per_call(threads, &mut dense);
            let mut sparse = || {
                if let Err(e) = csr_linear(&x, n, &csr, None, &mut y) {
                    failure.get_or_insert(e.to_string());
                }
            };
            let t_sparse = time_it(args.min_time, &mut sparse);
            let c_sparse = cpu_per_call(threads, &mut sparse);
            if let Some(e) = failure {
                return Err(format!("bench sparse: {e}"));
            }
            let cpu_ratio = match (c_dense, c_sparse) {
                (Some(d), Some(sp)) => Some(d / sp),
                _ => None,
            };
            out.emit(
                json!({"bench":"sparse","batch":n,"in":k,"out":o,"sparsity":s,
                       "density":round(csr.density()),"threads":threads,
                       "dense_ms":round(t_dense*1e3),"sparse_ms":round(t_sparse*1e3),
                       "speedup":round(t_dense/t_sparse),
                       "cpu_dense_ms":c_dense.map(|t| round(t*1e3)),
                       "cpu_sparse_ms":c_sparse.map(|t| round(t*1e3)),
                       "cpu_speedup":cpu_ratio.map(round)}),
                format!(
                    "sparse {n}x{k}x{o} {:4.1} % zeros  {threads} thr  dense {:7.3} ms  csr {:7.3} ms  \
                     dense/csr {:5.2}×{}",
                    100.0 * s,
                    t_dense * 1e3,
                    t_sparse * 1e3,
                    t_dense / t_sparse,
                    cpu_ratio.map_or(String::new(), |r| format!("  [cpu time: {r:.2}×]"))
                ),
            );
        }
    }
    Ok(())
}

/// CPU seconds per call of `f` on a single thread: the median of a few calls timed by the
/// calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), which excludes the time other
/// processes held the core. On a shared machine a long call's wall time counts whatever else
/// ran meanwhile; this does not. `None` with several threads (their work runs on other
/// threads) and off 64-bit Linux.
fn cpu_per_call(threads: usize, mut f: impl FnMut()) -> Option<f64> {
    if threads != 1 {
        return None;
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t0 = thread_cpu_seconds()?;
        f();
        samples.push(thread_cpu_seconds()? - t0);
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

/// The calling thread's CPU time in seconds (glibc's `clock_gettime`, declared here to keep
/// the CLI free of a libc dependency for one call).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_seconds() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec of the platform's layout (two 64-bit fields
    // on 64-bit Linux), and the clock id is a constant of the Linux ABI.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// No thread CPU clock off 64-bit Linux: the CPU-time column is omitted.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_seconds() -> Option<f64> {
    None
}

fn bench_gemm(
    args: &BenchArgs,
    isa: Isa,
    threads: usize,
    peak: &Peak,
    out: &Out,
) -> Result<(), String> {
    use ember_cpu::gemm::{Epilogue, GemmError, MatMut, MatRef, gemm, gemm_widen};
    /// The product timed: operands stored as `S`, C of type `T`.
    type Run<S, T> = fn(
        usize,
        usize,
        usize,
        MatRef<'_, S>,
        MatRef<'_, S>,
        MatMut<'_, T>,
    ) -> Result<(), GemmError>;
    /// One timed product of row-major A and B through `run`.
    fn timed<S, T: ember_cpu::Float>(
        min_time: f64,
        (m, k, n): (usize, usize, usize),
        a: &[S],
        b: &[S],
        run: Run<S, T>,
    ) -> Result<(f64, f64), String> {
        let mut c = vec![T::ZERO; m * n];
        let mut failure = None;
        let t = time_stats(min_time, || {
            let a = MatRef {
                data: a,
                rs: k,
                cs: 1,
            };
            let b = MatRef {
                data: b,
                rs: n,
                cs: 1,
            };
            let c = MatMut {
                data: &mut c,
                rs: n,
                cs: 1,
            };
            if let Err(e) = run(m, n, k, a, b, c) {
                failure.get_or_insert(e);
            }
        });
        match failure {
            Some(e) => Err(format!("bench: {e}")),
            None => Ok(t),
        }
    }
    fn widened<S: ember_cpu::gemm::Widen<f32>>(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<'_, S>,
        b: MatRef<'_, S>,
        c: MatMut<'_, f32>,
    ) -> Result<(), GemmError> {
        gemm_widen(m, n, k, 1.0, a, b, 0.0, c, Epilogue::default())
    }
    fn double(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<'_, f64>,
        b: MatRef<'_, f64>,
        c: MatMut<'_, f64>,
    ) -> Result<(), GemmError> {
        gemm(m, n, k, 1.0, a, b, 0.0, c, Epilogue::default())
    }
    let dtype = args.dtype.as_str();
    let shapes = gemm_shapes(args)?;
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 + 3) % 13) as f32 * 0.1 - 0.6)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 + 1) % 11) as f32 * 0.1 - 0.5)
            .collect();
        let shape = (m, k, n);
        let (t, t_min) = match dtype {
            "f16" => {
                let half = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x)).collect();
                let (ah, bh): (Vec<_>, Vec<_>) = (half(&a), half(&b));
                timed(args.min_time, shape, &ah, &bh, widened)?
            }
            "bf16" => {
                let half = |v: &[f32]| v.iter().map(|&x| half::bf16::from_f32(x)).collect();
                let (ah, bh): (Vec<_>, Vec<_>) = (half(&a), half(&b));
                timed(args.min_time, shape, &ah, &bh, widened)?
            }
            "f64" => {
                let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect();
                let (ad, bd): (Vec<f64>, Vec<f64>) = (wide(&a), wide(&b));
                timed(args.min_time, shape, &ad, &bd, double)?
            }
            _ => timed(args.min_time, shape, &a, &b, widened)?,
        };
        let gflops = 2.0 * (m * n * k) as f64 / t / 1e9;
        // An f64 FMA works on half as many lanes as an f32 one: its peak is half the probe's.
        let lane_peak = if dtype == "f64" {
            peak.gflops / 2.0
        } else {
            peak.gflops
        };
        let pct = 100.0 * gflops / lane_peak;
        out.emit(
            json!({"bench":"gemm","m":m,"n":n,"k":k,"threads":threads,"isa":isa.name(),"dtype":dtype,
                   "gflops":round(gflops),"pct_peak":round(pct),"t_med_s":t,
                   "gflops_best":round(2.0 * (m * n * k) as f64 / t_min / 1e9),
                   "peak_disturbed":pct > 100.0}),
            format!(
                "gemm  {m:>5}x{k:>5}x{n:>5} (MxKxN) {dtype:>4}  {:>10.1} us  {gflops:8.1} GFLOP/s  {pct:5.1}% of peak  (best {:.1}){}",
                t * 1e6,
                2.0 * (m * n * k) as f64 / t_min / 1e9,
                pct_note(pct)
            ),
        );
    }
    Ok(())
}

fn bench_elementwise(
    args: &BenchArgs,
    isa: Isa,
    threads: usize,
    peak: &Peak,
    out: &Out,
) -> Result<(), String> {
    use ember_cpu::Strided;
    use ember_cpu::unary::{UnaryOp, unary};
    let sizes = elementwise_sizes(args)?;
    let ops = [
        ("relu", UnaryOp::Relu),
        ("leaky_relu", UnaryOp::LeakyRelu(0.01)),
        ("sigmoid", UnaryOp::Sigmoid),
        ("tanh", UnaryOp::Tanh),
        ("gelu", UnaryOp::GeluTanh),
        ("softplus", UnaryOp::Softplus),
        ("exp", UnaryOp::Exp),
        ("log", UnaryOp::Log),
    ];
    for n in sizes {
        let x: Vec<f32> = (0..n)
            .map(|i| ((i % 1000) as f32) * 0.01 - 4.0 + 1e-3)
            .collect();
        let xpos: Vec<f32> = x.iter().map(|v| v.abs() + 0.01).collect();
        let mut y = vec![0.0f32; n];
        let shape = [n];
        let strides = [1];
        for (name, op) in ops {
            let input = if op == UnaryOp::Log { &xpos } else { &x };
            let view = Strided::new(&shape, &strides, 0);
            // Checked once, untimed: the timed calls cannot fail (nothing changes between them).
            unary(op, input, view, &mut y).map_err(|e| format!("bench: {e}"))?;
            let t = time_it(args.min_time, || {
                let _ = unary(op, input, view, &mut y);
            });
            let gbs = (n * 8) as f64 / t / 1e9;
            let pct = 100.0 * gbs / peak.copy_gbs;
            out.emit(
                json!({"bench":"elementwise","op":name,"n":n,"threads":threads,"isa":isa.name(),
                       "gbs":round(gbs),"pct_copy_bw":round(pct),"t_med_s":t}),
                format!(
                    "elem  {name:<10} n={n:>9}  {:>10.1} us  {gbs:7.1} GB/s  {pct:5.1}% of copy bandwidth",
                    t * 1e6
                ),
            );
        }
    }
    Ok(())
}

fn bench_loss(
    args: &BenchArgs,
    isa: Isa,
    threads: usize,
    peak: &Peak,
    out: &Out,
) -> Result<(), String> {
    use ember_cpu::loss::bce_logits_sum_grad;
    use ember_cpu::reduce::softmax_rows;
    for &(rows, cols) in &[(256usize, 1000usize), (4096, 4096)] {
        let n = rows * cols;
        let x: Vec<f32> = (0..n).map(|i| ((i % 977) as f32) * 0.01 - 5.0).collect();
        let mut y = vec![0.0f32; n];
        softmax_rows(&x, cols, &mut y, false).map_err(|e| format!("bench: {e}"))?;
        let t = time_it(args.min_time, || {
            let _ = softmax_rows(&x, cols, &mut y, false);
        });
        let gbs = (n * 8) as f64 / t / 1e9;
        out.emit(
            json!({"bench":"softmax","rows":rows,"cols":cols,"threads":threads,"isa":isa.name(),
                   "gbs":round(gbs),"pct_copy_bw":round(100.0 * gbs / peak.copy_gbs),"t_med_s":t}),
            format!(
                "loss  softmax {rows}x{cols}  {:>10.1} us  {gbs:7.1} GB/s  {:5.1}% of copy bandwidth",
                t * 1e6,
                100.0 * gbs / peak.copy_gbs
            ),
        );
    }
    for &n in &[256usize, 1 << 20, 16 << 20] {
        let x: Vec<f32> = (0..n).map(|i| ((i % 977) as f32) * 0.01 - 5.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let mut dx = vec![0.0f32; n];
        // Checked once, untimed: the loop below then cannot fail (the lengths do not change).
        let mut s = bce_logits_sum_grad(&x, &y, 1.0 / n as f64, &mut dx)
            .map_err(|e| format!("bench: {e}"))?;
        // Loss and gradient in one pass (what a training step runs on the CPU).
        let t = time_it(args.min_time, || {
            s += bce_logits_sum_grad(&x, &y, 1.0 / n as f64, &mut dx).unwrap_or(f64::NAN);
        });
        std::hint::black_box(s);
        // One pass reads x and y and writes dx: 12 bytes per element.
        let gbs = (n * 12) as f64 / t / 1e9;
        out.emit(
            json!({"bench":"bce_logits","n":n,"threads":threads,"isa":isa.name(),
                   "gbs":round(gbs),"pct_copy_bw":round(100.0 * gbs / peak.copy_gbs),"t_med_s":t}),
            format!(
                "loss  bce_logits fwd+bwd n={n:>9}  {:>10.1} us  {gbs:7.1} GB/s  {:5.1}% of copy bandwidth",
                t * 1e6,
                100.0 * gbs / peak.copy_gbs
            ),
        );
    }
    Ok(())
}

/// The `mlp` case: one full training step (forward, backward, Adam update of every parameter)
/// of a dense network, two ways: `"api":"nn"` through ember-nn (`Sequential` of `Dense`
/// layers, `Model::train_step`, what a user of `fit` gets), and `"api":"core"` written directly
/// on ember-core's tensor API (`linear` with its fused bias + activation epilogue, a fused BCE,
/// one backward walk, one fused Adam kernel per parameter), which shows how much of a step is
/// the nn layer's bookkeeping.
mod mlp {
    use super::{Out, round, time_it};
    use ember_core::optim::{self, AdamConfig};
    use ember_core::{Activation, DType, Device, Reduction, Tensor, loss};
    use rand::SeedableRng;
    use serde_json::json;

    /// The models the case times, as `--sizes` names them.
    pub(super) const NAMES: [&str; 2] = ["seed", "784-512-512-1"];

    /// Refuses a `--sizes` entry that names no model of [`NAMES`].
    pub(super) fn check_names(only: &[String]) -> Result<(), String> {
        match only.iter().find(|s| !NAMES.contains(&s.trim())) {
            Some(unknown) => Err(format!(
                "bench mlp: unknown --sizes model '{unknown}' (expected {})",
                NAMES.join(" or ")
            )),
            None => Ok(()),
        }
    }

    /// One Dense layer's parameters and its Adam state.
    struct Layer {
        w: Tensor,
        b: Tensor,
        state: [Tensor; 4],
    }

    struct Model {
        layers: Vec<Layer>,
        /// True: the last layer outputs logits and the loss is BCE-with-logits (the
        /// 784-512-512-1 peer setup); false: sigmoid output and BCE on probabilities (Keras's
        /// seed program).
        logits: bool,
        step: u64,
    }

    fn err(e: ember_core::Error) -> String {
        format!("bench mlp: {e}")
    }

    impl Model {
        fn new(
            dims: &[usize],
            logits: bool,
            rng: &mut rand::rngs::StdRng,
        ) -> Result<Model, String> {
            let mut layers = Vec::new();
            for win in dims.windows(2) {
                let (fan_in, fan_out) = (win[0], win[1]);
                let std = (2.0 / fan_in as f64).sqrt();
                let w = Tensor::randn(0.0, std, (fan_out, fan_in), DType::F32, Device::Cpu, rng)
                    .map_err(err)?
                    .as_variable();
                let b = Tensor::zeros(fan_out, DType::F32, Device::Cpu)
                    .map_err(err)?
                    .as_variable();
                let state = [
                    w.zeros_like(),
                    w.zeros_like(),
                    b.zeros_like(),
                    b.zeros_like(),
                ];
                let [s0, s1, s2, s3] = state;
                layers.push(Layer {
                    w,
                    b,
                    state: [
                        s0.map_err(err)?,
                        s1.map_err(err)?,
                        s2.map_err(err)?,
                        s3.map_err(err)?,
                    ],
                });
            }
            Ok(Model {
                layers,
                logits,
                step: 0,
            })
        }

        /// Forward, loss, backward, Adam on every parameter; returns the loss.
        fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<f32, String> {
            let mut h = x.clone();
            let last = self.layers.len() - 1;
            for (i, l) in self.layers.iter().enumerate() {
                let act = match (i == last, self.logits) {
                    (false, _) => Activation::Relu,
                    (true, true) => Activation::None,
                    (true, false) => Activation::Sigmoid,
                };
                h = h.linear(&l.w, Some(&l.b), act).map_err(err)?;
            }
            let loss = if self.logits {
                loss::binary_cross_entropy_with_logits(&h, y, Reduction::Mean)
            } else {
                loss::binary_cross_entropy(&h, y, Reduction::Mean)
            }
            .map_err(err)?;
            let grads = loss.backward().map_err(err)?;
            self.step += 1;
            let cfg = AdamConfig {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                weight_decay: 0.0,
                step: self.step,
            };
            for l in &self.layers {
                let [mw, vw, mb, vb] = &l.state;
                for (p, m, v) in [(&l.w, mw, vw), (&l.b, mb, vb)] {
                    let g = grads
                        .get(p)
                        .ok_or("bench mlp: a parameter got no gradient")?;
                    optim::adam_step(p, g, m, v, &cfg).map_err(err)?;
                }
            }
            loss.to_scalar::<f32>().map_err(err)
        }
    }

    /// Runs the training-step benchmarks for the seed model (batch 10) and 784-512-512-1
    /// (batch 256), or those of them named in `only` (an unknown name is an error).
    pub(super) fn run(
        threads: usize,
        min_time: f64,
        only: &[String],
        precision: ember_nn::mixed::Precision,
        out: &Out,
    ) -> Result<(), String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let models = [
            (NAMES[0], vec![10, 10, 5, 1], 10usize, false),
            (NAMES[1], vec![784, 512, 512, 1], 256, true),
        ];
        check_names(only)?;
        for (name, dims, batch, logits) in models {
            if !only.is_empty() && !only.iter().any(|s| s.trim() == name) {
                continue;
            }
            let mut model = Model::new(&dims, logits, &mut rng)?;
            let x = Tensor::rand(
                -1.0,
                1.0,
                (batch, dims[0]),
                DType::F32,
                Device::Cpu,
                &mut rng,
            )
            .map_err(err)?;
            let yv: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
            let y = Tensor::from_vec(yv, (batch, 1), Device::Cpu).map_err(err)?;
            let mut failure = None;
            let t = time_it(min_time, || {
                if let Err(e) = model.train_step(&x, &y) {
                    failure.get_or_insert(e);
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
            emit(out, name, "core", batch, threads, t);

            // The same network through ember-nn.
            let mut model = nn_model(&dims, logits, &mut rng)?;
            model.precision = precision;
            let mut failure = None;
            let t = time_it(min_time, || {
                if let Err(e) = model.train_step(&x, &y) {
                    failure.get_or_insert(e);
                }
            });
            if let Some(e) = failure {
                return Err(format!("bench mlp: {e}"));
            }
            let api = match precision {
                ember_nn::mixed::Precision::F32 => "nn".to_string(),
                p => format!("nn-{}", p.name()),
            };
            emit(out, name, &api, batch, threads, t);
        }
        Ok(())
    }

    fn emit(out: &Out, name: &str, api: &str, batch: usize, threads: usize, t: f64) {
        let sps = batch as f64 / t;
        out.emit(
            json!({"bench":"mlp","model":name,"api":api,"batch":batch,"threads":threads,
                   "optimizer":"adam","step_us":round(t * 1e6),"samples_per_s":round(sps)}),
            format!(
                "mlp   {name:<14} {api:<4} batch {batch:>3}  adam  {:>10.1} us/step  {sps:>10.0} samples/s",
                t * 1e6
            ),
        );
    }

    /// `dims` as a `Sequential` of `Dense` layers (ReLU inside; sigmoid or logits at the end),
    /// compiled with Adam and the matching BCE.
    fn nn_model(
        dims: &[usize],
        logits: bool,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<ember_nn::model::Model, String> {
        use ember_nn::prelude::{Dense, Loss, Optimizer, Sequential};
        let nerr = |e: ember_nn::NnError| format!("bench mlp: {e}");
        let mut net = Sequential::new();
        let last = dims.len() - 2;
        for (i, win) in dims.windows(2).enumerate() {
            let act = match (i == last, logits) {
                (false, _) => Activation::Relu,
                (true, true) => Activation::None,
                (true, false) => Activation::Sigmoid,
            };
            net.push(Dense::new(win[0], win[1], act, rng).map_err(nerr)?);
        }
        let loss = if logits {
            Loss::BinaryCrossEntropyWithLogits
        } else {
            Loss::BinaryCrossEntropy
        };
        Ok(net.compile(Optimizer::adam(), loss, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_above_the_yardstick_are_flagged() {
        assert!(pct_note(189.0).contains("peak probe disturbed"));
        assert_eq!(pct_note(99.9), "");
    }
}
