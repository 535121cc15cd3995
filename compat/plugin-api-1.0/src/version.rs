//! Firmware versions, decoded by the vendor that knows their encoding.

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec},
};
use std::cmp::Ordering;

/// A firmware version: the raw bytes, the vendor's rendering, and a comparable form.
///
/// Vendors encode versions differently (0x35F bytes `04 0F` are "4.15" for one vendor and
/// "4.0F" for another), so the engine never compares rendered strings. It compares
/// `comparable`, lexicographically, and only between versions decoded by the same plugin.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FirmwareVersion {
    /// The bytes the version was decoded from (from 0x35F, the package or the BMS).
    pub raw: RVec<u8>,
    /// How installers should see it, e.g. `v4.15`.
    pub display: RString,
    /// The version as numbers compared left to right (`[4, 15]`); a shorter sequence that
    /// is a prefix of a longer one is the lower version.
    pub comparable: RVec<u32>,
}

impl FirmwareVersion {
    /// A version from its raw bytes, display string and comparable numbers.
    pub fn new(raw: &[u8], display: impl Into<String>, comparable: &[u32]) -> FirmwareVersion {
        FirmwareVersion {
            raw: RVec::from(raw),
            display: RString::from(display.into()),
            comparable: RVec::from(comparable),
        }
    }

    /// Compares two versions of the same plugin by their comparable numbers.
    pub fn compare(&self, other: &FirmwareVersion) -> Ordering {
        self.comparable.as_slice().cmp(other.comparable.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_numbers_not_text() {
        let a = FirmwareVersion::new(&[4, 9], "v4.09", &[4, 9]);
        let b = FirmwareVersion::new(&[4, 15], "v4.0F", &[4, 15]);
        let c = FirmwareVersion::new(&[4], "v4", &[4]);
        assert_eq!(a.compare(&b), Ordering::Less);
        assert_eq!(c.compare(&a), Ordering::Less);
        assert_eq!(b.compare(&b.clone()), Ordering::Equal);
    }
}
