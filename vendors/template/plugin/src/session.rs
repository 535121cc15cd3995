//! The transfer session (`PROTOCOL.md`, "Update sequence") as a sans-IO state machine
//! built from the UDS pieces of `bmsfw-protocols`: the flash client does the download,
//! a requester does the polls around it.
//!
//! | state | phase shown | what goes on the bus |
//! |---|---|---|
//! | `Flash` | Transferring, Installing from `37` on | `10 02`, `27 01`/`27 02`, `31 01 FF00`, `34`, `36`..., `37`, `31 01 FF01`, `11 01` |
//! | `Restart` | Restarting | `3E 00` every 500 ms until the battery answers, 10 s at most |
//! | `Verify` | Verifying | `22 F1 95`: the running version, compared with the package's |
//!
//! The Acme bootloader cannot resume an interrupted download (it erases the slot at the
//! start of each one), so [`checkpoint`](bmsfw_plugin_api::Session::checkpoint) stays
//! empty and `SessionRequest::resume` is not read.

mod failure;

use crate::key;
use crate::package::{Header, read_header};
use crate::protocol::{
    CHECK_ROUTINE, DID_APPLICATION_VERSION, ERASE_ROUTINE, MAX_BLOCK_LENGTH, P2_CLIENT,
    P2_STAR_CLIENT, PADDING, REQUEST_ID, RESPONSE_ID, RESTART_POLL, RESTART_SILENCE_MAX,
    SECURITY_LEVEL,
};
use crate::version::show;
use bmsfw_plugin_api::{
    AbortReason, CanFrame, ErrorCode, Failure, PackageReader, Phase, SessionRequest, SessionStatus,
    Timestamp,
};
use bmsfw_protocols::isotp::{IsoTpConfig, Padding};
use bmsfw_protocols::package;
use bmsfw_protocols::uds::{
    BlockSizing, FlashClient, FlashConfig, FlashEvent, FlashPhase, KeyError, Requester,
    RequesterConfig, RequesterEvent, RestartPoll, TransferAck, leave_programming, provide_block,
    read_data_request, read_two_bytes, request_failure,
};
use std::collections::VecDeque;

/// Where the session is.
enum State {
    /// Created; the first call with the time starts the download.
    NotStarted,
    /// The flash sequence, from `10 02` to `11 01`.
    Flash(Box<FlashClient>),
    /// Waiting for the battery to answer again after its reset.
    Restart(RestartPoll),
    /// Reading the running version.
    Verify(Requester),
    /// Finished.
    Done,
    /// Failed with this failure.
    Failed(Failure),
}

/// Whether the flash sequence passed the end of the transfer (`37` and later show as
/// Installing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Transferring,
    Installing,
}

/// An Acme update session.
pub struct TemplateSession {
    package: PackageReader,
    header: Header,
    total: u64,
    acknowledged: u64,
    stage: Stage,
    state: State,
    /// Frames to send before anything else (the abort's `10 81`).
    outbox: VecDeque<CanFrame>,
    /// Block buffer: at most one block of the package is in memory.
    block: Vec<u8>,
}

fn isotp() -> IsoTpConfig {
    let mut c = IsoTpConfig::new(REQUEST_ID, RESPONSE_ID);
    c.padding = Padding::Fill(PADDING);
    c
}

/// A requester that repeats a lost answer `max_retries` times.
fn requester(max_retries: u8) -> Requester {
    Requester::new(
        isotp(),
        RequesterConfig {
            p2: P2_CLIENT,
            p2_star: P2_STAR_CLIENT,
            max_retries,
            ..RequesterConfig::default()
        },
    )
}

/// The flash client of `PROTOCOL.md` for a package of `len` bytes.
fn flash_client(len: u32) -> Result<FlashClient, Failure> {
    let config = FlashConfig {
        p2: P2_CLIENT,
        p2_star: P2_STAR_CLIENT,
        security_level: SECURITY_LEVEL,
        erase_routine: ERASE_ROUTINE,
        erase_option: len.to_be_bytes().to_vec(),
        check_routine: CHECK_ROUTINE,
        reset_type: 0x01,
        max_retries: 5,
        max_block_len: MAX_BLOCK_LENGTH,
        transfer_ack: TransferAck::CounterAndBytesReceived,
        block_sizing: BlockSizing::Fixed,
        ..FlashConfig::default()
    };
    let key =
        Box::new(|_level: u8, seed: &[u8]| -> Result<Vec<u8>, KeyError> { Ok(key::key(seed)) });
    FlashClient::new(isotp(), config, len, key).map_err(|e| {
        Failure::new(
            ErrorCode::TRANSFER_FAILED,
            format!("cannot set up the download: {e}"),
        )
    })
}

