//! The simulated Aurora BMS against the flash client of `bmsfw-protocols`, sans-IO, in
//! virtual time: updates, refusals, restarts, rollbacks, power cuts at any moment.

use aurora_sim::flash::{BootState, SlotId};
use aurora_sim::key::{SECRET, key_for};
use aurora_sim::package::{self, PackageSpec, verify};
use aurora_sim::protocol::{self, REQUEST_CAN_ID, RESPONSE_CAN_ID};
use aurora_sim::{AuroraBms, AuroraConfig, Fault, Stage};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::{IsoTpConfig, Padding};
use bmsfw_protocols::uds::{
    BlockSizing, FlashClient, FlashConfig, FlashError, FlashEvent, FlashPhase, KeyError, Nrc,
    Requester, RequesterConfig, RequesterEvent, TransferAck, parse_read_data, read_data_request,
};
use bmsfw_sim::battery::{BatteryConfig, IdentityConfig};
use std::time::Duration;

const PRODUCT: u16 = 0xA520;
/// Bus time of one frame, roughly.
const FRAME: Duration = Duration::from_micros(240);

fn battery_config() -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "AURORA".into(),
        bms_name: "PowerCore 10".into(),
        product_code: PRODUCT,
        firmware: [4, 15],
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some("AUR10-000123".into()),
        product_name: None,
    })
}

fn bms() -> AuroraBms {
    AuroraBms::new(
        AuroraConfig::new(PRODUCT, [4, 15]),
        battery_config(),
        Timestamp::ZERO,
    )
    .unwrap()
}

fn gx_isotp() -> IsoTpConfig {
    let mut c = IsoTpConfig::new(REQUEST_CAN_ID, RESPONSE_CAN_ID);
    c.padding = Padding::Fill(protocol::PADDING);
    c
}

fn client(package: &[u8]) -> FlashClient {
    let len = package.len() as u32;
    let config = FlashConfig {
        p2: Duration::from_millis(150),
        erase_option: len.to_be_bytes().to_vec(),
        transfer_ack: TransferAck::CounterAndBytesReceived,
        block_sizing: BlockSizing::Adaptive {
            min_data_len: 128,
            grow_after: 8,
        },
        max_retries: 10,
        ..FlashConfig::default()
    };
    let key = Box::new(|_: u8, seed: &[u8]| -> Result<Vec<u8>, KeyError> {
        Ok(key_for(&SECRET, PRODUCT, seed).to_vec())
    });
    FlashClient::new(gx_isotp(), config, len, key).unwrap()
}

/// A GX and the BMS on a lossless wire that carries one frame at a time (a stand-in for
/// the bus, without its exact timing: the end-to-end tests run on the simulated bus).
struct Lab {
    bms: AuroraBms,
    now: Timestamp,
    /// Every frame the BMS sent, with its time.
    from_bms: Vec<(Timestamp, CanFrame)>,
}

impl Lab {
    fn new(bms: AuroraBms) -> Lab {
        Lab {
            bms,
            now: Timestamp::ZERO,
            from_bms: Vec::new(),
        }
    }

