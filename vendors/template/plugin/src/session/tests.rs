//! The session against a scripted BMS (the UDS flash server of `bmsfw-protocols` with a
//! backend answering as `PROTOCOL.md` says), frame by frame, in virtual time. No bus:
//! the end-to-end test runs the built library against the simulated BMS.

use super::*;
use crate::protocol::{NRC_IMAGE_CRC, SLOT_SIZE};
use crate::testing::{image, package, reader};
use bmsfw_plugin_api::{BatteryIdentity, Session, SessionOptions};
use bmsfw_protocols::checksum::crc32;
use bmsfw_protocols::uds::{CheckOutcome, FlashBackend, FlashServer, Nrc, ServerConfig};
use std::time::Duration;

const FRAME: Duration = Duration::from_micros(240);
const PRODUCT: u16 = 0xAC10;

/// What the scripted BMS does after its reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterReset {
    /// Runs the new firmware after 2 s.
    Boots,
    /// The new firmware does not start: the old one runs after 2 s.
    RollsBack,
    /// Never answers again.
    StaysSilent,
}

#[derive(Debug)]
struct Bms {
    running: [u8; 2],
    received: Vec<u8>,
    download_len: Option<u64>,
    checked: Option<[u8; 2]>,
    after_reset: AfterReset,
    reset_asked: bool,
}

impl FlashBackend for Bms {
    fn seed(&mut self, _: u8) -> Vec<u8> {
        vec![0x11, 0x22, 0x33, 0x44]
    }
    fn key_is_valid(&mut self, _: u8, seed: &[u8], key: &[u8]) -> bool {
        key == crate::key::key(seed)
    }
    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        let len = u32::from_be_bytes(option.try_into().map_err(|_| Nrc::RequestOutOfRange)?);
        if u64::from(len) > SLOT_SIZE {
            return Err(Nrc::RequestOutOfRange);
        }
        self.download_len = Some(len.into());
        self.received.clear();
        Ok(Duration::from_millis(200))
    }
    fn request_download(&mut self, address: u64, size: u64, format: u8) -> Result<u64, Nrc> {
        if address != 0 || format != 0 || Some(size) != self.download_len {
            return Err(Nrc::RequestOutOfRange);
        }
        Ok(u64::from(MAX_BLOCK_LENGTH))
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        assert_eq!(offset, self.received.len() as u64, "writes in order");
        self.received.extend_from_slice(data);
        Ok(Duration::from_millis(1))
    }
    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }
    fn check(&mut self, _: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        let r = &self.received;
        if r.len() < 24 || crc32(&r[24..]).to_le_bytes() != r[16..20] {
            return Ok((
                Duration::from_millis(100),
                CheckOutcome::Rejected(Nrc::Other(NRC_IMAGE_CRC)),
            ));
        }
        self.checked = Some([r[8], r[9]]);
        Ok((Duration::from_millis(100), CheckOutcome::Correct))
    }
    fn reset(&mut self, _: u8) {
        self.reset_asked = true;
    }
    fn read_data(&mut self, id: u16) -> Option<Vec<u8>> {
        (id == DID_APPLICATION_VERSION).then(|| self.running.to_vec())
    }
}

/// The scripted BMS with its restart: silent while down, running again at `down_until`.
struct Peer {
    server: FlashServer<Bms>,
    down_until: Option<Timestamp>,
}

