//! The subcommands of the `bmsfw` binary, one module each.

pub mod capture;
pub mod conformance;
pub mod demo;
pub mod devices;
pub mod gx;
pub mod history;
mod listen;
pub mod plugin;
pub mod portal;
mod source;
