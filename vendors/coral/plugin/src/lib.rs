//! The bmsfw plugin for Coral ReefStack packs.
//!
//! Everything it does is specified in `vendors/coral/PROTOCOL.md`: a pipelined, windowed
//! transfer on 29-bit identifiers (8 data bytes per frame, the offset implied by a
//! sequence number in the identifier) with selective repeat and resume from the last
//! acknowledged byte; bundles whose manifest is signed with Ed25519; a master BMS that
//! installs its own image and then updates its modules one at a time, reporting each
//! module's state and version; 0x35F firmware as a 16-bit little-endian value and 24-bit
//! versions over the protocol.
//!
//! Built as a `cdylib` against `bmsfw-plugin-api` and `bmsfw-protocols` only; the engine
//! loads it after checking its SHA-256 against the allowlist.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bundle;
pub mod checkpoint;
pub mod device;
pub mod frames;
pub mod key;
pub mod protocol;
pub mod session;
#[cfg(test)]
mod testing;
pub mod transfer;
pub mod version;

use bmsfw_plugin_api::{
    BatteryIdentity, CanIdRange, DeviceMatch, Failure, FirmwareVersion, PackageError, PackageInfo,
    PackageReader, Plugin, PluginIdentity, SessionRequest, export_plugin,
};
use protocol::{COMMAND_ID, DATA_FIRST, DATA_LAST, PLUGIN_NAME, REPLY_ID, TIMEOUTS, VENDOR_ID};
use session::CoralSession;

/// The Coral plugin.
pub struct CoralPlugin;

impl Plugin for CoralPlugin {
    type Session = CoralSession;

    fn new() -> CoralPlugin {
        CoralPlugin
    }

    fn identity(&self) -> PluginIdentity {
        let data = CanIdRange::new(DATA_FIRST, DATA_LAST)
            .unwrap_or_else(|| unreachable!("the data identifiers form a range"));
        PluginIdentity::new(VENDOR_ID, PLUGIN_NAME, env!("CARGO_PKG_VERSION"))
            .sends(CanIdRange::single(COMMAND_ID))
            .sends(data)
            .receives(CanIdRange::single(REPLY_ID))
            .file_type("crb")
            .timeouts(TIMEOUTS)
    }

    fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch {
        device::match_battery(battery)
    }

    fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure> {
        version::decode(raw)
    }

    fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
        bundle::inspect(package)
    }

    fn start_session(&self, request: SessionRequest) -> Result<CoralSession, Failure> {
        CoralSession::start(request)
    }
}

export_plugin!(CoralPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    #[test]
    fn the_identity_declares_exactly_the_protocols_identifiers_and_limits() {
        let id = CoralPlugin.identity();
        assert_eq!(id.vendor_id.as_str(), "com.coral-cells.reefstack");
        assert_eq!(id.plugin_version.as_str(), "1.0.0");
        let ext = |v| CanId::extended(v).unwrap();
        assert!(id.may_send(ext(0x1B00_C0A1)));
        assert!(id.may_send(ext(0x1C00_0000)));
        assert!(id.may_send(ext(0x1C0F_FFFF)));
        assert!(!id.may_send(ext(0x1C10_0000)));
        assert!(!id.may_send(ext(0x1B00_C0A2)));
        assert!(!id.may_send(CanId::standard(0x7E0).unwrap()));
        assert!(id.wants(ext(0x1B00_C0A2)));
        assert!(!id.wants(CanId::standard(0x35F).unwrap()));
        assert_eq!(id.receives.len(), 1);
        assert_eq!(id.file_types.len(), 1);
        assert_eq!(id.file_types[0].as_str(), "crb");
        assert_eq!(id.timeouts.restart_silence_max_ms, 15_000);
        assert!(
            id.timeouts.transfer_response_ms >= 5_120,
            "a full staging erase"
        );
    }
}