impl Peer {
    fn new(after_reset: AfterReset) -> Peer {
        let mut isotp = IsoTpConfig::new(RESPONSE_ID, REQUEST_ID);
        isotp.padding = Padding::Fill(PADDING);
        let config = ServerConfig {
            p2_star: Duration::from_millis(2000),
            pending_interval: Duration::from_millis(1000),
            transfer_ack: TransferAck::CounterAndBytesReceived,
            ..ServerConfig::default()
        };
        let bms = Bms {
            running: [1, 11],
            received: Vec::new(),
            download_len: None,
            checked: None,
            after_reset,
            reset_asked: false,
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
        self.wake(now);
        if self.down_until.is_none() {
            self.server.handle_frame(now, f);
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.wake(now);
        if self.down_until.is_some() {
            return None;
        }
        let frame = self.server.poll_transmit(now);
        if frame.is_none() && std::mem::take(&mut self.bms().reset_asked) {
            // The reset's answer is out: the BMS restarts.
            self.server.restart();
            self.down_until = Some(now + Duration::from_secs(2));
        }
        frame
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.wake(now);
        if self.down_until.is_none() {
            self.server.handle_timeout(now);
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self.down_until {
            Some(t) => (self.server.backend().after_reset != AfterReset::StaysSilent).then_some(t),
            None => self.server.poll_timeout(),
        }
    }

    fn wake(&mut self, now: Timestamp) {
        let Some(until) = self.down_until else { return };
        let bms = self.server.backend_mut();
        if now < until || bms.after_reset == AfterReset::StaysSilent {
            return;
        }
        if let (Some(v), AfterReset::Boots) = (bms.checked.take(), bms.after_reset) {
            bms.running = v;
        }
        self.down_until = None;
    }
}

/// The session and the BMS, exchanging frames one bit-time apart.
struct Bench {
    session: TemplateSession,
    peer: Peer,
    now: Timestamp,
    sent: Vec<CanFrame>,
    phases: Vec<Phase>,
}

fn request(bytes: Vec<u8>) -> SessionRequest {
    SessionRequest {
        battery: BatteryIdentity::new("ACME").with_raw_35f(&[0x10, 0xAC, 1, 11]),
        package: reader(bytes),
        options: SessionOptions::default(),
        resume: None,
    }
}

impl Bench {
    fn new(after_reset: AfterReset, package: Vec<u8>) -> Bench {
        Bench {
            session: TemplateSession::start(request(package)).unwrap(),
            peer: Peer::new(after_reset),
            now: Timestamp::ZERO,
            sent: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// Runs until the session ends or `stop` says so; the session's status then.
    fn run_until(&mut self, mut stop: impl FnMut(&Bench) -> bool) -> SessionStatus {
        for _ in 0..1_000_000 {
            let mut moved = false;
            if let Some(f) = self.session.poll_transmit(self.now) {
                assert_eq!(f.id(), REQUEST_ID, "the session sends on 0x7E5 only");
                self.now = self.now + FRAME;
                self.sent.push(f);
                self.peer.handle_frame(self.now, &f);
                moved = true;
            }
            if let Some(f) = self.peer.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.session.handle_frame(self.now, &f);
                moved = true;
            }
            let status = self.session.status();
            assert!(status.bytes_done <= status.bytes_total);
            if self.phases.last() != Some(&status.phase) {
                self.phases.push(status.phase);
            }
            if status.phase.is_final() || stop(self) {
                while let Some(f) = self.session.poll_transmit(self.now) {
                    self.sent.push(f);
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
}

#[test]
fn a_whole_update_goes_through_every_phase_in_order() {
    let pkg = package(PRODUCT, [1, 12], &image(20_000));
    let mut b = Bench::new(AfterReset::Boots, pkg.clone());
    assert_eq!(
        b.session.poll_timeout(),
        Some(Timestamp::ZERO),
        "starts at once"
    );
    let status = b.run_until(|_| false);
    assert_eq!(status.phase, Phase::DONE, "{status:?}");
    assert_eq!(
        b.phases,
        [
            Phase::TRANSFERRING,
            Phase::INSTALLING,
            Phase::RESTARTING,
            Phase::VERIFYING,
            Phase::DONE
        ]
    );
    assert_eq!((status.bytes_done, status.bytes_total), (20_024, 20_024));
    assert_eq!(
        b.peer.bms().received,
        pkg,
        "the whole package, header included"
    );
    assert_eq!(b.peer.bms().running, [1, 12]);
    assert_eq!(b.sent[0].data()[..3], [0x02, 0x10, 0x02], "10 02 first");
    assert!(b.session.checkpoint().is_empty(), "no resume");
}

#[test]
fn a_rollback_is_reported_as_a_version_mismatch() {
    let mut b = Bench::new(
        AfterReset::RollsBack,
        package(PRODUCT, [1, 12], &image(3000)),
    );
    let status = b.run_until(|_| false);
    assert_eq!(status.failure_code(), Some(ErrorCode::VERSION_MISMATCH));
    let message = status.outcome.into_option().unwrap().message;
    assert!(message.contains("runs v1.11"), "{message}");
}

#[test]
fn a_battery_that_never_comes_back_fails_the_restart_in_time() {
    let mut b = Bench::new(
        AfterReset::StaysSilent,
        package(PRODUCT, [1, 12], &image(3000)),
    );
    let status = b.run_until(|_| false);
    assert_eq!(status.failure_code(), Some(ErrorCode::RESTART_FAILED));
    assert!(b.phases.contains(&Phase::RESTARTING));
}

#[test]
fn a_damaged_transfer_is_refused_by_the_bms_as_verification_failed() {
    // A package whose image CRC the plugin would refuse at inspection reaches the
    // session only if the file changed since: the BMS's check catches it.
    let mut pkg = package(PRODUCT, [1, 12], &image(3000));
    pkg[1000] ^= 1;
    let mut b = Bench::new(AfterReset::Boots, pkg);
    let status = b.run_until(|_| false);
    assert_eq!(status.failure_code(), Some(ErrorCode::VERIFICATION_FAILED));
    assert_eq!(b.peer.bms().running, [1, 11]);
    let last = b.sent.last().unwrap();
    assert_eq!(
        last.data()[..3],
        [0x02, 0x10, 0x81],
        "the session left programming"
    );
}

#[test]
fn an_abort_mid_transfer_fails_with_aborted_and_leaves_programming() {
    let mut b = Bench::new(AfterReset::Boots, package(PRODUCT, [1, 12], &image(50_000)));
    b.run_until(|b| b.session.status().bytes_done > 10_000);
    b.session
        .abort(b.now, &AbortReason::new(702, "SOC below 50 %"));
    let status = b.session.status();
    assert_eq!(status.failure_code(), Some(ErrorCode::ABORTED));
    assert!(status.bytes_done > 10_000 && status.bytes_done < status.bytes_total);
    let out = b.session.poll_transmit(b.now).expect("10 81 goes out");
    assert_eq!(out.data()[..3], [0x02, 0x10, 0x81]);
    assert_eq!(b.session.poll_transmit(b.now), None);
    assert_eq!(
        b.session.poll_timeout(),
        None,
        "a failed session waits for nothing"
    );
}

#[test]
fn a_package_for_another_product_never_starts() {
    let mut req = request(package(0xAC05, [1, 12], &image(100)));
    req.battery = req.battery.with_product_code(PRODUCT);
    let e = TemplateSession::start(req).err().unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    let e = TemplateSession::start(request(vec![1, 2, 3]))
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
}
