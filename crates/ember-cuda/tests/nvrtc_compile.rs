//! Compiles every embedded kernel module with NVRTC for sm_80 (A100) and sm_90a (H100/H200),
//! with no GPU, and fails on any compile error, on any register spill reported by ptxas, or on
//! a kernel the launch code expects but the module lacks. Prints the per-kernel resource table
//! (registers, static shared memory, stack, spills) that the report quotes.

mod common;

use ember_cuda::compile::{CompiledModule, MODULES, compile_module};

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
        "optim" => typed(&["sgd_step", "adam_step"]),
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
        "hgemm" => ["hgemm_mma_bf16", "hgemm_mma_f16"]
            .map(String::from)
            .to_vec(),
        other => panic!("module {other} has no expected-kernel list in this test"),
    }
}

#[test]
fn every_module_compiles_for_sm80_and_sm90a_without_spills() {
    if !common::nvrtc_or_skip("nvrtc_compile") {
        return;
    }
    // Two worker threads (CI has two cores); each compiles whole (module, arch) jobs.
    let jobs: Vec<(&str, &str)> = MODULES
        .iter()
        .flat_map(|(m, _)| ARCHS.map(|a| (*m, a)))
        .collect();
    let results: Vec<(
        String,
        String,
        Result<CompiledModule, ember_cuda::CudaError>,
    )> = std::thread::scope(|s| {
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
    });

    let mut failures = Vec::new();
    println!(
        "{:<8} {:<12} {:<22} {:>5} {:>7} {:>6} {:>7} {:>7}",
        "arch", "module", "kernel", "regs", "smem", "stack", "spill_s", "spill_l"
    );
    for (module, arch, res) in &results {
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
        for want in expected(module) {
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
