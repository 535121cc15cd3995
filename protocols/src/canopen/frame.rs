//! SDO frames (CiA 301): typed, parsed from untrusted bytes, and encoded.
//!
//! Every SDO frame carries exactly 8 data bytes; byte 0 is the command: the client or
//! server command specifier in bits 7 to 5, then flags. Multi-byte fields are
//! little-endian.
//!
//! | client request | byte 0 | then |
//! |---|---|---|
//! | download segment | `000t nnnc` | 7 - n data bytes |
//! | initiate download | `001x nnes` | index, sub-index, up to 4 data bytes (e = 1) or the size (s = 1) |
//! | initiate upload | `0100 0000` | index, sub-index |
//! | upload segment | `011t 0000` | - |
//! | abort | `1000 0000` | index, sub-index, abort code |
//! | initiate block download | `110x xcs0` | index, sub-index, size (s = 1); c = client supports CRC |
//! | block segment | `c` + sequence 1..127 | 7 data bytes; c = last segment |
//! | end block download | `110n nnx1` | CRC-16; n = unused bytes of the last segment |
//!
//! | server response | byte 0 | then |
//! |---|---|---|
//! | upload segment | `000t nnnc` | 7 - n data bytes |
//! | download segment | `001t 0000` | - |
//! | initiate upload | `010x nnes` | index, sub-index, up to 4 data bytes (e = 1) or the size (s = 1) |
//! | initiate download | `0110 0000` | index, sub-index |
//! | abort | `1000 0000` | index, sub-index, abort code |
//! | initiate block download | `101x xc00` | index, sub-index, block size; c = server supports CRC |
//! | end block download | `101x xx01` | - |
//! | block acknowledgement | `101x xx10` | last in-order sequence received, next block size |
//!
//! Reserved bits (`x`) are written as 0 and ignored when read, as CANopen devices do.
//! Block upload (client specifier 5, server specifier 6) is not supported: it parses as
//! [`SdoFrameError::BlockUpload`], which a server answers with
//! [`AbortCode::InvalidCommand`].

use super::{AbortCode, ObjectAddress};

/// Data bytes of every SDO frame.
pub const SDO_FRAME_LEN: usize = 8;
/// Data bytes of a segment (segmented and block transfers).
pub const SEGMENT_DATA_LEN: usize = 7;
/// Most bytes an expedited transfer carries in its initiate frame.
pub const EXPEDITED_MAX: usize = 4;
/// Largest block size (segments per sub-block) and sequence number.
pub const MAX_BLOCK_SIZE: u8 = 127;

/// The toggle bit of segmented transfers (bit 4 of byte 0): 0 on the first segment,
/// alternating after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Toggle {
    /// Bit 4 clear.
    Zero,
    /// Bit 4 set.
    One,
}

impl Toggle {
    /// The other value.
    pub const fn flipped(self) -> Toggle {
        match self {
            Toggle::Zero => Toggle::One,
            Toggle::One => Toggle::Zero,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Toggle::Zero => 0,
            Toggle::One => 0x10,
        }
    }

    const fn of(byte: u8) -> Toggle {
        if byte & 0x10 == 0 {
            Toggle::Zero
        } else {
            Toggle::One
        }
    }
}

/// Whether more segments follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Continuation {
    /// More segments follow.
    More,
    /// This is the last segment of the transfer.
    Last,
}

impl Continuation {
    const fn from_flag(set: bool) -> Continuation {
        if set {
            Continuation::Last
        } else {
            Continuation::More
        }
    }

    const fn is_last(self) -> bool {
        matches!(self, Continuation::Last)
    }
}

/// Whether a side of a block transfer computes the CRC-16 of the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrcSupport {
    /// The CRC is computed and, when both sides support it, checked.
    Supported,
    /// No CRC.
    NotSupported,
}

impl CrcSupport {
    const fn bit(self) -> u8 {
        match self {
            CrcSupport::Supported => 0x04,
            CrcSupport::NotSupported => 0,
        }
    }

    const fn of(byte: u8) -> CrcSupport {
        if byte & 0x04 == 0 {
            CrcSupport::NotSupported
        } else {
            CrcSupport::Supported
        }
    }

    /// Supported when both sides support it.
    pub const fn and(self, other: CrcSupport) -> CrcSupport {
        match (self, other) {
            (CrcSupport::Supported, CrcSupport::Supported) => CrcSupport::Supported,
            _ => CrcSupport::NotSupported,
        }
    }
}

