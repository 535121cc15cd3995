//! Vendor plugins: the allowlist, the loader, and the engine's interface to a plugin.
//!
//! See `docs/plugin-loading.md` for the allowlist fields and what to do about each
//! refusal.

pub mod allowlist;
pub mod battery;
pub mod display;
pub mod elf;
pub mod host;
pub mod hosted;
pub mod inspector;
pub mod loader;
mod open;
mod read;
pub mod refusal;
pub mod types;

/// Plugin libraries are named by the same digest type as staged packages.
pub use crate::staging::digest::Sha256Digest;
pub use allowlist::{Allowlist, AllowlistEntry, ApprovalStatus, VendorId, Vetting};
pub use battery::plugin_battery;
pub use display::{display_name, display_path, one_line};
pub use elf::validate_elf;
pub use host::{
    FilePackage, InProcessPlugin, InProcessSession, PackageRead, SessionStart, VendorPlugin,
    VendorSession,
};
pub use hosted::{HostSettings, HostedPlugin};
pub use inspector::PluginInspector;
pub use loader::{Isolation, LibraryFile, LoadReport, LoadedPlugin, PluginLoader, ScanError};
pub use open::LoadMethod;
pub use refusal::{Refusal, RefusalReason};
pub use types::{
    BatteryMatch, DecodedVersion, ModuleStatus, ModuleUpdateState, PackageRejection,
    PackageSummary, PluginFailure, PluginInfo, SessionPhase, SessionReport, VersionOrder,
};
