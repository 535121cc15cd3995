//! The server side of a UDS flash download, for simulated battery management systems.

use super::Nrc;
use super::request::{PositiveResponse, RoutineControlType, UdsRequest};
use super::response::{negative, positive, request_download_positive};
use super::transfer::TransferAck;
use crate::isotp::{Event as IsoTpEvent, IsoTpChannel, IsoTpConfig};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;

/// Whether the check routine found the programmed image correct, and how the server
/// says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckOutcome {
    /// The image is complete and valid: a positive response with status byte 0x00.
    Correct,
    /// The image is not valid: a positive response with status byte 0x01.
    Incorrect,
    /// The image is not valid, and the server says so with a negative response carrying
    /// this code once the check's time has passed (after response-pending answers when
    /// that time exceeds P2), as servers do that tell failures apart by their code.
    Rejected(Nrc),
}

/// What a simulated BMS plugs into a [`FlashServer`]: its secret, its flash memory and
/// its timing.
///
/// Operations that take time return how long; the server answers response-pending
/// (NRC 0x78) meanwhile when that exceeds P2, and sends the final response when the time
/// has passed. The effect of the call (erasing, writing) is the backend's to model: it may
/// apply it at once or keep it until the time has passed.
pub trait FlashBackend {
    /// A new seed for security `level`. An all-zero seed means "already unlocked" to
    /// clients, so return some non-zero byte.
    fn seed(&mut self, level: u8) -> Vec<u8>;
    /// Whether `key` answers `seed` at `level`.
    fn key_is_valid(&mut self, level: u8, seed: &[u8], key: &[u8]) -> bool;
    /// Erases the memory the download will write; `option` is the routine's option record.
    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc>;
    /// Accepts a download of `size` bytes to `address` in `data_format` and returns the
    /// maxNumberOfBlockLength to announce (service byte and counter included).
    fn request_download(&mut self, address: u64, size: u64, data_format: u8) -> Result<u64, Nrc>;
    /// Writes `data` at `offset` bytes into the download.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc>;
    /// The download is complete.
    fn transfer_exit(&mut self) -> Result<(), Nrc>;
    /// Checks the programmed image; `option` is the routine's option record.
    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc>;
    /// Resets the server. The positive response, if any, is already queued.
    fn reset(&mut self, reset_type: u8);
    /// The value of data identifier `identifier`, if the server has one.
    fn read_data(&mut self, identifier: u16) -> Option<Vec<u8>> {
        let _ = identifier;
        None
    }
}

/// Settings of a [`FlashServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// P2 server: an operation longer than this is answered with response-pending first.
    /// Default 50 ms.
    pub p2: Duration,
    /// P2* server, announced in the session response. Default 5000 ms.
    pub p2_star: Duration,
    /// Interval between repeated response-pending answers; must stay below the client's
    /// P2*. Default 2000 ms.
    pub pending_interval: Duration,
    /// The erase routine's identifier. Default 0xFF00.
    pub erase_routine: u16,
    /// The check routine's identifier. Default 0xFF01.
    pub check_routine: u16,
    /// Wrong keys accepted before seeds are refused until the session is re-entered.
    /// Default 3.
    pub max_key_attempts: u8,
    /// What the `TransferData` acknowledgement carries. Default [`TransferAck::Counter`].
    pub transfer_ack: TransferAck,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            p2: Duration::from_millis(50),
            p2_star: Duration::from_millis(5000),
            pending_interval: Duration::from_millis(2000),
            erase_routine: 0xFF00,
            check_routine: 0xFF01,
            max_key_attempts: 3,
            transfer_ack: TransferAck::Counter,
        }
    }
}

/// The active diagnostic session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Session {
    /// 0x01, after power-up and reset.
    Default,
    /// 0x02, where flashing services are allowed.
    Programming,
    /// 0x03.
    Extended,
}

/// The security-access state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Locked.
    Locked,
    /// A seed was sent for `level`; the key is awaited.
    SeedSent {
        /// The level.
        level: u8,
        /// The seed sent.
        seed: Vec<u8>,
    },
    /// Unlocked at `level`.
    Unlocked {
        /// The level.
        level: u8,
    },
}