/// Up to `N` bytes carried inside one frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameData<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

/// The data of an expedited transfer: 1 to 4 bytes.
pub type ExpeditedData = FrameData<EXPEDITED_MAX>;
/// The data of one segment: 0 to 7 bytes.
pub type SegmentData = FrameData<SEGMENT_DATA_LEN>;

impl<const N: usize> FrameData<N> {
    /// `data` when it is at most `N` bytes long.
    pub fn new(data: &[u8]) -> Option<FrameData<N>> {
        if data.len() > N {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..data.len()].copy_from_slice(data);
        Some(FrameData {
            bytes,
            len: data.len() as u8,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(N)]
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `len` bytes of `source` (fewer when `source` or `N` is shorter).
    pub(crate) fn take(source: &[u8], len: usize) -> FrameData<N> {
        let len = len.min(N).min(source.len());
        let mut bytes = [0u8; N];
        bytes[..len].copy_from_slice(&source[..len]);
        FrameData {
            bytes,
            len: len as u8,
        }
    }
}

impl<const N: usize> std::fmt::Debug for FrameData<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X?}", self.as_slice())
    }
}

/// What an initiate frame (download request or upload response) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitiatePayload {
    /// The whole value, 1 to 4 bytes (`e` = 1). A frame without a size indication
    /// (`s` = 0) is read as 4 bytes. An empty value cannot be expedited: it is encoded
    /// as a segmented initiate of size 0.
    Expedited(ExpeditedData),
    /// Segments follow (`e` = 0), with the total size when indicated (`s` = 1).
    Segmented {
        /// The total size in bytes.
        size: Option<u32>,
    },
}

impl InitiatePayload {
    fn parse(d: &[u8; SDO_FRAME_LEN]) -> InitiatePayload {
        let (expedited, sized) = (d[0] & 0x02 != 0, d[0] & 0x01 != 0);
        if expedited {
            let len = if sized {
                EXPEDITED_MAX - usize::from((d[0] >> 2) & 0x03)
            } else {
                EXPEDITED_MAX
            };
            InitiatePayload::Expedited(ExpeditedData::take(&d[4..], len))
        } else {
            InitiatePayload::Segmented {
                size: sized.then(|| u32::from_le_bytes([d[4], d[5], d[6], d[7]])),
            }
        }
    }

    /// Flags of byte 0 and bytes 4 to 7. An empty expedited value is written as a
    /// segmented initiate of size 0, which is how it is sent on the wire.
    fn encode(self, d: &mut [u8; SDO_FRAME_LEN]) {
        match self {
            InitiatePayload::Expedited(data) if !data.is_empty() => {
                let n = (EXPEDITED_MAX - data.len()) as u8;
                d[0] |= (n << 2) | 0x03;
                d[4..4 + data.len()].copy_from_slice(data.as_slice());
            }
            InitiatePayload::Expedited(_) => d[0] |= 0x01,
            InitiatePayload::Segmented { size: Some(size) } => {
                d[0] |= 0x01;
                d[4..8].copy_from_slice(&size.to_le_bytes());
            }
            InitiatePayload::Segmented { size: None } => {}
        }
    }
}

/// A frame a client sends, outside a block download's sub-blocks (those carry
/// [`BlockSegment`]s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientRequest {
    /// Starts a download (write) of `object`.
    InitiateDownload {
        /// The object written.
        object: ObjectAddress,
        /// The value, or the size of the segments to come.
        payload: InitiatePayload,
    },
    /// One segment of a segmented download.
    DownloadSegment {
        /// The toggle bit.
        toggle: Toggle,
        /// The data, 0 to 7 bytes.
        data: SegmentData,
        /// Whether this is the last segment.
        continuation: Continuation,
    },
    /// Starts an upload (read) of `object`.
    InitiateUpload {
        /// The object read.
        object: ObjectAddress,
    },
    /// Asks for the next segment of a segmented upload.
    UploadSegment {
        /// The toggle bit.
        toggle: Toggle,
    },
    /// Starts a block download of `object`.
    InitiateBlockDownload {
        /// The object written.
        object: ObjectAddress,
        /// Whether the client computes the CRC.
        crc: CrcSupport,
        /// The size in bytes, when indicated.
        size: Option<u32>,
    },
    /// Ends a block download.
    EndBlockDownload {
        /// Bytes of the last segment that carry no data (0 to 7).
        unused: u8,
        /// CRC-16/XMODEM over the whole transfer (0 when CRC is not used).
        crc: u16,
    },
    /// Aborts the transfer.
    Abort {
        /// The object of the transfer.
        object: ObjectAddress,
        /// Why.
        code: AbortCode,
    },
}

