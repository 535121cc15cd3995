//! ISO-TP (ISO 15765-2) over classic CAN with normal addressing, as sans-IO state machines.
//!
//! A [`Sender`] segments one message at a time into a first frame and consecutive frames,
//! paced by the peer's flow control; a [`Receiver`] reassembles them and answers with flow
//! control; an [`IsoTpChannel`] combines both on one identifier pair for full-duplex
//! request/response protocols such as UDS.
//!
//! Every type follows the same calling pattern, in the style of quinn-proto:
//!
//! - feed received CAN frames to `handle_frame(now, &frame)`;
//! - drain `poll_transmit(now)` until it returns `None` and put those frames on the bus;
//! - ask `poll_timeout()` for the next instant to come back, and call `handle_timeout(now)`
//!   then (and `poll_transmit` again);
//! - drain `poll_event()` for received messages, completed sends and errors.
//!
//! Nothing is sent on its own: the caller decides pacing. With block size 0 and STmin 0 the
//! sender hands out every consecutive frame back to back, so a caller can fill its transmit
//! queue; with an STmin it hands out the next frame only once the separation has elapsed.
//! ISO-TP has no retransmission: a lost or out-of-order frame aborts the message and the
//! protocol above decides what to repeat.
//!
//! ```
//! use bmsfw_plugin_api::{CanId, Timestamp};
//! use bmsfw_protocols::isotp::{Event, IsoTpChannel, IsoTpConfig};
//!
//! let tester = IsoTpConfig::new(CanId::standard(0x7E0).unwrap(), CanId::standard(0x7E8).unwrap());
//! let mut client = IsoTpChannel::new(tester.clone());
//! let mut server = IsoTpChannel::new(tester.peer());
//! let now = Timestamp::ZERO;
//! client.send(now, vec![0x36; 100]).unwrap();
//! // Stand-in for a bus: move frames until both sides are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(frame) = client.poll_transmit(now) {
//!         server.handle_frame(now, &frame);
//!         moved = true;
//!     }
//!     while let Some(frame) = server.poll_transmit(now) {
//!         client.handle_frame(now, &frame);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(client.poll_event(), Some(Event::Sent));
//! assert_eq!(server.poll_event(), Some(Event::Received(vec![0x36; 100])));
//! ```
//!
//! Not supported: extended and mixed addressing (an address byte before the protocol
//! control information) and CAN FD frame lengths.

mod channel;
mod config;
mod pdu;
mod receiver;
mod sender;
mod st_min;

#[cfg(test)]
mod tests;

pub use channel::IsoTpChannel;
pub use config::{IsoTpConfig, Padding, Timeouts};
pub use pdu::{
    CONSECUTIVE_FRAME_MAX, FIRST_FRAME_12BIT_MAX, FlowStatus, Pdu, PduError, SINGLE_FRAME_MAX,
};
pub use receiver::Receiver;
pub use sender::Sender;
pub use st_min::StMin;

/// Something an ISO-TP endpoint has to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message arrived.
    Received(Vec<u8>),
    /// The message given to `send` has been handed out completely (its last frame went
    /// through `poll_transmit`).
    Sent,
    /// The message being sent was aborted.
    SendFailed(IsoTpError),
    /// The message being received was aborted and its bytes dropped.
    ReceiveFailed(IsoTpError),
}

/// One of the ISO 15765-2 timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The sender's frame was not taken for transmission in time.
    NAs,
    /// The receiver's flow control was not taken for transmission in time.
    NAr,
    /// No flow control reached the sender in time.
    NBs,
    /// No consecutive frame reached the receiver in time.
    NCr,
}

/// Why a message was aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoTpError {
    /// A timer expired.
    #[error("ISO-TP timeout {0:?}")]
    Timeout(Timer),
    /// A consecutive frame carried the wrong sequence number.
    #[error("consecutive frame with sequence number {got:#X}, expected {expected:#X}")]
    WrongSequenceNumber {
        /// The number the receiver expected.
        expected: u8,
        /// The number that arrived.
        got: u8,
    },
    /// The receiver answered the first frame with overflow (FS=2).
    #[error("the receiver refused the message: overflow")]
    Overflow,
    /// The receiver sent more wait frames in a row than allowed (N_WFTmax).
    #[error("more than {max} wait frames in a row")]
    TooManyWaits {
        /// The configured maximum.
        max: u8,
    },
    /// A flow control carried a reserved flow status.
    #[error("flow control with reserved flow status {0:#X}")]
    InvalidFlowStatus(u8),
    /// A first frame announced more than the receiver accepts; it was refused with overflow.
    #[error("a {len}-byte message exceeds the {max}-byte limit")]
    MessageTooLarge {
        /// The announced length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// A new single or first frame arrived in the middle of a segmented message.
    #[error("a new message started before the previous one was complete")]
    Interrupted,
}

/// Why [`Sender::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A message is still being sent.
    #[error("a message is still being sent")]
    Busy,
    /// ISO-TP cannot carry an empty message.
    #[error("an empty message cannot be sent")]
    Empty,
    /// The message is longer than the 32-bit length field allows.
    #[error("a {0}-byte message exceeds the 32-bit ISO-TP length")]
    TooLong(usize),
}

/// Frames still allowed in the current block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockLeft {
    /// Block size 0: no further flow control.
    Unlimited,
    /// This many frames, then a flow control.
    Frames(u8),
}

impl BlockLeft {
    fn from_block_size(bs: u8) -> BlockLeft {
        if bs == 0 {
            BlockLeft::Unlimited
        } else {
            BlockLeft::Frames(bs)
        }
    }

    /// Counts one frame; returns whether the block is now complete.
    fn take_one(&mut self) -> bool {
        match self {
            BlockLeft::Unlimited => false,
            BlockLeft::Frames(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
        }
    }
}
