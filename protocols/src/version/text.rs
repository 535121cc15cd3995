//! Versions written as ASCII text.

use super::{Version, VersionError, VersionFormat, VersionKey};

pub(super) fn decode(bytes: &[u8]) -> Result<Version, VersionError> {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let text = &bytes[..end];
    if text.is_empty() {
        return Err(VersionError::WrongLength {
            format: VersionFormat::Plain,
            expected: "1 or more (not counting padding)",
            actual: 0,
        });
    }
    let mut parts = Vec::new();
    let mut run: Option<(usize, u32)> = None;
    for (offset, &b) in text.iter().enumerate() {
        if !(0x20..=0x7E).contains(&b) {
            return Err(VersionError::NotText { offset, byte: b });
        }
        if b.is_ascii_digit() {
            let digit = u32::from(b - b'0');
            let (start, value) = run.unwrap_or((offset, 0));
            let value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(digit))
                .ok_or(VersionError::NumberTooLarge { offset: start })?;
            run = Some((start, value));
        } else if let Some((_, value)) = run.take() {
            parts.push(value);
        }
    }
    if let Some((_, value)) = run {
        parts.push(value);
    }
    // Every byte is printable ASCII here, so this conversion is lossless.
    let display = String::from_utf8_lossy(text).into_owned();
    if parts.is_empty() {
        return Err(VersionError::NoNumber { text: display });
    }
    Ok(Version::new(display, VersionKey::new(parts)))
}

pub(super) fn encode(parts: &[u32]) -> Result<Vec<u8>, VersionError> {
    if parts.is_empty() {
        return Err(VersionError::WrongPartCount {
            format: VersionFormat::Plain,
            expected: "1 or more",
            actual: 0,
        });
    }
    Ok(parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
        .into_bytes())
}
