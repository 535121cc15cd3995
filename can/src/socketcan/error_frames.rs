//! Decoding of SocketCAN error frames into words and controller states.
//!
//! A CAN controller driver reports bus trouble as error frames: a class bitmask in the
//! identifier (`CAN_ERR_*` in `linux/can/error.h`) and details in the eight data bytes.
//! The socketcan crate decodes the bits; this module turns the result into what the
//! engine logs ([`DecodedError::description`]) and into the fault confinement state the
//! frame announces, if any.

use crate::candump::ErrorFrame;
use crate::interface::ControllerState;
use socketcan::{CanErrorFrame, EmbeddedFrame, errors::ControllerProblems};

/// What one error frame says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodedError {
    /// Every cause the frame carries, in words, such as
    /// `controller problem: tx passive; error counters: tx=128, rx=0`.
    pub description: String,
    /// The controller state the frame announces, when it announces one.
    pub state: Option<ControllerState>,
    /// The frame's class bits and details, as read.
    pub raw: ErrorFrame,
}

/// Decodes `frame`.
pub(crate) fn decode_error_frame(frame: CanErrorFrame) -> DecodedError {
    let raw = ErrorFrame::from_kernel(frame.error_bits(), EmbeddedFrame::data(&frame));
    let error = frame.into_error();
    let state = if error.is_bus_off() {
        Some(ControllerState::BusOff)
    } else if let Some(problems) = error.controller() {
        state_from_controller_problems(problems).or_else(|| {
            // A controller report without a state bit (overflow only) after a restart
            // still means the controller is back on the bus.
            error.is_restarted().then_some(ControllerState::ErrorActive)
        })
    } else if error.is_restarted() {
        Some(ControllerState::ErrorActive)
    } else {
        None
    };
    DecodedError {
        description: error.to_string(),
        state,
        raw,
    }
}

