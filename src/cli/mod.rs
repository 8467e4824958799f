//! Subcommands of the `ember` binary, one module each.

pub mod bench;
pub mod info;
pub mod train;
