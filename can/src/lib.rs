//! CAN interfaces as the bmsfw engine sees them.
//!
//! [`CanInterface`] is one node's view of one bus. Backends: SocketCAN on a GX, and the
//! bit-timed simulated bus of `bmsfw-sim` for tests and the demo.

pub mod candump;
pub mod interface;
pub mod socketcan;

pub use self::socketcan::{ErrorCounters, SocketCanInterface};
pub use bmsfw_plugin_api::{CanFrame, CanId};
pub use candump::{CandumpError, CandumpReader, CandumpWriter, ErrorFrame, LogEntry, LogRecord};
pub use interface::{
    BusError, CanError, CanEvent, CanFilter, CanInterface, ControllerState, ReceivedFrame,
};
