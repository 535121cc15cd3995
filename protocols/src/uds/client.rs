//! The client side of a UDS flash download, as a sans-IO state machine.

use super::request::{RoutineControlType, UdsRequest, transfer_data};
use super::response::{UdsResponse, parse_max_block_length};
use super::transfer::{BlockSizing, TransferAck};
use super::{Nrc, service};
use crate::isotp::{Event as IsoTpEvent, IsoTpChannel, IsoTpConfig};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// How the client runs the download. [`FlashConfig::default`] gives the usual values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashConfig {
    /// P2 client timeout: how long to wait for a response once the request is sent.
    /// Default 50 ms. The clock starts when the request's last frame is handed out by
    /// `poll_transmit`, so a caller that queues frames deep in a driver must allow for the
    /// queue in this value.
    pub p2: Duration,
    /// P2* client timeout: how long to wait after a response-pending (NRC 0x78) answer.
    /// Default 5000 ms.
    pub p2_star: Duration,
    /// Security level whose seed is requested (odd, 0x01 to 0x7D); the key is sent with
    /// level + 1. Default 0x01.
    pub security_level: u8,
    /// Memory address of the download. Default 0.
    pub memory_address: u32,
    /// Bytes of the address field in `RequestDownload`, 1 to 4. Default 4.
    pub address_len: u8,
    /// Bytes of the size field in `RequestDownload`, 1 to 4. Default 4.
    pub size_len: u8,
    /// dataFormatIdentifier of `RequestDownload` (compression, encryption). Default 0.
    pub data_format: u8,
    /// Routine that erases memory. Default 0xFF00.
    pub erase_routine: u16,
    /// Option bytes sent with the erase routine (often address and size). Default none.
    pub erase_option: Vec<u8>,
    /// Routine that checks the programmed image. Default 0xFF01.
    pub check_routine: u16,
    /// Option bytes sent with the check routine (often a CRC or signature). Default none.
    pub check_option: Vec<u8>,
    /// ECUReset type sent last. Default 0x01 (hard reset).
    pub reset_type: u8,
    /// How often a request is repeated after a lost or late response (or a busy answer)
    /// before the update fails. Default 3.
    pub max_retries: u8,
    /// How many response-pending answers in a row one request may get. Default 120 (ten
    /// minutes at P2*).
    pub max_pending: u16,
    /// Largest `TransferData` request the client builds, whatever the server allows; keeps
    /// memory bounded. Default 65536.
    pub max_block_len: u32,
    /// What the server's `TransferData` acknowledgement carries. Default
    /// [`TransferAck::Counter`].
    pub transfer_ack: TransferAck,
    /// How long blocks are. Default [`BlockSizing::Fixed`].
    pub block_sizing: BlockSizing,
}

impl Default for FlashConfig {
    fn default() -> FlashConfig {
        FlashConfig {
            p2: Duration::from_millis(50),
            p2_star: Duration::from_millis(5000),
            security_level: 0x01,
            memory_address: 0,
            address_len: 4,
            size_len: 4,
            data_format: 0,
            erase_routine: 0xFF00,
            erase_option: Vec::new(),
            check_routine: 0xFF01,
            check_option: Vec::new(),
            reset_type: 0x01,
            max_retries: 3,
            max_pending: 120,
            max_block_len: 65536,
            transfer_ack: TransferAck::Counter,
            block_sizing: BlockSizing::Fixed,
        }
    }
}

/// Where the download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlashPhase {
    /// Not started yet.
    Idle,
    /// Entering the programming session (10 02).
    Session,
    /// Seed and key (27).
    Security,
    /// Erasing memory (31 01 FF00).
    Erase,
    /// Announcing the download (34).
    Download,
    /// Transferring blocks (36).
    Transfer,
    /// Ending the transfer (37).
    Exit,
    /// Checking the programmed image (31 01 FF01).
    Check,
    /// Resetting the server (11).
    Reset,
    /// Finished.
    Done,
    /// Failed; see the [`FlashEvent::Failed`] event.
    Failed,
}