/// A frame a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerResponse {
    /// One segment of a segmented upload.
    UploadSegment {
        /// The toggle bit.
        toggle: Toggle,
        /// The data, 0 to 7 bytes.
        data: SegmentData,
        /// Whether this is the last segment.
        continuation: Continuation,
    },
    /// Acknowledges a download segment.
    DownloadSegment {
        /// The toggle bit of the segment acknowledged.
        toggle: Toggle,
    },
    /// Answers an initiate upload.
    InitiateUpload {
        /// The object read.
        object: ObjectAddress,
        /// The value, or the size of the segments to come.
        payload: InitiatePayload,
    },
    /// Accepts a download.
    InitiateDownload {
        /// The object written.
        object: ObjectAddress,
    },
    /// Accepts a block download.
    InitiateBlockDownload {
        /// The object written.
        object: ObjectAddress,
        /// Whether the server computes the CRC.
        crc: CrcSupport,
        /// Segments in the first sub-block, 1 to 127.
        block_size: u8,
    },
    /// Acknowledges a sub-block.
    BlockAck {
        /// Sequence number of the last segment received in order (0: none).
        ackseq: u8,
        /// Segments in the next sub-block, 1 to 127.
        block_size: u8,
    },
    /// Confirms the end of a block download: the data was checked and stored.
    EndBlockDownload,
    /// Aborts the transfer.
    Abort {
        /// The object of the transfer.
        object: ObjectAddress,
        /// Why.
        code: AbortCode,
    },
}

/// One segment of a block download's sub-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockSegment {
    /// Sequence number in the sub-block, 1 to 127.
    pub sequence: u8,
    /// Whether this is the last segment of the transfer.
    pub continuation: Continuation,
    /// Seven bytes; how many of the last segment's bytes are data is told by the end
    /// frame.
    pub data: [u8; SEGMENT_DATA_LEN],
}

/// Why 8 bytes are not a valid SDO frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdoFrameError {
    /// The frame does not carry exactly 8 data bytes.
    #[error("an SDO frame carries 8 data bytes, this one has {0}")]
    Length(usize),
    /// Command specifier 7 does not exist.
    #[error("byte 0 = 0x{0:02X}: command specifier 7 does not exist")]
    UnknownCommand(u8),
    /// Block upload is not supported.
    #[error("byte 0 = 0x{0:02X}: block upload is not supported")]
    BlockUpload(u8),
    /// A block download response with subcommand 3.
    #[error("byte 0 = 0x{0:02X}: block download response subcommand 3 does not exist")]
    UnknownSubcommand(u8),
    /// A block size of 0 or above 127.
    #[error("byte {byte}: block size {value} is not within 1 to 127")]
    BlockSize {
        /// Offset of the byte.
        byte: usize,
        /// The value.
        value: u8,
    },
    /// An acknowledged sequence number above 127.
    #[error("byte 1: acknowledged sequence number {0} is above 127")]
    AckSequence(u8),
    /// A block segment with sequence number 0.
    #[error("byte 0 = 0x{0:02X}: block segment sequence number 0 does not exist")]
    SequenceZero(u8),
}

impl SdoFrameError {
    /// The abort code that answers the frame.
    pub fn abort_code(&self) -> AbortCode {
        match self {
            SdoFrameError::BlockSize { .. } => AbortCode::InvalidBlockSize,
            SdoFrameError::AckSequence(_) | SdoFrameError::SequenceZero(_) => {
                AbortCode::InvalidSequenceNumber
            }
            SdoFrameError::Length(_)
            | SdoFrameError::UnknownCommand(_)
            | SdoFrameError::BlockUpload(_)
            | SdoFrameError::UnknownSubcommand(_) => AbortCode::InvalidCommand,
        }
    }
}

fn exact(data: &[u8]) -> Result<&[u8; SDO_FRAME_LEN], SdoFrameError> {
    data.try_into()
        .map_err(|_| SdoFrameError::Length(data.len()))
}

fn object_of(d: &[u8; SDO_FRAME_LEN]) -> ObjectAddress {
    ObjectAddress::new(u16::from_le_bytes([d[1], d[2]]), d[3])
}

