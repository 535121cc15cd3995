//! Classic CAN frames as they cross the plugin boundary.

use abi_stable::StableAbi;
use std::fmt;

/// Largest payload of a classic CAN frame, in bytes.
pub const MAX_DATA_LEN: usize = 8;
/// Highest 11-bit (CAN 2.0A) identifier.
pub const MAX_STANDARD_ID: u32 = 0x7FF;
/// Highest 29-bit (CAN 2.0B) identifier.
pub const MAX_EXTENDED_ID: u32 = 0x1FFF_FFFF;

const EXTENDED_FLAG: u32 = 1 << 31;

/// A CAN identifier: 11-bit standard or 29-bit extended.
///
/// Standard `0x123` and extended `0x123` are different identifiers on the wire and
/// compare unequal here.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "wire::RawCanId", into = "wire::RawCanId")
)]
pub struct CanId(u32);

impl CanId {
    /// An 11-bit identifier, or `None` above [`MAX_STANDARD_ID`].
    pub const fn standard(id: u16) -> Option<CanId> {
        if id as u32 <= MAX_STANDARD_ID {
            Some(CanId(id as u32))
        } else {
            None
        }
    }

    /// A 29-bit identifier, or `None` above [`MAX_EXTENDED_ID`].
    pub const fn extended(id: u32) -> Option<CanId> {
        if id <= MAX_EXTENDED_ID {
            Some(CanId(id | EXTENDED_FLAG))
        } else {
            None
        }
    }

    /// The identifier's numeric value, without the format.
    pub const fn raw(self) -> u32 {
        self.0 & !EXTENDED_FLAG
    }

    /// Whether this is a 29-bit identifier.
    pub const fn is_extended(self) -> bool {
        self.0 & EXTENDED_FLAG != 0
    }
}

impl fmt::Debug for CanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prints the identifier as candump does: three hex digits for standard, eight for
/// extended.
impl fmt::Display for CanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_extended() {
            write!(f, "{:08X}", self.raw())
        } else {
            write!(f, "{:03X}", self.raw())
        }
    }
}

/// A classic CAN data frame: an identifier and 0 to 8 data bytes.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "wire::RawCanFrame", into = "wire::RawCanFrame")
)]
pub struct CanFrame {
    id: CanId,
    len: u8,
    data: [u8; MAX_DATA_LEN],
}

impl CanFrame {
    /// A frame with `data` as its payload, or `None` when `data` is longer than 8 bytes.
    pub fn new(id: CanId, data: &[u8]) -> Option<CanFrame> {
        if data.len() > MAX_DATA_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_DATA_LEN];
        buf[..data.len()].copy_from_slice(data);
        Some(CanFrame {
            id,
            len: data.len() as u8,
            data: buf,
        })
    }

    /// The frame's identifier.
    pub const fn id(&self) -> CanId {
        self.id
    }

    /// The payload: exactly the frame's data length code in bytes.
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(MAX_DATA_LEN)]
    }

    /// The data length code (0 to 8).
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the frame carries no data bytes.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prints the frame in candump's compact form, `351#0102030405060708`.
impl fmt::Display for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#", self.id)?;
        for b in self.data() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_ranges_are_enforced() {
        assert_eq!(CanId::standard(0x7FF).map(CanId::raw), Some(0x7FF));
        assert!(CanId::standard(0x800).is_none());
        assert_eq!(
            CanId::extended(MAX_EXTENDED_ID).map(CanId::raw),
            Some(MAX_EXTENDED_ID)
        );
        assert!(CanId::extended(MAX_EXTENDED_ID + 1).is_none());
        assert_ne!(CanId::standard(0x123), CanId::extended(0x123));
    }

    #[test]
    fn frames_keep_exactly_their_payload() {
        let id = CanId::standard(0x351).unwrap();
        let f = CanFrame::new(id, &[1, 2, 3]).unwrap();
        assert_eq!(f.data(), &[1, 2, 3]);
        assert_eq!(f.len(), 3);
        assert!(CanFrame::new(id, &[0; 9]).is_none());
        assert_eq!(f.to_string(), "351#010203");
        let x = CanFrame::new(CanId::extended(0x18FF50E5).unwrap(), &[]).unwrap();
        assert_eq!(x.to_string(), "18FF50E5#");
    }
}

/// Checked serialized forms: a deserialized identifier or frame obeys the same limits as
/// one made with the constructors.
#[cfg(feature = "serde")]
mod wire {
    use super::{CanFrame, CanId, MAX_DATA_LEN};

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct RawCanId {
        id: u32,
        extended: bool,
    }

    impl From<CanId> for RawCanId {
        fn from(id: CanId) -> RawCanId {
            RawCanId {
                id: id.raw(),
                extended: id.is_extended(),
            }
        }
    }

    impl TryFrom<RawCanId> for CanId {
        type Error = String;
        fn try_from(raw: RawCanId) -> Result<CanId, String> {
            let id = if raw.extended {
                CanId::extended(raw.id)
            } else {
                u16::try_from(raw.id).ok().and_then(CanId::standard)
            };
            id.ok_or_else(|| format!("CAN identifier {:#x} out of range", raw.id))
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct RawCanFrame {
        id: CanId,
        data: Vec<u8>,
    }

    impl From<CanFrame> for RawCanFrame {
        fn from(frame: CanFrame) -> RawCanFrame {
            RawCanFrame {
                id: frame.id(),
                data: frame.data().to_vec(),
            }
        }
    }

    impl TryFrom<RawCanFrame> for CanFrame {
        type Error = String;
        fn try_from(raw: RawCanFrame) -> Result<CanFrame, String> {
            CanFrame::new(raw.id, &raw.data).ok_or_else(|| {
                format!(
                    "a CAN frame of {} data bytes, at most {MAX_DATA_LEN} are allowed",
                    raw.data.len()
                )
            })
        }
    }
}
