//! The transfer session: probe, flash, restart, verify (`PROTOCOL.md`, "Update
//! sequence"), as a sans-IO state machine over the UDS pieces of `bmsfw-protocols`.
//!
//! | state | phase shown | what goes on the bus |
//! |---|---|---|
//! | `Probe` | Transferring | `22 F1 80 F1 87`: bootloader version and product code |
//! | `Flash` | Transferring, then Installing from `37` on | `10 02`, `27`, `31 01 FF00`, `34`, `36`..., `37`, `31 01 FF01`, `11 01` |
//! | `Restart` | Restarting | `22 F1 A0` every 500 ms until the battery answers (`11 01` again if it did not restart) |
//! | `Verify` | Verifying | `22 F1 95`: the running version |
//!
//! A session that fails or is aborted during `Flash` leaves the programming session with
//! `10 81`; when the bootloader answers busy (`7F 10 21`, a block still being written),
//! it sends `10 81` again 20 ms later, up to 8 times, and fails once the bootloader has
//! been quiet for `P2_CLIENT`.
//!
//! An erase refused with `7F 31 22` means an earlier attempt's download is still open (its
//! `10 81` was lost): the session sends `10 81` and starts `Flash` again, once.
//!
//! Aurora's bootloader cannot resume an interrupted download: a session always starts
//! from the probe, and [`checkpoint`](bmsfw_plugin_api::Session::checkpoint) is empty.

mod failure;

use crate::key;
use crate::package::{Header, read_header};
use crate::protocol::{
    BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, CODE_BOOTLOADER_TOO_OLD,
    DID_APPLICATION_VERSION, DID_BOOT_STATE, DID_BOOTLOADER_VERSION, DID_PRODUCT_CODE,
    MAX_BLOCK_LENGTH, MAX_RESET_REPEATS, MIN_BLOCK_DATA, MIN_BOOTLOADER, P2_CLIENT, P2_STAR_CLIENT,
    PADDING, REQUEST_ID, RESPONSE_ID, RESTART_POLL, RESTART_SILENCE_MAX,
};
use crate::version::show;
use bmsfw_plugin_api::{
    AbortReason, CanFrame, ErrorCode, Failure, PackageReader, Phase, SessionRequest, SessionStatus,
    Timestamp,
};
use bmsfw_protocols::isotp::{IsoTpConfig, Padding};
use bmsfw_protocols::package;
use bmsfw_protocols::uds::{
    BlockSizing, FlashClient, FlashConfig, FlashError, FlashEvent, FlashPhase, KeyError, Nrc,
    Requester, RequesterConfig, RequesterEvent, RestartPoll, TransferAck, leave_programming,
    parse_read_data, provide_block, read_data_request, read_two_bytes,
};
use std::collections::VecDeque;
use std::time::Duration;

/// Where the session is.
enum State {
    /// Created; the first call with the time starts the probe.
    NotStarted,
    /// Reading the bootloader version and the product code.
    Probe(Requester),
    /// The flash sequence, from `10 02` to `11 01`.
    Flash(Box<FlashClient>),
    /// Waiting for the battery to come back after the reset.
    Restart(Restart),
    /// Reading the running version.
    Verify {
        requester: Requester,
        rolled_back: RolledBack,
        restart: RestartCause,
    },
    /// Leaving the programming session after a failure, then failed with it.
    Leaving(Leaving),
    /// Finished.
    Done,
    /// Failed with this failure.
    Failed(Failure),
}

/// Most `10 81` a failed session sends while the bootloader answers busy.
const MAX_LEAVE_ATTEMPTS: u8 = 8;

/// Wait before `10 81` again after a busy answer.
const LEAVE_RETRY: Duration = Duration::from_millis(20);

/// Leaving the programming session after a failure: `10 81` sent again while the
/// bootloader answers busy.
struct Leaving {
    failure: Failure,
    attempts: u8,
    /// When to send `10 81` again, after a busy answer.
    resend_at: Option<Timestamp>,
    /// When the last `10 81` counts as taken: no busy answer by then.
    quiet_by: Option<Timestamp>,
}

impl Leaving {
    /// The bootloader's answer `frame`: whether it was busy (`7F 10 21`).
    fn busy(frame: &CanFrame) -> bool {
        matches!(frame.data(), [0x03, 0x7F, 0x10, nrc, ..] if Nrc::from_byte(*nrc) == Nrc::BusyRepeatRequest)
    }
}