    /// Runs the flash client over `package` until it ends, or until `stop` says so
    /// (asked after every step with the time and the client's phase).
    fn flash(
        &mut self,
        package: &[u8],
        mut stop: impl FnMut(&mut AuroraBms, Timestamp, FlashPhase) -> bool,
    ) -> Option<FlashEvent> {
        let mut c = client(package);
        c.start(self.now);
        for _ in 0..5_000_000 {
            // One frame of each side at a time, as a bus interleaves them.
            let mut moved = false;
            if let Some(f) = self.bms.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.from_bms.push((self.now, f));
                c.handle_frame(self.now, &f);
                moved = true;
            }
            if let Some(f) = c.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.bms.handle_frame(self.now, &f);
                moved = true;
            }
            while let Some(e) = c.poll_event() {
                moved = true;
                match e {
                    FlashEvent::NeedData { offset, len } => {
                        let o = offset as usize;
                        c.provide_data(self.now, &package[o..o + len]).unwrap();
                    }
                    FlashEvent::Done { .. } | FlashEvent::Failed(_) => return Some(e),
                    _ => {}
                }
            }
            if stop(&mut self.bms, self.now, c.phase()) {
                return None;
            }
            if !moved {
                let next = [self.bms.poll_timeout(), c.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("something is always scheduled while flashing");
                self.now = self.now.max(next);
                self.bms.handle_timeout(self.now);
                c.handle_timeout(self.now);
            }
        }
        panic!("the update never ended");
    }

    /// Lets the BMS run alone until `until`.
    fn idle(&mut self, until: Timestamp) {
        loop {
            while let Some(f) = self.bms.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.from_bms.push((self.now, f));
            }
            match self.bms.poll_timeout() {
                Some(t) if t < until => {
                    self.now = self.now.max(t);
                    self.bms.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.bms.handle_timeout(self.now);
    }

    /// One UDS request and its outcome.
    fn ask(&mut self, request: Vec<u8>) -> RequesterEvent {
        let mut r = Requester::new(
            gx_isotp(),
            RequesterConfig {
                p2: Duration::from_millis(150),
                ..RequesterConfig::default()
            },
        );
        r.request(self.now, request).unwrap();
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(f) = self.bms.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.from_bms.push((self.now, f));
                r.handle_frame(self.now, &f);
                moved = true;
            }
            while let Some(f) = r.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.bms.handle_frame(self.now, &f);
                moved = true;
            }
            if let Some(e) = r.poll_event() {
                return e;
            }
            if !moved {
                let next = [self.bms.poll_timeout(), r.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap();
                self.now = self.now.max(next);
                self.bms.handle_timeout(self.now);
                r.handle_timeout(self.now);
            }
        }
        panic!("no outcome");
    }

    /// Times of the BMS's frames with identifier `id` in `[from, to)`.
    fn times_of(&self, id: u32, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        self.from_bms
            .iter()
            .filter(|(t, f)| f.id().raw() == id && *t >= from && *t < to)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The firmware bytes of the last 0x35F.
    fn last_35f_version(&self) -> [u8; 2] {
        let f = self
            .from_bms
            .iter()
            .rev()
            .find(|(_, f)| f.id().raw() == 0x35F)
            .map(|(_, f)| *f)
            .expect("a 0x35F was sent");
        [f.data()[2], f.data()[3]]
    }
}

