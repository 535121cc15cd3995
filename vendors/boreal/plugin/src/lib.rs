//! The bmsfw plugin for Boreal Taiga battery banks.
//!
//! Everything it does is specified in `vendors/boreal/PROTOCOL.md`: several Boreal BMS
//! nodes share the BMS-Can bus as CANopen nodes 1 to 16; the node with the lowest id
//! speaks BMS-Can for the bank, and 0x35F carries the bank's lowest firmware as BCD
//! (`02 15` is 2.15) with the speaker's id and the node count. An update finds the nodes
//! by their heartbeats (or takes the nodes the engine's options name), identifies each
//! over SDO (0x1018, 0x100A, the bootloader's 0x2F10), and runs the CiA 302-3 program
//! download (SDO block transfer with CRC) on each in turn, the speaker last. Packages are
//! Intel HEX files, read with the `ihex` crate.
//!
//! Built as a `cdylib` against `bmsfw-plugin-api` and `bmsfw-protocols` (and `ihex`);
//! the engine loads it after checking its SHA-256 against the allowlist.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod device;
pub mod hex;
pub mod package;
pub mod protocol;
pub mod session;
#[cfg(test)]
mod testing;
pub mod version;

use bmsfw_plugin_api::{
    BatteryIdentity, DeviceMatch, Failure, FirmwareVersion, PackageError, PackageInfo,
    PackageReader, Plugin, PluginIdentity, SessionRequest, export_plugin,
};
use protocol::{
    HEARTBEATS, PLUGIN_NAME, PRODUCT_INFO_ID, SDO_REQUESTS, SDO_RESPONSES, TIMEOUTS, VENDOR_ID,
    range,
};
use session::BorealSession;

/// The Boreal plugin.
pub struct BorealPlugin;

impl Plugin for BorealPlugin {
    type Session = BorealSession;

    fn new() -> BorealPlugin {
        BorealPlugin
    }

    fn identity(&self) -> PluginIdentity {
        PluginIdentity::new(VENDOR_ID, PLUGIN_NAME, env!("CARGO_PKG_VERSION"))
            .sends(range(SDO_REQUESTS))
            .receives(range(SDO_RESPONSES))
            .receives(range(HEARTBEATS))
            .receives(bmsfw_plugin_api::CanIdRange::single(PRODUCT_INFO_ID))
            .file_type("hex")
            .timeouts(TIMEOUTS)
    }

    fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch {
        device::match_battery(battery)
    }

    fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure> {
        version::decode(raw)
    }

    fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
        package::inspect(package)
    }

    fn start_session(&self, request: SessionRequest) -> Result<BorealSession, Failure> {
        BorealSession::start(request)
    }
}

export_plugin!(BorealPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    #[test]
    fn the_identity_declares_exactly_the_protocols_identifiers_and_limits() {
        let id = BorealPlugin.identity();
        assert_eq!(id.vendor_id.as_str(), "com.boreal-batteries.taiga");
        assert_eq!(id.plugin_version.as_str(), "1.0.0");
        let std = |raw| CanId::standard(raw).unwrap();
        for node in 1..=16u16 {
            assert!(id.may_send(std(0x600 + node)));
            assert!(id.wants(std(0x580 + node)));
            assert!(id.wants(std(0x700 + node)));
            assert!(!id.may_send(std(0x580 + node)));
        }
        for outside in [0x600, 0x611, 0x580, 0x591, 0x700, 0x711] {
            assert!(
                !id.may_send(std(outside)) && !id.wants(std(outside)),
                "{outside:X}"
            );
        }
        assert!(id.wants(std(0x35F)));
        assert!(!id.wants(std(0x351)));
        assert_eq!(id.file_types.len(), 1);
        assert_eq!(id.file_types[0].as_str(), "hex");
        assert_eq!(id.timeouts.restart_silence_max_ms, 10_000);
    }
}