/// Whether the erase found a download left open by an earlier attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeftOverDownload {
    /// Not seen in this session.
    NotSeen,
    /// Seen once and dropped with `10 81`; a second refusal fails the session.
    Dropped,
}

/// Whether the boot state said the new firmware was rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RolledBack {
    No,
    Yes,
}

/// Why the battery restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestartCause {
    /// The session's reset request.
    Reset,
    /// Something else (a power cut) while the image was being checked: the battery came
    /// back in its default session. Whether it activated the image is for the verify
    /// step to find out.
    Unexpected,
}

/// What the request out in the restart poll's place asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    /// The boot state (`22 F1 A0`), or nothing is out yet.
    BootState,
    /// A repeated reset (`11 01`).
    Reset,
}

struct Restart {
    poll: RestartPoll,
    cause: RestartCause,
    asked: Asked,
    resets_repeated: u8,
}

/// An Aurora update session.
pub struct AuroraSession {
    package: PackageReader,
    header: Header,
    total: u64,
    acknowledged: u64,
    installing: bool,
    state: State,
    /// Frames to send before anything else (the abort's `10 81`).
    outbox: VecDeque<CanFrame>,
    /// Block buffer: at most one block of the package is in memory.
    block: Vec<u8>,
    /// Whether a download left open by an earlier attempt was dropped.
    left_over: LeftOverDownload,
}

fn isotp() -> IsoTpConfig {
    let mut c = IsoTpConfig::new(REQUEST_ID, RESPONSE_ID);
    c.padding = Padding::Fill(PADDING);
    c
}

/// A requester for single reads: three repeats after a lost answer.
fn requester() -> Requester {
    requester_with(3)
}

