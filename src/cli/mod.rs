//! The subcommands of the `bmsfw` binary, one module each.

pub mod capture;
pub mod devices;
mod listen;
mod source;
