//! The simulated Aurora PowerCore BMS, for tests and the demo.
//!
//! It implements the BMS side of `vendors/aurora/PROTOCOL.md`: BMS-Can telemetry (the
//! simulator's battery model, broadcasting through the whole transfer), a UDS server over
//! ISO-TP on 0x7E2/0x7EA (the flash server of `bmsfw-protocols`), two firmware slots, flash
//! erase and write times, a CRC-32 and SHA-256 check before activation, a restart with a
//! telemetry gap, and a rollback when a new firmware does not start. A power cut at any
//! moment leaves the old or the new complete firmware.
//!
//! - [`package`]: the `.bin` package builder ([`package::build`]), corruptions, and the
//!   BMS's own check; independent of the plugin's parser.
//! - [`bms::AuroraBms`]: the sans-IO model; [`driver::AuroraHandle`] runs it on a
//!   [`bmsfw_can::CanInterface`] and controls it.
//! - [`factory::register`]: puts it behind `vendor = "aurora"` batteries of a simulated
//!   site.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bms;
mod bootloader;
pub mod driver;
pub mod factory;
pub mod flash;
pub mod key;
pub mod package;
pub mod protocol;

pub use bms::{AuroraBms, AuroraConfig, AuroraStatus, Stage};
pub use bootloader::Fault;
pub use driver::AuroraHandle;
pub use factory::{AuroraFactory, register};
