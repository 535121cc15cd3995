//! Decoders for the ways BMS firmware versions are packed into bytes.
//!
//! The catalogue follows fwupd's version formats, plus the two-byte and three-byte layouts
//! seen in BMS-Can frame 0x35F. Each decoder turns raw bytes into a [`Version`]: a display
//! string **and** a [`VersionKey`] that orders versions numerically. Compare keys, never
//! rendered strings: `04 0F` is "4.15" under one vendor's rule and "4.0F" under another's,
//! and both rules agree that it is newer than `04 0E`.
//!
//! Integer-based formats read their bytes **most significant first** (big-endian), which is
//! how the GX reads bytes 2 and 3 of 0x35F. A plugin whose field is little-endian reverses
//! the bytes first, or passes `u32::to_be_bytes(value)`.
//!
//! | format | bytes | example bytes | display | key |
//! |---|---|---|---|---|
//! | [`Plain`](VersionFormat::Plain) | 1 or more printable ASCII | `56 31 2E 30 32` | `V1.02` | `[1, 2]` |
//! | [`Number`](VersionFormat::Number) | 1 to 4 | `00 01 02 03` | `66051` | `[66051]` |
//! | [`Pair`](VersionFormat::Pair) | 4 | `00 01 02 03` | `1.515` | `[1, 515]` |
//! | [`Triplet`](VersionFormat::Triplet) | 4 | `01 02 03 04` | `1.2.772` | `[1, 2, 772]` |
//! | [`Quad`](VersionFormat::Quad) | 4 | `01 02 03 04` | `1.2.3.4` | `[1, 2, 3, 4]` |
//! | [`Bcd`](VersionFormat::Bcd) | 1 to 4 | `02 15` | `2.15` | `[2, 15]` |
//! | [`Hex`](VersionFormat::Hex) | 1 to 4 | `01 02` | `0x00000102` | `[258]` |
//! | [`MajorMinorDecimal`](VersionFormat::MajorMinorDecimal) | 2 | `04 0F` | `4.15` | `[4, 15]` |
//! | [`MajorMinorHex`](VersionFormat::MajorMinorHex) | 2 | `04 0F` | `4.0F` | `[4, 15]` |
//! | [`Triplet24`](VersionFormat::Triplet24) | 3 | `01 10 FF` | `1.16.255` | `[1, 16, 255]` |
//! | [`MajorMinorHex24`](VersionFormat::MajorMinorHex24) | 3 | `01 10 FF` | `1.10` | `[1, 16, 255]` |
//!
//! ```
//! use bmsfw_protocols::version::VersionFormat;
//!
//! // Bytes 2-3 of BMS-Can frame 0x35F.
//! let installed = VersionFormat::MajorMinorHex.decode(&[0x04, 0x0F]).unwrap();
//! let offered = VersionFormat::MajorMinorHex.decode(&[0x04, 0x10]).unwrap();
//! assert_eq!(installed.display(), "4.0F");
//! assert!(offered.key() > installed.key());
//! ```

mod bcd;
mod integer;
mod text;

#[cfg(test)]
mod tests;

use bmsfw_plugin_api::{ErrorCode, Failure, FirmwareVersion};
use std::fmt;

/// A decoded firmware version: what to show and what to compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    display: String,
    key: VersionKey,
}

impl Version {
    /// Builds a version from its parts. Decoders are the usual way to get one.
    pub fn new(display: String, key: VersionKey) -> Version {
        Version { display, key }
    }