impl TemplateSession {
    /// A session for the request's package, checked against the battery.
    pub fn start(request: SessionRequest) -> Result<TemplateSession, Failure> {
        let header = read_header(&request.package).map_err(|e| package::refused(&e))?;
        package::check_product(
            request.battery.product_code.into_option(),
            header.product_code,
        )?;
        let total = request.package.len();
        Ok(TemplateSession {
            package: request.package,
            header,
            total,
            acknowledged: 0,
            stage: Stage::Transferring,
            state: State::NotStarted,
            outbox: VecDeque::new(),
            block: Vec::new(),
        })
    }

    fn ensure_started(&mut self, now: Timestamp) {
        if !matches!(self.state, State::NotStarted) {
            return;
        }
        // `read_header` bounded the package by the slot size, so it fits 32 bits.
        let len = u32::try_from(self.total).unwrap_or(u32::MAX);
        match flash_client(len) {
            Ok(mut client) => {
                client.start(now);
                self.state = State::Flash(Box::new(client));
            }
            Err(f) => self.fail(f),
        }
    }

    fn fail(&mut self, failure: Failure) {
        if let State::Flash(client) = &mut self.state {
            client.abort();
            self.outbox
                .extend(leave_programming(REQUEST_ID, Padding::Fill(PADDING)));
        }
        self.state = State::Failed(failure);
    }

    /// Handles everything the active part has to report, until nothing changes.
    fn drive(&mut self, now: Timestamp) {
        loop {
            let progressed = match &mut self.state {
                State::Flash(client) => match client.poll_event() {
                    Some(e) => {
                        self.flash_event(now, e);
                        true
                    }
                    None => false,
                },
                State::Restart(poll) => match poll.poll_event() {
                    Some(e) => {
                        self.restart_answer(now, e);
                        true
                    }
                    None => false,
                },
                State::Verify(r) => match r.poll_event() {
                    Some(e) => {
                        self.verified(e);
                        true
                    }
                    None => false,
                },
                State::NotStarted | State::Done | State::Failed(_) => false,
            };
            if !progressed {
                return;
            }
        }
    }

    fn flash_event(&mut self, now: Timestamp, event: FlashEvent) {
        match event {
            FlashEvent::NeedData { offset, len } => {
                let State::Flash(client) = &mut self.state else {
                    return;
                };
                if let Err(f) =
                    provide_block(client, now, &self.package, offset, len, &mut self.block)
                {
                    self.fail(f);
                }
            }
            FlashEvent::Progress { acknowledged, .. } => self.acknowledged = acknowledged,
            FlashEvent::Phase(FlashPhase::Exit | FlashPhase::Check | FlashPhase::Reset) => {
                self.stage = Stage::Installing;
            }
            FlashEvent::Phase(_) => {}
            FlashEvent::Done { .. } => {
                self.state = State::Restart(RestartPoll::new(
                    // Each poll is sent once: the next one follows 500 ms later anyway.
                    requester(0),
                    now,
                    now + RESTART_POLL,
                    RESTART_POLL,
                    RESTART_SILENCE_MAX,
                ));
            }
            FlashEvent::Failed(error) => self.fail(failure::flash(&error)),
        }
    }

    fn restart_answer(&mut self, now: Timestamp, event: RequesterEvent) {
        match event {
            // Silence is expected while the battery restarts: the poll goes on.
            RequesterEvent::NoResponse { .. } => {}
            RequesterEvent::Positive(_) => {
                let mut r = requester(3);
                match r.request(now, read_data_request(&[DID_APPLICATION_VERSION])) {
                    Ok(()) => self.state = State::Verify(r),
                    Err(e) => self.fail(Failure::new(
                        ErrorCode::TRANSFER_FAILED,
                        format!("cannot read the running version: {e}"),
                    )),
                }
            }
            other => self.fail(request_failure(other, "waiting for the restart")),
        }
    }

