//! Subcommands of the `ember` binary, one module each, and the rules they share.

pub mod bench;
pub mod dist;
pub mod info;
pub mod memory;
pub mod predict;
pub mod quantize;
pub mod resume;
pub mod scaling;
pub mod text;
pub mod train;

/// Parses a whole-number flag value (`--epochs`, `--threads`, ...). The numeric flags accept
/// a leading `-` (clap's `allow_negative_numbers`), so `--epochs -1` reaches this check and
/// gets an answer naming the value instead of clap's "unexpected argument '-1'".
pub fn whole_number(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) => Ok(n),
        Err(_) if s.trim().parse::<i128>().is_ok() => {
            Err(format!("'{s}' is negative: expected a whole number ≥ 0"))
        }
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// The rule `--threads` follows in every subcommand: absent (rayon's choice) or at least 1.
pub fn check_threads(threads: Option<usize>) -> Result<(), String> {
    if threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    Ok(())
}

/// Starts rayon's global pool of worker threads, once per process: `threads` of them when
/// given (`--threads`), else rayon's default (`RAYON_NUM_THREADS`, else one per core), or,
/// where the system refuses that many (under an address-space limit, `ulimit -v`, each
/// thread's stack needs room), half as many, down to one.
/// Left to itself, rayon would start the pool on first use and panic ("The global thread pool
/// has not been initialized") when a thread cannot be spawned. rayon's global pool can be built
/// only once, even when that fails, so each count is first tried on a local pool whose threads
/// are joined (their stacks freed) before the next try. A second call does nothing.
pub fn start_threads(threads: Option<usize>) -> Result<(), String> {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    if let Some(n) = threads {
        return rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("--threads {n}: {e}"));
    }
    // Whether `n` threads can be spawned: a local pool of them, dropped and joined.
    let can_spawn = |n: usize| {
        let handles = std::sync::Mutex::new(Vec::new());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .spawn_handler(|thread| {
                let h = std::thread::Builder::new().spawn(|| thread.run())?;
                handles
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .push(h);
                Ok(())
            })
            .build();
        let ok = pool.is_ok();
        drop(pool);
        for h in handles.into_inner().unwrap_or_default() {
            let _ = h.join();
        }
        ok
    };
    // rayon's own default: RAYON_NUM_THREADS when set to a positive number, else the cores.
    let mut n = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    while n > 1 && !can_spawn(n) {
        n /= 2;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| format!("cannot start {n} worker thread(s): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_and_threads() {
        assert_eq!(whole_number("12"), Ok(12));
        assert!(whole_number("-1").unwrap_err().contains("negative"));
        assert!(
            whole_number("x")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(check_threads(Some(0)).is_err());
        assert!(check_threads(Some(1)).is_ok() && check_threads(None).is_ok());
    }
}