    /// The string to show an installer, rendered by the format's rule.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The comparable form.
    pub fn key(&self) -> &VersionKey {
        &self.key
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The comparable form of a version: its numeric parts, most significant first.
///
/// Keys order lexicographically part by part (`[1, 9] < [1, 10] < [2]`); a key that is a
/// prefix of another is the smaller (`[1, 2] < [1, 2, 0]`). Only compare keys produced by
/// the same [`VersionFormat`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey(Vec<u32>);

impl VersionKey {
    /// A key with these parts.
    pub fn new(parts: Vec<u32>) -> VersionKey {
        VersionKey(parts)
    }

    /// The numeric parts, most significant first.
    pub fn parts(&self) -> &[u32] {
        &self.0
    }
}

impl From<Vec<u32>> for VersionKey {
    fn from(parts: Vec<u32>) -> VersionKey {
        VersionKey(parts)
    }
}

/// Why bytes (or parts) are not a version in the requested format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The input has a length the format cannot take.
    #[error("{format:?} takes {expected} bytes, got {actual}")]
    WrongLength {
        /// The format asked for.
        format: VersionFormat,
        /// The lengths the format accepts, in words ("4", "1 to 4", "1 or more").
        expected: &'static str,
        /// The length received.
        actual: usize,
    },
    /// A BCD byte holds a nibble above 9.
    #[error("byte {offset} (0x{byte:02X}) is not two BCD digits: a nibble is above 9")]
    NotBcd {
        /// Offset of the offending byte in the input.
        offset: usize,
        /// The byte itself.
        byte: u8,
    },
    /// A text version holds a byte outside printable ASCII.
    #[error("byte {offset} (0x{byte:02X}) is not printable ASCII")]
    NotText {
        /// Offset of the offending byte in the input.
        offset: usize,
        /// The byte itself.
        byte: u8,
    },
    /// A text version holds no digits at all, so it cannot be compared.
    #[error("text version {text:?} contains no number")]
    NoNumber {
        /// The text that was read.
        text: String,
    },
    /// A run of digits in a text version does not fit in 32 bits.
    #[error("number starting at byte {offset} does not fit in 32 bits")]
    NumberTooLarge {
        /// Offset of the first digit of the run.
        offset: usize,
    },
    /// The encoder was given the wrong number of parts for the format.
    #[error("{format:?} takes {expected} parts, got {actual}")]
    WrongPartCount {
        /// The format asked for.
        format: VersionFormat,
        /// The part counts the format accepts, in words.
        expected: &'static str,
        /// The count received.
        actual: usize,
    },
    /// A part is too large for its field in the format.
    #[error("part {index} is {value}, the format's field holds at most {max}")]
    PartOutOfRange {
        /// Index of the part.
        index: usize,
        /// The value given.
        value: u32,
        /// The largest value the field can hold.
        max: u32,
    },
}

/// A way of packing a firmware version into bytes. See the [module docs](self) for a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionFormat {
    /// Printable ASCII text such as `V1.02b`. Trailing NUL and space padding is dropped from
    /// the display; the key is every run of decimal digits in order (`V1.02b` -> `[1, 2]`).
    /// Rejects other bytes and text without any digit.
    Plain,
    /// An unsigned integer of 1 to 4 bytes, shown in decimal: `01 00` -> "256", key `[256]`.
    Number,
    /// Four bytes as two 16-bit halves, `AABB.CCDD`: `00 01 02 03` -> "1.515".
    Pair,
    /// Four bytes as `AA.BB.CCDD`: `01 02 03 04` -> "1.2.772".
    Triplet,
    /// Four bytes as `AA.BB.CC.DD`: `01 02 03 04` -> "1.2.3.4".
    Quad,
    /// One to four bytes, each two binary-coded decimal digits, one part per byte, shown in
    /// decimal without leading zeros: `02 15` -> "2.15", `02 05` -> "2.5". A nibble above 9
    /// is rejected.
    Bcd,
    /// An unsigned integer of 1 to 4 bytes, shown as `0x` and eight lower-case hex digits:
    /// `01 02` -> "0x00000102", key `[258]`.
    Hex,
    /// Two bytes, major then minor, both shown in decimal: `04 0F` -> "4.15",
    /// `01 17` -> "1.23". This is how the GX shows 0x35F bytes 2-3.
    MajorMinorDecimal,
    /// Two bytes, major in decimal and minor as two upper-case hex digits: `04 0F` ->
    /// "4.0F", `01 17` -> "1.17", `6E 01` -> "110.01". The key is the numeric value of
    /// each byte (`[4, 15]`), so it orders exactly like [`MajorMinorDecimal`](Self::MajorMinorDecimal).
    MajorMinorHex,
    /// Three bytes as `AA.BB.CC`, each in decimal: `01 10 FF` -> "1.16.255".
    Triplet24,
    /// Three bytes shown as major in decimal and minor as two upper-case hex digits, the
    /// third (build) byte not shown: `01 10 FF` -> "1.10", as the GX showed 0x0110FF. The
    /// key keeps all three bytes (`[1, 16, 255]`) so builds still order.
    MajorMinorHex24,
}

