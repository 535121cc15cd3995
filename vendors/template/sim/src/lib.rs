//! The simulated Acme BMS of the vendor template, for tests.
//!
//! It implements the BMS's side of `vendors/template/PROTOCOL.md`: BMS-Can telemetry
//! (the simulator's battery model, broadcasting through the whole update), a UDS server
//! over ISO-TP on 0x7E5/0x7ED (the flash server of `bmsfw-protocols`), two firmware slots
//! (the simulator's [`DualSlotFlash`](bmsfw_sim::flash::DualSlotFlash)), a check of the
//! package before activation, and a restart with a telemetry gap.
//!
//! - [`package`]: the `.acfw` builder ([`package::build`]) and the BMS's own check
//!   ([`package::verify`]), written from `PROTOCOL.md` independently of the plugin.
//! - [`bms::TemplateBms`]: the sans-IO model; [`driver::TemplateHandle`] runs it on a
//!   [`bmsfw_can::CanInterface`] through the simulator's
//!   [`NodeDriver`](bmsfw_sim::node::NodeDriver) and controls it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bms;
mod bootloader;
pub mod driver;
pub mod factory;
pub mod package;
pub mod protocol;

pub use bms::{Stage, TemplateBms, TemplateConfig, TemplateStatus};
pub use bootloader::Fault;
pub use driver::TemplateHandle;
pub use factory::{TemplateFactory, register};
