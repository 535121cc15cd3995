//! The bmsfw plugin for Boreal Taiga battery banks.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod device;
pub mod hex;
pub mod package;
pub mod protocol;
#[cfg(test)]
mod testing;
pub mod version;
