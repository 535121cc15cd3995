//! Alarms and warnings a test can raise on a simulated battery, and how they are
//! encoded in 0x35A and 0x359.

use std::collections::BTreeSet;

/// A condition the battery can report: the 0x35A fields of the BMS-Can definitions.
pub use bmsfw_protocols::bms_can::AlarmField as Alarm;

/// The 0x359 bit of this condition, when it has one.
const fn pylon_bit(alarm: Alarm) -> Option<u16> {
    match alarm {
        Alarm::HighVoltage => Some(1 << 1),
        Alarm::LowVoltage => Some(1 << 2),
        Alarm::HighTemperature | Alarm::HighChargeTemperature => Some(1 << 3),
        Alarm::LowTemperature | Alarm::LowChargeTemperature => Some(1 << 4),
        Alarm::HighDischargeCurrent | Alarm::ShortCircuit => Some(1 << 7),
        Alarm::HighChargeCurrent => Some(1 << 8),
        Alarm::BmsInternal | Alarm::Contactor => Some(1 << 11),
        Alarm::General | Alarm::CellImbalance => None,
    }
}

/// Whether an active alarm of this kind makes the BMS stop charging.
const fn stops_charging(alarm: Alarm) -> bool {
    matches!(
        alarm,
        Alarm::HighVoltage
            | Alarm::HighTemperature
            | Alarm::LowTemperature
            | Alarm::HighChargeTemperature
            | Alarm::LowChargeTemperature
            | Alarm::HighChargeCurrent
            | Alarm::Contactor
            | Alarm::ShortCircuit
            | Alarm::BmsInternal
    )
}

/// Whether an active alarm of this kind makes the BMS stop discharging.
const fn stops_discharging(alarm: Alarm) -> bool {
    matches!(
        alarm,
        Alarm::LowVoltage
            | Alarm::HighTemperature
            | Alarm::LowTemperature
            | Alarm::HighDischargeCurrent
            | Alarm::Contactor
            | Alarm::ShortCircuit
            | Alarm::BmsInternal
    )
}

/// Whether a condition is raised as alarm (0x35A bytes 0-3) or warning (bytes 4-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// An alarm: the BMS acts on it.
    Alarm,
    /// A warning only.
    Warning,
}

/// The conditions currently raised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmSet {
    raised: BTreeSet<(Level, Alarm)>,
}

impl AlarmSet {
    /// Raises `alarm` at `level`.
    pub fn raise(&mut self, level: Level, alarm: Alarm) {
        self.raised.insert((level, alarm));
    }

    /// Clears `alarm` at `level`.
    pub fn clear(&mut self, level: Level, alarm: Alarm) {
        self.raised.remove(&(level, alarm));
    }

    /// Clears everything.
    pub fn clear_all(&mut self) {
        self.raised.clear();
    }

    /// The conditions raised at `level`, in wire order.
    pub fn active(&self, level: Level) -> Vec<Alarm> {
        self.raised
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|&(_, a)| a)
            .collect()
    }

    /// Whether an active alarm (not a warning) forbids charging.
    pub fn blocks_charging(&self) -> bool {
        self.active(Level::Alarm).iter().any(|&a| stops_charging(a))
    }

    /// Whether an active alarm (not a warning) forbids discharging.
    pub fn blocks_discharging(&self) -> bool {
        self.active(Level::Alarm)
            .iter()
            .any(|&a| stops_discharging(a))
    }

    /// The eight bytes of 0x35A: every field `01` when raised, `10` when not; the six
    /// undefined bits of bytes 3 and 7 stay zero.
    pub fn encode_0x35a(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (i, alarm) in Alarm::ALL.into_iter().enumerate() {
            for (base, level) in [(0, Level::Alarm), (4, Level::Warning)] {
                let bits = if self.raised.contains(&(level, alarm)) {
                    0b01
                } else {
                    0b10
                };
                out[base + i / 4] |= bits << (2 * (i % 4));
            }
        }
        out
    }

    /// The protection and warning words of 0x359.
    pub fn encode_0x359(&self) -> (u16, u16) {
        let word = |level| {
            self.active(level)
                .into_iter()
                .filter_map(pylon_bit)
                .fold(0u16, |w, b| w | b)
        };
        (word(Level::Alarm), word(Level::Warning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_raised_reads_all_ok() {
        let set = AlarmSet::default();
        assert_eq!(
            set.encode_0x35a(),
            [0xAA, 0xAA, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02]
        );
        assert_eq!(set.encode_0x359(), (0, 0));
        assert!(!set.blocks_charging() && !set.blocks_discharging());
    }

    #[test]
    fn raised_fields_read_active_at_their_position() {
        let mut set = AlarmSet::default();
        set.raise(Level::Alarm, Alarm::HighVoltage);
        set.raise(Level::Warning, Alarm::CellImbalance);
        set.raise(Level::Warning, Alarm::LowTemperature);
        let b = set.encode_0x35a();
        assert_eq!(b[0], 0b1010_0110);
        assert_eq!(b[3], 0x02);
        assert_eq!(b[5], 0b1010_1001);
        assert_eq!(b[7], 0x01);
        assert_eq!(set.encode_0x359(), (0x0002, 0x0010));
        assert!(set.blocks_charging());
        assert!(!set.blocks_discharging());
        set.clear(Level::Alarm, Alarm::HighVoltage);
        assert_eq!(set.encode_0x35a()[0], 0xAA);
        assert_eq!(
            set.active(Level::Warning),
            vec![Alarm::LowTemperature, Alarm::CellImbalance]
        );
        set.clear_all();
        assert_eq!(set, AlarmSet::default());
    }
}
