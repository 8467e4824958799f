//! `ember info` (being built; see its issue).

/// Runs `ember info`.
pub fn run() -> Result<(), String> {
    Err("ember info is not built yet".into())
}
