//! The `ember` command line: `ember train` (the main job), `ember predict` and `ember evaluate`
//! (a saved model on new data), `ember quantize` (an int8 copy of a saved model), `ember bench` (the kernel lab) and `ember info` (what this machine offers and which kernel paths ember chose).
//!
//! Each subcommand lives in its own module under `src/cli/` with its own argument struct, so
//! this file is only the dispatch. Errors of a subcommand are printed as one line and exit with
//! status 1; clap's own messages for bad flags are printed whole (status 2); no panic trace
//! reaches the user.

use clap::{Parser, Subcommand};

mod cli;
#[cfg(unix)]
mod oom;

/// Every allocation of the binary goes to the system allocator; a refused one is reported in
/// one line with exit status 1 instead of std's abort (see `src/oom.rs`).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: oom::ExitOnOom = oom::ExitOnOom;

/// ember: a from-scratch tensor engine.
#[derive(Parser)]
#[command(name = "ember", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a dense network (by default the seed model on breast-cancer data).
    Train(cli::train::TrainArgs),
    /// Continue a prompt with a character language model saved by `ember train --task lm`.
    Generate(cli::text::GenerateArgs),
    /// Predict classes and probabilities with a model saved by `ember train --save`.
    Predict(cli::predict::PredictArgs),
    /// Evaluate a model saved by `ember train --save` on labelled data.
    Evaluate(cli::predict::EvaluateArgs),
    /// Quantize a model saved by `ember train --save` to int8 (Dense and Conv2d layers).
    Quantize(cli::quantize::QuantizeArgs),
    /// Benchmark kernels against the machine's measured peak.
    Bench(cli::bench::BenchArgs),
    /// Print the CPU, detected ISA extensions, chosen kernel paths and GPU availability.
    Info,
}

/// Keeps large freed blocks in the process instead of returning them to the kernel.
///
/// glibc's malloc serves blocks above its mmap threshold with fresh `mmap`s and trims the top
/// of the heap on `free`, so a training step that allocates the same tens of megabytes again
/// (an LSTM's saved gates, attention tiles, activations) pays for zeroed pages from the kernel
/// every step: in the character LSTM of issue 15 that was a quarter of the run's CPU time
/// (2.6 s of system time in a 10.4 s run; 0.08 s with this). A library cannot choose its
/// user's allocator; this binary can, on glibc only (musl and other platforms: nothing).
///
/// The top pad (256 MiB asked of the kernel beyond each request that grows the heap) is
/// address space: under an address-space limit (`ulimit -v`) it counts against the limit even
/// while unused, and with the full pad any limit below about 270 MiB made the first heap growth
/// fail, so even the tiny default run aborted. Under a limit the pad is an eighth of it (at
/// most the 256 MiB), and all threads share one arena: each further arena glibc makes for a
/// thread reserves 64 MiB of address space, which under a limit left a large allocation no room
/// at random (whichever threads had made arenas by then).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut top_pad: u64 = 256 << 20;
        let mut arena_max = None;
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0
            && lim.rlim_cur != libc::RLIM_INFINITY
        {
            top_pad = top_pad.min(lim.rlim_cur / 8);
            arena_max = Some(1);
        }
        // SAFETY: mallopt only changes allocator tunables; it is called once, first thing in
        // main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's largest allowed value
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, top_pad as i32); // ≤ 256 MiB: fits in i32
            if let Some(n) = arena_max {
                libc::mallopt(libc::M_ARENA_MAX, n);
            }
        }
    }
}

fn main() {
    keep_freed_memory();
    // Writing to a closed or full stdout makes `println!` panic. A closed pipe (`ember bench |
    // head`) ends quietly with the status a Unix tool stopped by SIGPIPE has; any other write
    // error (`ember train > /dev/full`) is reported in one line with status 1. No panic trace
    // reaches the user either way.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if let Some(rest) = msg.strip_prefix("failed printing to stdout") {
            if msg.contains("Broken pipe") {
                std::process::exit(141);
            }
            let why = rest.trim_start_matches(':').trim();
            eprintln!("error: cannot write to stdout: {why}");
            std::process::exit(1);
        }
        default_hook(info);
    }));
    // Bad flags get clap's whole message (the error, the usage line and any "a similar
    // argument exists" tip) on stderr with exit status 2; --help and --version print to
    // stdout with status 0. Bare `ember` prints the help on stderr with status 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // rayon's pool, started here where a refused thread is one line, not a panic on first
    // use; `train` starts it itself with its `--threads`, `bench` builds pools of its own.
    if !matches!(cli.command, Command::Train(_) | Command::Bench(_))
        && let Err(msg) = cli::start_threads(None)
    {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Train(args) => cli::train::run(args),
        Command::Generate(args) => cli::text::run_generate(args),
        Command::Predict(args) => cli::predict::run_predict(args),
        Command::Evaluate(args) => cli::predict::run_evaluate(args),
        Command::Quantize(args) => cli::quantize::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Info => cli::info::run(),
    };
    if let Err(msg) = result {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
