//! Alarms and warnings a test can raise on a simulated battery, and how they are
//! encoded in 0x35A and 0x359.

use bmsfw_protocols::bms_can::{AlarmStatus, FlagState, Protection, Severity};
use std::collections::BTreeSet;

/// A condition the battery can report: the 0x35A fields of the BMS-Can definitions.
pub use bmsfw_protocols::bms_can::AlarmField as Alarm;

/// The 0x359 condition this one is reported as, when it has one.
const fn pylon_flag(alarm: Alarm) -> Option<Protection> {
    match alarm {
        Alarm::HighVoltage => Some(Protection::HighVoltage),
        Alarm::LowVoltage => Some(Protection::LowVoltage),
        Alarm::HighTemperature | Alarm::HighChargeTemperature => Some(Protection::HighTemperature),
        Alarm::LowTemperature | Alarm::LowChargeTemperature => Some(Protection::LowTemperature),
        Alarm::HighDischargeCurrent | Alarm::ShortCircuit => Some(Protection::DischargeOvercurrent),
        Alarm::HighChargeCurrent => Some(Protection::ChargeOvercurrent),
        Alarm::BmsInternal | Alarm::Contactor => Some(Protection::SystemError),
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

    /// 0x35A: every field `01` (active) when raised, `10` (OK) when not; the six
    /// undefined bits of bytes 3 and 7 stay zero.
    pub fn status_0x35a(&self) -> AlarmStatus {
        let mut status = AlarmStatus::default();
        for alarm in Alarm::ALL {
            for (severity, level) in [
                (Severity::Alarm, Level::Alarm),
                (Severity::Warning, Level::Warning),
            ] {
                let state = if self.raised.contains(&(level, alarm)) {
                    FlagState::Active
                } else {
                    FlagState::Ok
                };
                status.set(severity, alarm, state);
            }
        }
        status
    }

    /// The eight bytes of [`AlarmSet::status_0x35a`].
    pub fn encode_0x35a(&self) -> [u8; 8] {
        self.status_0x35a().raw()
    }

    /// The protection and warning words of 0x359.
    pub fn encode_0x359(&self) -> (u16, u16) {
        let word = |level| {
            self.active(level)
                .into_iter()
                .filter_map(pylon_flag)
                .fold(0u16, |w, p| w | p.mask())
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
