//! Versions packed into an unsigned integer of up to 32 bits.

use super::{Version, VersionError, VersionFormat, VersionKey, check_ranges};

/// The formats this module handles: every [`VersionFormat`] but text and BCD.
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout {
    Number,
    Hex,
    Pair,
    Triplet,
    Quad,
    MajorMinorDecimal,
    MajorMinorHex,
    Triplet24,
    MajorMinorHex24,
}

impl Layout {
    fn format(self) -> VersionFormat {
        match self {
            Layout::Number => VersionFormat::Number,
            Layout::Hex => VersionFormat::Hex,
            Layout::Pair => VersionFormat::Pair,
            Layout::Triplet => VersionFormat::Triplet,
            Layout::Quad => VersionFormat::Quad,
            Layout::MajorMinorDecimal => VersionFormat::MajorMinorDecimal,
            Layout::MajorMinorHex => VersionFormat::MajorMinorHex,
            Layout::Triplet24 => VersionFormat::Triplet24,
            Layout::MajorMinorHex24 => VersionFormat::MajorMinorHex24,
        }
    }
}

/// Reads 1 to 4 bytes as a big-endian integer.
fn be_value(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// The byte lengths each integer format accepts.
fn accepted_lengths(layout: Layout) -> (std::ops::RangeInclusive<usize>, &'static str) {
    match layout {
        Layout::Number | Layout::Hex => (1..=4, "1 to 4"),
        Layout::MajorMinorDecimal | Layout::MajorMinorHex => (2..=2, "2"),
        Layout::Triplet24 | Layout::MajorMinorHex24 => (3..=3, "3"),
        Layout::Pair | Layout::Triplet | Layout::Quad => (4..=4, "4"),
    }
}

pub(super) fn decode(layout: Layout, bytes: &[u8]) -> Result<Version, VersionError> {
    let (lengths, expected) = accepted_lengths(layout);
    if !lengths.contains(&bytes.len()) {
        return Err(VersionError::WrongLength {
            format: layout.format(),
            expected,
            actual: bytes.len(),
        });
    }
    let v = be_value(bytes);
    let byte = |shift: u32| (v >> shift) & 0xFF;
    let (display, parts) = match layout {
        Layout::Number => (v.to_string(), vec![v]),
        Layout::Hex => (format!("0x{v:08x}"), vec![v]),
        Layout::Pair => {
            let parts = vec![v >> 16, v & 0xFFFF];
            (format!("{}.{}", parts[0], parts[1]), parts)
        }
        Layout::Triplet => {
            let parts = vec![byte(24), byte(16), v & 0xFFFF];
            (format!("{}.{}.{}", parts[0], parts[1], parts[2]), parts)
        }
        Layout::Quad => {
            let parts = vec![byte(24), byte(16), byte(8), byte(0)];
            let display = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[3]);
            (display, parts)
        }
        Layout::MajorMinorDecimal => {
            let parts = vec![byte(8), byte(0)];
            (format!("{}.{}", parts[0], parts[1]), parts)
        }
        Layout::MajorMinorHex => {
            let parts = vec![byte(8), byte(0)];
            (format!("{}.{:02X}", parts[0], parts[1]), parts)
        }
        Layout::Triplet24 => {
            let parts = vec![byte(16), byte(8), byte(0)];
            (format!("{}.{}.{}", parts[0], parts[1], parts[2]), parts)
        }
        Layout::MajorMinorHex24 => {
            let parts = vec![byte(16), byte(8), byte(0)];
            (format!("{}.{:02X}", parts[0], parts[1]), parts)
        }
    };
    Ok(Version::new(display, VersionKey::new(parts)))
}

pub(super) fn encode(layout: Layout, parts: &[u32]) -> Result<Vec<u8>, VersionError> {
    const B: u32 = 0xFF;
    const W: u32 = 0xFFFF;
    let (maxima, expected): (&[u32], &'static str) = match layout {
        Layout::Number | Layout::Hex => (&[u32::MAX], "1"),
        Layout::Pair => (&[W, W], "2"),
        Layout::Triplet => (&[B, B, W], "3"),
        Layout::Quad => (&[B, B, B, B], "4"),
        Layout::MajorMinorDecimal | Layout::MajorMinorHex => (&[B, B], "2"),
        Layout::Triplet24 | Layout::MajorMinorHex24 => (&[B, B, B], "3"),
    };
    if parts.len() != maxima.len() {
        return Err(VersionError::WrongPartCount {
            format: layout.format(),
            expected,
            actual: parts.len(),
        });
    }
    check_ranges(parts, maxima)?;
    let value = match layout {
        Layout::Number | Layout::Hex => parts[0],
        Layout::Pair => (parts[0] << 16) | parts[1],
        Layout::Triplet => (parts[0] << 24) | (parts[1] << 16) | parts[2],
        _ => parts.iter().fold(0u32, |acc, &p| (acc << 8) | p),
    };
    let width = *accepted_lengths(layout).0.end();
    Ok(value.to_be_bytes()[4 - width..].to_vec())
}
