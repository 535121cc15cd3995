//! The session against a scripted BMS (the UDS flash server of `bmsfw-protocols` with a
//! backend answering as `PROTOCOL.md` says), frame by frame, in virtual time. No bus:
//! the end-to-end tests run the built library against the simulated BMS.

use super::*;
use crate::testing::{image, package, reader, shared_reader};
use bmsfw_plugin_api::{BatteryIdentity, Session, SessionOptions};
use bmsfw_protocols::uds::{
    CheckOutcome, FlashBackend, FlashServer, ServerConfig, TransferAck, TransferState,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FRAME: Duration = Duration::from_micros(240);
const PRODUCT: u16 = 0xA520;

/// What the scripted BMS does after its reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterReset {
    /// Boots the new firmware after 3 s.
    Boots,
    /// The new firmware does not start: the old one runs after 6 s.
    RollsBack,
    /// Never answers again.
    StaysSilent,
    /// Ignores the reset request once (as if it were lost), then boots.
    IgnoresFirstReset,
}

#[derive(Debug)]
struct Bms {
    product: u16,
    bootloader: [u8; 2],
    running: [u8; 2],
    boot_state: u8,
    received: Vec<u8>,
    download_len: Option<u64>,
    refuse_check: Option<Nrc>,
    /// The erase's answer instead of starting it.
    erase_refused: Option<Nrc>,
    after_reset: AfterReset,
    pending: Option<[u8; 2]>,
    resets: u32,
    /// Set when a reset was asked for and not yet carried out.
    reset_asked: bool,
    /// How long writing a block takes, when not the usual 0.5 ms per KiB.
    write_time: Option<Duration>,
}

impl Bms {
    fn new() -> Bms {
        Bms {
            product: PRODUCT,
            bootloader: [2, 3],
            running: [4, 15],
            boot_state: BOOT_RUNNING,
            received: Vec::new(),
            download_len: None,
            refuse_check: None,
            erase_refused: None,
            after_reset: AfterReset::Boots,
            pending: None,
            resets: 0,
            reset_asked: false,
            write_time: None,
        }
    }
}

impl FlashBackend for Bms {
    fn seed(&mut self, _: u8) -> Vec<u8> {
        vec![9, 8, 7, 6, 5, 4, 3, 2]
    }
    fn key_is_valid(&mut self, _: u8, seed: &[u8], key: &[u8]) -> bool {
        key == crate::key::key(self.product, seed)
    }
    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        if let Some(nrc) = self.erase_refused {
            return Err(nrc);
        }
        let len = u32::from_be_bytes(option.try_into().map_err(|_| Nrc::RequestOutOfRange)?);
        self.download_len = Some(len.into());
        self.received.clear();
        self.pending = None;
        Ok(Duration::from_millis(150))
    }
    fn request_download(&mut self, address: u64, size: u64, format: u8) -> Result<u64, Nrc> {
        if address != 0 || format != 0 || Some(size) != self.download_len {
            return Err(Nrc::RequestOutOfRange);
        }
        Ok(4098)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        assert_eq!(offset, self.received.len() as u64, "writes in order");
        self.received.extend_from_slice(data);
        Ok(self
            .write_time
            .unwrap_or(Duration::from_micros(500 * data.len() as u64 / 1024)))
    }
    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }
    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        assert!(option.is_empty());
        if let Some(nrc) = self.refuse_check {
            return Ok((Duration::from_millis(300), CheckOutcome::Rejected(nrc)));
        }
        self.pending = Some([self.received[10], self.received[11]]);
        self.boot_state = BOOT_ACTIVATION_PENDING;
        Ok((Duration::from_millis(300), CheckOutcome::Correct))
    }
    fn reset(&mut self, _: u8) {
        self.resets += 1;
        self.reset_asked = true;
    }
    fn read_data(&mut self, id: u16) -> Option<Vec<u8>> {
        match id {
            DID_BOOTLOADER_VERSION => Some(self.bootloader.to_vec()),
            DID_PRODUCT_CODE => Some(self.product.to_be_bytes().to_vec()),
            DID_APPLICATION_VERSION => Some(self.running.to_vec()),
            DID_BOOT_STATE => Some(vec![0, self.boot_state]),
            _ => None,
        }
    }
}

