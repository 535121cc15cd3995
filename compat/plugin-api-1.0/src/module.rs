//! The root module: the one table of entry points each plugin library exports.
// abi_stable names the prefix reference `PluginModule_Ref`.
#![allow(non_camel_case_types)]

use crate::battery::{BatteryIdentity, DeviceMatch};
use crate::contract::CONTRACT_VERSION_STRING;
use crate::error::Failure;
use crate::identity::PluginIdentity;
use crate::package::{BoxedPackageSource, PackageError, PackageInfo};
use crate::session::{BoxedSession, SessionOptions};
use crate::version::FirmwareVersion;
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSlice, RVec},
};

/// The entry points of a plugin library, as the engine sees them.
///
/// Vendors never fill this in by hand: [`export_plugin!`](crate::export_plugin) builds it
/// from a [`Plugin`](crate::Plugin) and wraps every entry point against panics. It is an
/// abi_stable prefix type: later minor contract versions append fields after
/// `start_session` (see `EVOLUTION.md`), and the engine reaches it through
/// [`PluginModule_Ref`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref, prefix_fields = PluginModule_Prefix)))]
pub struct PluginModule {
    /// Who the plugin is: see [`PluginIdentity`].
    pub identity: extern "C" fn() -> RResult<PluginIdentity, Failure>,
    /// Whether a discovered battery is the plugin's, and updatable over CAN.
    pub match_battery: extern "C" fn(battery: &BatteryIdentity) -> RResult<DeviceMatch, Failure>,
    /// Raw version bytes (from 0x35F, a package or the BMS) to a display string and a
    /// comparable version.
    pub decode_version: extern "C" fn(raw: RSlice<'_, u8>) -> RResult<FirmwareVersion, Failure>,
    /// Reads a package through the engine's reader and says what it contains or why it
    /// is invalid.
    pub inspect_package:
        extern "C" fn(package: BoxedPackageSource) -> RResult<PackageInfo, PackageError>,
    /// Starts a transfer session for `battery` with `package`, optionally resuming from a
    /// checkpoint the engine journaled.
    #[sabi(last_prefix_field)]
    pub start_session: extern "C" fn(
        battery: &BatteryIdentity,
        package: BoxedPackageSource,
        options: &SessionOptions,
        resume: ROption<RVec<u8>>,
    ) -> RResult<BoxedSession, Failure>,
}

/// abi_stable's root-module declaration. `VERSION_STRINGS` is the contract version, stored
/// in every plugin library's header, so the engine reads it before it calls anything.
impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "bmsfw_plugin";
    const NAME: &'static str = "bmsfw vendor plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(CONTRACT_VERSION_STRING);
}
