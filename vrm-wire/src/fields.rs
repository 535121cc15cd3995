//! Bounded, checked scalar types used inside commands and replies.

use crate::error::clip;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A printable, bounded text: no control characters, at most `MAX` bytes, not empty.
fn check_text(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1 to {max} bytes, is {}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{:?} contains the control character {c:?}",
            clip(s, 32)
        ));
    }
    Ok(())
}

/// A battery serial number: 1 to 64 bytes without control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    /// Checks `s`.
    pub fn new(s: &str) -> Result<Serial, String> {
        check_text(s, crate::limits::MAX_SERIAL)?;
        Ok(Serial(s.to_owned()))
    }
    /// The serial number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Serial {
    type Error = String;
    fn try_from(s: String) -> Result<Serial, String> {
        Serial::new(&s)
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A firmware file name: 1 to 255 bytes, no control characters, no path separators.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    /// Checks `s`.
    pub fn new(s: &str) -> Result<FileName, String> {
        check_text(s, crate::limits::MAX_FILE_NAME)?;
        if s.contains(['/', '\\']) {
            return Err(format!("{:?} contains a path separator", clip(s, 32)));
        }
        Ok(FileName(s.to_owned()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FileName {
    type Error = String;
    fn try_from(s: String) -> Result<FileName, String> {
        FileName::new(&s)
    }
}

impl From<FileName> for String {
    fn from(s: FileName) -> String {
        s.0
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A SHA-256 digest written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(pub [u8; 32]);

impl Sha256Hex {
    /// Parses 64 hex digits (either case).
    pub fn parse(s: &str) -> Result<Sha256Hex, String> {
        if s.len() != 64 {
            return Err(format!(
                "a SHA-256 is 64 hex digits, got {} characters",
                s.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            };
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = h << 4 | l,
                _ => return Err(format!("character {} is not a hex digit", i * 2)),
            }
        }
        Ok(Sha256Hex(out))
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = String;
    fn try_from(s: String) -> Result<Sha256Hex, String> {
        Sha256Hex::parse(&s)
    }
}

impl From<Sha256Hex> for String {
    fn from(d: Sha256Hex) -> String {
        d.to_string()
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_texts() {
        assert!(Serial::new("SN-0042").is_ok());
        assert!(Serial::new("").is_err());
        assert!(Serial::new("a\u{7}").is_err());
        assert!(Serial::new(&"x".repeat(65)).is_err());
        assert!(FileName::new("fw 2.1.bin").is_ok());
        assert!(FileName::new("../fw.bin").is_err());
        assert!(FileName::new("a\\b").is_err());
    }

    #[test]
    fn sha256_hex() {
        let text = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let d = Sha256Hex::parse(text).unwrap();
        assert_eq!(d.0[0], 0xba);
        assert_eq!(d.to_string(), text);
        assert_eq!(Sha256Hex::parse(&text.to_uppercase()).unwrap(), d);
        assert!(Sha256Hex::parse(&text[..62]).unwrap_err().contains("64"));
        let bad = format!("{}g", &text[..63]);
        assert!(Sha256Hex::parse(&bad).unwrap_err().contains("62"));
        assert!(Sha256Hex::parse(&"é".repeat(32)).is_err());
    }
}
