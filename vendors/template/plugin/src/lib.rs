//! The bmsfw plugin template: a complete, working plugin for the fictional Acme LFP
//! batteries, for a vendor to copy and make its own.
//!
//! Everything it does is specified in `vendors/template/PROTOCOL.md`: UDS (ISO 14229)
//! over ISO-TP on 0x7E5/0x7ED, a 4-byte seed and key by HMAC-SHA256, `ACFW` packages
//! with a 24-byte header and a CRC-32 of the image, and 0x35F firmware bytes read as
//! major and minor in decimal (`01 0C` is v1.12).
//!
//! Built as a `cdylib` against `bmsfw-plugin-api` and `bmsfw-protocols` only; the
//! engine loads it after checking its SHA-256 against the allowlist.
//!
//! | module | what it holds |
//! |---|---|
//! | [`protocol`] | the numbers of `PROTOCOL.md`: identifiers, routines, limits, timeouts |
//! | [`package`] | the package parser (hostile input: bounded, never panics, errors with offsets) |
//! | [`session`] | the sans-IO transfer session |
//! | [`key`] | the security-access key |
//! | [`version`] | the firmware version encoding |
#![warn(missing_docs)]
#![forbid(unsafe_code)]

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
use protocol::{
    MANUFACTURER, PLUGIN_NAME, REQUEST_ID, RESPONSE_ID, TIMEOUTS, VENDOR_ID, product_name,
};
use session::TemplateSession;

/// The Acme plugin.
pub struct TemplatePlugin;

impl Plugin for TemplatePlugin {
    type Session = TemplateSession;

    fn new() -> TemplatePlugin {
        TemplatePlugin
    }

    fn identity(&self) -> PluginIdentity {
        PluginIdentity::new(VENDOR_ID, PLUGIN_NAME, env!("CARGO_PKG_VERSION"))
            .sends(CanIdRange::single(REQUEST_ID))
            .receives(CanIdRange::single(RESPONSE_ID))
            .file_type("acfw")
            .timeouts(TIMEOUTS)
    }

    fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch {
        match_battery(battery)
    }

    fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure> {
        version::decode(raw)
    }

    fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
        package::inspect(package)
    }

    fn start_session(&self, request: SessionRequest) -> Result<TemplateSession, Failure> {
        TemplateSession::start(request)
    }
}

export_plugin!(TemplatePlugin);

/// Answers from the BMS-Can broadcast: the manufacturer of 0x35E and the product code of
/// 0x35F. Every Acme product has the CAN bootloader.
pub fn match_battery(battery: &BatteryIdentity) -> DeviceMatch {
    if battery.manufacturer.as_str() != MANUFACTURER {
        return DeviceMatch::not_mine();
    }
    match battery.product_code.into_option() {
        None => {
            DeviceMatch::mine_not_updatable("the battery has not sent its product code (0x35F) yet")
        }
        Some(code) if product_name(code).is_none() => DeviceMatch::mine_not_updatable(format!(
            "product code 0x{code:04X} is not an Acme product this plugin knows"
        )),
        Some(_) => DeviceMatch::updatable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::{CanId, MatchKind};

    #[test]
    fn the_identity_declares_exactly_the_protocols_identifiers_and_limits() {
        let id = TemplatePlugin.identity();
        assert_eq!(id.vendor_id.as_str(), "com.example.acme");
        assert_eq!(id.plugin_version.as_str(), env!("CARGO_PKG_VERSION"));
        assert!(id.may_send(CanId::standard(0x7E5).unwrap()));
        assert!(!id.may_send(CanId::standard(0x7ED).unwrap()));
        assert!(id.wants(CanId::standard(0x7ED).unwrap()));
        assert!(!id.wants(CanId::standard(0x35F).unwrap()));
        assert_eq!((id.sends.len(), id.receives.len()), (1, 1));
        assert_eq!(id.file_types.len(), 1);
        assert_eq!(id.file_types[0].as_str(), "acfw");
        assert_eq!(id.timeouts, TIMEOUTS);
        assert!(
            u128::from(id.timeouts.restart_silence_max_ms)
                >= protocol::RESTART_SILENCE_MAX.as_millis(),
            "the engine's watchdog outlasts the session's own restart limit"
        );
    }

    #[test]
    fn acme_batteries_are_told_apart_from_others() {
        let acme = |raw: &[u8]| BatteryIdentity::new("ACME").with_raw_35f(raw);
        assert_eq!(
            match_battery(&acme(&[0x10, 0xAC, 1, 12])).kind,
            MatchKind::UPDATABLE
        );
        let unknown = match_battery(&acme(&[0x99, 0x00, 1, 12]));
        assert_eq!(unknown.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(unknown.reason.contains("0x0099"), "{}", unknown.reason);
        assert_eq!(
            match_battery(&BatteryIdentity::new("ACME")).kind,
            MatchKind::MINE_NOT_UPDATABLE
        );
        assert_eq!(
            match_battery(&BatteryIdentity::new("AURORA").with_raw_35f(&[0x10, 0xAC])).kind,
            MatchKind::NOT_MINE
        );
    }
}