/// The scripted BMS with its restart: silent while down, booting at `down_until`.
struct Peer {
    server: FlashServer<Bms>,
    down_until: Option<Timestamp>,
}

impl Peer {
    fn new(bms: Bms) -> Peer {
        let mut isotp = IsoTpConfig::new(RESPONSE_ID, REQUEST_ID);
        isotp.padding = Padding::Fill(PADDING);
        let config = ServerConfig {
            transfer_ack: TransferAck::CounterAndBytesReceived,
            ..ServerConfig::default()
        };
        Peer {
            server: FlashServer::new(isotp, config, bms),
            down_until: None,
        }
    }

    fn bms(&mut self) -> &mut Bms {
        self.server.backend_mut()
    }

    fn handle_frame(&mut self, now: Timestamp, f: &CanFrame) {
        if self.down_until.is_none() {
            self.server.handle_frame(now, f);
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.down_until.is_some() {
            return None;
        }
        let frame = self.server.poll_transmit(now);
        if frame.is_none() && self.bms().reset_asked {
            let bms = self.bms();
            bms.reset_asked = false;
            let ignore = bms.after_reset == AfterReset::IgnoresFirstReset && bms.resets == 1;
            if !ignore {
                let down = match bms.after_reset {
                    AfterReset::RollsBack => Duration::from_secs(6),
                    AfterReset::StaysSilent => Duration::from_secs(100_000),
                    AfterReset::Boots | AfterReset::IgnoresFirstReset => Duration::from_secs(3),
                };
                self.down_until = Some(now + down);
                self.server.restart();
            }
        }
        frame
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.down_until.or_else(|| self.server.poll_timeout())
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        match self.down_until {
            Some(until) if now >= until => {
                self.down_until = None;
                let bms = self.bms();
                if let Some(v) = bms.pending.take() {
                    if bms.after_reset == AfterReset::RollsBack {
                        bms.boot_state = BOOT_ROLLED_BACK;
                    } else {
                        bms.running = v;
                        bms.boot_state = BOOT_RUNNING;
                    }
                }
            }
            Some(_) => {}
            None => self.server.handle_timeout(now),
        }
    }
}

struct Bench {
    session: AuroraSession,
    peer: Peer,
    now: Timestamp,
    /// Each phase the session reported, once, in order.
    phases: Vec<Phase>,
    /// Frames the session sent.
    sent: Vec<CanFrame>,
    /// Frames the session received.
    received: Vec<CanFrame>,
}

fn request(package: Vec<u8>) -> SessionRequest {
    SessionRequest {
        battery: BatteryIdentity::new("AURORA").with_raw_35f(&[0x20, 0xA5, 4, 15, 200, 0]),
        package: reader(package),
        options: SessionOptions::default(),
        resume: None,
    }
}

fn new_package() -> Vec<u8> {
    package(PRODUCT, [4, 16], &image(20_000))
}

impl Bench {
    fn new(bms: Bms, request: SessionRequest) -> Bench {
        Bench {
            session: AuroraSession::start(request).unwrap(),
            peer: Peer::new(bms),
            now: Timestamp::from_micros(1_000_000),
            phases: Vec::new(),
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Runs until the session ends or `until` says stop.
    fn run_until(&mut self, mut until: impl FnMut(&mut Bench) -> bool) -> SessionStatus {
        for _ in 0..2_000_000 {
            let mut moved = false;
            if let Some(f) = self.session.poll_transmit(self.now) {
                assert_eq!(f.id(), REQUEST_ID, "the session sends on 0x7E2 only");
                self.now = self.now + FRAME;
                self.sent.push(f);
                self.peer.handle_frame(self.now, &f);
                moved = true;
            }
            if let Some(f) = self.peer.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.received.push(f);
                self.session.handle_frame(self.now, &f);
                moved = true;
            }
            let status = self.session.status();
            assert!(status.bytes_done <= status.bytes_total);
            if self.phases.last() != Some(&status.phase) {
                self.phases.push(status.phase);
            }
            if status.phase.is_final() || until(self) {
                // Let the session's last frames (a `10 81`) out.
                while let Some(f) = self.session.poll_transmit(self.now) {
                    self.sent.push(f);
                    self.peer.handle_frame(self.now, &f);
                }
                return self.session.status();
            }
            if !moved {
                let next = [self.session.poll_timeout(), self.peer.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("a running session always has a deadline");
                self.now = self.now.max(next);
                self.session.handle_timeout(self.now);
                self.peer.handle_timeout(self.now);
            }
        }
        panic!("the session never ended");
    }

    fn run(&mut self) -> SessionStatus {
        self.run_until(|_| false)
    }

    /// Whether the session sent `10 81` (leave the programming session).
    fn left_programming(&self) -> bool {
        self.sent
            .iter()
            .any(|f| f.data()[..3] == [0x02, 0x10, 0x81])
    }
}

#[test]
fn a_whole_update_goes_through_every_phase_in_order() {
    let pkg = new_package();
    let mut b = Bench::new(Bms::new(), request(pkg.clone()));
    assert_eq!(
        b.session.poll_timeout(),
        Some(Timestamp::ZERO),
        "starts at once"
    );
    let status = b.run();
    assert_eq!(status.phase, Phase::DONE, "{status:?}");
    assert_eq!(
        b.phases,
        vec![
            Phase::TRANSFERRING,
            Phase::INSTALLING,
            Phase::RESTARTING,
            Phase::VERIFYING,
            Phase::DONE
        ]
    );
    assert_eq!((status.bytes_done, status.bytes_total), (20_064, 20_064));
    let bms = b.peer.bms();
    assert_eq!(bms.received, pkg, "the whole package, header included");
    assert_eq!(bms.running, [4, 16]);
    assert_eq!(bms.resets, 1);
    // The probe went first, in the default session.
    assert_eq!(b.sent[0].data()[..6], [0x05, 0x22, 0xF1, 0x80, 0xF1, 0x87]);
    assert!(b.session.checkpoint().is_empty(), "no resume");
    assert!(!b.left_programming());
    assert_eq!(b.session.poll_timeout(), None, "nothing left to do");
}

#[test]
fn progress_counts_acknowledged_bytes_while_transferring() {
    let mut b = Bench::new(Bms::new(), request(new_package()));
    let mut seen = Vec::new();
    b.run_until(|b| {
        let s = b.session.status();
        if seen.last() != Some(&(s.phase, s.bytes_done)) {
            seen.push((s.phase, s.bytes_done));
        }
        false
    });
    // Five blocks of 4096 bytes and one of 3680; the last acknowledgement starts the
    // installation.
    let t = Phase::TRANSFERRING;
    assert_eq!(
        seen[..7],
        [
            (t, 0),
            (t, 4096),
            (t, 8192),
            (t, 12_288),
            (t, 16_384),
            (Phase::INSTALLING, 20_064),
            (Phase::RESTARTING, 20_064)
        ]
    );
}

#[test]
fn an_old_bootloader_or_another_product_stops_before_anything_is_erased() {
    let mut bms = Bms::new();
    bms.bootloader = [1, 4];
    let mut b = Bench::new(bms, request(new_package()));
    let status = b.run();
    let failure = status.outcome.clone().unwrap();
    assert_eq!(failure.code, ErrorCode(901), "{failure}");
    assert!(
        failure.message.contains("v1.4") && failure.message.contains("v2.0"),
        "{failure}"
    );
    assert!(b.peer.bms().download_len.is_none(), "nothing was erased");
    assert_eq!(status.bytes_done, 0);

    let mut bms = Bms::new();
    bms.product = 0xA530;
    let mut b = Bench::new(bms, request(new_package()));
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::PACKAGE_WRONG_PRODUCT, "{failure}");
    assert!(failure.message.contains("0xA530"), "{failure}");
}

#[test]
fn a_package_needing_a_newer_bootloader_is_refused_by_the_probe() {
    let mut pkg = new_package();
    pkg[12] = 2;
    pkg[13] = 5;
    let crc = bmsfw_protocols::checksum::crc32(&pkg[..60]);
    pkg[60..64].copy_from_slice(&crc.to_le_bytes());
    let mut b = Bench::new(Bms::new(), request(pkg));
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode(901));
    assert!(
        failure.message.contains("v2.3") && failure.message.contains("v2.5"),
        "{failure}"
    );
}

#[test]
fn a_refused_check_is_verification_failed_and_the_bms_leaves_programming() {
    let mut bms = Bms::new();
    bms.refuse_check = Some(Nrc::Other(0xF1));
    let mut b = Bench::new(bms, request(new_package()));
    let status = b.run();
    let failure = status.outcome.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::VERIFICATION_FAILED);
    assert!(failure.message.contains("SHA-256"), "{failure}");
    assert_eq!(b.phases.last(), Some(&Phase::FAILED));
    assert!(b.phases.contains(&Phase::INSTALLING));
    assert!(!b.phases.contains(&Phase::RESTARTING));
    assert!(b.left_programming());
    assert_eq!(b.peer.server.transfer(), TransferState::Idle);
    assert_eq!(b.peer.bms().resets, 0);
}

