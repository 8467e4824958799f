//! `ember bench` (being built; see its issue).

/// Arguments of `ember bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs `ember bench`.
pub fn run(_args: BenchArgs) -> Result<(), String> {
    Err("ember bench is not built yet".into())
}
