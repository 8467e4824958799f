//! Checks of the kernels that need no GPU, only NVRTC (and cuobjdump), both from PyPI wheels
//! (`source scripts/cuda-wheels.sh`):
//! - every embedded module compiles for sm_80 (A100) and sm_90a (H100/H200), with no register
//!   spill reported by ptxas and every entry point the launch code loads present; the
//!   per-kernel resource table (registers, static shared memory, stack, spills) is printed;
//! - the tensor-core GEMM's SASS contains `HMMA` (tensor-core instructions), `LDSM` (ldmatrix)
//!   and `LDGSTS` (cp.async), the Hopper kernel's (sm_90a) contains `HGMMA` (wgmma), and the
//!   fp32 SGEMM is `FFMA` with no `HMMA`.
//! - compile errors name the file and line.
//!
//! The modules are compiled once per test binary and shared by the tests (compiling all of them
//! for two architectures is most of this binary's run time).

mod common;

use std::process::Command;
use std::sync::OnceLock;

use ember_cuda::compile::{CompiledModule, MODULES, SM90A_ONLY, compile_module};

const ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

/// Entry points the Rust launch code loads by name, per module.
fn expected(module: &str) -> Vec<String> {
    let typed = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .flat_map(|n| ["f32", "f64"].map(|t| format!("{n}_{t}")))
            .collect()
    };
    match module {
        "elementwise" => {
            let mut v = typed(&[
                "unary_contig",
                "unary_strided",
                "unary_bwd",
                "binary_contig",
                "binary_strided",
            ]);
            v.extend(
                [
                    "cast_f32_to_bf16",
                    "cast_f32_to_f16",
                    "cast_bf16_to_f32",
                    "cast_f16_to_f32",
                ]
                .map(String::from),
            );
            v
        }
        "reduce" => typed(&[
            "reduce_thread",
            "reduce_block",
            "reduce_final",
            "softmax_warp",
            "softmax_block",
        ]),
        "loss" => typed(&[
            "bce_partial",
            "bce_finish",
            "bce_probs_grad",
            "bce_logits_grad",
        ]),
        "optim" => typed(&["sgd_step", "adam_step", "adagrad_step", "rmsprop_step"]),
        "index" => {
            let mut v = typed(&[
                "index_select",
                "index_add",
                "gather",
                "scatter_add",
                "where",
                "concat_part",
            ]);
            v.extend(
                [
                    "cast_f32_to_f64",
                    "cast_f64_to_f32",
                    "cast_f32_to_f32",
                    "cast_f64_to_f64",
                ]
                .map(String::from),
            );
            v
        }
        "sgemm" => [
            "sgemm_naive",
            "sgemm_tiled",
            "sgemm_regblock_128",
            "sgemm_regblock_64",
            "sgemm_vec_128",
            "sgemm_vec_64",
        ]
        .map(String::from)
        .to_vec(),
        "hgemm" => [
            "hgemm_mma_bf16",
            "hgemm_mma_at_bf16",
            "hgemm_mma_bt_bf16",
            "hgemm_mma_f16",
            "hgemm_mma_at_f16",
            "hgemm_mma_bt_f16",
        ]
        .map(String::from)
        .to_vec(),
        "wgmma" => ["hgemm_wgmma_bf16", "hgemm_wgmma_f16"]
            .map(String::from)
            .to_vec(),
        "conv" => typed(&[
            "conv_igemm_fwd",
            "conv_igemm_bwd_data",
            "conv_igemm_bwd_weight",
            "conv_direct_fwd",
            "conv_direct_bwd_data",
            "conv_direct_bwd_weight",
            "conv_bias_grad",
            "conv_splitk_reduce",
        ]),
        "pool" => typed(&[
            "max_pool2d_fwd",
            "max_pool2d_bwd",
            "avg_pool2d_fwd",
            "avg_pool2d_bwd",
            "adaptive_avg_pool2d_fwd",
            "adaptive_avg_pool2d_bwd",
            "upsample_nearest2d_fwd",
            "upsample_nearest2d_bwd",
            "pad2d_fwd",
            "pad2d_bwd",
        ]),
        "qgemm" => vec!["qgemm_dp4a_f32".to_string()],
        other => panic!("module {other} has no expected-kernel list in this test"),
    }
}

