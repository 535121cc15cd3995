//! Acme's firmware versions: two bytes, major then minor, both shown in decimal.

use bmsfw_plugin_api::{Failure, FirmwareVersion};
use bmsfw_protocols::version::VersionFormat;

/// Decodes `[major, minor]` (0x35F bytes 2-3, header bytes 8-9, DID 0xF195) as
/// `v<major>.<minor>`: `01 0C` is v1.12.
pub fn decode(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    VersionFormat::MajorMinorDecimal.firmware_version(
        raw,
        "v",
        "an Acme version is 2 bytes (major, minor)",
    )
}

/// `v<major>.<minor>` of two bytes.
pub fn show(v: [u8; 2]) -> String {
    format!("v{}.{}", v[0], v[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::ErrorCode;

    #[test]
    fn the_minor_byte_reads_in_decimal_and_versions_compare_by_number() {
        let v = decode(&[0x01, 0x0C]).unwrap();
        assert_eq!(v.display.as_str(), "v1.12");
        assert_eq!(v.comparable.as_slice(), &[1, 12]);
        assert!(decode(&[1, 9]).unwrap().compare(&v).is_lt());
        assert_eq!(show([2, 0]), "v2.0");
    }

    proptest::proptest! {
        #[test]
        fn any_other_length_is_refused_and_never_panics(raw in proptest::collection::vec(0u8..=255, 0..12)) {
            let r = decode(&raw);
            proptest::prop_assert_eq!(r.is_ok(), raw.len() == 2);
            if let Err(e) = r {
                proptest::prop_assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR);
            }
        }
    }
}
