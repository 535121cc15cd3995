//! The async CAN interface trait shared by every backend.

use async_trait::async_trait;
use bmsfw_plugin_api::{CanFrame, CanId};
use tokio::time::Instant;

/// Fault confinement state of a CAN controller (ISO 11898-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControllerState {
    /// Normal operation: error counters below 96.
    ErrorActive,
    /// An error counter reached 96.
    ErrorWarning,
    /// An error counter reached 128: the node may only send passive error flags.
    ErrorPassive,
    /// The transmit error counter passed 255: the node has left the bus.
    BusOff,
    /// The interface is down or detached.
    Stopped,
}

/// A bus error reported by the controller (a SocketCAN error frame, or an injected
/// fault on the simulated bus).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusError {
    /// What the controller reported, in words.
    pub description: String,
    /// The error frame itself, class bits and details, for logs.
    pub frame: crate::candump::ErrorFrame,
    /// When it was seen.
    pub at: Instant,
}

/// A frame as received, with the time the bus finished carrying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The frame.
    pub frame: CanFrame,
    /// End of frame on the bus (virtual time on the simulated bus).
    pub at: Instant,
}

/// What an interface delivers to its reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanEvent {
    /// A data frame.
    Frame(ReceivedFrame),
    /// A bus error.
    Error(BusError),
    /// The controller changed state.
    State(ControllerState),
}

/// An acceptance filter: a frame passes when `frame_id & mask == id & mask` and the
/// identifier formats match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CanFilter {
    /// Identifier to match (its format counts).
    pub id: CanId,
    /// Bits of the identifier that must match.
    pub mask: u32,
}

impl CanFilter {
    /// Whether `id` passes this filter.
    pub fn accepts(&self, id: CanId) -> bool {
        id.is_extended() == self.id.is_extended()
            && (id.raw() & self.mask) == (self.id.raw() & self.mask)
    }
}

/// Why an interface operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CanError {
    /// The operating system refused or failed the operation.
    #[error("CAN interface {interface}: {source}")]
    Io {
        /// Interface name, such as `can0`.
        interface: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The controller is bus-off and cannot send.
    #[error("CAN interface {interface} is bus-off")]
    BusOff {
        /// Interface name.
        interface: String,
    },
    /// The interface was closed or detached from its bus.
    #[error("CAN interface {interface} is closed")]
    Closed {
        /// Interface name.
        interface: String,
    },
}

/// One node's view of one CAN bus.
///
/// Methods take `&self` so one task can read while another writes; backends synchronise
/// internally. Every frame the node itself sends is not echoed back to it.
#[async_trait]
pub trait CanInterface: Send + Sync + 'static {
    /// Interface name, such as `can0` or `sim0`.
    fn name(&self) -> &str;

    /// Queues `frame` for transmission; returns once the backend has accepted it (its
    /// transmit queue is bounded, so a fast sender is paced by the bus).
    async fn send(&self, frame: CanFrame) -> Result<(), CanError>;

    /// Queues `frames` in order, as [`CanInterface::send`] would one by one; a backend
    /// may hand them to the kernel in one call. On an error, returns how many frames
    /// before it were queued, and the error; the frames after it were not tried.
    async fn send_batch(&self, frames: &[CanFrame]) -> Result<(), (usize, CanError)> {
        for (i, frame) in frames.iter().enumerate() {
            self.send(*frame).await.map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// The next event seen on the bus by this node.
    async fn recv(&self) -> Result<CanEvent, CanError>;

    /// Replaces the acceptance filters; an empty list accepts every frame.
    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError>;

    /// The configured nominal bit rate in bit/s, when the backend can tell.
    fn bitrate(&self) -> Option<u32>;

    /// The controller's current fault confinement state.
    fn controller_state(&self) -> ControllerState;
}
