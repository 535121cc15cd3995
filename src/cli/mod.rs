//! The subcommands of the `bmsfw` binary.

pub mod history;
pub mod plugin;
