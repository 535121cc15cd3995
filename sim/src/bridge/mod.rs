//! A simulated bus shared between processes: the site offers each bus on a Unix socket
//! ([`BridgeServer`]) and a GX daemon in another process joins it as a node
//! ([`BridgeInterface`]). The batteries then outlive the daemon: kill it mid-update and
//! the battery is where a real one would be, in its bootloader or running its firmware.
//!
//! The records are fixed at 16 bytes ([`wire`]). The node may send [`server::CREDIT`]
//! frames ahead; the site grants one more each time a frame enters the bus's transmit
//! queue, so the queue paces the sender as a controller's does.

mod client;
mod server;
pub mod wire;

pub use client::BridgeInterface;
pub use server::{BridgeServer, CREDIT};

#[cfg(test)]
mod tests;