#[test]
fn a_file_changed_after_inspection_fails_at_the_bms_check() {
    // The engine inspected the file; then bytes of the image changed on disk. The
    // session streams what is there now, and the BMS's check catches it.
    let pkg = new_package();
    let bytes = Arc::new(Mutex::new(pkg.clone()));
    assert!(crate::package::inspect(&mut shared_reader(bytes.clone())).is_ok());
    bytes.lock().unwrap()[5000] ^= 0x10;
    let mut bms = Bms::new();
    // The scripted BMS checks nothing itself; refuse as the real one would.
    bms.refuse_check = Some(Nrc::Other(0xF0));
    let req = SessionRequest {
        package: shared_reader(bytes),
        ..request(pkg.clone())
    };
    let mut b = Bench::new(bms, req);
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::VERIFICATION_FAILED);
    assert_ne!(b.peer.bms().received, pkg, "the changed bytes were sent");
}

#[test]
fn restart_outcomes() {
    // Rolled back: the old firmware runs again.
    let mut bms = Bms::new();
    bms.after_reset = AfterReset::RollsBack;
    let mut b = Bench::new(bms, request(new_package()));
    let status = b.run();
    let failure = status.outcome.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::INSTALL_FAILED, "{failure}");
    assert!(failure.message.contains("v4.16") && failure.message.contains("v4.15"));
    assert!(b.phases.contains(&Phase::VERIFYING));

    // Silent for good: the declared limit runs out.
    let mut bms = Bms::new();
    bms.after_reset = AfterReset::StaysSilent;
    let mut b = Bench::new(bms, request(new_package()));
    let mut restarting_since = None;
    let status = b.run_until(|b| {
        if b.session.status().phase == Phase::RESTARTING && restarting_since.is_none() {
            restarting_since = Some(b.now);
        }
        false
    });
    let failure = status.outcome.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::RESTART_FAILED, "{failure}");
    let silent = b.now.saturating_duration_since(restarting_since.unwrap());
    assert!(
        silent >= Duration::from_secs(15) && silent < Duration::from_secs(16),
        "{silent:?}"
    );
    // One boot-state poll every 500 ms from 500 ms after the reset.
    let polls = b
        .sent
        .iter()
        .filter(|f| f.data()[..4] == [0x03, 0x22, 0xF1, 0xA0])
        .count();
    assert_eq!(polls, 29, "polls in 15 s");

    // The reset was lost: the battery says "activation pending", the session resets it
    // again.
    let mut bms = Bms::new();
    bms.after_reset = AfterReset::IgnoresFirstReset;
    let mut b = Bench::new(bms, request(new_package()));
    assert_eq!(b.run().phase, Phase::DONE);
    assert_eq!(b.peer.bms().resets, 2);
    assert_eq!(b.peer.bms().running, [4, 16]);
}