impl VersionFormat {
    /// Every format, in the order of the module's table.
    pub const ALL: [VersionFormat; 11] = [
        VersionFormat::Plain,
        VersionFormat::Number,
        VersionFormat::Pair,
        VersionFormat::Triplet,
        VersionFormat::Quad,
        VersionFormat::Bcd,
        VersionFormat::Hex,
        VersionFormat::MajorMinorDecimal,
        VersionFormat::MajorMinorHex,
        VersionFormat::Triplet24,
        VersionFormat::MajorMinorHex24,
    ];

    /// Decodes `bytes` by this format's rule.
    pub fn decode(self, bytes: &[u8]) -> Result<Version, VersionError> {
        match self.codec() {
            Codec::Text => text::decode(bytes),
            Codec::Bcd => bcd::decode(bytes),
            Codec::Integer(layout) => integer::decode(layout, bytes),
        }
    }

    /// Decodes `raw` into the plugin contract's [`FirmwareVersion`]: the raw bytes, the
    /// display prefixed with `prefix` (`"v"` shows `04 0F` in
    /// [`MajorMinorDecimal`](Self::MajorMinorDecimal) as "v4.15") and the key's parts as
    /// its comparable numbers.
    ///
    /// Bytes this format refuses are a `PROTOCOL_ERROR` whose message starts with
    /// `what`, the plugin's words for its version ("an Acme version is 2 bytes (major,
    /// minor)"), then says what was wrong.
    pub fn firmware_version(
        self,
        raw: &[u8],
        prefix: &str,
        what: &str,
    ) -> Result<FirmwareVersion, Failure> {
        let v = self
            .decode(raw)
            .map_err(|e| Failure::new(ErrorCode::PROTOCOL_ERROR, format!("{what}: {e}")))?;
        Ok(FirmwareVersion::new(
            raw,
            format!("{prefix}{}", v.display()),
            v.key().parts(),
        ))
    }

    /// Packs a key's `parts` back into bytes such that [`decode`](Self::decode) yields the
    /// same key. Integer formats of variable width ([`Number`](Self::Number),
    /// [`Hex`](Self::Hex)) encode to 4 bytes, [`Bcd`](Self::Bcd) to one byte per part and
    /// [`Plain`](Self::Plain) to the parts joined by dots (`[1, 2]` -> `"1.2"`).
    pub fn encode(self, parts: &[u32]) -> Result<Vec<u8>, VersionError> {
        match self.codec() {
            Codec::Text => text::encode(parts),
            Codec::Bcd => bcd::encode(parts),
            Codec::Integer(layout) => integer::encode(layout, parts),
        }
    }

    fn codec(self) -> Codec {
        use integer::Layout;
        match self {
            VersionFormat::Plain => Codec::Text,
            VersionFormat::Bcd => Codec::Bcd,
            VersionFormat::Number => Codec::Integer(Layout::Number),
            VersionFormat::Hex => Codec::Integer(Layout::Hex),
            VersionFormat::Pair => Codec::Integer(Layout::Pair),
            VersionFormat::Triplet => Codec::Integer(Layout::Triplet),
            VersionFormat::Quad => Codec::Integer(Layout::Quad),
            VersionFormat::MajorMinorDecimal => Codec::Integer(Layout::MajorMinorDecimal),
            VersionFormat::MajorMinorHex => Codec::Integer(Layout::MajorMinorHex),
            VersionFormat::Triplet24 => Codec::Integer(Layout::Triplet24),
            VersionFormat::MajorMinorHex24 => Codec::Integer(Layout::MajorMinorHex24),
        }
    }
}

/// Which module decodes a format.
enum Codec {
    Text,
    Bcd,
    Integer(integer::Layout),
}

/// Checks that every part fits under its maximum.
fn check_ranges(parts: &[u32], maxima: &[u32]) -> Result<(), VersionError> {
    for (index, (&value, &max)) in parts.iter().zip(maxima).enumerate() {
        if value > max {
            return Err(VersionError::PartOutOfRange { index, value, max });
        }
    }
    Ok(())
}
