//! The contract between the bmsfw engine and a battery vendor's plugin.
//!
//! A vendor builds a `cdylib` against this crate alone. Every type that crosses the
//! library boundary is `#[repr(C)]` and derives [`abi_stable::StableAbi`], so the engine
//! checks the layout of a library before it calls anything in it. Enumerations cross as
//! integer newtypes ([`ErrorCode`], [`Phase`], [`MatchKind`], ...), never as Rust enums,
//! so that a newer plugin can send a value an older engine does not know.
//!
//! # Writing a plugin
//!
//! 1. Make a crate with `crate-type = ["cdylib"]` that depends on `bmsfw-plugin-api`.
//! 2. Implement [`Plugin`] (identity, battery matching, version decoding, package
//!    inspection, session start) and [`Session`] (the sans-IO transfer state machine).
//! 3. Call [`export_plugin!`] once with your plugin type.
//! 4. Hand the built library to the integrator, who checks it with
//!    `bmsfw plugin check` and adds its SHA-256 to the allowlist. The engine refuses a
//!    library whose hash, vendor id, version, contract major or layout does not match.
//!
//! ```no_run
//! use bmsfw_plugin_api::*;
//!
//! struct MyPlugin;
//!
//! impl Plugin for MyPlugin {
//!     type Session = MySession;
//!     fn new() -> Self {
//!         MyPlugin
//!     }
//!     fn identity(&self) -> PluginIdentity {
//!         PluginIdentity::new("com.example.battery", "Example LFP", "1.0.0")
//!             .sends(CanIdRange::single(CanId::standard(0x7E0).unwrap()))
//!             .receives(CanIdRange::single(CanId::standard(0x7E8).unwrap()))
//!             .file_type("bin")
//!     }
//!     fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch {
//!         if battery.manufacturer.as_str() == "EXAMPLE" {
//!             DeviceMatch::updatable()
//!         } else {
//!             DeviceMatch::not_mine()
//!         }
//!     }
//!     fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure> {
//!         match raw {
//!             [major, minor, ..] => Ok(FirmwareVersion::new(
//!                 raw,
//!                 format!("v{major}.{minor}"),
//!                 &[u32::from(*major), u32::from(*minor)],
//!             )),
//!             _ => Err(Failure::new(ErrorCode::PROTOCOL_ERROR, "short version")),
//!         }
//!     }
//!     fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
//!         Err(PackageError::at_offset(ErrorCode::PACKAGE_INVALID, 0, "no format yet"))
//!     }
//!     fn start_session(&self, request: SessionRequest) -> Result<MySession, Failure> {
//!         Ok(MySession { total: request.package.len() })
//!     }
//! }
//!
//! struct MySession {
//!     total: u64,
//! }
//!
//! impl Session for MySession {
//!     fn handle_frame(&mut self, _now: Timestamp, _frame: &CanFrame) {}
//!     fn handle_timeout(&mut self, _now: Timestamp) {}
//!     fn poll_transmit(&mut self, _now: Timestamp) -> Option<CanFrame> {
//!         None
//!     }
//!     fn poll_timeout(&self) -> Option<Timestamp> {
//!         None
//!     }
//!     fn status(&self) -> SessionStatus {
//!         SessionStatus::new(Phase::TRANSFERRING, 0, self.total)
//!     }
//!     fn abort(&mut self, _now: Timestamp, _reason: &AbortReason) {}
//! }
//!
//! export_plugin!(MyPlugin);
//! # fn main() {}
//! ```
//!
//! # Rules a plugin lives by
//!
//! - No I/O, no threads, no clocks: the engine hands sessions the time and the frames,
//!   and reads packages for the plugin through [`PackageReader`].
//! - Send only the CAN identifiers declared in [`PluginIdentity::sends`]; the engine
//!   fails a session that sends anything else.
//! - Report failures with the named [`ErrorCode`]s or a vendor code in 900..=999, with a
//!   message an installer can act on.
//! - Panics are caught at the boundary and reported as [`ErrorCode::PLUGIN_FAULT`]; a
//!   session that panicked is failed for good. Build with `panic = "unwind"`.
#![warn(missing_docs)]

pub mod battery;
pub mod contract;
pub mod error;
#[doc(hidden)]
pub mod export;
pub mod frame;
pub mod identity;
pub mod module;
pub mod package;
pub mod session;
pub mod time;
pub mod vendor;
pub mod version;

/// The abi_stable version the contract is built on, re-exported for `export_plugin!`.
pub use abi_stable;

pub use battery::{BatteryIdentity, DeviceMatch, MatchKind};
pub use contract::{CONTRACT_VERSION, ContractVersion};
pub use error::{ErrorCode, Failure};
pub use frame::{CanFrame, CanId};
pub use identity::{CanIdRange, DeclaredTimeouts, PluginIdentity};
pub use module::{PluginModule, PluginModule_Ref};
pub use package::{
    BoxedPackageSource, Location, LocationKind, ModuleImage, PackageError, PackageInfo,
    PackageReader, PackageSource, PackageSource_TO, SignatureStatus, SourceError, TargetProduct,
};
pub use session::{
    AbortReason, BoxedSession, ModuleProgress, ModuleState, Phase, SessionOptions, SessionStatus,
    TransferSession, TransferSession_TO,
};
pub use time::Timestamp;
pub use vendor::{Plugin, Session, SessionRequest};
pub use version::FirmwareVersion;

/// Support for `export_plugin!`; not part of the contract.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        PluginInstance, SessionGuard, decode_version, guard, identity, inspect_package,
        match_battery, root_module, start_session,
    };
}