/// Whether the final reset was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetOutcome {
    /// The server answered the reset request.
    Acknowledged,
    /// No answer came within P2: many servers reset before answering. The image had
    /// already passed the check.
    Unconfirmed,
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashEvent {
    /// The phase changed.
    Phase(FlashPhase),
    /// Answer with [`FlashClient::provide_data`]: the `len` image bytes from `offset`.
    NeedData {
        /// Offset in the image.
        offset: u64,
        /// Number of bytes.
        len: usize,
    },
    /// The server acknowledged another block.
    Progress {
        /// Image bytes acknowledged so far.
        acknowledged: u64,
        /// Image length.
        total: u64,
    },
    /// The image was transferred, checked, and the server reset.
    Done {
        /// Whether the reset was acknowledged.
        reset: ResetOutcome,
    },
    /// The download failed.
    Failed(FlashError),
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashError {
    /// The server refused a request.
    #[error("{phase:?}: the server refused service 0x{service:02X} with {nrc}")]
    Rejected {
        /// Phase of the request.
        phase: FlashPhase,
        /// Service of the request.
        service: u8,
        /// The negative response code.
        nrc: Nrc,
    },
    /// No response came, also after repeating the request.
    #[error("{phase:?}: no response after {attempts} attempts")]
    NoResponse {
        /// Phase of the request.
        phase: FlashPhase,
        /// Attempts made.
        attempts: u8,
    },
    /// The server kept answering response-pending.
    #[error("{phase:?}: more than {max} response-pending answers")]
    TooManyPending {
        /// Phase of the request.
        phase: FlashPhase,
        /// The configured limit.
        max: u16,
    },
    /// A response did not make sense for the request.
    #[error("{phase:?}: unexpected response {response:02X?}")]
    UnexpectedResponse {
        /// Phase of the request.
        phase: FlashPhase,
        /// The response bytes (at most 16).
        response: Vec<u8>,
    },
    /// The server announced a maximum block length too small to carry data.
    #[error("maxNumberOfBlockLength {0} leaves no room for data")]
    BlockLengthTooSmall(u64),
    /// The vendor's key function failed.
    #[error("computing the security key failed: {0}")]
    Key(#[from] KeyError),
    /// The check routine reported the image as not correct.
    #[error("the check routine reported status {status:02X?}")]
    CheckFailed {
        /// The routine status record.
        status: Vec<u8>,
    },
    /// The caller aborted the download.
    #[error("aborted")]
    Aborted,
}

/// Why a vendor's key function could not produce a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Computes the key for a security-access seed: the vendor's secret.
///
/// Closures `FnMut(u8, &[u8]) -> Result<Vec<u8>, KeyError>` implement it.
pub trait SecurityKey: Send {
    /// The key for `seed` at security `level` (the odd level of the seed request).
    fn key(&mut self, level: u8, seed: &[u8]) -> Result<Vec<u8>, KeyError>;
}

impl<F> SecurityKey for F
where
    F: FnMut(u8, &[u8]) -> Result<Vec<u8>, KeyError> + Send,
{
    fn key(&mut self, level: u8, seed: &[u8]) -> Result<Vec<u8>, KeyError> {
        self(level, seed)
    }
}

/// Why a client could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashConfigError {
    /// There is nothing to download.
    #[error("the image is empty")]
    EmptyImage,
    /// An address or size field width outside 1 to 4.
    #[error("address and size fields take 1 to 4 bytes, got {address_len} and {size_len}")]
    FieldWidth {
        /// The address width.
        address_len: u8,
        /// The size width.
        size_len: u8,
    },
    /// The address or the image size does not fit its field.
    #[error("address 0x{address:X} or size {size} does not fit its field")]
    DoesNotFit {
        /// The address.
        address: u32,
        /// The size.
        size: u32,
    },
    /// The security level is not an odd value from 0x01 to 0x7D.
    #[error("security level 0x{0:02X} is not an odd value from 0x01 to 0x7D")]
    SecurityLevel(u8),
    /// The block length limit leaves no room for data.
    #[error("max_block_len {0} leaves no room for data")]
    BlockLength(u32),
    /// Adaptive block sizing without the server's byte count, or with a zero minimum
    /// length or growth threshold.
    #[error(
        "adaptive block sizing needs TransferAck::CounterAndBytesReceived and a minimum \
         length and growth threshold of at least 1"
    )]
    AdaptiveSizing,
}

