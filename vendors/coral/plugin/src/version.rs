//! Coral's versions (`PROTOCOL.md` section 2): 24 bits `0xMMmmBB` over the protocol and in
//! bundles (big-endian), major and minor as a 16-bit little-endian value in 0x35F.

use bmsfw_plugin_api::{ErrorCode, Failure, FirmwareVersion};
use bmsfw_protocols::version::VersionFormat;

/// A full Coral version: major, minor, build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version24(pub [u8; 3]);

impl Version24 {
    /// The version of three big-endian bytes.
    pub fn from_be(bytes: [u8; 3]) -> Version24 {
        Version24(bytes)
    }

    /// Major and minor, as 0x35F carries them.
    pub fn major_minor(self) -> [u8; 2] {
        [self.0[0], self.0[1]]
    }

    /// The two bytes 0x35F carries: `0xMMmm` little-endian.
    pub fn broadcast_bytes(self) -> [u8; 2] {
        [self.0[1], self.0[0]]
    }

    /// The version in the contract's form (decoded from the three bytes).
    pub fn firmware_version(self) -> FirmwareVersion {
        decode_24(&self.0).unwrap_or_else(|_| unreachable!("three bytes always decode"))
    }
}

/// Prints `v1.10 (build FF)`.
impl std::fmt::Display for Version24 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v{}.{:02X} (build {:02X})",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

fn protocol_error(message: String) -> Failure {
    Failure::new(ErrorCode::PROTOCOL_ERROR, message)
}

/// Decodes the two bytes of 0x35F (`10 01` is v1.10) or the three bytes of the protocol
/// and the manifest (`01 10 FF` is v1.10 (build FF)).
pub fn decode(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    match raw.len() {
        2 => decode_broadcast(raw),
        3 => decode_24(raw),
        n => Err(protocol_error(format!(
            "a Coral version is 2 bytes (0x35F, little-endian 0xMMmm) or 3 bytes (0xMMmmBB, \
             big-endian), not {n}"
        ))),
    }
}

/// `[lo, hi]` of the 16-bit value `0xMMmm`: shown `v<MM>.<mm in hex>`, compared as
/// `[MM, mm]`.
fn decode_broadcast(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    let value = u16::from_le_bytes([raw[0], raw[1]]);
    let v = VersionFormat::MajorMinorHex
        .decode(&value.to_be_bytes())
        .map_err(|e| protocol_error(format!("0x35F version: {e}")))?;
    Ok(FirmwareVersion::new(
        raw,
        format!("v{}", v.display()),
        v.key().parts(),
    ))
}

/// `MM mm BB`: shown `v<MM>.<mm in hex> (build BB)`, compared as `[MM, mm, BB]`.
fn decode_24(raw: &[u8]) -> Result<FirmwareVersion, Failure> {
    let v = VersionFormat::MajorMinorHex24
        .decode(raw)
        .map_err(|e| protocol_error(format!("24-bit version: {e}")))?;
    Ok(FirmwareVersion::new(
        raw,
        format!("v{} (build {:02X})", v.display(), raw[2]),
        v.key().parts(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_form_is_little_endian_and_shows_the_minor_in_hex() {
        let v = decode(&[0x10, 0x01]).unwrap();
        assert_eq!(v.display.as_str(), "v1.10");
        assert_eq!(v.comparable.as_slice(), &[1, 0x10]);
        assert_eq!(v.raw.as_slice(), &[0x10, 0x01]);
        // The other byte order would be v16.01: not Coral's rule.
        assert_eq!(decode(&[0x01, 0x10]).unwrap().display.as_str(), "v16.01");
        assert_eq!(decode(&[0x0F, 0x01]).unwrap().display.as_str(), "v1.0F");
    }

    #[test]
    fn the_24_bit_form_keeps_the_build() {
        let v = decode(&[0x01, 0x10, 0xFF]).unwrap();
        assert_eq!(v.display.as_str(), "v1.10 (build FF)");
        assert_eq!(v.comparable.as_slice(), &[1, 16, 255]);
        assert_eq!(Version24([1, 0x10, 0xFF]).to_string(), "v1.10 (build FF)");
        assert_eq!(Version24([1, 0x10, 0xFF]).broadcast_bytes(), [0x10, 0x01]);
        // Builds order: 0x0110FE < 0x0110FF < 0x011100.
        let a = decode(&[1, 0x10, 0xFE]).unwrap();
        let b = decode(&[1, 0x10, 0xFF]).unwrap();
        let c = decode(&[1, 0x11, 0x00]).unwrap();
        assert!(a.compare(&b).is_lt() && b.compare(&c).is_lt());
        // The broadcast form of a version compares equal to its major and minor.
        let broadcast = decode(&Version24([1, 0x10, 0xFF]).broadcast_bytes()).unwrap();
        assert_eq!(
            broadcast.comparable.as_slice(),
            &b.comparable.as_slice()[..2]
        );
    }

    #[test]
    fn other_lengths_are_refused() {
        for raw in [
            &[][..],
            &[1],
            &[1, 2, 3, 4],
            &[0xA1, 0xC0, 0x10, 0x01, 0x64, 0],
        ] {
            let e = decode(raw).unwrap_err();
            assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR);
            assert!(e.message.contains("2 bytes"), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_byte_of_every_position_decodes(a in 0u8..=255, b in 0u8..=255, c in 0u8..=255) {
            let v = decode(&[a, b, c]).unwrap();
            proptest::prop_assert_eq!(v.display.as_str(), format!("v{a}.{b:02X} (build {c:02X})"));
            proptest::prop_assert_eq!(v.comparable.as_slice(), &[u32::from(a), u32::from(b), u32::from(c)]);
            let w = decode(&[a, b]).unwrap();
            proptest::prop_assert_eq!(w.display.as_str(), format!("v{b}.{a:02X}"));
            proptest::prop_assert_eq!(w.comparable.as_slice(), &[u32::from(b), u32::from(a)]);
        }
    }
}
