//! The subcommands of the `bmsfw` binary.

pub mod history;
