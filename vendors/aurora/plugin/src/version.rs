//! Aurora's firmware versions: two bytes, major then minor, both shown in decimal.

use bmsfw_plugin_api::{Failure, FirmwareVersion};
use bmsfw_protocols::version::VersionFormat;

/// Decodes `[major, minor]` (0x35F bytes 2-3, header bytes 10-11, DIDs 0xF180 and 0xF195)
/// as `v<major>.<minor>`: `04 0F` is v4.15.
pub fn decode(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    VersionFormat::MajorMinorDecimal.firmware_version(
        raw,
        "v",
        "an Aurora version is 2 bytes (major, minor)",
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
    fn the_minor_byte_reads_in_decimal() {
        let v = decode(&[0x04, 0x0F]).unwrap();
        assert_eq!(v.display.as_str(), "v4.15");
        assert_eq!(v.comparable.as_slice(), &[4, 15]);
        assert_eq!(v.raw.as_slice(), &[0x04, 0x0F]);
        assert_eq!(decode(&[0x01, 0x17]).unwrap().display.as_str(), "v1.23");
        assert_eq!(decode(&[0x6E, 0x01]).unwrap().display.as_str(), "v110.1");
        assert_eq!(show([4, 16]), "v4.16");
        // Ordering by numbers: v4.9 < v4.15 < v5.0.
        let a = decode(&[4, 9]).unwrap();
        let b = decode(&[4, 15]).unwrap();
        let c = decode(&[5, 0]).unwrap();
        assert!(a.compare(&b).is_lt() && b.compare(&c).is_lt());
    }

    #[test]
    fn anything_but_two_bytes_is_refused() {
        for raw in [
            &[][..],
            &[4],
            &[4, 15, 0],
            &[0x34, 0x12, 0x04, 0x0F, 0xC8, 0x00],
        ] {
            let e = decode(raw).unwrap_err();
            assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR);
            assert!(e.message.contains("2 bytes"), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_byte_of_both_positions_decodes(major in 0u8..=255, minor in 0u8..=255) {
            let v = decode(&[major, minor]).unwrap();
            proptest::prop_assert_eq!(v.display.as_str(), format!("v{major}.{minor}"));
            proptest::prop_assert_eq!(v.comparable.as_slice(), &[u32::from(major), u32::from(minor)]);
        }
    }
}