#[test]
fn another_version_after_the_restart_is_a_mismatch() {
    let mut b = Bench::new(Bms::new(), request(new_package()));
    b.run_until(|b| b.session.status().phase == Phase::RESTARTING);
    // Whatever the BMS boots, it is not the package's version.
    b.peer.bms().pending = Some([4, 17]);
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::VERSION_MISMATCH, "{failure}");
    assert!(failure.message.contains("v4.17"), "{failure}");
}

#[test]
fn an_abort_stops_the_download_and_tells_the_bms() {
    let mut b = Bench::new(Bms::new(), request(new_package()));
    b.run_until(|b| b.session.status().bytes_done >= 8192);
    let now = b.now;
    b.session
        .abort(now, &AbortReason::new(712, "SOC below 50 %"));
    let status = b.run();
    let failure = status.outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::ABORTED);
    assert!(
        failure.message.contains("712") && failure.message.contains("SOC"),
        "{failure}"
    );
    assert!(b.left_programming());
    assert_eq!(b.peer.server.transfer(), TransferState::Idle);
    assert_eq!(b.peer.bms().running, [4, 15]);
    // Aborting again, or a finished session, changes nothing.
    b.session.abort(now, &AbortReason::new(1, "again"));
    assert_eq!(b.session.status().failure_code(), Some(ErrorCode::ABORTED));
    assert_eq!(b.session.poll_transmit(now), None);
}

