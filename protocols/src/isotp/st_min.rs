//! STmin, the minimum separation time between consecutive frames.

use std::time::Duration;

/// The separation time a receiver asks for between consecutive frames, as carried in byte 2
/// of a flow-control frame.
///
/// | byte | meaning |
/// |---|---|
/// | `0x00`-`0x7F` | 0 to 127 ms |
/// | `0xF1`-`0xF9` | 100 to 900 us |
/// | anything else | reserved: treated as 127 ms, as ISO 15765-2 requires of a sender |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StMin(u8);

impl StMin {
    /// No separation: consecutive frames may go back to back.
    pub const ZERO: StMin = StMin(0);

    /// `ms` milliseconds, or `None` above 127.
    pub const fn millis(ms: u8) -> Option<StMin> {
        if ms <= 0x7F { Some(StMin(ms)) } else { None }
    }

    /// `hundreds` times 100 microseconds, or `None` outside 1..=9.
    pub const fn hundreds_of_micros(hundreds: u8) -> Option<StMin> {
        if hundreds >= 1 && hundreds <= 9 {
            Some(StMin(0xF0 + hundreds))
        } else {
            None
        }
    }

    /// The value as received on the wire; reserved values are kept as they are and read as
    /// 127 ms by [`duration`](Self::duration).
    pub const fn from_byte(byte: u8) -> StMin {
        StMin(byte)
    }

    /// The byte to put on the wire.
    pub const fn to_byte(self) -> u8 {
        self.0
    }

    /// Whether the byte is one of the reserved values.
    pub const fn is_reserved(self) -> bool {
        !matches!(self.0, 0x00..=0x7F | 0xF1..=0xF9)
    }

    /// The separation time to honour.
    pub const fn duration(self) -> Duration {
        match self.0 {
            ms @ 0x00..=0x7F => Duration::from_millis(ms as u64),
            us @ 0xF1..=0xF9 => Duration::from_micros((us - 0xF0) as u64 * 100),
            _ => Duration::from_millis(127),
        }
    }
}

impl Default for StMin {
    fn default() -> StMin {
        StMin::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_to_its_standard_duration() {
        for b in 0u8..=0xFF {
            let d = StMin::from_byte(b).duration();
            let want = match b {
                0x00..=0x7F => Duration::from_millis(u64::from(b)),
                0xF1..=0xF9 => Duration::from_micros(u64::from(b - 0xF0) * 100),
                _ => Duration::from_millis(127),
            };
            assert_eq!(d, want, "STmin byte 0x{b:02X}");
            assert_eq!(StMin::from_byte(b).to_byte(), b);
        }
        assert_eq!(
            StMin::from_byte(0xF1).duration(),
            Duration::from_micros(100)
        );
        assert_eq!(
            StMin::from_byte(0xF9).duration(),
            Duration::from_micros(900)
        );
        assert_eq!(
            StMin::from_byte(0x80).duration(),
            Duration::from_millis(127)
        );
        assert_eq!(
            StMin::from_byte(0xF0).duration(),
            Duration::from_millis(127)
        );
        assert_eq!(
            StMin::from_byte(0xFA).duration(),
            Duration::from_millis(127)
        );
        assert!(StMin::from_byte(0xF0).is_reserved());
        assert!(!StMin::from_byte(0xF5).is_reserved());
    }

    #[test]
    fn constructors_refuse_unencodable_values() {
        assert_eq!(StMin::millis(127).map(StMin::to_byte), Some(0x7F));
        assert!(StMin::millis(128).is_none());
        assert_eq!(StMin::hundreds_of_micros(3).map(StMin::to_byte), Some(0xF3));
        assert!(StMin::hundreds_of_micros(0).is_none());
        assert!(StMin::hundreds_of_micros(10).is_none());
    }
}
