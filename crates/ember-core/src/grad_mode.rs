//! Whether ops record the graph: the `no_grad` scope.
//!
//! Recording is on by default. Inside [`no_grad`] (or while a [`NoGradGuard`] lives) ops build
//! no graph, which is what inference and optimizer updates want. The flag is per thread.

use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True when ops on this thread record their inputs for `backward`.
pub fn is_grad_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Disables recording until dropped, then restores the previous state.
#[must_use = "recording resumes as soon as the guard is dropped"]
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    /// Starts a no-grad scope.
    pub fn new() -> Self {
        let prev = ENABLED.with(|e| e.replace(false));
        NoGradGuard { prev }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.prev));
    }
}

/// Runs `f` with recording disabled.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoGradGuard::new();
    f()
}
