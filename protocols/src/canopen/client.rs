//! The client side of SDO transfers, as a sans-IO state machine.

use super::frame::{
    BlockSegment, ClientRequest, Continuation, CrcSupport, EXPEDITED_MAX, ExpeditedData,
    InitiatePayload, MAX_BLOCK_SIZE, SEGMENT_DATA_LEN, SdoFrameError, SegmentData, ServerResponse,
    Toggle,
};
use super::{AbortCode, ObjectAddress, SdoChannel};
use crate::checksum::Crc16Xmodem;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;

/// Image bytes asked for at most at once: one sub-block of 127 segments.
const WINDOW_MAX: usize = MAX_BLOCK_SIZE as usize * SEGMENT_DATA_LEN;

/// How a download is to be carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownloadMethod {
    /// Block download (whatever the size); when the server refuses block transfer,
    /// what [`SdoClientConfig::block_fallback`] says.
    Block,
    /// Expedited when the data is 1 to 4 bytes, segmented otherwise.
    Segmented,
}

/// What a client does when a server answers a block download request with
/// [`AbortCode::InvalidCommand`] (no block transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFallback {
    /// Download the same data segmented (expedited for 1 to 4 bytes).
    Segmented,
    /// Fail with the server's abort.
    Fail,
}

/// How a download was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferMode {
    /// In the initiate frame, 1 to 4 bytes.
    Expedited,
    /// In segments of 7 bytes, each confirmed.
    Segmented,
    /// In sub-blocks of segments, each sub-block acknowledged.
    Block {
        /// Whether the CRC-16 was checked (both sides support it).
        crc: CrcSupport,
    },
}

/// Settings of an [`SdoClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdoClientConfig {
    /// The identifiers of the server.
    pub channel: SdoChannel,
    /// Longest wait for a response once a request (or a sub-block's last segment) went
    /// out. On expiry the client aborts with [`AbortCode::Timeout`]. It must cover the
    /// server's write time for a sub-block and its sub-block timeout. The clock starts
    /// when `poll_transmit` hands the frame out, so a caller that queues frames deep in a
    /// driver must allow for the queue too. Default 1000 ms.
    pub timeout: Duration,
    /// Whether the client computes the CRC-16 of block downloads. Default supported.
    pub crc: CrcSupport,
    /// What to do when the server refuses block transfer. Default segmented.
    pub block_fallback: BlockFallback,
}

impl SdoClientConfig {
    /// The default settings for `channel`.
    pub fn new(channel: SdoChannel) -> SdoClientConfig {
        SdoClientConfig {
            channel,
            timeout: Duration::from_millis(1000),
            crc: CrcSupport::Supported,
            block_fallback: BlockFallback::Segmented,
        }
    }
}

/// What the client was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Awaiting {
    /// The answer to an initiate request.
    InitiateResponse,
    /// The confirmation of a download segment.
    SegmentConfirmation,
    /// A sub-block's acknowledgement.
    BlockAck,
    /// The confirmation of the end of a block download.
    EndConfirmation,
    /// An upload segment.
    UploadSegment,
}

/// How a server broke the protocol. The client aborts the transfer with
/// [`Violation::abort_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The response is not a valid SDO frame.
    #[error("malformed response: {0}")]
    Malformed(SdoFrameError),
    /// The response does not fit what the client asked.
    #[error("unexpected response with byte 0 = 0x{0:02X}")]
    Unexpected(u8),
    /// The response names another object.
    #[error("the response names object {0}")]
    WrongObject(ObjectAddress),
    /// A segment carries the wrong toggle bit.
    #[error("the toggle bit did not alternate")]
    Toggle,
    /// A block acknowledgement names a segment that was not sent from the acknowledged
    /// offset (in this sub-block or an earlier attempt from the same offset).
    #[error("acknowledged sequence {ackseq} after only {sent} segments were sent")]
    AckSequence {
        /// The acknowledged sequence number.
        ackseq: u8,
        /// Segments sent from the acknowledged offset.
        sent: u8,
    },
    /// An upload's data does not match its indicated size.
    #[error("{received} bytes received, {indicated} indicated")]
    LengthMismatch {
        /// The size the server indicated.
        indicated: u32,
        /// Bytes received.
        received: u64,
    },
}