/// An abort that reaches the BMS while it writes a block is answered busy (`7F 10 21`):
/// the session sends `10 81` again until the BMS takes it, and fails only then.
#[test]
fn an_abort_answered_busy_is_sent_again_until_the_bms_leaves_programming() {
    let mut bms = Bms::new();
    bms.write_time = Some(Duration::from_millis(80));
    let mut b = Bench::new(bms, request(new_package()));
    // The BMS answered response-pending: it is writing a block.
    b.run_until(|b| {
        b.received
            .last()
            .is_some_and(|f| f.data()[..4] == [0x03, 0x7F, 0x36, 0x78])
    });
    let now = b.now;
    b.session.abort(now, &AbortReason::new(728, "grid lost"));
    assert!(!b.session.status().phase.is_final(), "still leaving");
    let status = b.run();
    assert_eq!(status.failure_code(), Some(ErrorCode::ABORTED));
    let leaves = b
        .sent
        .iter()
        .filter(|f| f.data()[..3] == [0x02, 0x10, 0x81])
        .count();
    assert!(leaves >= 2, "10 81 sent {leaves} times");
    assert!(
        b.received
            .iter()
            .any(|f| f.data()[..4] == [0x03, 0x7F, 0x10, 0x21]),
        "the BMS answered busy"
    );
    assert_eq!(
        b.peer.server.session(),
        bmsfw_protocols::uds::Session::Default
    );
    assert_eq!(b.peer.bms().running, [4, 15]);
}

