//! Dotted numeric versions (`3.60`, `1.2.0`) as configuration files write them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Most parts a dotted version may have.
pub const MAX_PARTS: usize = 8;

/// A version written as numbers separated by dots, with an optional leading `v`, compared
/// part by part (`1.10` > `1.9`; `1.2` < `1.2.0`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DottedVersion(Vec<u32>);

impl DottedVersion {
    /// The version's numbers.
    pub fn parts(&self) -> &[u32] {
        &self.0
    }
}

/// Why a dotted version did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DottedVersionError {
    /// Nothing to parse.
    #[error("empty version")]
    Empty,
    /// A part is not a decimal number that fits 32 bits.
    #[error("part {index} ({part:?}) of version {text:?} is not a number")]
    NotANumber {
        /// The whole text.
        text: String,
        /// 1-based index of the part.
        index: usize,
        /// The part.
        part: String,
    },
    /// More than [`MAX_PARTS`] parts.
    #[error("version {text:?} has more than {MAX_PARTS} parts")]
    TooManyParts {
        /// The whole text.
        text: String,
    },
}

impl FromStr for DottedVersion {
    type Err = DottedVersionError;

    fn from_str(s: &str) -> Result<DottedVersion, DottedVersionError> {
        let body = s.strip_prefix('v').unwrap_or(s);
        if body.is_empty() {
            return Err(DottedVersionError::Empty);
        }
        let mut parts = Vec::new();
        for (i, part) in body.split('.').enumerate() {
            if parts.len() == MAX_PARTS {
                return Err(DottedVersionError::TooManyParts { text: s.to_owned() });
            }
            let ok = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            let n = ok.then(|| part.parse::<u32>().ok()).flatten();
            match n {
                Some(n) => parts.push(n),
                None => {
                    return Err(DottedVersionError::NotANumber {
                        text: s.to_owned(),
                        index: i + 1,
                        part: part.chars().take(32).collect(),
                    });
                }
            }
        }
        Ok(DottedVersion(parts))
    }
}

impl From<Vec<u32>> for DottedVersion {
    fn from(parts: Vec<u32>) -> DottedVersion {
        DottedVersion(parts)
    }
}

impl fmt::Display for DottedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for DottedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DottedVersion, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for DottedVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_compares_numerically() {
        let v = |s: &str| s.parse::<DottedVersion>().unwrap();
        assert_eq!(v("v3.60").parts(), &[3, 60]);
        assert!(v("1.10") > v("1.9"));
        assert!(v("1.2") < v("1.2.0"));
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert!(matches!(
            "1..2".parse::<DottedVersion>(),
            Err(DottedVersionError::NotANumber { index: 2, .. })
        ));
        assert!("1.x".parse::<DottedVersion>().is_err());
        assert!("+1".parse::<DottedVersion>().is_err());
        assert!("".parse::<DottedVersion>().is_err());
        assert!("99999999999".parse::<DottedVersion>().is_err());
        assert!("1.2.3.4.5.6.7.8.9".parse::<DottedVersion>().is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(v) = s.parse::<DottedVersion>() {
                prop_assert_eq!(v.to_string().parse::<DottedVersion>().unwrap(), v);
            }
        }

        #[test]
        fn display_parses_back(parts in proptest::collection::vec(any::<u32>(), 1..=MAX_PARTS)) {
            let v = DottedVersion::from(parts.clone());
            let back = v.to_string().parse::<DottedVersion>().unwrap();
            prop_assert_eq!(back.parts(), &parts[..]);
        }
    }
}