impl Violation {
    /// The abort code the client sends for it.
    pub fn abort_code(&self) -> AbortCode {
        match self {
            Violation::Malformed(e) => e.abort_code(),
            Violation::Unexpected(_) | Violation::WrongObject(_) => AbortCode::InvalidCommand,
            Violation::Toggle => AbortCode::ToggleNotAlternated,
            Violation::AckSequence { .. } => AbortCode::InvalidSequenceNumber,
            Violation::LengthMismatch { .. } => AbortCode::LengthMismatch,
        }
    }
}

/// Why a transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdoError {
    /// The server aborted the transfer.
    #[error("the server aborted with {0}")]
    ServerAbort(AbortCode),
    /// No response came in time; the client aborted with [`AbortCode::Timeout`].
    #[error("no {awaiting:?} within {timeout:?}")]
    Timeout {
        /// What was awaited.
        awaiting: Awaiting,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The server broke the protocol; the client aborted.
    #[error("{0}; aborted with {code}", code = .0.abort_code())]
    Protocol(Violation),
    /// An upload is longer than the caller allows; the client aborted with
    /// [`AbortCode::OutOfMemory`].
    #[error("the object holds at least {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The size indicated or received so far.
        size: u64,
        /// The limit given to [`SdoClient::upload`].
        max: usize,
    },
    /// The caller aborted the transfer with `code`.
    #[error("aborted by the caller with {0}")]
    Cancelled(AbortCode),
}

impl SdoError {
    /// The abort code on the wire: the server's, or the one the client sent.
    pub fn abort_code(&self) -> AbortCode {
        match self {
            SdoError::ServerAbort(code) | SdoError::Cancelled(code) => *code,
            SdoError::Timeout { .. } => AbortCode::Timeout,
            SdoError::Protocol(v) => v.abort_code(),
            SdoError::TooLarge { .. } => AbortCode::OutOfMemory,
        }
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdoEvent {
    /// Answer with [`SdoClient::provide_data`]: the `len` bytes of the download from
    /// `offset`. Offsets follow each other: every byte is asked for once, in order. A
    /// request not yet taken from the queue is withdrawn when the transfer fails.
    NeedData {
        /// Offset in the download.
        offset: u64,
        /// Number of bytes, at most 889.
        len: usize,
    },
    /// The server confirmed more bytes.
    Progress {
        /// Bytes confirmed so far.
        acknowledged: u64,
        /// The download's size.
        total: u64,
    },
    /// A download completed.
    Downloaded {
        /// The object written.
        object: ObjectAddress,
        /// Bytes written.
        len: u64,
        /// How they were carried.
        mode: TransferMode,
    },
    /// An upload completed.
    Uploaded {
        /// The object read.
        object: ObjectAddress,
        /// Its value.
        data: Vec<u8>,
    },
    /// A transfer failed; the client is idle again.
    Failed {
        /// The object of the transfer.
        object: ObjectAddress,
        /// Why.
        error: SdoError,
    },
}

/// Why a transfer could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Another transfer is under way.
    #[error("another SDO transfer is under way")]
    Busy,
    /// An expedited value must be 1 to 4 bytes.
    #[error("an expedited value has 1 to 4 bytes, not {0}")]
    ExpeditedLength(usize),
}

/// Why [`SdoClient::provide_data`] refused the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvideDataError {
    /// No [`SdoEvent::NeedData`] is outstanding.
    #[error("no data was asked for")]
    NotExpected,
    /// The bytes are not the length asked for.
    #[error("{expected} bytes were asked for, got {got}")]
    WrongLength {
        /// The length asked for.
        expected: usize,
        /// The length given.
        got: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Expedited: the value's bytes are asked for.
    ExpeditedData,
    /// An initiate request is out; its answer is awaited.
    Initiate,
    /// Segmented: bytes for the next segments are asked for.
    SegmentData { toggle: Toggle },
    /// Segmented: a segment is out; its confirmation is awaited.
    Segment { toggle: Toggle, len: usize },
    /// Block: bytes of the sub-block are asked for.
    BlockData { count: u8 },
    /// Block: the sub-block's segments are going out.
    BlockSending { count: u8, sent: u8 },
    /// Block: the sub-block is out; its acknowledgement is awaited.
    BlockAwaitAck { count: u8 },
    /// Block: the end frame is out; its confirmation is awaited.
    BlockEnd,
}

#[derive(Debug)]
struct Download {
    object: ObjectAddress,
    total: u64,
    mode: TransferMode,
    /// Bytes from `acked` to `acked + window.len()`, asked for and not yet confirmed.
    window: Vec<u8>,
    acked: u64,
    /// Bytes asked for (and received) so far.
    outstanding: Option<usize>,
    /// Block: the highest sequence number sent since `acked` last moved, in any attempt.
    /// An acknowledgement with no progress (ackseq 0) makes the client send the same
    /// segments again, under the same sequence numbers; the server may take a segment of
    /// the earlier attempt, still on its way, as one of the new sub-block, and
    /// acknowledge it before the client sent it again.
    reached: u8,
    crc: Crc16Xmodem,
    stage: Stage,
}

impl Download {
    fn buffered(&self) -> u64 {
        self.acked + self.window.len() as u64
    }

