//! Fault confinement of a simulated CAN controller: the error counters of ISO 11898-1 and
//! the state they put the controller in.

use bmsfw_can::ControllerState;

/// Transmit error counter above which a controller goes bus-off.
pub const BUS_OFF_LIMIT: u16 = 255;
/// Counter value from which a controller is error passive.
pub const ERROR_PASSIVE_LIMIT: u16 = 128;
/// Counter value from which a controller warns (the Linux `ERROR_WARNING` state).
pub const ERROR_WARNING_LIMIT: u16 = 96;

/// The transmit and receive error counters of one controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ErrorCounters {
    /// Transmit error counter (TEC).
    pub tec: u16,
    /// Receive error counter (REC).
    pub rec: u16,
}

impl ErrorCounters {
    /// The fault confinement state these counters put a controller in.
    pub fn state(&self) -> ControllerState {
        if self.tec > BUS_OFF_LIMIT {
            ControllerState::BusOff
        } else if self.tec >= ERROR_PASSIVE_LIMIT || self.rec >= ERROR_PASSIVE_LIMIT {
            ControllerState::ErrorPassive
        } else if self.tec >= ERROR_WARNING_LIMIT || self.rec >= ERROR_WARNING_LIMIT {
            ControllerState::ErrorWarning
        } else {
            ControllerState::ErrorActive
        }
    }

    /// A transmission of this controller was destroyed by an error: TEC + 8.
    pub(crate) fn transmit_error(&mut self) {
        self.tec = self.tec.saturating_add(8).min(BUS_OFF_LIMIT + 1);
    }

    /// A frame this controller sent was carried without error: TEC - 1.
    pub(crate) fn transmit_ok(&mut self) {
        self.tec = self.tec.saturating_sub(1);
    }

    /// This controller saw an error while receiving: REC + 1.
    pub(crate) fn receive_error(&mut self) {
        self.rec = self.rec.saturating_add(1).min(255);
    }

    /// This controller received a frame without error: REC - 1, or back to 119 from
    /// error passive (the standard allows 119 to 127).
    pub(crate) fn receive_ok(&mut self) {
        if self.rec >= ERROR_PASSIVE_LIMIT {
            self.rec = 119;
        } else {
            self.rec = self.rec.saturating_sub(1);
        }
    }

    /// The counters after a forced bus-off.
    pub(crate) fn bus_off() -> ErrorCounters {
        ErrorCounters {
            tec: BUS_OFF_LIMIT + 1,
            rec: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_walk_through_the_states() {
        let mut c = ErrorCounters::default();
        assert_eq!(c.state(), ControllerState::ErrorActive);
        for _ in 0..12 {
            c.transmit_error();
        }
        assert_eq!(c.tec, 96);
        assert_eq!(c.state(), ControllerState::ErrorWarning);
        for _ in 0..4 {
            c.transmit_error();
        }
        assert_eq!(c.tec, 128);
        assert_eq!(c.state(), ControllerState::ErrorPassive);
        c.transmit_ok();
        assert_eq!(c.state(), ControllerState::ErrorWarning);
        for _ in 0..17 {
            c.transmit_error();
        }
        assert_eq!(c.tec, 256);
        assert_eq!(c.state(), ControllerState::BusOff);
    }

    #[test]
    fn receive_counter_drops_back_from_passive() {
        let mut c = ErrorCounters::default();
        for _ in 0..130 {
            c.receive_error();
        }
        assert_eq!(c.state(), ControllerState::ErrorPassive);
        c.receive_ok();
        assert_eq!(c.rec, 119);
        assert_eq!(c.state(), ControllerState::ErrorWarning);
        for _ in 0..300 {
            c.receive_error();
        }
        assert_eq!(c.rec, 255, "receive errors alone never put a node bus-off");
        assert_eq!(c.state(), ControllerState::ErrorPassive);
    }
}