/// Where the download stands on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// Nothing erased in this session.
    Idle,
    /// Memory erased; a download may be requested.
    Erased,
    /// A download is under way.
    Downloading {
        /// Address requested.
        address: u64,
        /// Size requested.
        size: u64,
        /// dataFormatIdentifier requested.
        data_format: u8,
        /// maxNumberOfBlockLength announced.
        max_block_len: u64,
        /// Bytes written so far.
        received: u64,
        /// Counter the next new block must carry.
        next_counter: u8,
        /// Counter of the last block written, which is acknowledged again if repeated.
        last_counter: Option<u8>,
    },
    /// The download was completed with transfer exit.
    Exited,
    /// The check routine ran.
    Checked(CheckOutcome),
}

#[derive(Debug)]
enum Busy {
    Idle,
    Working {
        request: Vec<u8>,
        done_at: Timestamp,
        response: Vec<u8>,
        next_pending: Option<Timestamp>,
    },
}

/// What a request leads to.
enum Outcome {
    Reply(Vec<u8>),
    Silent,
    After(Duration, Vec<u8>),
}

/// A UDS server implementing the flash sequence (session, security, erase, download,
/// transfer with counter checking and repeat handling, exit, check, reset) on top of a
/// [`FlashBackend`].
///
/// Two ways to drive it: over CAN with [`handle_frame`](Self::handle_frame) /
/// [`poll_transmit`](Self::poll_transmit) (it owns an ISO-TP channel), or message by
/// message with [`handle_request`](Self::handle_request) /
/// [`poll_response`](Self::poll_response). Use one or the other. Both need
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
///
/// Sequence rules: flashing services need the programming session (NRC 0x7F otherwise);
/// routines and download need security access (0x33); a download needs an erase first and
/// a check needs a completed transfer (0x24). A `TransferData` repeating the last block's
/// counter is acknowledged without writing; any other unexpected counter gets 0x73. A
/// repeated `RequestDownload` with the same parameters before any data, a repeated
/// `RequestTransferExit` and a repeated `10 02` are answered again without side effects,
/// so a client may repeat requests whose responses were lost. A request arriving while an
/// operation runs gets response-pending if it repeats that operation's request and 0x21
/// (busy) otherwise.
#[derive(Debug)]
pub struct FlashServer<B> {
    channel: IsoTpChannel,
    config: ServerConfig,
    backend: B,
    session: Session,
    security: Security,
    transfer: TransferState,
    failed_keys: u8,
    busy: Busy,
    outbox: VecDeque<Vec<u8>>,
}

