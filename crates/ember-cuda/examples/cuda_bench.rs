//! The kernel lab as a standalone program, for GPU machines without the `ember` CLI:
//!
//! ```text
//! cuda_bench [gemm|elementwise|loss|all] [--json] [--quick]
//! ```
//!
//! Prints one JSON record per line with `--json`, else a table. `--quick` uses small sizes (a
//! smoke test of every kernel path in a few seconds). Exits with status 2 and one line on
//! stderr when there is no usable GPU.

use ember_cuda::CudaDevice;
use ember_cuda::bench::{BenchOptions, Suite, run, table};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let suite = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|s| Suite::from_name(s).ok_or(s))
        .unwrap_or(Ok(Suite::All));
    let suite = match suite {
        Ok(s) => s,
        Err(s) => {
            eprintln!("unknown suite {s:?}: expected gemm, elementwise, loss or all");
            std::process::exit(64);
        }
    };
    let dev = match CudaDevice::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cuda_bench: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    let opts = if quick {
        BenchOptions::quick(suite)
    } else {
        BenchOptions {
            suite,
            ..BenchOptions::default()
        }
    };
    if !json {
        println!(
            "device: {} ({}, {} SMs)",
            dev.name(),
            dev.arch(),
            dev.sm_count()
        );
    }
    match run(&dev, &opts) {
        Ok(records) => {
            if json {
                for r in &records {
                    println!("{}", r.to_json());
                }
            } else {
                print!("{}", table(&records));
            }
        }
        Err(e) => {
            eprintln!("cuda_bench: {e}");
            std::process::exit(1);
        }
    }
}
