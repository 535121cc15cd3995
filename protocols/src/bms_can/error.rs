//! Why a BMS-Can broadcast frame was refused.

use super::frame_kind::FrameKind;
use bmsfw_plugin_api::{CanFrame, CanId};
use std::fmt;

/// Why a frame was rejected. Every variant names the frame's identifier (through its
/// kind where it has one); a rejected frame yields no field at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame has another identifier than the kind being decoded (an extended
    /// identifier with the same number included).
    #[error("{kind}: frame {id} is another frame")]
    WrongId {
        /// The kind that was being decoded.
        kind: FrameKind,
        /// The identifier the frame has.
        id: CanId,
    },
    /// A text frame was expected, and the frame is none.
    #[error("frame {id} is no BMS-Can text frame")]
    NotText {
        /// The identifier the frame has.
        id: CanId,
    },
    /// Fewer data bytes than the frame's fields need.
    #[error("{kind}: {len} data bytes, at least {min} needed")]
    TooShort {
        /// The frame's kind.
        kind: FrameKind,
        /// Its data length.
        len: usize,
        /// The minimum accepted.
        min: usize,
    },
    /// A text field holds a byte that is not printable ASCII.
    #[error("{kind}: byte {offset} is 0x{byte:02X}, not printable ASCII")]
    NotAscii {
        /// The frame's kind.
        kind: FrameKind,
        /// Offset of the byte in the frame's data.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A field lies outside the range its unit allows.
    #[error("{kind}: {field} is {value}, above the maximum {max}")]
    OutOfRange {
        /// The frame's kind.
        kind: FrameKind,
        /// The field's name.
        field: &'static str,
        /// The value received.
        value: u32,
        /// The largest valid value.
        max: u32,
    },
}

/// The reason of a [`DecodeError`], without its details: what rejections are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// See [`DecodeError::WrongId`].
    WrongId,
    /// See [`DecodeError::NotText`].
    NotText,
    /// See [`DecodeError::TooShort`].
    TooShort,
    /// See [`DecodeError::NotAscii`].
    NotAscii,
    /// See [`DecodeError::OutOfRange`].
    OutOfRange,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::WrongId => "wrong identifier",
            RejectReason::NotText => "not a text frame",
            RejectReason::TooShort => "too short",
            RejectReason::NotAscii => "not ASCII",
            RejectReason::OutOfRange => "out of range",
        })
    }
}

impl DecodeError {
    /// The frame kind that was rejected (or being decoded, for
    /// [`DecodeError::WrongId`]); `None` for [`DecodeError::NotText`] only, which
    /// [`Telemetry::decode`](super::Telemetry::decode) never returns.
    pub fn kind(&self) -> Option<FrameKind> {
        match *self {
            DecodeError::WrongId { kind, .. }
            | DecodeError::TooShort { kind, .. }
            | DecodeError::NotAscii { kind, .. }
            | DecodeError::OutOfRange { kind, .. } => Some(kind),
            DecodeError::NotText { .. } => None,
        }
    }

    /// The reason, for counting.
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::WrongId { .. } => RejectReason::WrongId,
            DecodeError::NotText { .. } => RejectReason::NotText,
            DecodeError::TooShort { .. } => RejectReason::TooShort,
            DecodeError::NotAscii { .. } => RejectReason::NotAscii,
            DecodeError::OutOfRange { .. } => RejectReason::OutOfRange,
        }
    }
}

/// Refuses a frame whose identifier is not `kind`'s.
pub(crate) fn check_id(kind: FrameKind, frame: &CanFrame) -> Result<(), DecodeError> {
    if FrameKind::from_id(frame.id()) == Some(kind) {
        Ok(())
    } else {
        Err(DecodeError::WrongId {
            kind,
            id: frame.id(),
        })
    }
}

/// Refuses data shorter than [`FrameKind::min_len`].
pub(crate) fn check_len(kind: FrameKind, d: &[u8]) -> Result<(), DecodeError> {
    if d.len() < kind.min_len() {
        return Err(DecodeError::TooShort {
            kind,
            len: d.len(),
            min: kind.min_len(),
        });
    }
    Ok(())
}

/// Refuses `value` above `max`.
pub(crate) fn at_most(
    kind: FrameKind,
    field: &'static str,
    value: u16,
    max: u16,
) -> Result<(), DecodeError> {
    if value > max {
        return Err(DecodeError::OutOfRange {
            kind,
            field,
            value: value.into(),
            max: max.into(),
        });
    }
    Ok(())
}
