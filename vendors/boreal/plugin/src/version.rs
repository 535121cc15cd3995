//! Boreal's firmware versions: two BCD bytes, major then minor (`02 15` is 2.15), and the
//! same version as text in object 0x100A (`2.15`).

use bmsfw_plugin_api::{ErrorCode, Failure, FirmwareVersion};
use bmsfw_protocols::version::VersionFormat;
use std::fmt;

/// A version as its two BCD bytes, `[major, minor]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bcd(pub [u8; 2]);

impl Bcd {
    /// The version of two BCD bytes, or `None` when a nibble is above 9.
    pub fn new(bytes: [u8; 2]) -> Option<Bcd> {
        bytes
            .iter()
            .all(|b| b >> 4 <= 9 && b & 0x0F <= 9)
            .then_some(Bcd(bytes))
    }

    /// Major and minor as numbers.
    pub fn parts(self) -> [u32; 2] {
        self.0.map(|b| u32::from(b >> 4) * 10 + u32::from(b & 0x0F))
    }

    /// The version in the plugin contract's form.
    pub fn firmware_version(self) -> FirmwareVersion {
        FirmwareVersion::new(&self.0, self.to_string(), &self.parts())
    }

    /// Reads the text of object 0x100A: `<major>.<minor>`, the major 1 or 2 digits, the
    /// minor exactly 2 (`2.15`, `10.05`).
    pub fn parse_software_version(text: &[u8]) -> Result<Bcd, String> {
        let shown = String::from_utf8_lossy(text);
        let bad = || format!("{shown:?} is not a version of the form 2.15");
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let (major, minor) = text.split_once('.').ok_or_else(bad)?;
        let digits = |s: &str, lens: std::ops::RangeInclusive<usize>| {
            (lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.bytes().fold(0u8, |acc, b| (acc << 4) | (b - b'0')))
        };
        match (digits(major, 1..=2), digits(minor, 2..=2)) {
            (Some(major), Some(minor)) => Ok(Bcd([major, minor])),
            _ => Err(bad()),
        }
    }
}

/// `2.15`, the minor with two digits.
impl fmt::Display for Bcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor] = self.parts();
        write!(f, "{major}.{minor:02}")
    }
}

/// Decodes `[major, minor]` BCD (0x35F bytes 2-3, the image descriptor): `02 15` is
/// 2.15, `02 05` is 2.05.
pub fn decode(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    let protocol = |e: String| {
        Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("a Boreal version is 2 BCD bytes (02 15 is 2.15): {e}"),
        )
    };
    let bytes: [u8; 2] = raw
        .try_into()
        .map_err(|_| protocol(format!("{} bytes given", raw.len())))?;
    // The shared BCD decoder names the offending byte.
    VersionFormat::Bcd
        .decode(&bytes)
        .map_err(|e| protocol(e.to_string()))?;
    Bcd::new(bytes)
        .map(Bcd::firmware_version)
        .ok_or_else(|| protocol(format!("{bytes:02X?} is not BCD")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_bytes_read_as_decimal_digits() {
        let v = decode(&[0x02, 0x15]).unwrap();
        assert_eq!(v.display.as_str(), "2.15");
        assert_eq!(v.comparable.as_slice(), &[2, 15]);
        assert_eq!(v.raw.as_slice(), &[0x02, 0x15]);
        assert_eq!(decode(&[0x02, 0x05]).unwrap().display.as_str(), "2.05");
        assert_eq!(decode(&[0x10, 0x99]).unwrap().display.as_str(), "10.99");
        let order: Vec<FirmwareVersion> = [[0x02, 0x09], [0x02, 0x15], [0x03, 0x00]]
            .iter()
            .map(|b| decode(b).unwrap())
            .collect();
        assert!(order[0].compare(&order[1]).is_lt() && order[1].compare(&order[2]).is_lt());
    }

    #[test]
    fn hex_nibbles_and_other_lengths_are_refused() {
        for raw in [&[0x02, 0x1A][..], &[0xA2, 0x15], &[2], &[], &[2, 0x15, 0]] {
            let e = decode(raw).unwrap_err();
            assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR);
            assert!(e.message.contains("BCD"), "{e}");
        }
    }

    #[test]
    fn the_software_version_text_matches_the_bcd_bytes() {
        assert_eq!(Bcd::parse_software_version(b"2.15"), Ok(Bcd([0x02, 0x15])));
        assert_eq!(Bcd::parse_software_version(b"10.05"), Ok(Bcd([0x10, 0x05])));
        for bad in [
            &b"2.5"[..],
            b"2.150",
            b"215",
            b"v2.15",
            b"2.1x",
            b"",
            b".15",
            b"123.15",
            b"2.15 ",
            &[0xFF, b'.', b'1', b'5'],
        ] {
            let e = Bcd::parse_software_version(bad).unwrap_err();
            assert!(e.contains("2.15"), "{e}");
        }
        assert_eq!(Bcd([0x02, 0x05]).to_string(), "2.05");
    }

    proptest::proptest! {
        #[test]
        fn every_bcd_pair_decodes_and_round_trips_through_its_text(major in 0u8..=99, minor in 0u8..=99) {
            let bytes = [((major / 10) << 4) | (major % 10), ((minor / 10) << 4) | (minor % 10)];
            let v = decode(&bytes).unwrap();
            proptest::prop_assert_eq!(v.comparable.as_slice(), &[u32::from(major), u32::from(minor)]);
            let text = format!("{major}.{minor:02}");
            proptest::prop_assert_eq!(v.display.as_str(), text.as_str());
            proptest::prop_assert_eq!(Bcd::parse_software_version(text.as_bytes()), Ok(Bcd(bytes)));
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..5)) {
            let _ = decode(&raw);
            let _ = Bcd::parse_software_version(&raw);
        }
    }
}
