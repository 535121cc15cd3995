//! The subcommands of the `bmsfw` binary, one module each.

pub mod capture;
pub mod devices;
pub mod history;
mod listen;
mod source;
