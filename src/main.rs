//! The `ember` command line: `ember train` (the main job), `ember bench` (the kernel lab) and
//! `ember info` (what this machine offers and which kernel paths ember chose).
//!
//! Each subcommand lives in its own module under `src/cli/` with its own argument struct, so
//! this file is only the dispatch. Errors are printed as one line and exit with status 1;
//! no panic trace reaches the user.

use clap::{Parser, Subcommand};

mod cli;

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
    /// Benchmark kernels against the machine's measured peak.
    Bench(cli::bench::BenchArgs),
    /// Print the CPU, detected ISA extensions, chosen kernel paths and GPU availability.
    Info,
}

fn main() {
    // A closed stdout (`ember bench | head`) makes `println!` panic; end quietly, with the
    // status a Unix tool stopped by SIGPIPE has, instead of printing a panic trace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    // Bad flags get one line and exit status 2; --help and --version print as usual.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{}", first.trim());
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Train(args) => cli::train::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Info => cli::info::run(),
    };
    if let Err(msg) = result {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
