//! `ember train` (being built; see its issue).

/// Arguments of `ember train`.
#[derive(clap::Args)]
pub struct TrainArgs {}

/// Runs `ember train`.
pub fn run(_args: TrainArgs) -> Result<(), String> {
    Err("ember train is not built yet".into())
}