/// The state named by a controller-problem byte (`data[1]` with `CAN_ERR_CRTL`).
///
/// The kernel sets the receive and transmit bits of the new state together when both
/// directions agree and only the worse one otherwise, so the worst state present wins.
fn state_from_controller_problems(problems: ControllerProblems) -> Option<ControllerState> {
    if problems.intersects(ControllerProblems::RX_PASSIVE | ControllerProblems::TX_PASSIVE) {
        Some(ControllerState::ErrorPassive)
    } else if problems.intersects(ControllerProblems::RX_WARNING | ControllerProblems::TX_WARNING) {
        Some(ControllerState::ErrorWarning)
    } else if problems.contains(ControllerProblems::ACTIVE) {
        Some(ControllerState::ErrorActive)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Class bits and data-byte values of `linux/can/error.h`.
    const CAN_ERR_LOSTARB: u32 = 0x0000_0002;
    const CAN_ERR_CRTL: u32 = 0x0000_0004;
    const CAN_ERR_PROT: u32 = 0x0000_0008;
    const CAN_ERR_ACK: u32 = 0x0000_0020;
    const CAN_ERR_BUSOFF: u32 = 0x0000_0040;
    const CAN_ERR_RESTARTED: u32 = 0x0000_0100;
    const CAN_ERR_CNT: u32 = 0x0000_0200;
    const CRTL_RX_OVERFLOW: u8 = 0x01;
    const CRTL_RX_WARNING: u8 = 0x04;
    const CRTL_TX_WARNING: u8 = 0x08;
    const CRTL_RX_PASSIVE: u8 = 0x10;
    const CRTL_TX_PASSIVE: u8 = 0x20;
    const CRTL_ACTIVE: u8 = 0x40;
    const PROT_STUFF: u8 = 0x04;
    const PROT_LOC_ACK: u8 = 0x19;

    fn decode(class: u32, data: &[u8]) -> DecodedError {
        decode_error_frame(CanErrorFrame::new_error(class, data).expect("at most 8 bytes"))
    }

    #[test]
    fn the_raw_frame_is_kept_for_logs() {
        const CAN_ERR_BUSERROR: u32 = 0x0000_0080;
        let bus_error = decode(
            CAN_ERR_PROT | CAN_ERR_BUSERROR,
            &[0, 0, PROT_STUFF, PROT_LOC_ACK],
        );
        assert_eq!(
            bus_error.raw,
            ErrorFrame {
                class: CAN_ERR_PROT | CAN_ERR_BUSERROR,
                data: [0, 0, PROT_STUFF, PROT_LOC_ACK, 0, 0, 0, 0],
            }
        );
        assert!(bus_error.raw.is_bus_error());
    }

    #[test]
    fn controller_state_changes_are_recognised() {
        let passive = decode(
            CAN_ERR_CRTL | CAN_ERR_CNT,
            &[0, CRTL_TX_PASSIVE, 0, 0, 0, 0, 128, 3],
        );
        assert_eq!(passive.state, Some(ControllerState::ErrorPassive));
        assert!(
            passive.description.contains("tx passive"),
            "{}",
            passive.description
        );
        assert!(
            passive.description.contains("tx=128"),
            "{}",
            passive.description
        );

        let warning = decode(CAN_ERR_CRTL, &[0, CRTL_RX_WARNING | CRTL_TX_WARNING]);
        assert_eq!(warning.state, Some(ControllerState::ErrorWarning));

        let receive_passive = decode(CAN_ERR_CRTL, &[0, CRTL_RX_PASSIVE]);
        assert_eq!(receive_passive.state, Some(ControllerState::ErrorPassive));
        assert!(
            receive_passive.description.contains("rx passive"),
            "{}",
            receive_passive.description
        );

        let worst_wins = decode(CAN_ERR_CRTL, &[0, CRTL_RX_WARNING | CRTL_TX_PASSIVE]);
        assert_eq!(worst_wins.state, Some(ControllerState::ErrorPassive));

        let active = decode(CAN_ERR_CRTL, &[0, CRTL_ACTIVE]);
        assert_eq!(active.state, Some(ControllerState::ErrorActive));
        assert!(
            active.description.contains("back to error active"),
            "{}",
            active.description
        );
    }

    #[test]
    fn bus_off_and_restart_are_recognised() {
        let off = decode(CAN_ERR_BUSOFF, &[]);
        assert_eq!(off.state, Some(ControllerState::BusOff));
        assert_eq!(off.description, "bus off");

        let restarted = decode(CAN_ERR_RESTARTED, &[]);
        assert_eq!(restarted.state, Some(ControllerState::ErrorActive));

        let restarted_with_overflow =
            decode(CAN_ERR_CRTL | CAN_ERR_RESTARTED, &[0, CRTL_RX_OVERFLOW]);
        assert_eq!(
            restarted_with_overflow.state,
            Some(ControllerState::ErrorActive)
        );
    }

    #[test]
    fn errors_without_a_state_change_only_describe() {
        let overflow = decode(CAN_ERR_CRTL, &[0, CRTL_RX_OVERFLOW]);
        assert_eq!(overflow.state, None);
        assert!(
            overflow.description.contains("receive buffer overflow"),
            "{}",
            overflow.description
        );

        let no_ack = decode(
            CAN_ERR_ACK | CAN_ERR_PROT,
            &[0, 0, PROT_STUFF, PROT_LOC_ACK],
        );
        assert_eq!(no_ack.state, None);
        assert!(
            no_ack.description.contains("no ack"),
            "{}",
            no_ack.description
        );
        assert!(
            no_ack.description.contains("stuff"),
            "{}",
            no_ack.description
        );

        let arbitration = decode(CAN_ERR_LOSTARB, &[7]);
        assert_eq!(arbitration.state, None);
        assert!(
            arbitration
                .description
                .contains("arbitration lost after 7 bits")
        );
    }

    proptest! {
        #[test]
        fn any_error_frame_decodes_to_a_description(
            class in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..=8),
        ) {
            let decoded = decode(class, &data);
            prop_assert!(!decoded.description.is_empty());
            if class & CAN_ERR_BUSOFF != 0 {
                prop_assert_eq!(decoded.state, Some(ControllerState::BusOff));
            }
        }
    }
}
