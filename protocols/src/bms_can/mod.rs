//! BMS-Can, the broadcast a battery sends its GX: which frames exist, what they must
//! carry, and where each alarm field sits.
//!
//! These are the definitions shared by every decoder and encoder of the broadcast; the
//! byte-level encoding and decoding live with their users (the engine decodes, the
//! simulated batteries encode), written independently so each checks the other.

mod alarm_field;
mod frame_kind;

pub use alarm_field::AlarmField;
pub use frame_kind::{FrameKind, Requirement};
