//! `ember train --distributed`: data-parallel training over MPI, and the communicator line of
//! `ember info`.
//!
//! Launch: `mpirun -np 2 target/release/ember train --distributed --threads 1 ...` from a build
//! with the `mpi` feature (`cargo build --release --features mpi`, which needs an MPI library
//! and libclang: Debian's `openmpi-bin libopenmpi-dev libclang-dev`). Every rank runs the same
//! command and reads the same data; the training itself is ember-nn's distributed `fit` (see
//! `ember_nn::dist`). Rank 0 alone prints and writes `--save`/`--plot`: the other ranks send
//! their standard output to /dev/null right after MPI starts, and keep standard error, so
//! their errors still show. A rank that fails prints its error and aborts the whole job
//! (`MPI_Abort`), so no peer is left waiting in a collective.
//!
//! Without the feature, or outside an MPI launcher, `--distributed` is refused with the
//! commands to build and launch (exit 1, nothing trained).

use clap::{Args, ValueEnum};
use ember_comm::Communicator;
use ember_nn::dist::{AllReduce, Distributed};
use std::sync::Arc;

/// The distributed-training flags of `ember train`.
#[derive(Args, Debug, Clone)]
pub struct DistArgs {
    /// Train data-parallel across the ranks of `mpirun` (build with `--features mpi`); the
    /// weights are bit-identical for any rank count with `--allreduce tree`.
    #[arg(long)]
    pub distributed: bool,
    /// How ranks combine gradients: `tree` (fixed micro-shards and summation tree:
    /// bit-identical for 1, 2, 3... ranks) or `plain` (MPI_Allreduce: fastest, not
    /// reproducible across rank counts).
    #[arg(long, value_enum, default_value = "tree", requires = "distributed")]
    pub allreduce: AllReduceArg,
    /// Micro-shards per global batch for `--allreduce tree` (the result depends on this, not
    /// on the rank count).
    #[arg(long, default_value_t = 8, requires = "distributed", allow_negative_numbers = true, value_parser = super::whole_number)]
    pub micro_shards: usize,
    /// Gradient bucket size in MiB (PyTorch DDP's `bucket_cap_mb`): each bucket is exchanged as
    /// soon as backward has produced it. The default 25 makes a model under 25 MiB of
    /// gradients one bucket; 0 gives one bucket per parameter tensor. The weights do not
    /// depend on it with `--allreduce tree`.
    #[arg(
        long,
        default_value_t = 25.0,
        requires = "distributed",
        allow_negative_numbers = true
    )]
    pub bucket_mb: f64,
}

/// `--allreduce` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduceArg {
    /// Fixed-shape tree over micro-shards (bit-identical for any rank count).
    Tree,
    /// The communicator's all-reduce.
    Plain,
}

/// A distributed run's communicator and settings.
pub struct Session {
    /// What `fit` gets.
    pub config: Distributed,
}

impl Session {
    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.config.comm.rank()
    }

    /// Reports `msg` on standard error, naming the rank, and ends the whole job (every rank).
    pub fn fail(&self, msg: &str) -> ! {
        eprintln!(
            "error: rank {} of {}: {msg}",
            self.config.comm.rank(),
            self.config.comm.size()
        );
        self.config.comm.abort(1)
    }
}

/// What to tell a user whose build or launch cannot run `--distributed`.
fn how_to_launch() -> &'static str {
    "build with MPI: `apt-get install openmpi-bin libopenmpi-dev libclang-dev` and \
     `cargo build --release --features mpi`; then launch one process per rank: \
     `mpirun -np 2 target/release/ember train --distributed --threads 1 ...`"
}

/// Starts MPI for `--distributed` (or returns `None` without it). Ranks other than 0 stop
/// printing to standard output from here on.
pub fn setup(args: &DistArgs) -> Result<Option<Session>, String> {
    if !args.distributed {
        return Ok(None);
    }
    if args.allreduce == AllReduceArg::Tree && args.micro_shards == 0 {
        return Err("--micro-shards must be at least 1".into());
    }
    if !(args.bucket_mb >= 0.0 && args.bucket_mb.is_finite()) {
        return Err(format!(
            "--bucket-mb must be a non-negative number of MiB, got {}",
            args.bucket_mb
        ));
    }
    if !ember_comm::HAS_MPI {
        return Err(format!(
            "--distributed: this ember was built without MPI; {}",
            how_to_launch()
        ));
    }
    if !ember_comm::launched_by_mpi() {
        return Err(format!(
            "--distributed: not started by an MPI launcher (mpirun/mpiexec); {}",
            how_to_launch()
        ));
    }
    let comm = init()?;
    if comm.rank() != 0 {
        silence_stdout()?;
    }
    let all_reduce = match args.allreduce {
        AllReduceArg::Tree => AllReduce::Tree {
            micro_shards: args.micro_shards,
        },
        AllReduceArg::Plain => AllReduce::Plain,
    };
    Ok(Some(Session {
        config: Distributed {
            comm,
            all_reduce,
            bucket_bytes: (args.bucket_mb * (1 << 20) as f64) as usize,
        },
    }))
}

#[cfg(feature = "mpi")]
// `Distributed` holds an `Arc<dyn Communicator>` so that thread-safe communicators (the local
// thread group) can be shared across threads; MPI's world communicator is used from the main
// thread only (MPI was initialised without thread support), so its `Arc` never crosses one.
#[allow(clippy::arc_with_non_send_sync)]
fn init() -> Result<Arc<dyn Communicator>, String> {
    Ok(Arc::new(
        ember_comm::mpi::Mpi::init().map_err(|e| e.to_string())?,
    ))
}

#[cfg(not(feature = "mpi"))]
fn init() -> Result<Arc<dyn Communicator>, String> {
    Err(format!(
        "--distributed: built without MPI; {}",
        how_to_launch()
    ))
}

/// Points standard output at /dev/null (ranks other than 0 print nothing but errors).
#[cfg(unix)]
fn silence_stdout() -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let _ = std::io::stdout().flush();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("--distributed: cannot open /dev/null: {e}"))?;
    // SAFETY: dup2 on two open descriptors; `null` stays open until after the call and
    // descriptor 1 then refers to /dev/null for the rest of the process.
    let r = unsafe { libc::dup2(null.as_raw_fd(), 1) };
    if r < 0 {
        return Err(format!(
            "--distributed: cannot redirect stdout: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn silence_stdout() -> Result<(), String> {
    Ok(())
}

/// The `communicator:` line of `ember info`.
pub fn describe() -> String {
    match (ember_comm::HAS_MPI, ember_comm::launched_by_mpi()) {
        (false, _) => {
            "single process (built without MPI: --features mpi enables --distributed)".into()
        }
        (true, false) => {
            "single process (MPI built in; run under mpirun with --distributed to use it)".into()
        }
        (true, true) => match init() {
            Ok(c) => c.name(),
            Err(e) => format!("MPI failed to start: {e}"),
        },
    }
}
