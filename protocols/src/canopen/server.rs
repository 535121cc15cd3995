//! The server side of SDO transfers, for simulated battery management systems.

use super::frame::{
    BlockSegment, ClientRequest, Continuation, CrcSupport, EXPEDITED_MAX, ExpeditedData,
    InitiatePayload, MAX_BLOCK_SIZE, SEGMENT_DATA_LEN, SdoFrameError, SegmentData, ServerResponse,
    Toggle,
};
use super::{AbortCode, ObjectAddress, ObjectDictionary, SdoChannel, TransferMode};
use crate::checksum::Crc16Xmodem;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;

/// Whether a server takes block downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockTransfer {
    /// Block downloads are served.
    Supported,
    /// Block download requests are answered with [`AbortCode::InvalidCommand`], as a
    /// server without block transfer does; clients fall back to segmented downloads.
    Refused,
}

/// Settings of an [`SdoServer`]. [`SdoServerConfig::default`] gives the usual values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdoServerConfig {
    /// Longest wait for the client's next frame once a transfer has begun (after the
    /// server's last response went out). On expiry the server aborts with
    /// [`AbortCode::Timeout`]. Default 1000 ms.
    pub timeout: Duration,
    /// Silence after a segment of a sub-block before the server acknowledges what it
    /// received in order (the sub-block's last segment was lost). Keep it below the
    /// client's timeout. Default 100 ms.
    pub block_timeout: Duration,
    /// Segments per sub-block the server asks for, 1 to 127 (clamped). Default 127.
    pub block_size: u8,
    /// Whether the server checks the CRC of block downloads. Default supported.
    pub crc: CrcSupport,
    /// Whether block downloads are served. Default supported.
    pub block_transfer: BlockTransfer,
}

impl Default for SdoServerConfig {
    fn default() -> SdoServerConfig {
        SdoServerConfig {
            timeout: Duration::from_millis(1000),
            block_timeout: Duration::from_millis(100),
            block_size: MAX_BLOCK_SIZE,
            crc: CrcSupport::Supported,
            block_transfer: BlockTransfer::Supported,
        }
    }
}

/// Which side aborted a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortedBy {
    /// The client sent an abort frame.
    Client,
    /// The server sent one.
    Server,
}

/// What a server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A download completed: [`ObjectDictionary::end_write`] accepted it.
    Downloaded {
        /// The object written.
        object: ObjectAddress,
        /// Bytes written.
        len: u64,
        /// How the data came.
        mode: TransferMode,
    },
    /// An upload completed: its last segment (or its expedited answer) was sent.
    Uploaded {
        /// The object read.
        object: ObjectAddress,
        /// Bytes sent.
        len: u64,
    },
    /// A transfer was aborted.
    Aborted {
        /// The object of the transfer (0x0000:00 when a stray frame was refused).
        object: ObjectAddress,
        /// The abort code.
        code: AbortCode,
        /// Which side aborted.
        by: AbortedBy,
    },
}

/// Where a server stands, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// No transfer.
    Idle,
    /// A download is under way.
    Downloading {
        /// The object written.
        object: ObjectAddress,
        /// Segmented or block.
        mode: TransferMode,
        /// Bytes written so far.
        received: u64,
        /// The size the client indicated.
        size: Option<u32>,
    },
    /// A segmented upload is under way.
    Uploading {
        /// The object read.
        object: ObjectAddress,
        /// Bytes sent so far.
        sent: u64,
        /// The object's length.
        len: u64,
    },
}

#[derive(Debug)]
struct SegmentedDownload {
    object: ObjectAddress,
    size: Option<u32>,
    received: u64,
    toggle: Toggle,
}

/// What happens once a block acknowledgement has gone out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterAck {
    /// A new sub-block begins.
    NextSubBlock,
    /// The last segment was acknowledged; the end frame comes next.
    AwaitEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockStage {
    /// An acknowledgement (or the initiate response) is queued; segments arriving now
    /// are stale ones from before it.
    Acking(AfterAck),
    /// Segments of a sub-block are coming; `heard` is when the last one arrived.
    Receiving { heard: Option<Timestamp> },
    /// Waiting for the end frame.
    AwaitEnd,
}

