//! What the `ember` binary does when the allocator refuses memory: one line naming the bytes
//! asked for and the limit, then exit status 1 — never Rust's default, which prints
//! "memory allocation of N bytes failed" and aborts (SIGABRT, status 134, maybe a core dump).
//!
//! Why an allocator wrapper: `ember train` checks its estimate before the first epoch
//! (`cli::memory`), but an estimate can undercount (a layer's scratch, rayon's thread stacks and
//! glibc's per-thread arenas, the allocator's own fragmentation), and an allocation inside
//! training that fails afterwards goes to std's allocation-error handler, which aborts. Hooking
//! that handler needs `std::alloc::set_alloc_error_hook`, which is unstable; a
//! `#[global_allocator]` that forwards to the system allocator and acts on a null return
//! works on stable Rust and sees every allocation of the process.
//!
//! Why only in the binary: a library cannot choose its user's allocator or end its user's
//! process. The cost of the choice: the library's fallible paths (`try_reserve` in
//! `ember_core`'s size probe) also end here in this binary instead of returning
//! `Error::OutOfMemory`; the user still gets one line with the bytes and a non-zero status.
//!
//! The handler runs where allocating again could fail or recurse, so it allocates nothing: the
//! message is formatted with `core::fmt` into a buffer on the stack, the limit comes from
//! `getrlimit` and the address space in use from `/proc/self/statm` read with `open`/`read`
//! into the stack, the line is written with `write(2)` and the process ends with `_exit(2)`
//! (no destructors or atexit handlers, which might allocate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, with a clean exit where it returns null.
pub struct ExitOnOom;

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees (a block of at least `layout.size()` bytes aligned to `layout.align()`, or null)
// are ours; the only addition is that a null result never returns (`out_of_memory` diverges).
unsafe impl GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Set by the first thread that runs out of memory, so one line is printed even when several
/// threads (rayon's workers) fail at once.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// A fixed buffer that `core::fmt` writes into; text past its end is dropped.
struct StackLine {
    buf: [u8; 512],
    len: usize,
}

impl std::fmt::Write for StackLine {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `bytes` as `"N bytes (x.y GiB)"`, written without allocating.
fn write_bytes(out: &mut StackLine, bytes: u64) {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let _ = if unit == 0 {
        write!(out, "{bytes} bytes")
    } else {
        write!(out, "{bytes} bytes ({v:.1} {})", UNITS[unit])
    };
}

/// The soft address-space limit (`ulimit -v`) in bytes; `None` when unlimited.
fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The process's address space in use (the first field of `/proc/self/statm`, in pages), read
/// without allocating; `None` where the file cannot be read.
fn address_space_in_use() -> Option<u64> {
    let mut buf = [0u8; 128];
    // SAFETY: the path is a NUL-terminated literal; `read` writes at most `buf.len()` bytes
    // into `buf`; the descriptor is closed before returning.
    let (n, page) = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        (n, libc::sysconf(libc::_SC_PAGESIZE))
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let pages = text
        .split(|&b| b == b' ')
        .next()
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.trim().parse::<u64>().ok())?;
    pages.checked_mul(u64::try_from(page).ok()?)
}

/// Prints the one-line report for a refused allocation of `bytes` and ends the process with
/// status 1. Never returns; never allocates.
fn out_of_memory(bytes: usize) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        // Another thread is writing the report and will end the process.
        loop {
            // SAFETY: pause only suspends this thread until a signal arrives.
            unsafe { libc::pause() };
        }
    }
    let mut line = StackLine {
        buf: [0; 512],
        len: 0,
    };
    let _ = line.write_str("error: out of memory: an allocation of ");
    write_bytes(&mut line, bytes as u64);
    let _ = line.write_str(" failed");
    if let Some(used) = address_space_in_use() {
        let _ = line.write_str(" with ");
        write_bytes(&mut line, used);
        let _ = line.write_str(" of address space in use");
    }
    match address_space_limit() {
        Some(limit) => {
            let _ = line.write_str(", under the address-space limit (ulimit -v) of ");
            write_bytes(&mut line, limit);
        }
        None => {
            let _ = line.write_str(
                ", no address-space limit (ulimit -v): the system has no more memory to give",
            );
        }
    }
    let _ = line.write_str("; a smaller --batch-size or model needs less\n");
    // SAFETY: writes `line.len` initialised bytes of `line.buf` to stderr, then ends the
    // process at once (`_exit` runs no destructors, flushes nothing, allocates nothing).
    unsafe {
        libc::write(libc::STDERR_FILENO, line.buf.as_ptr().cast(), line.len);
        libc::_exit(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_text(bytes: u64) -> String {
        let mut line = StackLine {
            buf: [0; 512],
            len: 0,
        };
        write_bytes(&mut line, bytes);
        String::from_utf8(line.buf[..line.len].to_vec()).unwrap()
    }

    #[test]
    fn sizes_are_written_with_a_binary_unit() {
        assert_eq!(bytes_text(512), "512 bytes");
        assert_eq!(bytes_text(3 << 29), "1610612736 bytes (1.5 GiB)");
    }

    #[test]
    fn an_overlong_line_is_cut_not_overflowed() {
        let mut line = StackLine {
            buf: [0; 512],
            len: 0,
        };
        for _ in 0..100 {
            let _ = line.write_str("0123456789");
        }
        assert_eq!(line.len, 512);
    }

    #[test]
    fn this_process_reports_its_address_space() {
        let used = address_space_in_use().expect("/proc/self/statm is readable on Linux");
        assert!(used > 1 << 20, "{used}");
    }
}
