//! The two frames a GX device sends on BMS-Can: the keep-alive 0x305 and the
//! identification 0x307. Batteries expect them; the battery's own broadcast is in
//! [`FrameKind`](super::FrameKind).

use bmsfw_plugin_api::{CanFrame, CanId};

/// 11-bit identifier of the keep-alive frame.
pub const KEEP_ALIVE_ID: u16 = 0x305;
/// 11-bit identifier of the identification frame.
pub const IDENTIFICATION_ID: u16 = 0x307;

/// The marker a GX puts in bytes 4-6 of 0x307.
pub const GX_MARKER: [u8; 3] = *b"VIC";

/// Why a GX frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GxFrameError {
    /// The frame has another identifier (an extended one with the same number
    /// included).
    #[error("frame {id} is not 0x{expected:03X}")]
    WrongId {
        /// The identifier being decoded.
        expected: u16,
        /// The frame's identifier.
        id: CanId,
    },
    /// 0x307 shorter than the marker's end.
    #[error("0x307 GX identification: {len} data bytes, at least 7 needed")]
    TooShort {
        /// The frame's data length.
        len: usize,
    },
    /// 0x307 without `'VIC'` in bytes 4-6.
    #[error("0x307 GX identification: bytes 4-6 are {found:02X?}, not 'VIC'")]
    NoMarker {
        /// The bytes found.
        found: [u8; 3],
    },
}

fn standard(id: u16, data: &[u8; 8]) -> CanFrame {
    // Both identifiers are below 0x800 and the data is 8 bytes: neither can fail.
    let id = CanId::standard(id).unwrap_or_else(|| unreachable!());
    CanFrame::new(id, data).unwrap_or_else(|| unreachable!())
}

fn check_id(expected: u16, frame: &CanFrame) -> Result<(), GxFrameError> {
    let id = frame.id();
    if id.is_extended() || id.raw() != u32::from(expected) {
        return Err(GxFrameError::WrongId { expected, id });
    }
    Ok(())
}

/// Whether `frame` is a GX keep-alive or identification (by identifier alone, as a
/// node following another GX's keep-alive must tell).
pub fn is_gx_frame(frame: &CanFrame) -> bool {
    let id = frame.id();
    !id.is_extended()
        && (id.raw() == u32::from(KEEP_ALIVE_ID) || id.raw() == u32::from(IDENTIFICATION_ID))
}

/// 0x305: the GX's keep-alive. It carries nothing a battery reads.
///
/// Encoded as eight zero bytes. Not canonical: any payload decodes, since senders
/// differ and the content means nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepAlive;

impl KeepAlive {
    /// Decodes 0x305, whatever its data.
    pub fn decode(frame: &CanFrame) -> Result<KeepAlive, GxFrameError> {
        check_id(KEEP_ALIVE_ID, frame)?;
        Ok(KeepAlive)
    }

    /// Encodes eight zero bytes.
    pub fn encode(&self) -> CanFrame {
        standard(KEEP_ALIVE_ID, &[0; 8])
    }
}

/// 0x307: the GX's identification, `'V','I','C'` in bytes 4-6.
///
/// Encoded as eight bytes, all but the marker zero. Not canonical: bytes 0-3 and 7 are
/// not read, and a 7-byte frame decodes too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GxIdentification;

impl GxIdentification {
    /// Decodes 0x307: at least seven bytes, the marker in bytes 4-6.
    pub fn decode(frame: &CanFrame) -> Result<GxIdentification, GxFrameError> {
        check_id(IDENTIFICATION_ID, frame)?;
        let d = frame.data();
        let Some(marker) = d.get(4..7) else {
            return Err(GxFrameError::TooShort { len: d.len() });
        };
        if marker != GX_MARKER {
            return Err(GxFrameError::NoMarker {
                found: [marker[0], marker[1], marker[2]],
            });
        }
        Ok(GxIdentification)
    }

    /// Encodes `00 00 00 00 'V' 'I' 'C' 00`.
    pub fn encode(&self) -> CanFrame {
        let [v, i, c] = GX_MARKER;
        standard(IDENTIFICATION_ID, &[0, 0, 0, 0, v, i, c, 0])
    }
}