/// A requester repeating a lost answer `max_retries` times.
fn requester_with(max_retries: u8) -> Requester {
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
fn flash_client(product_code: u16, len: u32) -> Result<FlashClient, Failure> {
    let config = FlashConfig {
        p2: P2_CLIENT,
        p2_star: P2_STAR_CLIENT,
        security_level: 0x01,
        memory_address: 0,
        address_len: 4,
        size_len: 4,
        data_format: 0x00,
        erase_routine: 0xFF00,
        erase_option: len.to_be_bytes().to_vec(),
        check_routine: 0xFF01,
        check_option: Vec::new(),
        reset_type: 0x01,
        max_retries: 10,
        max_pending: 120,
        max_block_len: MAX_BLOCK_LENGTH,
        transfer_ack: TransferAck::CounterAndBytesReceived,
        block_sizing: BlockSizing::Adaptive {
            min_data_len: MIN_BLOCK_DATA,
            grow_after: 8,
        },
    };
    let key = Box::new(
        move |_level: u8, seed: &[u8]| -> Result<Vec<u8>, KeyError> {
            Ok(key::key(product_code, seed))
        },
    );
    FlashClient::new(isotp(), config, len, key).map_err(|e| {
        Failure::new(
            ErrorCode::TRANSFER_FAILED,
            format!("cannot set up the download: {e}"),
        )
    })
}

impl AuroraSession {
    /// A session for the request's package, checked against the battery.
    pub fn start(request: SessionRequest) -> Result<AuroraSession, Failure> {
        let header = read_header(&request.package).map_err(|e| package::refused(&e))?;
        package::check_product(
            request.battery.product_code.into_option(),
            header.product_code,
        )?;
        // `request.resume` is ignored: the bootloader cannot resume, every session
        // starts from the probe and erases the inactive slot again.
        let total = request.package.len();
        Ok(AuroraSession {
            package: request.package,
            header,
            total,
            acknowledged: 0,
            installing: false,
            state: State::NotStarted,
            outbox: VecDeque::new(),
            block: Vec::new(),
            left_over: LeftOverDownload::NotSeen,
        })
    }

    fn ensure_started(&mut self, now: Timestamp) {
        if matches!(self.state, State::NotStarted) {
            let mut r = requester();
            let probe = read_data_request(&[DID_BOOTLOADER_VERSION, DID_PRODUCT_CODE]);
            match r.request(now, probe) {
                Ok(()) => self.state = State::Probe(r),
                Err(e) => self.fail(Failure::new(
                    ErrorCode::TRANSFER_FAILED,
                    format!("cannot send the probe: {e}"),
                )),
            }
        }
    }

    fn fail(&mut self, failure: Failure) {
        if let State::Flash(client) = &mut self.state {
            client.abort();
            self.outbox
                .extend(leave_programming(REQUEST_ID, Padding::Fill(PADDING)));
            self.state = State::Leaving(Leaving {
                failure,
                attempts: 1,
                resend_at: None,
                quiet_by: None,
            });
            return;
        }
        self.state = State::Failed(failure);
    }

    /// Leaving the programming session: a busy answer has `10 81` sent again, quiet ends
    /// it.
    fn leave(&mut self, now: Timestamp, received: Option<&CanFrame>) {
        let State::Leaving(leaving) = &mut self.state else {
            return;
        };
        if received.is_some_and(Leaving::busy) {
            if leaving.attempts < MAX_LEAVE_ATTEMPTS {
                leaving.resend_at = Some(now + LEAVE_RETRY);
                leaving.quiet_by = None;
                return;
            }
            leaving.quiet_by = Some(now);
        }
        if leaving.resend_at.is_some_and(|at| now >= at) {
            leaving.resend_at = None;
            leaving.attempts += 1;
            self.outbox
                .extend(leave_programming(REQUEST_ID, Padding::Fill(PADDING)));
            return;
        }
        if leaving.quiet_by.is_some_and(|by| now >= by) {
            let State::Leaving(leaving) = std::mem::replace(&mut self.state, State::Done) else {
                return;
            };
            self.state = State::Failed(leaving.failure);
        }
    }

    /// Handles everything the active part has to report, until nothing changes.
    fn drive(&mut self, now: Timestamp) {
        loop {
            let progressed = match &mut self.state {
                State::Probe(r) => match r.poll_event() {
                    Some(e) => {
                        self.probed(now, e);
                        true
                    }
                    None => false,
                },
                State::Flash(client) => match client.poll_event() {
                    Some(e) => {
                        self.flash_event(now, e);
                        true
                    }
                    None => false,
                },
                State::Restart(restart) => match restart.poll.poll_event() {
                    Some(e) => {
                        self.restart_answer(now, e);
                        true
                    }
                    None => false,
                },
                State::Verify { requester, .. } => match requester.poll_event() {
                    Some(e) => {
                        self.verified(e);
                        true
                    }
                    None => false,
                },
                State::NotStarted | State::Leaving(_) | State::Done | State::Failed(_) => false,
            };
            if !progressed {
                return;
            }
        }
    }

    fn probed(&mut self, now: Timestamp, event: RequesterEvent) {
        let data = match event {
            RequesterEvent::Positive(data) => data,
            RequesterEvent::Negative(Nrc::RequestOutOfRange) => {
                return self.fail(Failure::new(
                    ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                    "the battery does not report a bootloader version: its firmware has no \
                     CAN bootloader; update it with the Aurora service tool",
                ));
            }
            other => return self.fail(failure::probe(other)),
        };
        let records = [(DID_BOOTLOADER_VERSION, 2), (DID_PRODUCT_CODE, 2)];
        let (bootloader, product) = match parse_read_data(&data, &records) {
            Ok(v) => ([v[0][0], v[0][1]], u16::from_be_bytes([v[1][0], v[1][1]])),
            Err(e) => {
                return self.fail(Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("the answer to the probe is malformed: {e}"),
                ));
            }
        };
        if product != self.header.product_code {
            return self.fail(Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!(
                    "the battery reports product 0x{product:04X}; the package is for 0x{:04X}",
                    self.header.product_code
                ),
            ));
        }
        let needed = MIN_BOOTLOADER.max(self.header.min_bootloader);
        if bootloader < needed {
            return self.fail(Failure::new(
                ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                format!(
                    "the battery's bootloader {} cannot install this package over CAN (it \
                     needs {} or later); update the bootloader with the Aurora service tool",
                    show(bootloader),
                    show(needed)
                ),
            ));
        }
        self.begin_flash(now);
    }

    /// Starts the flash sequence for the whole package, from `10 02`.
    fn begin_flash(&mut self, now: Timestamp) {
        let Ok(len) = u32::try_from(self.total) else {
            return self.fail(Failure::new(
                ErrorCode::PACKAGE_INVALID,
                "the package is larger than a download can announce",
            ));
        };
        match flash_client(self.header.product_code, len) {
            Ok(mut client) => {
                client.start(now);
                self.state = State::Flash(Box::new(client));
            }
            Err(f) => self.fail(f),
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
                self.installing = true;
            }
            FlashEvent::Phase(_) => {}
            FlashEvent::Done { .. } => {
                self.restart(now, RestartCause::Reset, now + RESTART_POLL);
            }
            FlashEvent::Failed(FlashError::Rejected {
                phase: FlashPhase::Check | FlashPhase::Reset,
                nrc: Nrc::ServiceNotSupportedInActiveSession,
                ..
            }) => {
                // The battery lost its programming session while checking or resetting:
                // it restarted. It may have activated the image first; find out.
                self.restart(now, RestartCause::Unexpected, now);
            }
            FlashEvent::Failed(FlashError::Rejected {
                phase: FlashPhase::Erase,
                nrc: Nrc::ConditionsNotCorrect,
                ..
            }) if self.left_over == LeftOverDownload::NotSeen => {
                // A download is still open: an earlier attempt's `10 81` never arrived and
                // the BMS stayed in its programming session (for up to S3). Leaving the
                // session drops that download; start again, once.
                self.left_over = LeftOverDownload::Dropped;
                self.outbox
                    .extend(leave_programming(REQUEST_ID, Padding::Fill(PADDING)));
                self.begin_flash(now);
            }
            FlashEvent::Failed(error) => {
                let failure = failure::flash(&error);
                self.fail(failure);
            }
        }
    }

    fn restart(&mut self, now: Timestamp, cause: RestartCause, first_poll: Timestamp) {
        self.installing = true;
        self.state = State::Restart(Restart {
            poll: RestartPoll::new(
                // Each poll is sent once: the next one follows 500 ms later anyway.
                requester_with(0),
                now,
                first_poll,
                RESTART_POLL,
                RESTART_SILENCE_MAX,
            ),
            cause,
            asked: Asked::BootState,
            resets_repeated: 0,
        });
    }

    fn restart_answer(&mut self, now: Timestamp, event: RequesterEvent) {
        let State::Restart(restart) = &mut self.state else {
            return;
        };
        let asked = std::mem::replace(&mut restart.asked, Asked::BootState);
        let data = match event {
            // Silence is expected while the battery restarts: poll again.
            RequesterEvent::NoResponse { .. } => return,
            RequesterEvent::Positive(data) => data,
            other => return self.fail(failure::restart(other)),
        };
        if asked == Asked::Reset {
            // `51 01`: the battery restarts now.
            return;
        }
        let state = match parse_read_data(&data, &[(DID_BOOT_STATE, 2)]) {
            Ok(v) => v[0][1],
            Err(e) => {
                return self.fail(Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("the boot state after the restart is malformed: {e}"),
                ));
            }
        };
        let rolled_back = match state {
            BOOT_RUNNING => RolledBack::No,
            BOOT_ROLLED_BACK => RolledBack::Yes,
            BOOT_ACTIVATION_PENDING => {
                // The battery never restarted (the reset request was lost): ask again.
                if restart.resets_repeated >= MAX_RESET_REPEATS {
                    return self.fail(Failure::new(
                        ErrorCode::RESTART_FAILED,
                        "the battery accepted the new firmware but does not restart into it",
                    ));
                }
                restart.resets_repeated += 1;
                restart.asked = Asked::Reset;
                restart.poll.send_now(now, vec![0x11, 0x01]);
                return;
            }
            other => {
                return self.fail(Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("the battery reports an unknown boot state 0x{other:02X}"),
                ));
            }
        };
        let cause = restart.cause;
        let mut r = requester();
        match r.request(now, read_data_request(&[DID_APPLICATION_VERSION])) {
            Ok(()) => {
                self.state = State::Verify {
                    requester: r,
                    rolled_back,
                    restart: cause,
                }
            }
            Err(e) => self.fail(Failure::new(
                ErrorCode::TRANSFER_FAILED,
                format!("cannot read the running version: {e}"),
            )),
        }
    }

    fn verified(&mut self, event: RequesterEvent) {
        let State::Verify {
            rolled_back,
            restart,
            ..
        } = self.state
        else {
            return;
        };
        let data = match event {
            RequesterEvent::Positive(data) => data,
            other => return self.fail(failure::verify(other)),
        };
        let running = match read_two_bytes(&data, DID_APPLICATION_VERSION, "the running version") {
            Ok(running) => running,
            Err(f) => return self.fail(f),
        };
        let wanted = self.header.version;
        if rolled_back == RolledBack::Yes {
            return self.fail(Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "the new firmware {} did not start; the battery went back to {}",
                    show(wanted),
                    show(running)
                ),
            ));
        }
        if running != wanted && restart == RestartCause::Unexpected {
            return self.fail(Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "the battery restarted while it checked the new firmware (a power cut?) \
                     and keeps {}; retry the update",
                    show(running)
                ),
            ));
        }
        if running != wanted {
            return self.fail(Failure::new(
                ErrorCode::VERSION_MISMATCH,
                format!(
                    "the battery runs {} after the restart; the package is {}",
                    show(running),
                    show(wanted)
                ),
            ));
        }
        self.state = State::Done;
    }

    /// Sends a boot-state poll when its time has come; fails once the battery stayed
    /// silent too long.
    fn restart_timers(&mut self, now: Timestamp) {
        let State::Restart(restart) = &mut self.state else {
            return;
        };
        if let Err(f) = restart
            .poll
            .send_due(now, || read_data_request(&[DID_BOOT_STATE]))
        {
            self.fail(f);
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::NotStarted | State::Probe(_) => Phase::TRANSFERRING,
            State::Flash(_) if self.installing => Phase::INSTALLING,
            State::Flash(_) => Phase::TRANSFERRING,
            State::Leaving(_) if self.installing => Phase::INSTALLING,
            State::Leaving(_) => Phase::TRANSFERRING,
            State::Restart(_) => Phase::RESTARTING,
            State::Verify { .. } => Phase::VERIFYING,
            State::Done => Phase::DONE,
            State::Failed(_) => Phase::FAILED,
        }
    }
}

