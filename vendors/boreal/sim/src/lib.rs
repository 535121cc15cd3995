//! The simulated Boreal Taiga bank, for tests and the demo.
//!
//! It implements the bank's side of `vendors/boreal/PROTOCOL.md`: several BMS nodes on
//! one bus, each a CANopen node with its own node-id, heartbeat and SDO server (the one
//! of `bmsfw-protocols`) over an object dictionary with the CiA 302-3 program download;
//! two firmware slots per node with clear, write and check times, a CRC-32 check before
//! activation, a restart with silence and a rollback when a new firmware does not start;
//! the node with the lowest id broadcasting BMS-Can for the bank (the simulator's battery
//! model), with the bank's lowest version in 0x35F. A power cut at any moment leaves
//! every node with its old or its new complete firmware.
//!
//! - [`package`]: the Intel HEX builder ([`package::build`]), corruptions, and the node's
//!   own check of a received image; independent of the plugin's parser.
//! - [`bank::BorealBank`]: the sans-IO bank of [`node::BorealNode`]s;
//!   [`driver::BankHandle`] runs it on a [`bmsfw_can::CanInterface`] and controls it.
//! - [`factory::register`]: puts it behind `vendor = "boreal"` batteries of a simulated
//!   site (`modules` is the number of nodes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bank;
pub mod dictionary;
pub mod driver;
pub mod factory;
pub mod flash;
pub mod node;
pub mod package;
pub mod protocol;

pub use bank::{BankConfig, BorealBank, NodeConfig, NodeStatus};
pub use dictionary::Fault;
pub use driver::BankHandle;
pub use factory::{BorealFactory, register};
