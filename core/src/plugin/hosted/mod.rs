//! Every plugin in its own supervised, sandboxed process.
//!
//! A vendor plugin is third-party code. [`HostedPlugin`] runs it in plugin host
//! processes (the program `bmsfw-plugin-host`, or `bmsfw plugin-host`) and stands behind
//! the engine's [`VendorPlugin`](crate::plugin::VendorPlugin) and
//! [`VendorSession`](crate::plugin::VendorSession) like the in-process plugin does, so
//! the engine is the same either way:
//!
//! - the engine hashes the library file and hands the host exactly those bytes as a
//!   sealed memfd, never a path; the host loads them, and the contract, layout and
//!   identity checks run there;
//! - the host serves the contract over a socketpair ([`wire`]): length-prefixed postcard
//!   messages, versioned, bounded, checked again by the engine;
//! - one long-lived host answers `match_battery` and `decode_version`; every package
//!   inspection and every session gets a host of its own, handed the package as a
//!   read-only descriptor;
//! - every call has a deadline ([`Deadlines`]); a missed deadline, a crash, an exit, a
//!   resource limit or a protocol violation kills the host and fails that call (a
//!   session with code 747, naming the plugin, the call and the cause);
//! - hosts that fail are started again after a growing pause, and a plugin whose hosts
//!   fail [`HostSettings::quarantine_after`] times in a row is suspended (code 749) until
//!   the daemon restarts;
//! - the host sandboxes itself before any plugin code runs ([`sandbox`]).

pub mod child;
mod plugin;
pub mod process;
pub mod sandbox;
mod session;
pub mod wire;

pub use plugin::{Deadlines, HostSettings, HostedPlugin};
pub use process::{HostFault, HostFaultCause, HostLimits, HostProgram};
pub use session::HostedSession;