fn put_object(d: &mut [u8; SDO_FRAME_LEN], object: ObjectAddress) {
    d[1..3].copy_from_slice(&object.index.to_le_bytes());
    d[3] = object.sub_index;
}

fn code_of(d: &[u8; SDO_FRAME_LEN]) -> AbortCode {
    AbortCode::from_u32(u32::from_le_bytes([d[4], d[5], d[6], d[7]]))
}

fn abort_frame(object: ObjectAddress, code: AbortCode) -> [u8; SDO_FRAME_LEN] {
    let mut d = [0x80, 0, 0, 0, 0, 0, 0, 0];
    put_object(&mut d, object);
    d[4..8].copy_from_slice(&code.to_u32().to_le_bytes());
    d
}

/// A segment's data, continuation and toggle (`ttt nnnc` with 7 - n bytes of data).
fn segment_of(d: &[u8; SDO_FRAME_LEN]) -> (Toggle, SegmentData, Continuation) {
    let unused = usize::from((d[0] >> 1) & 0x07);
    (
        Toggle::of(d[0]),
        SegmentData::take(&d[1..], SEGMENT_DATA_LEN - unused),
        Continuation::from_flag(d[0] & 0x01 != 0),
    )
}

fn put_segment(
    d: &mut [u8; SDO_FRAME_LEN],
    toggle: Toggle,
    data: &SegmentData,
    continuation: Continuation,
) {
    let unused = (SEGMENT_DATA_LEN - data.len()) as u8;
    d[0] |= toggle.bit() | (unused << 1) | u8::from(continuation.is_last());
    d[1..1 + data.len()].copy_from_slice(data.as_slice());
}

fn block_size(byte: usize, value: u8) -> Result<u8, SdoFrameError> {
    if (1..=MAX_BLOCK_SIZE).contains(&value) {
        Ok(value)
    } else {
        Err(SdoFrameError::BlockSize { byte, value })
    }
}

impl ClientRequest {
    /// Parses a client frame's data (never a block segment: see [`BlockSegment::parse`]).
    pub fn parse(data: &[u8]) -> Result<ClientRequest, SdoFrameError> {
        let d = exact(data)?;
        Ok(match d[0] >> 5 {
            0 => {
                let (toggle, data, continuation) = segment_of(d);
                ClientRequest::DownloadSegment {
                    toggle,
                    data,
                    continuation,
                }
            }
            1 => ClientRequest::InitiateDownload {
                object: object_of(d),
                payload: InitiatePayload::parse(d),
            },
            2 => ClientRequest::InitiateUpload {
                object: object_of(d),
            },
            3 => ClientRequest::UploadSegment {
                toggle: Toggle::of(d[0]),
            },
            4 => ClientRequest::Abort {
                object: object_of(d),
                code: code_of(d),
            },
            5 => return Err(SdoFrameError::BlockUpload(d[0])),
            6 if d[0] & 0x01 == 0 => ClientRequest::InitiateBlockDownload {
                object: object_of(d),
                crc: CrcSupport::of(d[0]),
                size: (d[0] & 0x02 != 0).then(|| u32::from_le_bytes([d[4], d[5], d[6], d[7]])),
            },
            6 => ClientRequest::EndBlockDownload {
                unused: (d[0] >> 2) & 0x07,
                crc: u16::from_le_bytes([d[1], d[2]]),
            },
            _ => return Err(SdoFrameError::UnknownCommand(d[0])),
        })
    }

    /// The 8 bytes on the wire. Values out of range are masked to their field.
    pub fn encode(&self) -> [u8; SDO_FRAME_LEN] {
        let mut d = [0u8; SDO_FRAME_LEN];
        match *self {
            ClientRequest::DownloadSegment {
                toggle,
                data,
                continuation,
            } => put_segment(&mut d, toggle, &data, continuation),
            ClientRequest::InitiateDownload { object, payload } => {
                d[0] = 0x20;
                put_object(&mut d, object);
                payload.encode(&mut d);
            }
            ClientRequest::InitiateUpload { object } => {
                d[0] = 0x40;
                put_object(&mut d, object);
            }
            ClientRequest::UploadSegment { toggle } => d[0] = 0x60 | toggle.bit(),
            ClientRequest::Abort { object, code } => d = abort_frame(object, code),
            ClientRequest::InitiateBlockDownload { object, crc, size } => {
                d[0] = 0xC0 | crc.bit();
                put_object(&mut d, object);
                if let Some(size) = size {
                    d[0] |= 0x02;
                    d[4..8].copy_from_slice(&size.to_le_bytes());
                }
            }
            ClientRequest::EndBlockDownload { unused, crc } => {
                d[0] = 0xC1 | ((unused & 0x07) << 2);
                d[1..3].copy_from_slice(&crc.to_le_bytes());
            }
        }
        d
    }
}