    /// Segments from `acked` to the end of the transfer (an empty transfer has one,
    /// empty, segment).
    fn segments_left(&self) -> u64 {
        (self.total - self.acked)
            .div_ceil(SEGMENT_DATA_LEN as u64)
            .max(1)
    }

    /// Segments in a sub-block the server sized `block_size`.
    fn block_count(&self, block_size: u8) -> u8 {
        u64::from(block_size.clamp(1, MAX_BLOCK_SIZE)).min(self.segments_left()) as u8
    }

    /// Bytes of the last segment of the transfer that carry no data.
    fn unused_in_last(&self) -> u8 {
        let last_len = match self.total {
            0 => 0,
            t => t - (t - 1) / SEGMENT_DATA_LEN as u64 * SEGMENT_DATA_LEN as u64,
        };
        (SEGMENT_DATA_LEN as u64 - last_len) as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UploadStage {
    Initiate,
    Segment { toggle: Toggle },
}

#[derive(Debug)]
struct Upload {
    object: ObjectAddress,
    max_len: usize,
    size: Option<u32>,
    data: Vec<u8>,
    stage: UploadStage,
}

#[derive(Debug)]
enum Transfer {
    Idle,
    Download(Download),
    Upload(Upload),
}

/// An SDO client: one transfer at a time with one server.
///
/// Downloads ([`download`](Self::download), [`download_value`](Self::download_value))
/// write an object; uploads ([`upload`](Self::upload)) read one. A block download
/// sends sub-blocks of up to the server's block size, each segment carrying a sequence
/// number from 1; after each sub-block the server acknowledges the last segment it got
/// in order and the client continues from the segment after it (resending what was
/// lost, numbered from 1 again), until the last segment is acknowledged (an
/// acknowledgement may name a segment of an earlier attempt from the same offset, still
/// on its way when the server acknowledged early: it carries the same bytes); the end frame
/// then carries the unused bytes of the last segment and the CRC-16/XMODEM of the whole
/// transfer. Any server abort, protocol violation (answered with an abort) or timeout
/// ends the transfer with [`SdoEvent::Failed`]; the client is then ready for the next.
#[derive(Debug)]
pub struct SdoClient {
    config: SdoClientConfig,
    transfer: Transfer,
    outbox: VecDeque<CanFrame>,
    deadline: Option<Timestamp>,
    events: VecDeque<SdoEvent>,
}

impl SdoClient {
    /// An idle client.
    pub fn new(config: SdoClientConfig) -> SdoClient {
        SdoClient {
            config,
            transfer: Transfer::Idle,
            outbox: VecDeque::new(),
            deadline: None,
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SdoClientConfig {
        &self.config
    }

    /// Whether no transfer is under way.
    pub fn is_idle(&self) -> bool {
        matches!(self.transfer, Transfer::Idle)
    }

    /// Starts a download of `size` bytes to `object`; the bytes are asked for with
    /// [`SdoEvent::NeedData`].
    pub fn download(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        size: u32,
        method: DownloadMethod,
    ) -> Result<(), StartError> {
        if !self.is_idle() {
            return Err(StartError::Busy);
        }
        let mut download = Download {
            object,
            total: u64::from(size),
            mode: TransferMode::Segmented,
            window: Vec::new(),
            acked: 0,
            outstanding: None,
            reached: 0,
            crc: Crc16Xmodem::new(),
            stage: Stage::Initiate,
        };
        match method {
            DownloadMethod::Block => {
                download.mode = TransferMode::Block {
                    crc: self.config.crc,
                };
                self.send(ClientRequest::InitiateBlockDownload {
                    object,
                    crc: self.config.crc,
                    size: Some(size),
                });
                self.transfer = Transfer::Download(download);
            }
            DownloadMethod::Segmented => {
                self.transfer = Transfer::Download(download);
                self.begin_segmented();
            }
        }
        Ok(())
    }

    /// Starts an expedited download of `value` (1 to 4 bytes) to `object`; no data is
    /// asked for.
    pub fn download_value(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        value: &[u8],
    ) -> Result<(), StartError> {
        if !self.is_idle() {
            return Err(StartError::Busy);
        }
        let data = ExpeditedData::new(value)
            .filter(|d| !d.is_empty())
            .ok_or(StartError::ExpeditedLength(value.len()))?;
        self.transfer = Transfer::Download(Download {
            object,
            total: data.len() as u64,
            mode: TransferMode::Expedited,
            window: Vec::new(),
            acked: 0,
            outstanding: None,
            reached: 0,
            crc: Crc16Xmodem::new(),
            stage: Stage::Initiate,
        });
        self.send(ClientRequest::InitiateDownload {
            object,
            payload: InitiatePayload::Expedited(data),
        });
        Ok(())
    }

    /// Starts an upload of `object`, accepting at most `max_len` bytes.
    pub fn upload(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        max_len: usize,
    ) -> Result<(), StartError> {
        if !self.is_idle() {
            return Err(StartError::Busy);
        }
        self.transfer = Transfer::Upload(Upload {
            object,
            max_len,
            size: None,
            data: Vec::new(),
            stage: UploadStage::Initiate,
        });
        self.send(ClientRequest::InitiateUpload { object });
        Ok(())
    }

    /// Answers an [`SdoEvent::NeedData`] with exactly the bytes asked for.
    pub fn provide_data(&mut self, _now: Timestamp, data: &[u8]) -> Result<(), ProvideDataError> {
        let Transfer::Download(d) = &mut self.transfer else {
            return Err(ProvideDataError::NotExpected);
        };
        let Some(expected) = d.outstanding else {
            return Err(ProvideDataError::NotExpected);
        };
        if data.len() != expected {
            return Err(ProvideDataError::WrongLength {
                expected,
                got: data.len(),
            });
        }
        d.outstanding = None;
        d.window.extend_from_slice(data);
        d.crc.update(data);
        match d.stage {
            Stage::ExpeditedData => {
                let value = ExpeditedData::take(data, EXPEDITED_MAX);
                d.stage = Stage::Initiate;
                let object = d.object;
                self.send(ClientRequest::InitiateDownload {
                    object,
                    payload: InitiatePayload::Expedited(value),
                });
            }
            Stage::SegmentData { toggle } => self.send_segment(toggle),
            Stage::BlockData { count } => self.fill_sub_block(count),
            _ => {}
        }
        Ok(())
    }

    /// Aborts the transfer with `code`; it ends as [`SdoError::Cancelled`]. Nothing
    /// happens when the client is idle.
    pub fn abort(&mut self, _now: Timestamp, code: AbortCode) {
        if let Some(object) = self.object() {
            self.send(ClientRequest::Abort { object, code });
            self.fail(SdoError::Cancelled(code));
        }
    }

    /// Feeds a received CAN frame; frames on other identifiers are ignored.
    pub fn handle_frame(&mut self, _now: Timestamp, frame: &CanFrame) {
        if frame.id() != self.config.channel.response || self.is_idle() {
            return;
        }
        match ServerResponse::parse(frame.data()) {
            Ok(response) => self.response(response),
            Err(SdoFrameError::Length(len)) => {
                tracing::debug!(len, "ignoring an SDO response that is not 8 bytes long");
            }
            Err(error) => self.violation(Violation::Malformed(error)),
        }
    }

    /// Fires the response timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let (Some(deadline), Some(awaiting)) = (self.deadline, self.awaiting()) else {
            return;
        };
        if now < deadline {
            return;
        }
        if let Some(object) = self.object() {
            self.send(ClientRequest::Abort {
                object,
                code: AbortCode::Timeout,
            });
        }
        self.fail(SdoError::Timeout {
            awaiting,
            timeout: self.config.timeout,
        });
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if let Some(frame) = self.outbox.pop_front() {
            if self.outbox.is_empty() && self.awaiting().is_some() {
                self.deadline = Some(now + self.config.timeout);
            }
            return Some(frame);
        }
        let Transfer::Download(d) = &mut self.transfer else {
            return None;
        };
        let Stage::BlockSending { count, sent } = d.stage else {
            return None;
        };
        let sequence = sent + 1;
        d.reached = d.reached.max(sequence);
        let start = usize::from(sent) * SEGMENT_DATA_LEN;
        let end = (start + SEGMENT_DATA_LEN).min(d.window.len());
        let mut data = [0u8; SEGMENT_DATA_LEN];
        if start < end {
            data[..end - start].copy_from_slice(&d.window[start..end]);
        }
        let reaches = d.acked + u64::from(sequence) * SEGMENT_DATA_LEN as u64;
        let continuation = if reaches >= d.total {
            Continuation::Last
        } else {
            Continuation::More
        };
        d.stage = if sequence == count {
            self.deadline = Some(now + self.config.timeout);
            Stage::BlockAwaitAck { count }
        } else {
            Stage::BlockSending {
                count,
                sent: sequence,
            }
        };
        let segment = BlockSegment {
            sequence,
            continuation,
            data,
        };
        CanFrame::new(self.config.channel.request, &segment.encode())
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline.filter(|_| self.awaiting().is_some())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SdoEvent> {
        self.events.pop_front()
    }

    fn object(&self) -> Option<ObjectAddress> {
        match &self.transfer {
            Transfer::Idle => None,
            Transfer::Download(d) => Some(d.object),
            Transfer::Upload(u) => Some(u.object),
        }
    }

    /// What the client waits for, once its frames are out.
    fn awaiting(&self) -> Option<Awaiting> {
        match &self.transfer {
            Transfer::Idle => None,
            Transfer::Download(d) => match d.stage {
                Stage::Initiate => Some(Awaiting::InitiateResponse),
                Stage::Segment { .. } => Some(Awaiting::SegmentConfirmation),
                Stage::BlockAwaitAck { .. } => Some(Awaiting::BlockAck),
                Stage::BlockEnd => Some(Awaiting::EndConfirmation),
                Stage::ExpeditedData
                | Stage::SegmentData { .. }
                | Stage::BlockData { .. }
                | Stage::BlockSending { .. } => None,
            },
            Transfer::Upload(u) => match u.stage {
                UploadStage::Initiate => Some(Awaiting::InitiateResponse),
                UploadStage::Segment { .. } => Some(Awaiting::UploadSegment),
            },
        }
    }

    fn send(&mut self, request: ClientRequest) {
        self.deadline = None;
        if let Some(frame) = CanFrame::new(self.config.channel.request, &request.encode()) {
            self.outbox.push_back(frame);
        }
    }

    fn fail(&mut self, error: SdoError) {
        let Some(object) = self.object() else {
            return;
        };
        tracing::debug!(%object, %error, "SDO transfer failed");
        self.transfer = Transfer::Idle;
        self.deadline = None;
        self.events
            .retain(|e| !matches!(e, SdoEvent::NeedData { .. }));
        self.events.push_back(SdoEvent::Failed { object, error });
    }

    fn violation(&mut self, violation: Violation) {
        if let Some(object) = self.object() {
            self.send(ClientRequest::Abort {
                object,
                code: violation.abort_code(),
            });
        }
        self.fail(SdoError::Protocol(violation));
    }

    fn response(&mut self, response: ServerResponse) {
        if let ServerResponse::Abort { code, .. } = response {
            if self.falls_back(code) {
                tracing::debug!("the server has no block transfer; downloading segmented");
                self.begin_segmented();
            } else {
                self.fail(SdoError::ServerAbort(code));
            }
            return;
        }
        match &self.transfer {
            Transfer::Idle => {}
            Transfer::Download(_) => self.download_response(response),
            Transfer::Upload(_) => self.upload_response(response),
        }
    }

    /// Whether an abort answers a block request of a server without block transfer and
    /// the client is to fall back.
    fn falls_back(&self, code: AbortCode) -> bool {
        let Transfer::Download(d) = &self.transfer else {
            return false;
        };
        code == AbortCode::InvalidCommand
            && d.stage == Stage::Initiate
            && matches!(d.mode, TransferMode::Block { .. })
            && self.config.block_fallback == BlockFallback::Segmented
    }

    /// (Re)starts the current download segmented: expedited for 1 to 4 bytes.
    fn begin_segmented(&mut self) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let object = d.object;
        if (1..=EXPEDITED_MAX as u64).contains(&d.total) {
            d.mode = TransferMode::Expedited;
            d.stage = Stage::ExpeditedData;
            d.outstanding = Some(d.total as usize);
            self.events.push_back(SdoEvent::NeedData {
                offset: 0,
                len: d.total as usize,
            });
        } else {
            d.mode = TransferMode::Segmented;
            d.stage = Stage::Initiate;
            let size = u32::try_from(d.total).unwrap_or(u32::MAX);
            self.send(ClientRequest::InitiateDownload {
                object,
                payload: InitiatePayload::Segmented { size: Some(size) },
            });
        }
    }

    fn download_response(&mut self, response: ServerResponse) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let object = d.object;
        match (d.stage, response) {
            (Stage::Initiate, ServerResponse::InitiateDownload { object: o })
                if !matches!(d.mode, TransferMode::Block { .. }) =>
            {
                if o != object {
                    return self.violation(Violation::WrongObject(o));
                }
                if d.mode == TransferMode::Expedited {
                    d.acked = d.total;
                    self.complete_download();
                } else {
                    self.next_segment(Toggle::Zero);
                }
            }
            (Stage::Segment { toggle, len }, ServerResponse::DownloadSegment { toggle: t }) => {
                if t != toggle {
                    return self.violation(Violation::Toggle);
                }
                d.acked += len as u64;
                d.window.drain(..len.min(d.window.len()));
                self.events.push_back(SdoEvent::Progress {
                    acknowledged: d.acked,
                    total: d.total,
                });
                if d.acked >= d.total {
                    self.complete_download();
                } else {
                    self.next_segment(toggle.flipped());
                }
            }
            (
                Stage::Initiate,
                ServerResponse::InitiateBlockDownload {
                    object: o,
                    crc,
                    block_size,
                },
            ) if matches!(d.mode, TransferMode::Block { .. }) => {
                if o != object {
                    return self.violation(Violation::WrongObject(o));
                }
                d.mode = TransferMode::Block {
                    crc: self.config.crc.and(crc),
                };
                self.start_sub_block(block_size);
            }
            (Stage::BlockSending { sent, .. }, ServerResponse::BlockAck { ackseq, block_size }) => {
                self.block_ack(sent, ackseq, block_size)
            }
            (Stage::BlockAwaitAck { count }, ServerResponse::BlockAck { ackseq, block_size }) => {
                self.block_ack(count, ackseq, block_size)
            }
            (Stage::BlockData { .. }, ServerResponse::BlockAck { ackseq, block_size }) => {
                // A server whose sub-block timer ran on stale segments acknowledges
                // while the bytes of the next sub-block are still being asked for:
                // nothing (ackseq 0), or segments of an earlier attempt from the same
                // offset. Size the sub-block anew once the bytes come.
                tracing::debug!(
                    ackseq,
                    block_size,
                    "acknowledgement before the sub-block began"
                );
                self.block_ack(0, ackseq, block_size)
            }
            (Stage::BlockEnd, ServerResponse::EndBlockDownload) => self.complete_download(),
            (_, response) => {
                let byte0 = response.encode()[0];
                self.violation(Violation::Unexpected(byte0));
            }
        }
    }

    /// A sub-block with `sent` segments out was acknowledged up to
    /// `ackseq`: end the transfer when its last segment is in, else go on from the
    /// segment after `ackseq`.
    ///
    /// `ackseq` may exceed `sent` when an earlier attempt from the same offset sent
    /// that far (see `Download::reached`): segment `k` of every attempt from one offset
    /// carries the same bytes, so the acknowledgement is as good as one for this
    /// attempt. Only a segment never sent from this offset is a violation.
    fn block_ack(&mut self, sent: u8, ackseq: u8, block_size: u8) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let reached = sent.max(d.reached);
        if ackseq > reached {
            return self.violation(Violation::AckSequence {
                ackseq,
                sent: reached,
            });
        }
        if ackseq > sent {
            tracing::debug!(
                ackseq,
                sent,
                reached,
                "acknowledgement of segments sent by an earlier attempt from this offset"
            );
        }
        if ackseq > 0 {
            d.reached = 0;
        }
        let first = d.acked;
        let confirmed = (u64::from(ackseq) * SEGMENT_DATA_LEN as u64).min(d.total - d.acked);
        d.acked += confirmed;
        d.window.drain(..(confirmed as usize).min(d.window.len()));
        if confirmed > 0 {
            self.events.push_back(SdoEvent::Progress {
                acknowledged: d.acked,
                total: d.total,
            });
        }
        let acknowledged_to = first + u64::from(ackseq) * SEGMENT_DATA_LEN as u64;
        if d.outstanding.is_some() {
            // Bytes of the next sub-block are still being asked for (the last segment
            // cannot have been sent yet): size it anew once they come.
            let count = d.block_count(block_size);
            d.stage = Stage::BlockData { count };
        } else if ackseq > 0 && acknowledged_to >= d.total {
            let unused = d.unused_in_last();
            let crc = match d.mode {
                TransferMode::Block {
                    crc: CrcSupport::Supported,
                } => d.crc.value(),
                _ => 0,
            };
            d.stage = Stage::BlockEnd;
            self.send(ClientRequest::EndBlockDownload { unused, crc });
        } else {
            if ackseq < sent {
                tracing::debug!(ackseq, sent, "resending from the segment after ackseq");
            }
            self.start_sub_block(block_size);
        }
    }

