//! The contract between the bmsfw engine and a battery vendor's plugin.
//!
//! A vendor builds a `cdylib` against this crate alone. Every type that crosses the
//! library boundary is `#[repr(C)]` and derives [`abi_stable::StableAbi`], so the engine
//! can check the layout of a library before it calls anything in it.
#![warn(missing_docs)]

pub mod frame;
pub mod time;

pub use frame::{CanFrame, CanId};
pub use time::Timestamp;