    fn verified(&mut self, event: RequesterEvent) {
        let data = match event {
            RequesterEvent::Positive(data) => data,
            other => return self.fail(request_failure(other, "reading the running version")),
        };
        let running = match read_two_bytes(&data, DID_APPLICATION_VERSION, "the running version") {
            Ok(running) => running,
            Err(f) => return self.fail(f),
        };
        let wanted = self.header.version;
        if running != wanted {
            return self.fail(Failure::new(
                ErrorCode::VERSION_MISMATCH,
                format!(
                    "the battery runs {} after the restart, the package is {}: the new \
                     firmware did not start and the battery went back to its previous one",
                    show(running),
                    show(wanted)
                ),
            ));
        }
        self.state = State::Done;
    }

    /// Sends a `3E 00` poll when its time has come; fails once the battery stayed
    /// silent too long.
    fn restart_timers(&mut self, now: Timestamp) {
        let State::Restart(poll) = &mut self.state else {
            return;
        };
        if let Err(f) = poll.send_due(now, || vec![0x3E, 0x00]) {
            self.fail(f);
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::NotStarted => Phase::TRANSFERRING,
            State::Flash(_) => match self.stage {
                Stage::Transferring => Phase::TRANSFERRING,
                Stage::Installing => Phase::INSTALLING,
            },
            State::Restart(_) => Phase::RESTARTING,
            State::Verify(_) => Phase::VERIFYING,
            State::Done => Phase::DONE,
            State::Failed(_) => Phase::FAILED,
        }
    }
}

impl bmsfw_plugin_api::Session for TemplateSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if frame.id() != RESPONSE_ID {
            return;
        }
        match &mut self.state {
            State::Flash(client) => client.handle_frame(now, frame),
            State::Restart(poll) => poll.handle_frame(now, frame),
            State::Verify(r) => r.handle_frame(now, frame),
            State::NotStarted | State::Done | State::Failed(_) => {}
        }
        self.drive(now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.ensure_started(now);
        match &mut self.state {
            State::Flash(client) => client.handle_timeout(now),
            State::Restart(poll) => poll.handle_timeout(now),
            State::Verify(r) => r.handle_timeout(now),
            State::NotStarted | State::Done | State::Failed(_) => {}
        }
        self.drive(now);
        self.restart_timers(now);
        self.drive(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.ensure_started(now);
        if let Some(frame) = self.outbox.pop_front() {
            return Some(frame);
        }
        let frame = match &mut self.state {
            State::Flash(client) => client.poll_transmit(now),
            State::Restart(poll) => poll.poll_transmit(now),
            State::Verify(r) => r.poll_transmit(now),
            State::NotStarted | State::Done | State::Failed(_) => None,
        };
        self.drive(now);
        frame.or_else(|| self.outbox.pop_front())
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            // Start as soon as the engine looks.
            State::NotStarted => Some(Timestamp::ZERO),
            State::Flash(client) => client.poll_timeout(),
            State::Restart(poll) => poll.poll_timeout(),
            State::Verify(r) => r.poll_timeout(),
            State::Done | State::Failed(_) => None,
        }
    }

    fn status(&self) -> SessionStatus {
        let done = match self.state {
            State::Restart(_) | State::Verify(_) | State::Done => self.total,
            _ => self.acknowledged,
        };
        match &self.state {
            State::Failed(failure) => SessionStatus::failed(failure.clone(), done, self.total),
            _ => SessionStatus::new(self.phase(), done, self.total),
        }
    }

    fn abort(&mut self, _now: Timestamp, reason: &AbortReason) {
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        match &mut self.state {
            State::Restart(poll) => poll.cancel(),
            State::Verify(r) => r.cancel(),
            _ => {}
        }
        self.fail(Failure::new(
            ErrorCode::ABORTED,
            format!(
                "aborted by the GX ({}: {})",
                reason.code,
                reason.message.as_str()
            ),
        ));
    }
}

#[cfg(test)]
mod tests;
