//! The simulated Coral ReefStack, for tests, benchmarks and the demo.
//!
//! It implements the master's side of `vendors/coral/PROTOCOL.md`: BMS-Can telemetry (the
//! simulator's battery model, broadcasting through the whole update), the commands on
//! 0x1B00C0A1/0x1B00C0A2, the pipelined transfer's receiver with a staging area that keeps
//! what it acknowledged across restarts, the bundle check (Ed25519 signature, SHA-256 of
//! every image, product and hardware revisions), the master's own image, and its modules,
//! updated one at a time over the pack's internal bus in modelled time.
//!
//! - [`bundle`]: the `.crb` builder signing with the TEST key ([`bundle::build`]),
//!   corruptions (a bad signature, one image swapped, a truncated file), and the master's
//!   check; independent of the plugin's reader.
//! - [`bms::CoralBms`]: the sans-IO model; [`driver::CoralHandle`] runs it on a
//!   [`bmsfw_can::CanInterface`] and controls it.
//! - [`factory::register`]: puts it behind `vendor = "coral"` batteries of a simulated
//!   site.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bms;
pub mod bundle;
pub mod driver;
pub mod factory;
pub mod key;
pub mod protocol;
pub mod receiver;

pub use bms::{CoralBms, CoralConfig, CoralStatus, Fault, ModuleConfig, ModuleStatus, Stage};
pub use driver::CoralHandle;
pub use factory::{CoralFactory, register};
