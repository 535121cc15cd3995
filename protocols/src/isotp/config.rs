//! Settings of an ISO-TP endpoint.

use super::StMin;
use bmsfw_plugin_api::CanId;
use std::time::Duration;

/// How frames shorter than 8 bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Frames carry only their meaningful bytes (data length code below 8 where possible).
    None,
    /// Frames are always 8 bytes, the unused bytes set to this value.
    Fill(u8),
}

/// The ISO 15765-2 timers, all 1000 ms by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// N_As: a frame the sender has ready must be taken by
    /// [`poll_transmit`](super::Sender::poll_transmit) within this time, or the message
    /// aborts (the caller's send path stands for the data link).
    pub n_as: Duration,
    /// N_Ar: the same for the receiver's flow-control frames.
    pub n_ar: Duration,
    /// N_Bs: the sender waits this long for a flow-control frame after a first frame, after
    /// the last frame of a block, or after a wait frame.
    pub n_bs: Duration,
    /// N_Cr: the receiver waits this long for the next consecutive frame.
    pub n_cr: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let second = Duration::from_millis(1000);
        Timeouts {
            n_as: second,
            n_ar: second,
            n_bs: second,
            n_cr: second,
        }
    }
}

/// Settings of one ISO-TP endpoint: the identifier pair, padding, what the receiver asks of
/// its peer, and the timers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IsoTpConfig {
    /// Identifier of the frames this endpoint sends (data and its own flow control).
    pub tx_id: CanId,
    /// Identifier of the frames this endpoint listens to; frames with any other
    /// identifier are ignored.
    pub rx_id: CanId,
    /// Padding of transmitted frames. Default: [`Padding::Fill`] with `0xCC`.
    pub padding: Padding,
    /// Block size this endpoint's receiver asks for: consecutive frames between two flow
    /// controls, 0 for all of them at once. Default 0.
    pub block_size: u8,
    /// Separation time this endpoint's receiver asks for. Default 0.
    pub st_min: StMin,
    /// N_WFTmax: how many wait frames (FS=1) in a row the sender accepts before it aborts.
    /// Default 10.
    pub max_wait_frames: u8,
    /// Longest message the receiver accepts; a first frame announcing more is answered
    /// with an overflow flow control (FS=2). Default 1 MiB.
    pub max_message_len: u32,
    /// The timers.
    pub timeouts: Timeouts,
}

impl IsoTpConfig {
    /// Default settings for an endpoint sending on `tx_id` and listening on `rx_id`.
    pub fn new(tx_id: CanId, rx_id: CanId) -> IsoTpConfig {
        IsoTpConfig {
            tx_id,
            rx_id,
            padding: Padding::Fill(0xCC),
            block_size: 0,
            st_min: StMin::ZERO,
            max_wait_frames: 10,
            max_message_len: 1 << 20,
            timeouts: Timeouts::default(),
        }
    }

    /// The settings of the peer endpoint: identifiers swapped, everything else equal.
    pub fn peer(&self) -> IsoTpConfig {
        IsoTpConfig {
            tx_id: self.rx_id,
            rx_id: self.tx_id,
            ..self.clone()
        }
    }
}