fn new_package(len: usize) -> Vec<u8> {
    package::build(&PackageSpec::new(PRODUCT, [4, 16], len, 99))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn an_update_activates_the_new_firmware_after_a_silent_restart() {
    let mut lab = Lab::new(bms());
    lab.idle(Timestamp::ZERO + secs(1.0));
    assert_eq!(lab.last_35f_version(), [4, 15]);
    let pkg = new_package(100_000);
    let start = lab.now;
    let outcome = lab.flash(&pkg, |_, _, _| false);
    assert!(
        matches!(outcome, Some(FlashEvent::Done { .. })),
        "{outcome:?}"
    );
    let reset_at = lab.now;
    assert!(
        matches!(
            lab.bms.status().stage,
            Stage::ShuttingDown | Stage::Restarting { .. }
        ),
        "the BMS restarts right after its answer to the reset"
    );

    // Telemetry flowed through the whole transfer: 0x356 every 200 ms.
    let measurements = lab.times_of(0x356, start, reset_at);
    assert!(
        measurements.len() as f64 >= reset_at.saturating_duration_since(start).as_secs_f64() * 4.0
    );
    let worst = measurements
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap();
    assert!(
        worst <= Duration::from_millis(201),
        "telemetry stalled for {worst:?}"
    );

    lab.idle(reset_at + secs(10.0));
    let status = lab.bms.status();
    assert_eq!(status.stage, Stage::Running);
    assert_eq!(status.running_version, [4, 16]);
    assert_eq!(status.active_slot, SlotId::B);
    assert_eq!(status.boot_state, BootState::Running);
    assert_eq!(status.boots, 1);
    assert_eq!(lab.bms.flash().slot(SlotId::B).data(), &pkg[..]);
    assert_eq!(lab.last_35f_version(), [4, 16]);

    // The restart is a gap of the modelled 3 s in every frame, then a full broadcast.
    let during = lab.times_of(0x351, reset_at + secs(0.01), reset_at + secs(3.0));
    assert!(
        during.is_empty(),
        "telemetry during the restart: {during:?}"
    );
    let after = lab.times_of(0x351, reset_at + secs(3.0), reset_at + secs(4.0));
    assert!(!after.is_empty(), "telemetry resumes after the restart");
}

#[test]
fn the_identification_reads_answer_the_documented_bytes() {
    let mut lab = Lab::new(bms());
    let e = lab.ask(read_data_request(&[0xF180, 0xF187, 0xF195, 0xF1A0]));
    let RequesterEvent::Positive(data) = e else {
        panic!("{e:?}")
    };
    let values =
        parse_read_data(&data, &[(0xF180, 2), (0xF187, 2), (0xF195, 2), (0xF1A0, 2)]).unwrap();
    assert_eq!(values, vec![&[2, 3][..], &[0xA5, 0x20], &[4, 15], &[0, 0]]);
    assert_eq!(
        lab.ask(read_data_request(&[0xF18C])),
        RequesterEvent::Negative(Nrc::RequestOutOfRange)
    );
}

#[test]
fn a_flash_cell_fault_fails_the_check_and_the_old_firmware_stays() {
    let mut lab = Lab::new(bms());
    lab.bms.inject(Fault::FlipBitOnWrite { offset: 7000 });
    let pkg = new_package(20_000);
    let outcome = lab.flash(&pkg, |_, _, _| false);
    assert_eq!(
        outcome,
        Some(FlashEvent::Failed(FlashError::Rejected {
            phase: FlashPhase::Check,
            service: 0x31,
            nrc: protocol::NRC_IMAGE_CRC
        }))
    );
    lab.idle(lab.now + secs(10.0));
    let status = lab.bms.status();
    assert_eq!(status.running_version, [4, 15]);
    assert_eq!(status.active_slot, SlotId::A);
    assert_eq!(status.boots, 0, "no restart");
    // The fault fired once: the same package goes through now.
    assert!(matches!(
        lab.flash(&pkg, |_, _, _| false),
        Some(FlashEvent::Done { .. })
    ));
    lab.idle(lab.now + secs(10.0));
    assert_eq!(lab.bms.status().running_version, [4, 16]);
}

#[test]
fn packages_the_bms_must_refuse_are_refused_with_their_code() {
    let cases = [
        (
            package::corrupt(&new_package(5000), package::Corruption::ImageSha),
            protocol::NRC_IMAGE_SHA,
        ),
        (
            package::corrupt(
                &new_package(5000),
                package::Corruption::ImageByte { offset: 3 },
            ),
            protocol::NRC_IMAGE_CRC,
        ),
        (
            package::corrupt(&new_package(5000), package::Corruption::HeaderCrc),
            protocol::NRC_HEADER,
        ),
        (
            package::corrupt(&new_package(5000), package::Corruption::Product(0xA510)),
            protocol::NRC_PRODUCT,
        ),
        (
            package::build(&PackageSpec {
                min_bootloader: [3, 0],
                ..PackageSpec::new(PRODUCT, [4, 16], 5000, 1)
            }),
            Nrc::ConditionsNotCorrect,
        ),
    ];
    for (pkg, nrc) in cases {
        let mut lab = Lab::new(bms());
        let outcome = lab.flash(&pkg, |_, _, _| false);
        assert_eq!(
            outcome,
            Some(FlashEvent::Failed(FlashError::Rejected {
                phase: FlashPhase::Check,
                service: 0x31,
                nrc
            })),
            "{nrc}"
        );
        assert_eq!(lab.bms.status().running_version, [4, 15]);
    }
}

#[test]
fn a_wrong_key_is_refused() {
    let mut lab = Lab::new(bms());
    assert!(matches!(
        lab.ask(vec![0x10, 0x02]),
        RequesterEvent::Positive(_)
    ));
    let RequesterEvent::Positive(seed) = lab.ask(vec![0x27, 0x01]) else {
        panic!()
    };
    assert_eq!(seed.len(), 9);
    let mut key = key_for(&SECRET, 0xA510, &seed[1..]).to_vec();
    key.insert(0, 0x02);
    key.insert(0, 0x27);
    assert_eq!(lab.ask(key), RequesterEvent::Negative(Nrc::InvalidKey));
    assert_eq!(
        lab.ask(vec![0x31, 0x01, 0xFF, 0x00, 0, 0, 0x10, 0]),
        RequesterEvent::Negative(Nrc::SecurityAccessDenied)
    );
}

#[test]
fn a_firmware_that_does_not_start_is_rolled_back() {
    let mut lab = Lab::new(bms());
    lab.bms.inject(Fault::FailNextBoot);
    let outcome = lab.flash(&new_package(8000), |_, _, _| false);
    assert!(matches!(outcome, Some(FlashEvent::Done { .. })));
    let reset_at = lab.now;
    lab.idle(reset_at + secs(4.0));
    assert!(
        matches!(lab.bms.status().stage, Stage::Restarting { .. }),
        "the rollback takes a second restart"
    );
    lab.idle(reset_at + secs(7.0));
    let status = lab.bms.status();
    assert_eq!(status.stage, Stage::Running);
    assert_eq!(status.running_version, [4, 15]);
    assert_eq!(status.active_slot, SlotId::A);
    assert_eq!(status.boot_state, BootState::RolledBack);
    assert_eq!(lab.last_35f_version(), [4, 15]);
    let e = lab.ask(read_data_request(&[0xF1A0]));
    assert_eq!(e, RequesterEvent::Positive(vec![0xF1, 0xA0, 0, 2]));
    assert!(
        lab.times_of(0x351, reset_at + secs(0.01), reset_at + secs(6.0))
            .is_empty()
    );
}

#[test]
fn a_silent_tester_loses_the_programming_session_after_s3() {
    let mut lab = Lab::new(bms());
    let pkg = new_package(200_000);
    let outcome = lab.flash(&pkg, |bms, _, phase| {
        phase == FlashPhase::Transfer && bms.status().inactive_len > 50_000
    });
    assert_eq!(outcome, None);
    assert_eq!(
        lab.bms.status().session,
        bmsfw_protocols::uds::Session::Programming
    );
    let stopped = lab.now;
    lab.idle(stopped + secs(4.9));
    assert_eq!(
        lab.bms.status().session,
        bmsfw_protocols::uds::Session::Programming
    );
    lab.idle(stopped + secs(5.1));
    assert_eq!(
        lab.bms.status().session,
        bmsfw_protocols::uds::Session::Default
    );
    assert_eq!(
        lab.ask(vec![0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 3, 0x0D, 0x40]),
        RequesterEvent::Negative(Nrc::ServiceNotSupportedInActiveSession)
    );
    assert_eq!(
        lab.ask(bmsfw_protocols::uds::transfer_data(30, &[1, 2, 3])),
        RequesterEvent::Negative(Nrc::RequestSequenceError)
    );
    assert_eq!(lab.bms.status().running_version, [4, 15]);
}

/// Where in an update the power goes.
/// Cuts the power `cut_after` into an update for `off_for`; returns the version that runs
/// in the end, the client's outcome and the client's phase at the cut.
fn cut_and_restore(
    cut_after: Duration,
    off_for: Duration,
) -> ([u8; 2], Option<FlashEvent>, Option<FlashPhase>) {
    let mut lab = Lab::new(bms());
    let pkg = new_package(30_000);
    let start = lab.now;
    let mut cut = false;
    let mut phase_at_cut = None;
    let outcome = lab.flash(&pkg, |bms, now, phase| {
        if !cut && now >= start + cut_after {
            bms.power_cut(now);
            cut = true;
            phase_at_cut = Some(phase);
        }
        if cut && now >= start + cut_after + off_for && bms.status().stage == Stage::Off {
            bms.power_restore(now);
        }
        false
    });
    if lab.bms.status().stage == Stage::Off {
        lab.bms.power_restore(lab.now);
    }
    lab.idle(lab.now + secs(15.0));
    let status = lab.bms.status();
    assert_eq!(status.stage, Stage::Running);
    // Whatever runs is a complete package that verifies, with the version it claims.
    let active = lab.bms.flash().slot(status.active_slot).data().to_vec();
    let header = verify(&active).expect("the active slot holds a complete package");
    assert_eq!(header.version, status.running_version);
    assert_eq!(lab.last_35f_version(), status.running_version);
    if status.running_version == [4, 16] {
        assert_eq!(active, pkg);
    }
    (status.running_version, outcome, phase_at_cut)
}

#[test]
fn a_power_cut_during_the_transfer_keeps_the_old_firmware() {
    // The transfer of 30 kB starts after about 0.2 s (erase) and lasts about 0.1 s.
    let (version, outcome, phase) = cut_and_restore(secs(0.25), secs(1.0));
    assert_eq!(phase, Some(FlashPhase::Transfer));
    assert_eq!(version, [4, 15]);
    assert!(
        matches!(outcome, Some(FlashEvent::Failed(_))),
        "{outcome:?}"
    );
}

#[test]
fn a_power_cut_after_the_activation_boots_the_new_firmware() {
    // Let the update reach the reset request, then cut before the client sees the end:
    // the boot record was written, so the new firmware boots at power-up.
    let mut lab = Lab::new(bms());
    let pkg = new_package(30_000);
    let outcome = lab.flash(&pkg, |bms, now, _| {
        if bms.status().boot_state == BootState::ActivationPending {
            bms.power_cut(now);
            return true;
        }
        false
    });
    assert_eq!(outcome, None);
    lab.idle(lab.now + secs(1.0));
    lab.bms.power_restore(lab.now);
    lab.idle(lab.now + secs(5.0));
    assert_eq!(lab.bms.status().running_version, [4, 16]);
    assert_eq!(lab.last_35f_version(), [4, 16]);
}

#[test]
fn power_cuts_swept_over_a_whole_update_give_old_or_new_firmware() {
    let mut seen = std::collections::BTreeMap::new();
    for step in 0..80 {
        let (version, _, phase) =
            cut_and_restore(Duration::from_millis(step * 50), Duration::from_millis(700));
        assert!(version == [4, 15] || version == [4, 16], "{version:?}");
        seen.entry(version).or_insert_with(Vec::new).push(phase);
    }
    // Cuts before the boot record keep the old firmware, later ones give the new one.
    assert!(seen[&[4, 15]].contains(&Some(FlashPhase::Transfer)));
    assert!(seen[&[4, 15]].contains(&Some(FlashPhase::Erase)));
    assert!(seen.contains_key(&[4, 16]), "{seen:?}");
}

mod power_cut_at_any_moment {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// A power cut at any moment of an update, for any time, leaves the battery on its
        /// old or its new complete firmware.
        #[test]
        fn old_or_new_never_partial(cut_ms in 0u64..4000, off_ms in 1u64..8000) {
            let (version, _, _) = cut_and_restore(
                Duration::from_millis(cut_ms),
                Duration::from_millis(off_ms),
            );
            prop_assert!(version == [4, 15] || version == [4, 16], "{:?}", version);
        }
    }
}