    fn complete_download(&mut self) {
        if let Transfer::Download(d) = std::mem::replace(&mut self.transfer, Transfer::Idle) {
            self.deadline = None;
            self.events.push_back(SdoEvent::Downloaded {
                object: d.object,
                len: d.total,
                mode: d.mode,
            });
        }
    }

    /// Sends the next segment of a segmented download, asking for bytes first when the
    /// window does not hold them.
    fn next_segment(&mut self, toggle: Toggle) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let len = (d.total - d.acked).min(SEGMENT_DATA_LEN as u64) as usize;
        if d.window.len() >= len {
            return self.send_segment(toggle);
        }
        let offset = d.buffered();
        let want = (d.total - offset).min(WINDOW_MAX as u64) as usize;
        d.stage = Stage::SegmentData { toggle };
        d.outstanding = Some(want);
        self.events
            .push_back(SdoEvent::NeedData { offset, len: want });
    }

    fn send_segment(&mut self, toggle: Toggle) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let len = (d.total - d.acked).min(SEGMENT_DATA_LEN as u64) as usize;
        let data = SegmentData::take(&d.window, len);
        let continuation = if d.acked + len as u64 >= d.total {
            Continuation::Last
        } else {
            Continuation::More
        };
        d.stage = Stage::Segment { toggle, len };
        self.send(ClientRequest::DownloadSegment {
            toggle,
            data,
            continuation,
        });
    }

    /// Starts a sub-block of up to `block_size` segments from the acknowledged offset,
    /// asking for the bytes the window lacks.
    fn start_sub_block(&mut self, block_size: u8) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let count = d.block_count(block_size);
        self.fill_sub_block(count);
    }

    /// Sends a sub-block of `count` segments once the window holds its bytes, asking
    /// for the bytes it lacks first.
    fn fill_sub_block(&mut self, count: u8) {
        let Transfer::Download(d) = &mut self.transfer else {
            return;
        };
        let end = (d.acked + u64::from(count) * SEGMENT_DATA_LEN as u64).min(d.total);
        let buffered = d.buffered();
        if buffered < end {
            let len = (end - buffered) as usize;
            d.stage = Stage::BlockData { count };
            d.outstanding = Some(len);
            self.events.push_back(SdoEvent::NeedData {
                offset: buffered,
                len,
            });
        } else {
            d.stage = Stage::BlockSending { count, sent: 0 };
        }
    }

    fn upload_response(&mut self, response: ServerResponse) {
        let Transfer::Upload(u) = &mut self.transfer else {
            return;
        };
        let object = u.object;
        match (u.stage, response) {
            (UploadStage::Initiate, ServerResponse::InitiateUpload { object: o, payload }) => {
                if o != object {
                    return self.violation(Violation::WrongObject(o));
                }
                match payload {
                    InitiatePayload::Expedited(data) => {
                        if data.len() > u.max_len {
                            return self.too_large(data.len() as u64);
                        }
                        let data = data.as_slice().to_vec();
                        self.complete_upload(data);
                    }
                    InitiatePayload::Segmented { size } => {
                        if let Some(size) = size {
                            if u64::from(size) > u.max_len as u64 {
                                return self.too_large(u64::from(size));
                            }
                        }
                        u.size = size;
                        u.stage = UploadStage::Segment {
                            toggle: Toggle::Zero,
                        };
                        self.send(ClientRequest::UploadSegment {
                            toggle: Toggle::Zero,
                        });
                    }
                }
            }
            (
                UploadStage::Segment { toggle },
                ServerResponse::UploadSegment {
                    toggle: t,
                    data,
                    continuation,
                },
            ) => {
                if t != toggle {
                    return self.violation(Violation::Toggle);
                }
                let received = (u.data.len() + data.len()) as u64;
                if let Some(indicated) = u.size {
                    let short =
                        continuation == Continuation::Last && received < u64::from(indicated);
                    if received > u64::from(indicated) || short {
                        return self.violation(Violation::LengthMismatch {
                            indicated,
                            received,
                        });
                    }
                }
                if received > u.max_len as u64 {
                    return self.too_large(received);
                }
                u.data.extend_from_slice(data.as_slice());
                if continuation == Continuation::Last {
                    let data = std::mem::take(&mut u.data);
                    self.complete_upload(data);
                } else {
                    let toggle = toggle.flipped();
                    u.stage = UploadStage::Segment { toggle };
                    self.send(ClientRequest::UploadSegment { toggle });
                }
            }
            (_, response) => {
                let byte0 = response.encode()[0];
                self.violation(Violation::Unexpected(byte0));
            }
        }
    }

    fn too_large(&mut self, size: u64) {
        let Transfer::Upload(u) = &self.transfer else {
            return;
        };
        let (object, max) = (u.object, u.max_len);
        self.send(ClientRequest::Abort {
            object,
            code: AbortCode::OutOfMemory,
        });
        self.fail(SdoError::TooLarge { size, max });
    }

    fn complete_upload(&mut self, data: Vec<u8>) {
        if let Transfer::Upload(u) = std::mem::replace(&mut self.transfer, Transfer::Idle) {
            self.deadline = None;
            self.events.push_back(SdoEvent::Uploaded {
                object: u.object,
                data,
            });
        }
    }
}
