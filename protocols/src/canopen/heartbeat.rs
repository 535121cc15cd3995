//! The CANopen heartbeat (CiA 301 error control): a node's NMT state in one byte on
//! identifier 0x700 + node-id, sent at the node's producer heartbeat time. The same
//! identifier with state 0 is the boot-up message, sent once when the node starts.

use super::NodeId;
use bmsfw_plugin_api::CanFrame;

/// The first heartbeat identifier: 0x700 + node-id.
pub const HEARTBEAT_BASE: u32 = 0x700;

/// A node's NMT state, as its heartbeat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmtState {
    /// The boot-up message (0x00): the node has just started.
    BootUp,
    /// Stopped (0x04).
    Stopped,
    /// Operational (0x05).
    Operational,
    /// Pre-operational (0x7F).
    PreOperational,
}

impl NmtState {
    /// The state byte `byte` means, or `None` for any other value.
    pub const fn from_byte(byte: u8) -> Option<NmtState> {
        match byte {
            0x00 => Some(NmtState::BootUp),
            0x04 => Some(NmtState::Stopped),
            0x05 => Some(NmtState::Operational),
            0x7F => Some(NmtState::PreOperational),
            _ => None,
        }
    }
}

/// The node and state a heartbeat or boot-up frame carries; `None` for any other frame:
/// an extended identifier, one outside 0x701 to 0x77F, a length other than one byte, or
/// a state byte CiA 301 does not define.
pub fn heartbeat(frame: &CanFrame) -> Option<(NodeId, NmtState)> {
    let id = frame.id();
    if id.is_extended() || frame.data().len() != 1 {
        return None;
    }
    let node = u8::try_from(id.raw().checked_sub(HEARTBEAT_BASE)?).ok()?;
    Some((NodeId::new(node)?, NmtState::from_byte(frame.data()[0])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn frame(id: u32, data: &[u8]) -> CanFrame {
        CanFrame::new(CanId::standard(id as u16).unwrap(), data).unwrap()
    }

    #[test]
    fn a_heartbeat_names_its_node_and_state() {
        assert_eq!(
            heartbeat(&frame(0x701, &[0x05])),
            Some((NodeId::new(1).unwrap(), NmtState::Operational))
        );
        assert_eq!(
            heartbeat(&frame(0x77F, &[0x7F])),
            Some((NodeId::new(127).unwrap(), NmtState::PreOperational))
        );
        assert_eq!(
            heartbeat(&frame(0x720, &[0x04])).map(|h| h.1),
            Some(NmtState::Stopped)
        );
        assert_eq!(
            heartbeat(&frame(0x720, &[0x00])).map(|h| h.1),
            Some(NmtState::BootUp)
        );
    }

    #[test]
    fn any_other_frame_is_no_heartbeat() {
        for (id, data) in [
            (0x700, &[0x05][..]),
            (0x780, &[0x05]),
            (0x6FF, &[0x05]),
            (0x7E8, &[0x05]),
            (0x701, &[]),
            (0x701, &[0x05, 0x00]),
            (0x701, &[0x01]),
            (0x701, &[0x06]),
            (0x701, &[0x7E]),
        ] {
            assert_eq!(heartbeat(&frame(id, data)), None, "{id:#x} {data:?}");
        }
        let extended = CanFrame::new(CanId::extended(0x701).unwrap(), &[0x05]).unwrap();
        assert_eq!(heartbeat(&extended), None);
    }
}