#[test]
fn a_download_left_open_by_a_lost_abort_is_dropped_and_the_update_runs() {
    // An update is aborted, and its `10 81` is lost: the BMS stays in its programming
    // session with the download open.
    let mut first = Bench::new(Bms::new(), request(new_package()));
    first.run_until(|b| b.session.status().bytes_done >= 8192);
    let now = first.now;
    first
        .session
        .abort(now, &AbortReason::new(728, "grid lost"));
    let mut lost = Vec::new();
    while let Some(f) = first.session.poll_transmit(now) {
        lost.push(f);
    }
    assert!(lost.iter().any(|f| f.data()[..3] == [0x02, 0x10, 0x81]));
    assert!(matches!(
        first.peer.server.transfer(),
        TransferState::Downloading { .. }
    ));

    // The next update, a second later, finds the download still open at the erase.
    let mut next = Bench {
        session: AuroraSession::start(request(new_package())).unwrap(),
        peer: first.peer,
        now: now + Duration::from_secs(1),
        phases: Vec::new(),
        sent: Vec::new(),
        received: Vec::new(),
    };
    let status = next.run();
    assert_eq!(status.phase, Phase::DONE, "{status:?}");
    assert_eq!(next.peer.bms().running, [4, 16]);
    // It left the programming session once, then entered it again.
    let starts: Vec<usize> = next
        .sent
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data()[..3] == [0x02, 0x10, 0x02])
        .map(|(i, _)| i)
        .collect();
    let leaves: Vec<usize> = next
        .sent
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data()[..3] == [0x02, 0x10, 0x81])
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert!(starts[0] < leaves[0] && leaves[0] < starts[1]);
}

#[test]
fn a_download_that_stays_open_after_leaving_programming_fails_the_update() {
    // A BMS that refuses the erase again after `10 81` is not asked a third time.
    let mut bms = Bms::new();
    bms.erase_refused = Some(Nrc::ConditionsNotCorrect);
    let mut b = Bench::new(bms, request(new_package()));
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::REJECTED_BY_BMS, "{failure}");
    assert!(failure.message.contains("0x22"), "{failure}");
    let erases = b
        .sent
        .iter()
        .filter(|f| f.data()[..6] == [0x10, 0x08, 0x31, 0x01, 0xFF, 0x00])
        .count();
    assert_eq!(erases, 2);
    assert_eq!(b.peer.bms().running, [4, 15]);
}

#[test]
fn a_silent_battery_times_out_in_the_probe() {
    let mut b = Bench::new(Bms::new(), request(new_package()));
    b.peer.down_until = Some(Timestamp::from_micros(u64::MAX));
    let failure = b.run().outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::TIMEOUT);
    assert!(failure.message.contains("bootloader"), "{failure}");
}

#[test]
fn start_checks_the_package_header_and_the_battery() {
    let mut broken = new_package();
    broken[0] = b'X';
    let e = AuroraSession::start(request(broken)).err().unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert!(e.message.starts_with("at byte 0: magic"), "{e}");
    let mut req = request(new_package());
    req.battery = BatteryIdentity::new("AURORA").with_raw_35f(&[0x10, 0xA5, 4, 15]);
    let e = AuroraSession::start(req).err().unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    // A checkpoint is ignored: the session starts from the probe.
    let mut req = request(new_package());
    req.resume = Some(vec![1, 2, 3]);
    let mut b = Bench::new(Bms::new(), req);
    assert_eq!(b.run().phase, Phase::DONE);
}

#[test]
fn a_battery_that_restarts_while_checking_is_verified_for_what_it_runs() {
    for activated in [true, false] {
        let mut b = Bench::new(Bms::new(), request(new_package()));
        // Run until the check has begun on the BMS (it answered response-pending).
        b.run_until(|b| b.peer.bms().pending.is_some());
        // The power goes: the BMS loses its session and the check's answer; it comes
        // back 2 s later, with or without the boot record written.
        if !activated {
            b.peer.bms().pending = None;
            b.peer.bms().boot_state = BOOT_RUNNING;
        }
        b.peer.server.restart();
        b.peer.down_until = Some(b.now + Duration::from_secs(2));
        let status = b.run();
        assert!(b.phases.contains(&Phase::RESTARTING), "{:?}", b.phases);
        if activated {
            assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
            assert_eq!(b.peer.bms().running, [4, 16]);
        } else {
            let failure = status.outcome.unwrap();
            assert_eq!(failure.code, ErrorCode::INSTALL_FAILED, "{failure}");
            assert!(failure.message.contains("keeps v4.15"), "{failure}");
        }
    }
}
