//! The bmsfw plugin for Aurora PowerCore batteries.
//!
//! Everything it does is specified in `vendors/aurora/PROTOCOL.md`: UDS (ISO 14229) over
//! ISO-TP on 0x7E2/0x7EA, seed and key by HMAC-SHA256, `AUFW` packages with a 64-byte
//! header, 0x35F firmware bytes read as major and minor in decimal (`04 0F` is v4.15),
//! and a probe of the bootloader before anything is erased.
//!
//! Built as a `cdylib` against `bmsfw-plugin-api` and `bmsfw-protocols` only; the
//! engine loads it after checking its SHA-256 against the allowlist.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod device;
pub mod key;
pub mod package;
pub mod protocol;
pub mod session;
#[cfg(test)]
mod testing;
pub mod version;

use bmsfw_plugin_api::{
    BatteryIdentity, CanIdRange, DeviceMatch, Failure, FirmwareVersion, PackageError, PackageInfo,
    PackageReader, Plugin, PluginIdentity, SessionRequest, export_plugin,
};
use protocol::{PLUGIN_NAME, REQUEST_ID, RESPONSE_ID, TIMEOUTS, VENDOR_ID};
use session::AuroraSession;

/// The Aurora plugin.
pub struct AuroraPlugin;

impl Plugin for AuroraPlugin {
    type Session = AuroraSession;

    fn new() -> AuroraPlugin {
        AuroraPlugin
    }

    fn identity(&self) -> PluginIdentity {
        PluginIdentity::new(VENDOR_ID, PLUGIN_NAME, env!("CARGO_PKG_VERSION"))
            .sends(CanIdRange::single(REQUEST_ID))
            .receives(CanIdRange::single(RESPONSE_ID))
            .file_type("bin")
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

    fn start_session(&self, request: SessionRequest) -> Result<AuroraSession, Failure> {
        AuroraSession::start(request)
    }
}

export_plugin!(AuroraPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    #[test]
    fn the_identity_declares_exactly_the_protocols_identifiers_and_limits() {
        let id = AuroraPlugin.identity();
        assert_eq!(id.vendor_id.as_str(), "com.aurora-energy.powercore");
        assert_eq!(id.plugin_version.as_str(), "1.0.0");
        assert!(id.may_send(CanId::standard(0x7E2).unwrap()));
        assert!(!id.may_send(CanId::standard(0x7EA).unwrap()));
        assert!(id.wants(CanId::standard(0x7EA).unwrap()));
        assert!(!id.wants(CanId::standard(0x35F).unwrap()));
        assert_eq!(id.sends.len(), 1);
        assert_eq!(id.receives.len(), 1);
        assert_eq!(id.file_types.len(), 1);
        assert_eq!(id.file_types[0].as_str(), "bin");
        // The declared silence covers a restart with a rollback (6 s) with margin.
        assert_eq!(id.timeouts.restart_silence_max_ms, 15_000);
        assert!(
            id.timeouts.transfer_response_ms >= 9_600,
            "a full slot's erase"
        );
    }
}
