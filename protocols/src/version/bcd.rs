//! Binary-coded decimal versions: each byte holds two decimal digits.

use super::{Version, VersionError, VersionFormat, VersionKey, check_ranges};

fn digit_pair(offset: usize, byte: u8) -> Result<u32, VersionError> {
    let (hi, lo) = (byte >> 4, byte & 0x0F);
    if hi > 9 || lo > 9 {
        return Err(VersionError::NotBcd { offset, byte });
    }
    Ok(u32::from(hi) * 10 + u32::from(lo))
}

pub(super) fn decode(bytes: &[u8]) -> Result<Version, VersionError> {
    if bytes.is_empty() || bytes.len() > 4 {
        return Err(VersionError::WrongLength {
            format: VersionFormat::Bcd,
            expected: "1 to 4",
            actual: bytes.len(),
        });
    }
    let parts = bytes
        .iter()
        .enumerate()
        .map(|(offset, &b)| digit_pair(offset, b))
        .collect::<Result<Vec<u32>, _>>()?;
    let display = parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    Ok(Version::new(display, VersionKey::new(parts)))
}

pub(super) fn encode(parts: &[u32]) -> Result<Vec<u8>, VersionError> {
    if parts.is_empty() || parts.len() > 4 {
        return Err(VersionError::WrongPartCount {
            format: VersionFormat::Bcd,
            expected: "1 to 4",
            actual: parts.len(),
        });
    }
    check_ranges(parts, &[99; 4])?;
    // Each part is at most 99 after the range check, so the digits fit in a nibble.
    Ok(parts
        .iter()
        .map(|&p| (((p / 10) as u8) << 4) | (p % 10) as u8)
        .collect())
}