impl bmsfw_plugin_api::Session for AuroraSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if frame.id() != RESPONSE_ID {
            return;
        }
        match &mut self.state {
            State::Probe(r) => r.handle_frame(now, frame),
            State::Flash(client) => client.handle_frame(now, frame),
            State::Restart(restart) => restart.poll.handle_frame(now, frame),
            State::Verify { requester, .. } => requester.handle_frame(now, frame),
            State::Leaving(_) => self.leave(now, Some(frame)),
            State::NotStarted | State::Done | State::Failed(_) => {}
        }
        self.drive(now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.ensure_started(now);
        match &mut self.state {
            State::Probe(r) => r.handle_timeout(now),
            State::Flash(client) => client.handle_timeout(now),
            State::Restart(restart) => restart.poll.handle_timeout(now),
            State::Verify { requester, .. } => requester.handle_timeout(now),
            State::Leaving(_) => self.leave(now, None),
            State::NotStarted | State::Done | State::Failed(_) => {}
        }
        self.drive(now);
        self.restart_timers(now);
        self.drive(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.ensure_started(now);
        if let Some(frame) = self.outbox.pop_front() {
            if let State::Leaving(leaving) = &mut self.state {
                leaving.quiet_by = Some(now + P2_CLIENT);
            }
            return Some(frame);
        }
        let frame = match &mut self.state {
            State::Probe(r) => r.poll_transmit(now),
            State::Flash(client) => client.poll_transmit(now),
            State::Restart(restart) => restart.poll.poll_transmit(now),
            State::Verify { requester, .. } => requester.poll_transmit(now),
            State::NotStarted | State::Leaving(_) | State::Done | State::Failed(_) => None,
        };
        self.drive(now);
        frame.or_else(|| self.outbox.pop_front())
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            // Start as soon as the engine looks.
            State::NotStarted => Some(Timestamp::ZERO),
            State::Probe(r) => r.poll_timeout(),
            State::Flash(client) => client.poll_timeout(),
            State::Restart(restart) => restart.poll.poll_timeout(),
            State::Verify { requester, .. } => requester.poll_timeout(),
            State::Leaving(leaving) => leaving.resend_at.or(leaving.quiet_by),
            State::Done | State::Failed(_) => None,
        }
    }

    fn status(&self) -> SessionStatus {
        let done = match self.state {
            State::Restart(_) | State::Verify { .. } | State::Done => self.total,
            _ => self.acknowledged,
        };
        match &self.state {
            State::Failed(failure) => SessionStatus::failed(failure.clone(), done, self.total),
            _ => SessionStatus::new(self.phase(), done, self.total),
        }
    }

    fn abort(&mut self, _now: Timestamp, reason: &AbortReason) {
        if matches!(
            self.state,
            State::Leaving(_) | State::Done | State::Failed(_)
        ) {
            return;
        }
        let failure = Failure::new(
            ErrorCode::ABORTED,
            format!(
                "aborted by the GX ({}: {})",
                reason.code,
                reason.message.as_str()
            ),
        );
        match &mut self.state {
            State::Restart(restart) => restart.poll.cancel(),
            State::Verify { requester, .. } => requester.cancel(),
            State::Probe(r) => r.cancel(),
            _ => {}
        }
        self.fail(failure);
    }
}

#[cfg(test)]
mod tests;