/// Why [`FlashClient::provide_data`] refused the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvideDataError {
    /// No [`FlashEvent::NeedData`] is outstanding.
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

/// One request of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Session,
    RequestSeed,
    SendKey,
    Erase,
    RequestDownload,
    TransferData {
        counter: u8,
        offset: u64,
        /// Data bytes of the attempt under way.
        len: usize,
        /// Data bytes of the longest attempt of this block (the server may hold them).
        longest: usize,
    },
    TransferExit,
    Check,
    Reset,
}

impl Step {
    fn phase(self) -> FlashPhase {
        match self {
            Step::Session => FlashPhase::Session,
            Step::RequestSeed | Step::SendKey => FlashPhase::Security,
            Step::Erase => FlashPhase::Erase,
            Step::RequestDownload => FlashPhase::Download,
            Step::TransferData { .. } => FlashPhase::Transfer,
            Step::TransferExit => FlashPhase::Exit,
            Step::Check => FlashPhase::Check,
            Step::Reset => FlashPhase::Reset,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The request is going out through ISO-TP.
    Sending,
    /// Sent; the response is due by `deadline`.
    Response { deadline: Timestamp },
    /// The server was busy; send again at `at`.
    Retry { at: Timestamp },
}

#[derive(Debug)]
struct Exchange {
    step: Step,
    request: Bytes,
    /// Repeats made so far that count against `max_retries`.
    retries: u8,
    /// Times the request was sent, every repeat included.
    attempts: u32,
    /// Response-pending answers received for this request.
    pending: u16,
    wait: Wait,
}

#[derive(Debug)]
enum State {
    Idle,
    Exchange(Exchange),
    NeedData {
        counter: u8,
        offset: u64,
        len: usize,
    },
    Done,
    Failed,
}

/// Drives the UDS flash sequence over an ISO-TP channel:
///
/// 1. `10 02` programming session;
/// 2. `27 01` request seed, `27 02` send key (skipped when the seed is all zeros, meaning
///    the server is already unlocked);
/// 3. `31 01 FF00` erase, waiting through response-pending (NRC 0x78) answers for P2*
///    each;
/// 4. `34` request download; the reply's maxNumberOfBlockLength sets the data per block
///    (that length minus 2);
/// 5. `36` transfer data, the block sequence counter starting at 1 and wrapping 0xFF ->
///    0x00. Each block's bytes are asked of the caller with [`FlashEvent::NeedData`], so
///    the image never needs to be in memory. After a lost or late response the same block
///    is repeated with the same counter, up to `max_retries` times; a late acknowledgement
///    of a block already acknowledged is ignored. With [`BlockSizing::Adaptive`] the
///    repeat is shorter and later blocks follow its length;
/// 6. `37` transfer exit;
/// 7. `31 01 FF01` check (a status record whose first byte is not 0 fails the update);
/// 8. `11 01` reset.
///
/// The client is sans-IO like the [`IsoTpChannel`] it owns: feed it frames and time, take
/// its frames and events, and come back at [`poll_timeout`](Self::poll_timeout).
pub struct FlashClient {
    channel: IsoTpChannel,
    config: FlashConfig,
    key: Box<dyn SecurityKey>,
    total: u64,
    acknowledged: u64,
    /// Data bytes of the next new block.
    block_data_len: usize,
    /// Data bytes of a block at most, from the server's maxNumberOfBlockLength.
    max_data_len: usize,
    /// Blocks in a row acknowledged at their first attempt.
    first_try_streak: u16,
    phase: FlashPhase,
    state: State,
    events: VecDeque<FlashEvent>,
}

impl std::fmt::Debug for FlashClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashClient")
            .field("phase", &self.phase)
            .field("acknowledged", &self.acknowledged)
            .field("total", &self.total)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl FlashClient {
    /// A client that will download `image_len` bytes over an ISO-TP channel with
    /// `isotp` settings, unlocking the server with `key`.
    pub fn new(
        isotp: IsoTpConfig,
        config: FlashConfig,
        image_len: u32,
        key: Box<dyn SecurityKey>,
    ) -> Result<FlashClient, FlashConfigError> {
        if image_len == 0 {
            return Err(FlashConfigError::EmptyImage);
        }
        let (a, s) = (config.address_len, config.size_len);
        if !(1..=4).contains(&a) || !(1..=4).contains(&s) {
            return Err(FlashConfigError::FieldWidth {
                address_len: a,
                size_len: s,
            });
        }
        let fits = |value: u32, width: u8| width >= 4 || value >> (8 * u32::from(width)) == 0;
        if !fits(config.memory_address, a) || !fits(image_len, s) {
            return Err(FlashConfigError::DoesNotFit {
                address: config.memory_address,
                size: image_len,
            });
        }
        let level = config.security_level;
        if level % 2 == 0 || level > 0x7D {
            return Err(FlashConfigError::SecurityLevel(level));
        }
        if config.max_block_len < 3 {
            return Err(FlashConfigError::BlockLength(config.max_block_len));
        }
        if let BlockSizing::Adaptive {
            min_data_len,
            grow_after,
        } = config.block_sizing
        {
            if config.transfer_ack != TransferAck::CounterAndBytesReceived
                || min_data_len == 0
                || grow_after == 0
            {
                return Err(FlashConfigError::AdaptiveSizing);
            }
        }
        Ok(FlashClient {
            channel: IsoTpChannel::new(isotp),
            config,
            key,
            total: u64::from(image_len),
            acknowledged: 0,
            block_data_len: 0,
            max_data_len: 0,
            first_try_streak: 0,
            phase: FlashPhase::Idle,
            state: State::Idle,
            events: VecDeque::new(),
        })
    }

    /// Starts the sequence. Does nothing once started.
    pub fn start(&mut self, now: Timestamp) {
        if matches!(self.state, State::Idle) {
            self.begin(
                now,
                Step::Session,
                vec![service::DIAGNOSTIC_SESSION_CONTROL, 0x02],
            );
        }
    }

    /// Stops the download; it ends as failed with [`FlashError::Aborted`].
    pub fn abort(&mut self) {
        if !matches!(self.state, State::Done | State::Failed) {
            self.channel.abort_send();
            self.fail(FlashError::Aborted);
        }
    }

    /// The current phase.
    pub fn phase(&self) -> FlashPhase {
        self.phase
    }

    /// Image bytes acknowledged by the server, and the image length.
    pub fn progress(&self) -> (u64, u64) {
        (self.acknowledged, self.total)
    }

    /// Data bytes per `TransferData` block, known once the download was accepted.
    pub fn block_data_len(&self) -> Option<usize> {
        (self.block_data_len > 0).then_some(self.block_data_len)
    }

    /// Answers a [`FlashEvent::NeedData`] with exactly the bytes asked for.
    pub fn provide_data(&mut self, now: Timestamp, data: &[u8]) -> Result<(), ProvideDataError> {
        let State::NeedData {
            counter,
            offset,
            len,
        } = self.state
        else {
            return Err(ProvideDataError::NotExpected);
        };
        if data.len() != len {
            return Err(ProvideDataError::WrongLength {
                expected: len,
                got: data.len(),
            });
        }
        self.begin(
            now,
            Step::TransferData {
                counter,
                offset,
                len,
                longest: len,
            },
            transfer_data(counter, data),
        );
        Ok(())
    }

    /// Feeds a received CAN frame.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.channel.handle_frame(now, frame);
        self.drain_channel(now);
    }

    /// Fires expired timers: ISO-TP timers, the response timeout and busy retries.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.channel.handle_timeout(now);
        self.drain_channel(now);
        let State::Exchange(ex) = &mut self.state else {
            return;
        };
        match ex.wait {
            Wait::Response { deadline } if now >= deadline && !self.channel.is_receiving() => {
                self.no_response(now);
            }
            Wait::Retry { at } if now >= at => {
                let request = ex.request.clone();
                self.transmit(now, request);
            }
            _ => {}
        }
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let frame = self.channel.poll_transmit(now);
        self.drain_channel(now);
        frame
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match &self.state {
            State::Exchange(ex) => match ex.wait {
                Wait::Response { deadline } if !self.channel.is_receiving() => Some(deadline),
                Wait::Retry { at } => Some(at),
                _ => None,
            },
            _ => None,
        };
        match (own, self.channel.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<FlashEvent> {
        self.events.pop_front()
    }

    fn drain_channel(&mut self, now: Timestamp) {
        while let Some(event) = self.channel.poll_event() {
            let State::Exchange(ex) = &mut self.state else {
                continue;
            };
            match event {
                IsoTpEvent::Sent => {
                    if ex.wait == Wait::Sending {
                        ex.wait = Wait::Response {
                            deadline: now + self.config.p2,
                        };
                    }
                }
                IsoTpEvent::SendFailed(error) => {
                    tracing::debug!(%error, "UDS request lost in transport");
                    if ex.wait == Wait::Sending {
                        self.no_response(now);
                    }
                }
                IsoTpEvent::ReceiveFailed(error) => {
                    tracing::debug!(%error, "UDS response lost in transport");
                }
                IsoTpEvent::Received(message) => {
                    if matches!(ex.wait, Wait::Response { .. }) {
                        self.response(now, &message);
                    }
                }
            }
        }
    }

    /// Sends the request of a new step.
    fn begin(&mut self, now: Timestamp, step: Step, request: Vec<u8>) {
        self.set_phase(step.phase());
        let request = Bytes::from(request);
        self.state = State::Exchange(Exchange {
            step,
            request: request.clone(),
            retries: 0,
            attempts: 0,
            pending: 0,
            wait: Wait::Sending,
        });
        self.transmit(now, request);
    }

    /// Hands `request` to ISO-TP for the current exchange.
    fn transmit(&mut self, now: Timestamp, request: Bytes) {
        self.channel.abort_send();
        if let State::Exchange(ex) = &mut self.state {
            ex.wait = Wait::Sending;
            ex.attempts = ex.attempts.saturating_add(1);
        }
        if let Err(error) = self.channel.send(now, request) {
            // The request is never empty and the channel was just made idle.
            tracing::error!(%error, "ISO-TP refused a UDS request");
            self.fail(FlashError::NoResponse {
                phase: self.phase,
                attempts: 0,
            });
        }
    }

    /// The response did not come (or the request was lost): repeat, or give up.
    fn no_response(&mut self, now: Timestamp) {
        let State::Exchange(ex) = &mut self.state else {
            return;
        };
        if ex.step == Step::Reset {
            self.finish(ResetOutcome::Unconfirmed);
            return;
        }
        if let (
            BlockSizing::Adaptive { min_data_len, .. },
            Step::TransferData {
                counter,
                offset,
                len,
                longest,
            },
        ) = (self.config.block_sizing, ex.step)
        {
            if len > min_data_len {
                // Shorter messages lose fewer frames. The server's byte count in the
                // acknowledgement says which bytes it kept, whichever attempt arrived.
                let shorter = (len / 2).max(min_data_len);
                ex.step = Step::TransferData {
                    counter,
                    offset,
                    len: shorter,
                    longest,
                };
                ex.request = ex.request.slice(..2 + shorter);
                ex.pending = 0;
                self.block_data_len = shorter;
                self.first_try_streak = 0;
                tracing::debug!(
                    counter,
                    from = len,
                    to = shorter,
                    "repeating a shorter block"
                );
                let request = ex.request.clone();
                self.transmit(now, request);
                return;
            }
        }
        if ex.retries >= self.config.max_retries {
            let attempts = ex.retries.saturating_add(1);
            self.fail(FlashError::NoResponse {
                phase: self.phase,
                attempts,
            });
            return;
        }
        ex.retries += 1;
        ex.pending = 0;
        tracing::debug!(step = ?ex.step, retry = ex.retries, "repeating UDS request");
        if ex.step == Step::SendKey {
            // The key may have been accepted with its answer lost: ask for a seed again;
            // an unlocked server answers with a zero seed.
            ex.step = Step::RequestSeed;
            ex.request = Bytes::from(vec![service::SECURITY_ACCESS, self.config.security_level]);
        }
        let request = ex.request.clone();
        self.transmit(now, request);
    }

    fn response(&mut self, now: Timestamp, message: &[u8]) {
        let State::Exchange(ex) = &mut self.state else {
            return;
        };
        let sid = ex.request[0];
        let step = ex.step;
        let first_try = ex.attempts == 1;
        let parsed = match UdsResponse::parse(message) {
            Ok(r) if r.service() == sid => r,
            Ok(_) | Err(_) => {
                tracing::debug!(response = ?message, "ignoring a response to another request");
                return;
            }
        };
        let data = match parsed {
            UdsResponse::Negative {
                nrc: Nrc::ResponsePending,
                ..
            } => {
                ex.pending += 1;
                if ex.pending > self.config.max_pending {
                    self.fail(FlashError::TooManyPending {
                        phase: self.phase,
                        max: self.config.max_pending,
                    });
                } else {
                    ex.wait = Wait::Response {
                        deadline: now + self.config.p2_star,
                    };
                }
                return;
            }
            UdsResponse::Negative {
                nrc: Nrc::BusyRepeatRequest,
                ..
            } if ex.retries < self.config.max_retries => {
                ex.retries += 1;
                ex.wait = Wait::Retry {
                    at: now + self.config.p2,
                };
                return;
            }
            UdsResponse::Negative { nrc, .. } => {
                self.fail(FlashError::Rejected {
                    phase: self.phase,
                    service: sid,
                    nrc,
                });
                return;
            }
            UdsResponse::Positive { data, .. } => data,
        };
        let level = self.config.security_level;
        match step {
            Step::Session if data.first() == Some(&0x02) => self.request_seed(now),
            Step::RequestSeed if data.first() == Some(&level) => {
                let seed = &data[1..];
                if seed.is_empty() {
                    self.unexpected(message);
                } else if seed.iter().all(|&b| b == 0) {
                    self.erase(now);
                } else {
                    match self.key.key(level, seed) {
                        Ok(key) => {
                            let mut request = vec![service::SECURITY_ACCESS, level + 1];
                            request.extend_from_slice(&key);
                            self.begin(now, Step::SendKey, request);
                        }
                        Err(e) => self.fail(FlashError::Key(e)),
                    }
                }
            }
            Step::SendKey if data.first() == Some(&(level + 1)) => self.erase(now),
            Step::Erase if self.routine_echo(data, self.config.erase_routine) => {
                self.request_download(now)
            }
            Step::RequestDownload => match parse_max_block_length(data) {
                Ok(max) if max < 3 => self.fail(FlashError::BlockLengthTooSmall(max)),
                Ok(max) => {
                    let limit = max.min(u64::from(self.config.max_block_len));
                    self.max_data_len = usize::try_from(limit - 2).unwrap_or(usize::MAX);
                    self.block_data_len = self.max_data_len;
                    self.need_data(1, 0);
                }
                Err(_) => self.unexpected(message),
            },
            Step::TransferData {
                counter,
                offset,
                len,
                longest,
            } => {
                match self.config.transfer_ack.parse(data) {
                    Ok(ack) if ack.counter == counter => {
                        let acknowledged = match ack.received {
                            None => offset + len as u64,
                            // The server holds this block's bytes from one of its
                            // attempts, never more than the longest and never past the
                            // image.
                            Some(r) if r > offset && r <= offset + longest as u64 => r,
                            Some(_) => return self.unexpected(message),
                        };
                        self.acknowledged = acknowledged.min(self.total);
                        self.block_acknowledged(first_try);
                        self.events.push_back(FlashEvent::Progress {
                            acknowledged: self.acknowledged,
                            total: self.total,
                        });
                        if self.acknowledged >= self.total {
                            self.begin(
                                now,
                                Step::TransferExit,
                                vec![service::REQUEST_TRANSFER_EXIT],
                            );
                        } else {
                            self.need_data(counter.wrapping_add(1), self.acknowledged);
                        }
                    }
                    Ok(ack) if ack.counter == counter.wrapping_sub(1) => {
                        tracing::debug!(counter = ack.counter, "ignoring a late acknowledgement");
                    }
                    _ => self.unexpected(message),
                }
            }
            Step::TransferExit => self.check(now),
            Step::Check if self.routine_echo(data, self.config.check_routine) => {
                let status = &data[3..];
                if status.first().is_some_and(|&s| s != 0) {
                    self.fail(FlashError::CheckFailed {
                        status: status.to_vec(),
                    });
                } else {
                    let reset = vec![service::ECU_RESET, self.config.reset_type];
                    self.begin(now, Step::Reset, reset);
                }
            }
            Step::Reset if data.first() == Some(&self.config.reset_type) => {
                self.finish(ResetOutcome::Acknowledged)
            }
            _ => {
                tracing::debug!(response = ?message, "ignoring a response whose echo does not match");
            }
        }
    }

    /// Counts a block acknowledged; with adaptive sizing, a run of first-attempt
    /// acknowledgements doubles the length of later blocks.
    fn block_acknowledged(&mut self, first_try: bool) {
        let BlockSizing::Adaptive { grow_after, .. } = self.config.block_sizing else {
            return;
        };
        if !first_try {
            self.first_try_streak = 0;
            return;
        }
        self.first_try_streak = self.first_try_streak.saturating_add(1);
        if self.first_try_streak >= grow_after && self.block_data_len < self.max_data_len {
            self.block_data_len = self.block_data_len.saturating_mul(2).min(self.max_data_len);
            self.first_try_streak = 0;
            tracing::debug!(len = self.block_data_len, "blocks grow again");
        }
    }

    fn routine_echo(&self, data: &[u8], routine: u16) -> bool {
        let r = routine.to_be_bytes();
        data.len() >= 3 && data[0] == RoutineControlType::Start.to_byte() && data[1..3] == r
    }

    fn request_seed(&mut self, now: Timestamp) {
        let request = vec![service::SECURITY_ACCESS, self.config.security_level];
        self.begin(now, Step::RequestSeed, request);
    }

    fn erase(&mut self, now: Timestamp) {
        let request = UdsRequest::RoutineControl {
            control: RoutineControlType::Start,
            routine: self.config.erase_routine,
            option: &self.config.erase_option,
            response: super::PositiveResponse::Required,
        }
        .to_bytes();
        self.begin(now, Step::Erase, request);
    }

    fn request_download(&mut self, now: Timestamp) {
        let request = UdsRequest::RequestDownload {
            data_format: self.config.data_format,
            address_len: self.config.address_len,
            size_len: self.config.size_len,
            address: u64::from(self.config.memory_address),
            size: self.total,
        }
        .to_bytes();
        self.begin(now, Step::RequestDownload, request);
    }

    fn check(&mut self, now: Timestamp) {
        let request = UdsRequest::RoutineControl {
            control: RoutineControlType::Start,
            routine: self.config.check_routine,
            option: &self.config.check_option,
            response: super::PositiveResponse::Required,
        }
        .to_bytes();
        self.begin(now, Step::Check, request);
    }

    fn need_data(&mut self, counter: u8, offset: u64) {
        let remaining = self.total - offset;
        let len = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(self.block_data_len);
        self.set_phase(FlashPhase::Transfer);
        self.state = State::NeedData {
            counter,
            offset,
            len,
        };
        self.events.push_back(FlashEvent::NeedData { offset, len });
    }

    fn unexpected(&mut self, message: &[u8]) {
        self.fail(FlashError::UnexpectedResponse {
            phase: self.phase,
            response: message[..message.len().min(16)].to_vec(),
        });
    }

    fn set_phase(&mut self, phase: FlashPhase) {
        if self.phase != phase {
            self.phase = phase;
            self.events.push_back(FlashEvent::Phase(phase));
        }
    }

    fn finish(&mut self, reset: ResetOutcome) {
        self.state = State::Done;
        self.set_phase(FlashPhase::Done);
        self.events.push_back(FlashEvent::Done { reset });
    }

    fn fail(&mut self, error: FlashError) {
        tracing::warn!(phase = ?self.phase, %error, "flash download failed");
        self.state = State::Failed;
        self.set_phase(FlashPhase::Failed);
        self.events.push_back(FlashEvent::Failed(error));
    }
}