type Compiled = Vec<(
    String,
    String,
    Result<CompiledModule, ember_cuda::CudaError>,
)>;

/// Every (module, arch) compiled once, on two worker threads (CI has two cores).
fn compiled() -> &'static Compiled {
    static ALL: OnceLock<Compiled> = OnceLock::new();
    ALL.get_or_init(compile_all)
}

fn cubin(module: &str, arch: &str) -> &'static CompiledModule {
    let (_, _, r) = compiled()
        .iter()
        .find(|(m, a, _)| m == module && a == arch)
        .unwrap_or_else(|| panic!("{module}/{arch} was not compiled"));
    r.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

fn compile_all() -> Compiled {
    let jobs: Vec<(&str, &str)> = MODULES
        .iter()
        .flat_map(|(m, _)| ARCHS.map(|a| (*m, a)))
        .filter(|(m, a)| *a == "sm_90a" || !SM90A_ONLY.contains(m))
        .collect();
    std::thread::scope(|s| {
        let halves: Vec<_> = [0usize, 1]
            .iter()
            .map(|&w| {
                let jobs = &jobs;
                s.spawn(move || {
                    jobs.iter()
                        .skip(w)
                        .step_by(2)
                        .map(|&(m, a)| (m.to_string(), a.to_string(), compile_module(m, a)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("compile worker panicked"))
            .collect()
    })
}

#[test]
fn every_module_compiles_for_sm80_and_sm90a_without_spills() {
    if !common::nvrtc_or_skip("nvrtc_compile") {
        return;
    }
    let results = compiled();
    let mut failures = Vec::new();
    println!(
        "{:<8} {:<12} {:<22} {:>5} {:>7} {:>6} {:>7} {:>7}",
        "arch", "module", "kernel", "regs", "smem", "stack", "spill_s", "spill_l"
    );
    for (module, arch, res) in results {
        let c = match res {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{module} for {arch}: {e}"));
                continue;
            }
        };
        assert!(!c.cubin.is_empty(), "{module}/{arch}: empty CUBIN");
        let res = c.resources();
        for r in &res {
            println!(
                "{:<8} {:<12} {:<22} {:>5} {:>7} {:>6} {:>7} {:>7}",
                arch,
                module,
                r.kernel,
                r.registers,
                r.smem_bytes,
                r.stack_bytes,
                r.spill_stores,
                r.spill_loads
            );
            if r.spill_stores != 0 || r.spill_loads != 0 {
                failures.push(format!(
                    "{module}/{}/{arch}: {} bytes spill stores, {} bytes spill loads",
                    r.kernel, r.spill_stores, r.spill_loads
                ));
            }
        }
        // Guard against a log format change silently hiding spills: every ptxas summary line
        // must have been parsed.
        let summaries = c.log.matches("bytes spill stores").count();
        let entries = res.len();
        assert!(
            summaries >= entries && entries > 0,
            "{module}/{arch}: parsed {entries} kernels from a log with {summaries} spill lines:\n{}",
            c.log
        );
        for want in expected(module.as_str()) {
            if !res.iter().any(|r| r.kernel == want) {
                failures.push(format!("{module}/{arch}: entry point {want} missing"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kernel compilation problems:\n{}",
        failures.join("\n")
    );
}

#[test]
fn compile_errors_name_the_file_and_line() {
    if !common::nvrtc_or_skip("nvrtc_compile::errors") {
        return;
    }
    let src = "extern \"C\" __global__ void k(float* x) {\n    x[0] = 1.0f;\n    x[1] = undefined_name;\n}\n";
    let e = ember_cuda::compile::compile_source("broken", src, "sm_80")
        .expect_err("an undefined identifier must not compile");
    let msg = e.to_string();
    assert!(
        msg.contains("broken.cu(3)"),
        "error should point at broken.cu line 3:\n{msg}"
    );
    // A bad architecture is an error too, never a panic.
    assert!(compile_module("optim", "sm_1").is_err());
}

// ---- SASS ------------------------------------------------------------------------------

fn cuobjdump() -> Option<String> {
    let from_env = std::env::var("EMBER_CUOBJDUMP")
        .ok()
        .filter(|p| std::path::Path::new(p).exists());
    if from_env.is_some() {
        return from_env;
    }
    Command::new("cuobjdump")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "cuobjdump".to_string())
}

fn sass_of(tool: &str, module: &str, arch: &str) -> String {
    let c = cubin(module, arch);
    let dir = std::env::temp_dir().join(format!("ember-sass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{module}.{arch}.cubin"));
    std::fs::write(&path, &c.cubin).expect("write cubin");
    let out = Command::new(tool)
        .arg("-sass")
        .arg(&path)
        .output()
        .expect("run cuobjdump");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "cuobjdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SASS of one function: from its `Function : <name>` header to the next header.
fn function_sass<'a>(sass: &'a str, name: &str) -> &'a str {
    let header = format!("Function : {name}\n");
    let start = sass
        .find(&header)
        .unwrap_or_else(|| panic!("no function {name} in the SASS dump"));
    let rest = &sass[start + header.len()..];
    let end = rest.find("Function : ").unwrap_or(rest.len());
    &rest[..end]
}

fn count(s: &str, op: &str) -> usize {
    s.split_whitespace()
        .filter(|w| w.starts_with(op) && w[op.len()..].starts_with(['.', ' ']) || *w == op)
        .count()
}

#[test]
fn tensor_core_gemm_uses_hmma_and_sgemm_uses_ffma() {
    if !common::nvrtc_or_skip("sass") {
        return;
    }
    let Some(tool) = cuobjdump() else {
        if std::env::var("EMBER_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
            panic!("EMBER_REQUIRE_NVRTC=1 but cuobjdump not found (source scripts/cuda-wheels.sh)");
        }
        common::skipped("sass: cuobjdump not found (source scripts/cuda-wheels.sh)");
        return;
    };
    for arch in ["sm_80", "sm_90a"] {
        let h = sass_of(&tool, "hgemm", arch);
        for k in [
            "hgemm_mma_bf16",
            "hgemm_mma_f16",
            "hgemm_mma_at_bf16",
            "hgemm_mma_bt_f16",
        ] {
            let f = function_sass(&h, k);
            let hmma = count(f, "HMMA");
            let ldsm = count(f, "LDSM");
            let ldgsts = count(f, "LDGSTS");
            println!("{arch} {k}: {hmma} HMMA, {ldsm} LDSM, {ldgsts} LDGSTS");
            // 16 mma per 16-deep k step, 2 steps per 32-deep tile.
            assert!(hmma >= 32, "{arch} {k}: expected >= 32 HMMA, found {hmma}");
            assert!(ldsm > 0, "{arch} {k}: ldmatrix (LDSM) missing");
            assert!(ldgsts > 0, "{arch} {k}: cp.async (LDGSTS) missing");
        }
        if arch == "sm_90a" {
            let w = sass_of(&tool, "wgmma", arch);
            for k in ["hgemm_wgmma_bf16", "hgemm_wgmma_f16"] {
                let f = function_sass(&w, k);
                let hgmma = count(f, "HGMMA");
                println!("{arch} {k}: {hgmma} HGMMA");
                // Two m64n128k16 steps per 32-deep k tile.
                assert!(hgmma >= 2, "{arch} {k}: expected >= 2 HGMMA, found {hgmma}");
            }
        }
        let s = sass_of(&tool, "sgemm", arch);
        for k in ["sgemm_vec_128", "sgemm_regblock_128"] {
            let f = function_sass(&s, k);
            let ffma = count(f, "FFMA");
            println!("{arch} {k}: {ffma} FFMA");
            // 8 x 8 register tile x 8-deep k tile, fully unrolled.
            assert!(
                ffma >= 512,
                "{arch} {k}: expected >= 512 FFMA, found {ffma}"
            );
            assert_eq!(
                count(f, "HMMA"),
                0,
                "{arch} {k}: fp32 path must not use tensor cores"
            );
        }
    }
}