impl ServerResponse {
    /// Parses a server frame's data.
    pub fn parse(data: &[u8]) -> Result<ServerResponse, SdoFrameError> {
        let d = exact(data)?;
        Ok(match d[0] >> 5 {
            0 => {
                let (toggle, data, continuation) = segment_of(d);
                ServerResponse::UploadSegment {
                    toggle,
                    data,
                    continuation,
                }
            }
            1 => ServerResponse::DownloadSegment {
                toggle: Toggle::of(d[0]),
            },
            2 => ServerResponse::InitiateUpload {
                object: object_of(d),
                payload: InitiatePayload::parse(d),
            },
            3 => ServerResponse::InitiateDownload {
                object: object_of(d),
            },
            4 => ServerResponse::Abort {
                object: object_of(d),
                code: code_of(d),
            },
            5 => match d[0] & 0x03 {
                0 => ServerResponse::InitiateBlockDownload {
                    object: object_of(d),
                    crc: CrcSupport::of(d[0]),
                    block_size: block_size(4, d[4])?,
                },
                1 => ServerResponse::EndBlockDownload,
                2 => {
                    if d[1] > MAX_BLOCK_SIZE {
                        return Err(SdoFrameError::AckSequence(d[1]));
                    }
                    ServerResponse::BlockAck {
                        ackseq: d[1],
                        block_size: block_size(2, d[2])?,
                    }
                }
                _ => return Err(SdoFrameError::UnknownSubcommand(d[0])),
            },
            6 => return Err(SdoFrameError::BlockUpload(d[0])),
            _ => return Err(SdoFrameError::UnknownCommand(d[0])),
        })
    }

    /// The 8 bytes on the wire. Values out of range are masked to their field.
    pub fn encode(&self) -> [u8; SDO_FRAME_LEN] {
        let mut d = [0u8; SDO_FRAME_LEN];
        match *self {
            ServerResponse::UploadSegment {
                toggle,
                data,
                continuation,
            } => put_segment(&mut d, toggle, &data, continuation),
            ServerResponse::DownloadSegment { toggle } => d[0] = 0x20 | toggle.bit(),
            ServerResponse::InitiateUpload { object, payload } => {
                d[0] = 0x40;
                put_object(&mut d, object);
                payload.encode(&mut d);
            }
            ServerResponse::InitiateDownload { object } => {
                d[0] = 0x60;
                put_object(&mut d, object);
            }
            ServerResponse::Abort { object, code } => d = abort_frame(object, code),
            ServerResponse::InitiateBlockDownload {
                object,
                crc,
                block_size,
            } => {
                d[0] = 0xA0 | crc.bit();
                put_object(&mut d, object);
                d[4] = block_size;
            }
            ServerResponse::EndBlockDownload => d[0] = 0xA1,
            ServerResponse::BlockAck { ackseq, block_size } => {
                d[0] = 0xA2;
                d[1] = ackseq;
                d[2] = block_size;
            }
        }
        d
    }
}

impl BlockSegment {
    /// Parses a frame of a sub-block. Byte 0 = 0x80 (an abort frame) parses as
    /// [`SdoFrameError::SequenceZero`]: check for an abort first.
    pub fn parse(data: &[u8]) -> Result<BlockSegment, SdoFrameError> {
        let d = exact(data)?;
        let sequence = d[0] & 0x7F;
        if sequence == 0 {
            return Err(SdoFrameError::SequenceZero(d[0]));
        }
        let mut bytes = [0u8; SEGMENT_DATA_LEN];
        bytes.copy_from_slice(&d[1..]);
        Ok(BlockSegment {
            sequence,
            continuation: Continuation::from_flag(d[0] & 0x80 != 0),
            data: bytes,
        })
    }

    /// The 8 bytes on the wire.
    pub fn encode(&self) -> [u8; SDO_FRAME_LEN] {
        let mut d = [0u8; SDO_FRAME_LEN];
        d[0] = (self.sequence & 0x7F) | if self.continuation.is_last() { 0x80 } else { 0 };
        d[1..].copy_from_slice(&self.data);
        d
    }
}
