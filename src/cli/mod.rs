//! The subcommands of the `bmsfw` binary, one module each.

// First: the output macros the other modules use.
#[macro_use]
pub mod out;

pub mod campaign;
pub mod capture;
pub mod conformance;
pub mod demo;
pub mod devices;
pub mod gx;
pub mod history;
mod listen;
pub mod plugin;
pub mod portal;
pub mod record;
pub mod simulate;
pub(crate) mod source;
pub mod update;