#[derive(Debug)]
struct BlockDownload {
    object: ObjectAddress,
    size: Option<u32>,
    crc_mode: CrcSupport,
    crc: Crc16Xmodem,
    /// Bytes written (the last segment, held back, not counted).
    received: u64,
    /// The last segment, whose unused bytes the end frame tells.
    held: Option<[u8; SEGMENT_DATA_LEN]>,
    /// Segments in the current sub-block.
    block_size: u8,
    /// Last sequence number received in order in the current sub-block.
    seq: u8,
    stage: BlockStage,
}

#[derive(Debug)]
struct SegmentedUpload {
    object: ObjectAddress,
    data: Vec<u8>,
    sent: usize,
    toggle: Toggle,
}

#[derive(Debug)]
enum Transfer {
    Idle,
    Segmented(SegmentedDownload),
    Block(BlockDownload),
    Upload(SegmentedUpload),
}

impl Transfer {
    fn object(&self) -> Option<ObjectAddress> {
        match self {
            Transfer::Idle => None,
            Transfer::Segmented(t) => Some(t.object),
            Transfer::Block(t) => Some(t.object),
            Transfer::Upload(t) => Some(t.object),
        }
    }

    fn is_download(&self) -> bool {
        matches!(self, Transfer::Segmented(_) | Transfer::Block(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSent {
    Nothing,
    /// The frame is a block acknowledgement (or the block initiate response).
    Ack(AfterAck),
}

#[derive(Debug)]
struct Outgoing {
    due: Timestamp,
    data: [u8; 8],
    on_sent: OnSent,
}

/// An SDO server: serves expedited, segmented and block downloads and expedited and
/// segmented uploads of one [`SdoChannel`] from an [`ObjectDictionary`].
///
/// Every frame on the request identifier is parsed as hostile input: a frame that is
/// not 8 bytes long is ignored; a frame that is not a valid request, or not the one
/// expected, is answered with an abort frame naming the reason (and ends any transfer).
///
/// Block downloads: segments are taken in order of their sequence numbers; a duplicate
/// is ignored; a gap makes the server acknowledge at once the last segment received in
/// order (as soon as one was), so the client resends from the one after; when a
/// sub-block's last segment is lost, the server acknowledges after
/// [`block_timeout`](SdoServerConfig::block_timeout) of silence. The CRC-16 is checked
/// when both sides support it. A sequence number of 0 or above the block size aborts
/// with [`AbortCode::InvalidSequenceNumber`].
#[derive(Debug)]
pub struct SdoServer<D> {
    channel: SdoChannel,
    config: SdoServerConfig,
    dictionary: D,
    transfer: Transfer,
    busy_until: Timestamp,
    deadline: Option<Timestamp>,
    outbox: VecDeque<Outgoing>,
    events: VecDeque<ServerEvent>,
}

const NO_OBJECT: ObjectAddress = ObjectAddress::new(0, 0);

/// The object bytes 1 to 3 name (in every initiate and abort frame), or 0x0000:00 when
/// the frame is too short to name one.
fn named_object(data: &[u8]) -> ObjectAddress {
    match data {
        [_, lo, hi, sub, ..] => ObjectAddress::new(u16::from_le_bytes([*lo, *hi]), *sub),
        _ => NO_OBJECT,
    }
}

impl<D: ObjectDictionary> SdoServer<D> {
    /// A server listening on `channel.request` and answering on `channel.response`.
    pub fn new(channel: SdoChannel, config: SdoServerConfig, dictionary: D) -> SdoServer<D> {
        let mut config = config;
        config.block_size = config.block_size.clamp(1, MAX_BLOCK_SIZE);
        SdoServer {
            channel,
            config,
            dictionary,
            transfer: Transfer::Idle,
            busy_until: Timestamp::ZERO,
            deadline: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The object dictionary.
    pub fn dictionary(&self) -> &D {
        &self.dictionary
    }

    /// The object dictionary, mutably (to inject faults or change values).
    pub fn dictionary_mut(&mut self) -> &mut D {
        &mut self.dictionary
    }

    /// The identifiers served.
    pub fn channel(&self) -> SdoChannel {
        self.channel
    }

    /// Forgets everything a device loses with its RAM (a power cut, a restart): the
    /// transfer under way, queued responses, pending timers and events. The dictionary is
    /// kept and is not told ([`ObjectDictionary::abort_write`] is not called): what it
    /// holds in RAM is for its owner to drop. A client still sending to the old transfer
    /// gets aborts, as from a device that just booted.
    pub fn restart(&mut self) {
        self.transfer = Transfer::Idle;
        self.busy_until = Timestamp::ZERO;
        self.deadline = None;
        self.outbox.clear();
        self.events.clear();
    }

    /// Changes the block size asked for from the next acknowledgement on (clamped to 1
    /// to 127).
    pub fn set_block_size(&mut self, block_size: u8) {
        self.config.block_size = block_size.clamp(1, MAX_BLOCK_SIZE);
    }

    /// Where the server stands.
    pub fn state(&self) -> ServerState {
        match &self.transfer {
            Transfer::Idle => ServerState::Idle,
            Transfer::Segmented(t) => ServerState::Downloading {
                object: t.object,
                mode: TransferMode::Segmented,
                received: t.received,
                size: t.size,
            },
            Transfer::Block(t) => ServerState::Downloading {
                object: t.object,
                mode: TransferMode::Block { crc: t.crc_mode },
                received: t.received,
                size: t.size,
            },
            Transfer::Upload(t) => ServerState::Uploading {
                object: t.object,
                sent: t.sent as u64,
                len: t.data.len() as u64,
            },
        }
    }

    /// Feeds a received CAN frame; frames on other identifiers are ignored.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if frame.id() != self.channel.request {
            return;
        }
        let data = frame.data();
        if let Transfer::Block(block) = &self.transfer {
            if matches!(
                block.stage,
                BlockStage::Acking(_) | BlockStage::Receiving { .. }
            ) && data.first() != Some(&0x80)
            {
                self.block_segment(now, data);
                return;
            }
        }
        match ClientRequest::parse(data) {
            Ok(request) => self.request(now, request),
            Err(SdoFrameError::Length(len)) => {
                tracing::debug!(len, "ignoring an SDO request that is not 8 bytes long");
            }
            Err(error) => {
                tracing::debug!(%error, "refusing a malformed SDO request");
                let object = self.transfer.object().unwrap_or_else(|| named_object(data));
                self.abort(now, object, error.abort_code());
            }
        }
    }

    /// Fires expired timers: the transfer timeout and the sub-block timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Transfer::Block(block) = &self.transfer {
            if let BlockStage::Receiving { heard: Some(at) } = block.stage {
                if now >= at + self.config.block_timeout {
                    tracing::debug!(ackseq = block.seq, "sub-block timed out");
                    self.acknowledge(now);
                    return;
                }
            }
        }
        if let (Some(deadline), Some(object)) = (self.deadline, self.transfer.object()) {
            if now >= deadline {
                self.abort(now, object, AbortCode::Timeout);
            }
        }
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.outbox.front().is_none_or(|o| o.due > now) {
            return None;
        }
        let out = self.outbox.pop_front()?;
        if self.outbox.is_empty() && !matches!(self.transfer, Transfer::Idle) {
            self.deadline = Some(now + self.config.timeout);
        }
        if let (OnSent::Ack(after), Transfer::Block(block)) = (out.on_sent, &mut self.transfer) {
            block.stage = match after {
                AfterAck::NextSubBlock => BlockStage::Receiving { heard: None },
                AfterAck::AwaitEnd => BlockStage::AwaitEnd,
            };
        }
        CanFrame::new(self.channel.response, &out.data)
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout) (or
    /// [`poll_transmit`](Self::poll_transmit), for a response delayed by a write).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let queued = self.outbox.front().map(|o| o.due);
        let block = match &self.transfer {
            Transfer::Block(BlockDownload {
                stage: BlockStage::Receiving { heard: Some(at) },
                ..
            }) => Some(*at + self.config.block_timeout),
            _ => None,
        };
        let deadline = self.deadline.filter(|_| self.transfer.object().is_some());
        [queued, block, deadline].into_iter().flatten().min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Queues a response for when the device is no longer busy.
    fn respond(&mut self, now: Timestamp, response: ServerResponse, on_sent: OnSent) {
        let due = self.busy_until.max(now);
        self.deadline = None;
        self.outbox.push_back(Outgoing {
            due,
            data: response.encode(),
            on_sent,
        });
    }

    /// Marks the device busy for `d` more.
    fn busy(&mut self, now: Timestamp, d: Duration) {
        self.busy_until = self.busy_until.max(now) + d;
    }

    /// Ends the transfer with an abort frame.
    fn abort(&mut self, now: Timestamp, object: ObjectAddress, code: AbortCode) {
        tracing::debug!(%object, %code, "SDO server aborts");
        self.outbox.clear();
        self.drop_transfer(now, code);
        self.deadline = None;
        self.outbox.push_back(Outgoing {
            due: now,
            data: ServerResponse::Abort { object, code }.encode(),
            on_sent: OnSent::Nothing,
        });
        self.events.push_back(ServerEvent::Aborted {
            object,
            code,
            by: AbortedBy::Server,
        });
    }

    /// Forgets the transfer, telling the dictionary when a download ends unfinished.
    fn drop_transfer(&mut self, now: Timestamp, code: AbortCode) {
        let old = std::mem::replace(&mut self.transfer, Transfer::Idle);
        if old.is_download() {
            if let Some(object) = old.object() {
                self.dictionary.abort_write(now, object, code);
            }
        }
    }

    fn request(&mut self, now: Timestamp, request: ClientRequest) {
        if let ClientRequest::Abort { object, code } = request {
            if let Some(current) = self.transfer.object() {
                tracing::debug!(%object, %code, "the SDO client aborted");
                self.outbox.clear();
                self.drop_transfer(now, code);
                self.deadline = None;
                self.events.push_back(ServerEvent::Aborted {
                    object: current,
                    code,
                    by: AbortedBy::Client,
                });
            }
            return;
        }
        match (&mut self.transfer, request) {
            (Transfer::Idle, ClientRequest::InitiateDownload { object, payload }) => {
                self.initiate_download(now, object, payload)
            }
            (Transfer::Idle, ClientRequest::InitiateUpload { object }) => {
                self.initiate_upload(now, object)
            }
            (Transfer::Idle, ClientRequest::InitiateBlockDownload { object, crc, size }) => {
                self.initiate_block(now, object, crc, size)
            }
            (
                Transfer::Segmented(_),
                ClientRequest::DownloadSegment {
                    toggle,
                    data,
                    continuation,
                },
            ) => self.download_segment(now, toggle, data, continuation),
            (Transfer::Upload(_), ClientRequest::UploadSegment { toggle }) => {
                self.upload_segment(now, toggle)
            }
            (
                Transfer::Block(BlockDownload {
                    stage: BlockStage::AwaitEnd,
                    ..
                }),
                ClientRequest::EndBlockDownload { unused, crc },
            ) => self.end_block(now, unused, crc),
            (transfer, request) => {
                let object = transfer.object().unwrap_or(match request {
                    ClientRequest::InitiateDownload { object, .. }
                    | ClientRequest::InitiateUpload { object }
                    | ClientRequest::InitiateBlockDownload { object, .. } => object,
                    _ => NO_OBJECT,
                });
                tracing::debug!(?request, "SDO request out of sequence");
                self.abort(now, object, AbortCode::InvalidCommand);
            }
        }
    }

    fn initiate_download(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        payload: InitiatePayload,
    ) {
        match payload {
            InitiatePayload::Expedited(data) => {
                let len = data.len() as u64;
                if let Err(code) = self.dictionary.begin_write(now, object, Some(len as u32)) {
                    return self.abort(now, object, code);
                }
                let result = self
                    .dictionary
                    .write(now, object, 0, data.as_slice())
                    .and_then(|d| {
                        self.dictionary
                            .end_write(now, object, len)
                            .map(|e| d.saturating_add(e))
                    });
                match result {
                    Ok(d) => {
                        self.busy(now, d);
                        self.respond(
                            now,
                            ServerResponse::InitiateDownload { object },
                            OnSent::Nothing,
                        );
                        self.events.push_back(ServerEvent::Downloaded {
                            object,
                            len,
                            mode: TransferMode::Expedited,
                        });
                    }
                    Err(code) => {
                        self.dictionary.abort_write(now, object, code);
                        self.abort(now, object, code);
                    }
                }
            }
            InitiatePayload::Segmented { size } => {
                match self.dictionary.begin_write(now, object, size) {
                    Ok(()) => {
                        self.transfer = Transfer::Segmented(SegmentedDownload {
                            object,
                            size,
                            received: 0,
                            toggle: Toggle::Zero,
                        });
                        self.respond(
                            now,
                            ServerResponse::InitiateDownload { object },
                            OnSent::Nothing,
                        );
                    }
                    Err(code) => self.abort(now, object, code),
                }
            }
        }
    }

    fn download_segment(
        &mut self,
        now: Timestamp,
        toggle: Toggle,
        data: SegmentData,
        continuation: Continuation,
    ) {
        let Transfer::Segmented(t) = &mut self.transfer else {
            return;
        };
        let object = t.object;
        if toggle != t.toggle {
            self.abort(now, object, AbortCode::ToggleNotAlternated);
            return;
        }
        let offset = t.received;
        let end = offset + data.len() as u64;
        let size = t.size.map(u64::from);
        if size.is_some_and(|s| end > s) {
            self.abort(now, object, AbortCode::LengthTooHigh);
            return;
        }
        if continuation == Continuation::Last && size.is_some_and(|s| end < s) {
            self.abort(now, object, AbortCode::LengthTooLow);
            return;
        }
        let mut spent = Duration::ZERO;
        if !data.is_empty() {
            match self.dictionary.write(now, object, offset, data.as_slice()) {
                Ok(d) => spent = d,
                Err(code) => return self.abort(now, object, code),
            }
        }
        t.received = end;
        t.toggle = toggle.flipped();
        if continuation == Continuation::Last {
            match self.dictionary.end_write(now, object, end) {
                Ok(d) => spent = spent.saturating_add(d),
                Err(code) => return self.abort(now, object, code),
            }
            self.transfer = Transfer::Idle;
            self.events.push_back(ServerEvent::Downloaded {
                object,
                len: end,
                mode: TransferMode::Segmented,
            });
        }
        self.busy(now, spent);
        self.respond(
            now,
            ServerResponse::DownloadSegment { toggle },
            OnSent::Nothing,
        );
    }

    fn initiate_upload(&mut self, now: Timestamp, object: ObjectAddress) {
        let data = match self.dictionary.read(now, object) {
            Ok(data) => data,
            Err(code) => return self.abort(now, object, code),
        };
        let Ok(size) = u32::try_from(data.len()) else {
            return self.abort(now, object, AbortCode::OutOfMemory);
        };
        if (1..=EXPEDITED_MAX).contains(&data.len()) {
            let payload = ExpeditedData::new(&data).map_or(
                InitiatePayload::Segmented { size: Some(size) },
                InitiatePayload::Expedited,
            );
            self.respond(
                now,
                ServerResponse::InitiateUpload { object, payload },
                OnSent::Nothing,
            );
            self.events.push_back(ServerEvent::Uploaded {
                object,
                len: u64::from(size),
            });
            return;
        }
        self.transfer = Transfer::Upload(SegmentedUpload {
            object,
            data,
            sent: 0,
            toggle: Toggle::Zero,
        });
        let payload = InitiatePayload::Segmented { size: Some(size) };
        self.respond(
            now,
            ServerResponse::InitiateUpload { object, payload },
            OnSent::Nothing,
        );
    }

    fn upload_segment(&mut self, now: Timestamp, toggle: Toggle) {
        let Transfer::Upload(t) = &mut self.transfer else {
            return;
        };
        let object = t.object;
        if toggle != t.toggle {
            return self.abort(now, object, AbortCode::ToggleNotAlternated);
        }
        let end = (t.sent + SEGMENT_DATA_LEN).min(t.data.len());
        let data = SegmentData::take(&t.data[t.sent..end], SEGMENT_DATA_LEN);
        let continuation = if end == t.data.len() {
            Continuation::Last
        } else {
            Continuation::More
        };
        t.sent = end;
        t.toggle = toggle.flipped();
        if continuation == Continuation::Last {
            self.transfer = Transfer::Idle;
            self.events.push_back(ServerEvent::Uploaded {
                object,
                len: end as u64,
            });
        }
        self.respond(
            now,
            ServerResponse::UploadSegment {
                toggle,
                data,
                continuation,
            },
            OnSent::Nothing,
        );
    }

    fn initiate_block(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        crc: CrcSupport,
        size: Option<u32>,
    ) {
        if self.config.block_transfer == BlockTransfer::Refused {
            return self.abort(now, object, AbortCode::InvalidCommand);
        }
        if let Err(code) = self.dictionary.begin_write(now, object, size) {
            return self.abort(now, object, code);
        }
        let block_size = self.config.block_size;
        let crc_mode = crc.and(self.config.crc);
        self.transfer = Transfer::Block(BlockDownload {
            object,
            size,
            crc_mode,
            crc: Crc16Xmodem::new(),
            received: 0,
            held: None,
            block_size,
            seq: 0,
            stage: BlockStage::Acking(AfterAck::NextSubBlock),
        });
        let response = ServerResponse::InitiateBlockDownload {
            object,
            crc: self.config.crc,
            block_size,
        };
        self.respond(now, response, OnSent::Ack(AfterAck::NextSubBlock));
    }

    fn block_segment(&mut self, now: Timestamp, data: &[u8]) {
        let Transfer::Block(block) = &mut self.transfer else {
            return;
        };
        let object = block.object;
        let BlockStage::Receiving { heard } = &mut block.stage else {
            tracing::trace!("ignoring a segment sent before the acknowledgement");
            return;
        };
        let segment = match BlockSegment::parse(data) {
            Ok(segment) => segment,
            Err(SdoFrameError::Length(len)) => {
                tracing::debug!(len, "ignoring a block segment that is not 8 bytes long");
                return;
            }
            Err(error) => return self.abort(now, object, error.abort_code()),
        };
        *heard = Some(now);
        if segment.sequence > block.block_size {
            return self.abort(now, object, AbortCode::InvalidSequenceNumber);
        }
        if segment.sequence <= block.seq {
            tracing::trace!(sequence = segment.sequence, "ignoring a repeated segment");
            return;
        }
        if segment.sequence != block.seq + 1 {
            tracing::debug!(
                sequence = segment.sequence,
                expected = block.seq + 1,
                "segment missing"
            );
            if block.seq > 0 {
                self.acknowledge(now);
            }
            return;
        }
        block.seq = segment.sequence;
        if segment.continuation == Continuation::Last {
            block.held = Some(segment.data);
            return self.acknowledge(now);
        }
        let offset = block.received;
        let end = offset + SEGMENT_DATA_LEN as u64;
        if block.size.is_some_and(|s| end > u64::from(s)) {
            return self.abort(now, object, AbortCode::LengthTooHigh);
        }
        block.crc.update(&segment.data);
        block.received = end;
        let full = block.seq == block.block_size;
        match self.dictionary.write(now, object, offset, &segment.data) {
            Ok(d) => self.busy(now, d),
            Err(code) => return self.abort(now, object, code),
        }
        if full {
            self.acknowledge(now);
        }
    }

    /// Acknowledges the segments received in order in this sub-block and opens the next
    /// one (or awaits the end frame after the last segment).
    fn acknowledge(&mut self, now: Timestamp) {
        let block_size = self.config.block_size;
        let Transfer::Block(block) = &mut self.transfer else {
            return;
        };
        let ackseq = block.seq;
        let after = if block.held.is_some() {
            AfterAck::AwaitEnd
        } else {
            AfterAck::NextSubBlock
        };
        block.seq = 0;
        block.block_size = block_size;
        block.stage = BlockStage::Acking(after);
        self.respond(
            now,
            ServerResponse::BlockAck { ackseq, block_size },
            OnSent::Ack(after),
        );
    }

    fn end_block(&mut self, now: Timestamp, unused: u8, crc: u16) {
        let Transfer::Block(block) = &mut self.transfer else {
            return;
        };
        let object = block.object;
        let Some(last) = block.held.take() else {
            return self.abort(now, object, AbortCode::InvalidCommand);
        };
        let tail = &last[..SEGMENT_DATA_LEN - usize::from(unused.min(7))];
        let offset = block.received;
        let len = offset + tail.len() as u64;
        if block.size.is_some_and(|s| u64::from(s) != len) {
            return self.abort(now, object, AbortCode::LengthMismatch);
        }
        block.crc.update(tail);
        if block.crc_mode == CrcSupport::Supported && block.crc.value() != crc {
            tracing::debug!(
                received = crc,
                computed = block.crc.value(),
                "block download CRC mismatch"
            );
            return self.abort(now, object, AbortCode::CrcError);
        }
        block.received = len;
        let mode = TransferMode::Block {
            crc: block.crc_mode,
        };
        let mut spent = Duration::ZERO;
        if !tail.is_empty() {
            match self.dictionary.write(now, object, offset, tail) {
                Ok(d) => spent = d,
                Err(code) => return self.abort(now, object, code),
            }
        }
        match self.dictionary.end_write(now, object, len) {
            Ok(d) => spent = spent.saturating_add(d),
            Err(code) => return self.abort(now, object, code),
        }
        self.transfer = Transfer::Idle;
        self.busy(now, spent);
        self.respond(now, ServerResponse::EndBlockDownload, OnSent::Nothing);
        self.events
            .push_back(ServerEvent::Downloaded { object, len, mode });
    }
}