impl<B: FlashBackend> FlashServer<B> {
    /// A server in the default session, locked, over an ISO-TP channel with `isotp`
    /// settings.
    pub fn new(isotp: IsoTpConfig, config: ServerConfig, backend: B) -> FlashServer<B> {
        FlashServer {
            channel: IsoTpChannel::new(isotp),
            config,
            backend,
            session: Session::Default,
            security: Security::Locked,
            transfer: TransferState::Idle,
            failed_keys: 0,
            busy: Busy::Idle,
            outbox: VecDeque::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (to inject faults).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The active session.
    pub fn session(&self) -> Session {
        self.session
    }

    /// The security-access state.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Where the download stands.
    pub fn transfer(&self) -> TransferState {
        self.transfer
    }

    /// Forgets everything a server holds in RAM, as a power cut or a restart of its
    /// processor does: the ISO-TP channel, queued responses, an operation under way, the
    /// session (back to default), security access and the download. The backend is
    /// kept; what it holds in RAM is for its owner to drop.
    pub fn restart(&mut self) {
        self.channel = IsoTpChannel::new(self.channel.config().clone());
        self.outbox.clear();
        self.busy = Busy::Idle;
        self.session = Session::Default;
        self.security = Security::Locked;
        self.transfer = TransferState::Idle;
        self.failed_keys = 0;
    }

    /// Feeds a received CAN frame; complete requests are served.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.channel.handle_frame(now, frame);
        self.drain_channel(now);
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.channel.can_send() {
            if let Some(response) = self.outbox.pop_front() {
                if let Err(error) = self.channel.send(now, response) {
                    tracing::error!(%error, "ISO-TP refused a UDS response");
                }
            }
        }
        let frame = self.channel.poll_transmit(now);
        self.drain_channel(now);
        frame
    }

    /// Serves one request given as bytes; responses queue for
    /// [`poll_response`](Self::poll_response).
    pub fn handle_request(&mut self, now: Timestamp, request: &[u8]) {
        if let Busy::Working {
            request: running, ..
        } = &self.busy
        {
            let sid = request.first().copied().unwrap_or(0);
            let nrc = if running.as_slice() == request {
                Nrc::ResponsePending
            } else {
                Nrc::BusyRepeatRequest
            };
            self.outbox.push_back(negative(sid, nrc));
            return;
        }
        let parsed = match UdsRequest::parse(request) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::debug!(%error, "refusing a malformed UDS request");
                if let Some(sid) = error.service() {
                    self.outbox.push_back(negative(sid, error.nrc()));
                }
                return;
            }
        };
        match self.serve(&parsed) {
            Outcome::Reply(response) => self.outbox.push_back(response),
            Outcome::Silent => {}
            Outcome::After(duration, response) if duration.is_zero() => {
                self.outbox.push_back(response)
            }
            Outcome::After(duration, response) => {
                let next_pending = if duration > self.config.p2 {
                    self.outbox
                        .push_back(negative(parsed.service(), Nrc::ResponsePending));
                    Some(now + self.config.pending_interval)
                } else {
                    None
                };
                self.busy = Busy::Working {
                    request: request.to_vec(),
                    done_at: now + duration,
                    response,
                    next_pending,
                };
            }
        }
    }

    /// The next response to send, when driven message by message.
    pub fn poll_response(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Finishes operations whose time has come and repeats response-pending answers.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.channel.handle_timeout(now);
        self.drain_channel(now);
        if let Busy::Working {
            request,
            done_at,
            next_pending,
            ..
        } = &mut self.busy
        {
            if now >= *done_at {
                if let Busy::Working { response, .. } =
                    std::mem::replace(&mut self.busy, Busy::Idle)
                {
                    self.outbox.push_back(response);
                }
            } else if let Some(at) = next_pending {
                if now >= *at {
                    self.outbox
                        .push_back(negative(request[0], Nrc::ResponsePending));
                    *at = now + self.config.pending_interval;
                }
            }
        }
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match &self.busy {
            Busy::Idle => None,
            Busy::Working {
                done_at,
                next_pending,
                ..
            } => Some(next_pending.map_or(*done_at, |p| p.min(*done_at))),
        };
        match (own, self.channel.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drain_channel(&mut self, now: Timestamp) {
        while let Some(event) = self.channel.poll_event() {
            match event {
                IsoTpEvent::Received(request) => self.handle_request(now, &request),
                IsoTpEvent::Sent => {}
                IsoTpEvent::SendFailed(error) | IsoTpEvent::ReceiveFailed(error) => {
                    tracing::debug!(%error, "UDS server transport error");
                }
            }
        }
    }

    fn serve(&mut self, request: &UdsRequest<'_>) -> Outcome {
        let sid = request.service();
        let reject = |nrc| Outcome::Reply(negative(sid, nrc));
        let answer = |mode: PositiveResponse, data: Vec<u8>| match mode {
            PositiveResponse::Required => Outcome::Reply(data),
            PositiveResponse::Suppressed => Outcome::Silent,
        };
        let programming = self.session == Session::Programming;
        let unlocked = matches!(self.security, Security::Unlocked { .. });
        match *request {
            UdsRequest::DiagnosticSessionControl { session, response } => {
                let new = match session {
                    1 => Session::Default,
                    2 => Session::Programming,
                    3 => Session::Extended,
                    _ => return reject(Nrc::SubFunctionNotSupported),
                };
                if new != self.session {
                    self.session = new;
                    self.security = Security::Locked;
                    self.transfer = TransferState::Idle;
                    self.failed_keys = 0;
                }
                // P2 server max in ms, P2* server max in units of 10 ms.
                let p2 = u16::try_from(self.config.p2.as_millis()).unwrap_or(u16::MAX);
                let p2_star =
                    u16::try_from(self.config.p2_star.as_millis() / 10).unwrap_or(u16::MAX);
                let mut data = vec![session];
                data.extend_from_slice(&p2.to_be_bytes());
                data.extend_from_slice(&p2_star.to_be_bytes());
                answer(response, positive(sid, &data))
            }
            UdsRequest::EcuReset {
                reset_type,
                response,
            } => {
                if !(1..=3).contains(&reset_type) {
                    return reject(Nrc::SubFunctionNotSupported);
                }
                let out = answer(response, positive(sid, &[reset_type]));
                if let Outcome::Reply(bytes) = &out {
                    self.outbox.push_back(bytes.clone());
                }
                self.session = Session::Default;
                self.security = Security::Locked;
                self.transfer = TransferState::Idle;
                self.failed_keys = 0;
                self.backend.reset(reset_type);
                Outcome::Silent
            }
            UdsRequest::RequestSeed {
                level, response, ..
            } => {
                if self.session == Session::Default {
                    return reject(Nrc::ServiceNotSupportedInActiveSession);
                }
                if self.failed_keys >= self.config.max_key_attempts {
                    return reject(Nrc::RequiredTimeDelayNotExpired);
                }
                let seed = if self.security == (Security::Unlocked { level }) {
                    vec![0; 4]
                } else {
                    let seed = self.backend.seed(level);
                    self.security = Security::SeedSent {
                        level,
                        seed: seed.clone(),
                    };
                    seed
                };
                let mut data = vec![level];
                data.extend_from_slice(&seed);
                answer(response, positive(sid, &data))
            }
            UdsRequest::SendKey {
                level,
                key,
                response,
            } => {
                let Security::SeedSent { level: l, seed } = &self.security else {
                    return reject(Nrc::RequestSequenceError);
                };
                if *l != level {
                    return reject(Nrc::RequestSequenceError);
                }
                let seed = seed.clone();
                if self.backend.key_is_valid(level, &seed, key) {
                    self.security = Security::Unlocked { level };
                    self.failed_keys = 0;
                    answer(response, positive(sid, &[level + 1]))
                } else {
                    self.security = Security::Locked;
                    self.failed_keys = self.failed_keys.saturating_add(1);
                    if self.failed_keys >= self.config.max_key_attempts {
                        reject(Nrc::ExceededNumberOfAttempts)
                    } else {
                        reject(Nrc::InvalidKey)
                    }
                }
            }
            UdsRequest::RoutineControl {
                control,
                routine,
                option,
                ..
            } => {
                if !programming {
                    return reject(Nrc::ServiceNotSupportedInActiveSession);
                }
                if !unlocked {
                    return reject(Nrc::SecurityAccessDenied);
                }
                if control != RoutineControlType::Start {
                    return reject(Nrc::SubFunctionNotSupported);
                }
                let r = routine.to_be_bytes();
                if routine == self.config.erase_routine {
                    if matches!(self.transfer, TransferState::Downloading { .. }) {
                        return reject(Nrc::ConditionsNotCorrect);
                    }
                    match self.backend.erase(option) {
                        Ok(d) => {
                            self.transfer = TransferState::Erased;
                            Outcome::After(d, positive(sid, &[0x01, r[0], r[1]]))
                        }
                        Err(nrc) => {
                            self.transfer = TransferState::Idle;
                            reject(nrc)
                        }
                    }
                } else if routine == self.config.check_routine {
                    if !matches!(
                        self.transfer,
                        TransferState::Exited | TransferState::Checked(_)
                    ) {
                        return reject(Nrc::RequestSequenceError);
                    }
                    match self.backend.check(option) {
                        Ok((d, outcome)) => {
                            self.transfer = TransferState::Checked(outcome);
                            let response = match outcome {
                                CheckOutcome::Correct => positive(sid, &[0x01, r[0], r[1], 0x00]),
                                CheckOutcome::Incorrect => positive(sid, &[0x01, r[0], r[1], 0x01]),
                                CheckOutcome::Rejected(nrc) => negative(sid, nrc),
                            };
                            Outcome::After(d, response)
                        }
                        Err(nrc) => reject(nrc),
                    }
                } else {
                    reject(Nrc::RequestOutOfRange)
                }
            }
            UdsRequest::RequestDownload {
                data_format,
                address,
                size,
                ..
            } => {
                if !programming {
                    return reject(Nrc::ServiceNotSupportedInActiveSession);
                }
                if !unlocked {
                    return reject(Nrc::SecurityAccessDenied);
                }
                match self.transfer {
                    TransferState::Downloading {
                        address: a,
                        size: s,
                        data_format: f,
                        max_block_len,
                        last_counter: None,
                        ..
                    } if (a, s, f) == (address, size, data_format) => {
                        Outcome::Reply(request_download_positive(max_block_len))
                    }
                    TransferState::Erased => {
                        match self.backend.request_download(address, size, data_format) {
                            Ok(max_block_len) => {
                                self.transfer = TransferState::Downloading {
                                    address,
                                    size,
                                    data_format,
                                    max_block_len,
                                    received: 0,
                                    next_counter: 1,
                                    last_counter: None,
                                };
                                Outcome::Reply(request_download_positive(max_block_len))
                            }
                            Err(nrc) => reject(nrc),
                        }
                    }
                    _ => reject(Nrc::RequestSequenceError),
                }
            }
            UdsRequest::TransferData { counter, data } => {
                let TransferState::Downloading {
                    size,
                    max_block_len,
                    received,
                    next_counter,
                    last_counter,
                    ..
                } = &mut self.transfer
                else {
                    return reject(Nrc::RequestSequenceError);
                };
                let ack = self.config.transfer_ack;
                if *last_counter == Some(counter) {
                    return Outcome::Reply(ack.response(counter, *received));
                }
                if counter != *next_counter {
                    return reject(Nrc::WrongBlockSequenceCounter);
                }
                let len = data.len() as u64;
                if data.is_empty() || len + 2 > *max_block_len {
                    return reject(Nrc::IncorrectMessageLengthOrInvalidFormat);
                }
                if *received + len > *size {
                    return reject(Nrc::TransferDataSuspended);
                }
                match self.backend.write(*received, data) {
                    Ok(d) => {
                        *received += len;
                        *last_counter = Some(counter);
                        *next_counter = counter.wrapping_add(1);
                        Outcome::After(d, ack.response(counter, *received))
                    }
                    Err(nrc) => reject(nrc),
                }
            }
            UdsRequest::RequestTransferExit { .. } => match self.transfer {
                TransferState::Downloading { received, size, .. } if received == size => {
                    match self.backend.transfer_exit() {
                        Ok(()) => {
                            self.transfer = TransferState::Exited;
                            Outcome::Reply(positive(sid, &[]))
                        }
                        Err(nrc) => reject(nrc),
                    }
                }
                TransferState::Exited => Outcome::Reply(positive(sid, &[])),
                _ => reject(Nrc::RequestSequenceError),
            },
            UdsRequest::TesterPresent { response } => answer(response, positive(sid, &[0x00])),
            UdsRequest::ReadDataByIdentifier { ref identifiers } => {
                let mut data = Vec::new();
                for &id in identifiers {
                    let Some(value) = self.backend.read_data(id) else {
                        return reject(Nrc::RequestOutOfRange);
                    };
                    data.extend_from_slice(&id.to_be_bytes());
                    data.extend_from_slice(&value);
                }
                Outcome::Reply(positive(sid, &data))
            }
        }
    }
}
