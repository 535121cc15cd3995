//! The subcommands of the `bmsfw` binary, one module each.

// First: the output macros the other modules use.
#[macro_use]
pub mod out;

#[cfg(all(feature = "sim", feature = "portal"))]
pub mod campaign;
pub mod capture;
pub mod conformance;
#[cfg(all(feature = "sim", feature = "portal"))]
pub mod demo;
pub mod devices;
pub mod gx;
pub mod history;
mod listen;
pub mod plugin;
#[cfg(feature = "portal")]
pub mod portal;
pub mod record;
#[cfg(feature = "sim")]
pub mod simulate;
pub(crate) mod source;
pub mod update;
