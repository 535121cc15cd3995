//! The session against the simulated ReefStack master (`bmsfw-coral-sim`, written from the
//! same `PROTOCOL.md`), joined by a wire that carries one frame at a time for its exact bit
//! time, lowest identifier first, in virtual time. No engine, no bus-load cap: the
//! end-to-end tests run the built library through the engine.

use super::*;
use crate::testing::reader;
use bmsfw_plugin_api::{BatteryIdentity, Session, SessionOptions};
use bmsfw_protocols::bit_timing::{arbitration_key, frame_duration};
use bmsfw_sim::battery::{BatteryConfig, IdentityConfig};
use coral_sim::bundle::{BundleSpec, build};
use coral_sim::{CoralBms, CoralConfig, Fault, ModuleConfig};
use std::time::Duration;

const PRODUCT: u16 = 0xC0A1;
const OLD: [u8; 3] = [1, 0x0F, 0x03];
const NEW: [u8; 3] = [1, 0x10, 0xFF];
const MODULE_NEW: [u8; 3] = [2, 0x04, 0x01];

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ToBms,
    ToGx,
}

type DropRule = Box<dyn FnMut(Timestamp, Dir, &CanFrame) -> bool>;

/// The GX's session and the master on one wire.
struct Wire {
    now: Timestamp,
    session: CoralSession,
    bms: CoralBms,
    gx_head: Option<CanFrame>,
    bms_head: Option<CanFrame>,
    drop: DropRule,
    /// Every frame the GX put on the wire, with the time it ended.
    sent: Vec<(Timestamp, CanFrame)>,
    phases: Vec<Phase>,
}

fn battery_config() -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "CORAL".into(),
        bms_name: "ReefStack 48".into(),
        product_code: PRODUCT,
        firmware: [OLD[1], OLD[0]],
        capacity_ah: 400,
        product_info_tail: None,
        serial: Some("RS48-0001".into()),
        product_name: None,
    })
}

/// A master with `modules` modules of hardware revision 1 running v2.03 (build 01).
fn master(modules: usize) -> CoralBms {
    CoralBms::new(
        CoralConfig::new(PRODUCT, OLD, modules),
        battery_config(),
        Timestamp::ZERO,
    )
    .unwrap()
}

/// A bundle of v1.10 (build FF): a master image of `master_len` bytes for revision 2,
/// module images of 16 KiB for revisions 1 and 3.
fn bundle_bytes(master_len: usize) -> Vec<u8> {
    build(
        &BundleSpec::new(PRODUCT, NEW, 2, master_len, 5).with_modules(
            MODULE_NEW,
            &[1, 3],
            16 * 1024,
        ),
    )
}

fn request(bundle: Vec<u8>, resume: Option<Vec<u8>>, modules: &[u16]) -> SessionRequest {
    SessionRequest {
        battery: BatteryIdentity::new("CORAL").with_raw_35f(&[0xA1, 0xC0, OLD[1], OLD[0], 0x90, 1]),
        package: reader(bundle),
        options: SessionOptions {
            node_id: None.into(),
            modules: modules.to_vec().into(),
        },
        resume,
    }
}

fn session(bundle: Vec<u8>) -> CoralSession {
    CoralSession::start(request(bundle, None, &[])).unwrap()
}

impl Wire {
    fn new(session: CoralSession, bms: CoralBms) -> Wire {
        Wire {
            now: Timestamp::ZERO,
            session,
            bms,
            gx_head: None,
            bms_head: None,
            drop: Box::new(|_, _, _| false),
            sent: Vec::new(),
            phases: Vec::new(),
        }
    }

    fn note_phase(&mut self) {
        let phase = self.session.status().phase;
        if self.phases.last() != Some(&phase) {
            self.phases.push(phase);
        }
    }

    /// Runs until `stop` holds or the session ends, at most `limit` of virtual time.
    fn run_until(&mut self, limit: Duration, mut stop: impl FnMut(&Wire) -> bool) {
        let end = self.now + limit;
        while self.now < end && !stop(self) {
            if self.session.status().phase.is_final() && self.gx_head.is_none() {
                // Let the master finish what it was doing (a restart, its last answers).
                if self.bms_head.is_none() && self.bms.poll_transmit(self.now).is_none() {
                    return;
                }
            }
            for due in [self.session.poll_timeout()].into_iter().flatten() {
                if due <= self.now {
                    self.session.handle_timeout(self.now);
                }
            }
            self.bms.handle_timeout(self.now);
            if self.gx_head.is_none() {
                self.gx_head = self.session.poll_transmit(self.now);
            }
            if self.bms_head.is_none() {
                self.bms_head = self.bms.poll_transmit(self.now);
            }
            self.note_phase();
            let pick = match (self.gx_head, self.bms_head) {
                (Some(g), Some(b)) => Some(arbitration_key(g.id()) < arbitration_key(b.id())),
                (Some(_), None) => Some(true),
                (None, Some(_)) => Some(false),
                (None, None) => None,
            };
            match pick {
                Some(from_gx) => {
                    let frame = if from_gx {
                        self.gx_head.take()
                    } else {
                        self.bms_head.take()
                    }
                    .unwrap();
                    self.now = self.now + frame_duration(&frame, 500_000);
                    let dir = if from_gx { Dir::ToBms } else { Dir::ToGx };
                    if from_gx {
                        self.sent.push((self.now, frame));
                    }
                    if !(self.drop)(self.now, dir, &frame) {
                        match dir {
                            Dir::ToBms => self.bms.handle_frame(self.now, &frame),
                            Dir::ToGx => self.session.handle_frame(self.now, &frame),
                        }
                    }
                    self.note_phase();
                }
                None => {
                    let next = [self.session.poll_timeout(), self.bms.poll_timeout()]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(end);
                    self.now = next.max(self.now + Duration::from_micros(1)).min(end);
                }
            }
        }
    }

    fn run(&mut self, limit: Duration) -> SessionStatus {
        self.run_until(limit, |_| false);
        self.session.status()
    }

    /// Sequence numbers of the data frames the GX sent.
    fn data_sent(&self) -> Vec<u32> {
        self.sent
            .iter()
            .filter(|(_, f)| f.id().raw() >> 20 == 0x1C0)
            .map(|(_, f)| f.id().raw() & 0xF_FFFF)
            .collect()
    }

    fn commands_sent(&self) -> Vec<u8> {
        self.sent
            .iter()
            .filter(|(_, f)| f.id() == crate::protocol::COMMAND_ID)
            .map(|(_, f)| f.data()[0])
            .collect()
    }
}

fn states(status: &SessionStatus) -> Vec<(u16, ModuleState, String)> {
    status
        .modules
        .iter()
        .map(|m| {
            (
                m.index,
                m.state,
                m.version
                    .as_ref()
                    .map(|v| v.display.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_pack_of_four_is_updated_module_by_module() {
    let bundle = bundle_bytes(100_000);
    let len = bundle.len() as u64;
    let mut wire = Wire::new(session(bundle.clone()), master(4));
    let mut seen_updating = Vec::new();
    wire.run_until(Duration::from_secs(120), |w| {
        let s = w.session.status();
        for m in s.modules.iter() {
            if m.state == ModuleState::UPDATING && !seen_updating.contains(&m.index) {
                seen_updating.push(m.index);
            }
        }
        false
    });
    let status = wire.session.status();
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    assert_eq!((status.bytes_done, status.bytes_total), (len, len));
    assert_eq!(
        wire.phases,
        vec![
            Phase::TRANSFERRING,
            Phase::INSTALLING,
            Phase::RESTARTING,
            Phase::VERIFYING,
            Phase::DONE
        ]
    );
    // One at a time, in order, each reported while it was updated.
    assert_eq!(seen_updating, vec![1, 2, 3, 4]);
    assert!(
        states(&status)
            .iter()
            .all(|(_, s, v)| *s == ModuleState::DONE && v == "v2.04 (build 01)"),
        "{:?}",
        states(&status)
    );
    let bms = wire.bms.status();
    assert_eq!(bms.running_version, NEW);
    assert!(bms.modules.iter().all(|m| m.version == MODULE_NEW));
    // Every frame of the bundle was sent once, none again, on a clean wire.
    let data = wire.data_sent();
    assert_eq!(data.len() as u64, len.div_ceil(8));
    assert!(data.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(wire.session.transfer_stats().resent_frames, 0);
    // The commands in order: HELLO, MODULES, BEGIN, END, INSTALL, polls, RESTART, HELLO.
    let commands = wire.commands_sent();
    assert_eq!(
        &commands[..4],
        &[op::HELLO, op::MODULES, op::BEGIN, op::END]
    );
    assert!(commands.contains(&op::INSTALL) && commands.contains(&op::RESTART));
    assert!(wire.session.checkpoint().is_empty());
}

#[test]
fn lost_frames_and_answers_are_sent_again_alone() {
    let bundle = bundle_bytes(60_000);
    let mut wire = Wire::new(session(bundle.clone()), master(1));
    let mut n = 0u64;
    // Every 97th frame on the wire is lost, in both directions, acknowledgements included.
    wire.drop = Box::new(move |_, _, f| {
        n += 1;
        f.id().is_extended() && n % 97 == 0
    });
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let stats = wire.session.transfer_stats();
    let frames = (bundle.len() as u64).div_ceil(8);
    assert_eq!(stats.new_frames, frames);
    assert!(
        stats.resent_frames > 0 && stats.resent_frames < frames / 20,
        "{stats:?}"
    );
    assert_eq!(wire.bms.status().running_version, NEW);
}

#[test]
fn a_resumed_session_sends_nothing_the_master_already_has() {
    let bundle = bundle_bytes(200_000);
    let frames = (bundle.len() as u64).div_ceil(8) as u32;
    let mut wire = Wire::new(session(bundle.clone()), master(2));
    let mut checkpoint = Vec::new();
    wire.run_until(Duration::from_secs(60), |w| {
        let c = w.session.checkpoint();
        if !c.is_empty() {
            checkpoint = c;
        }
        w.bms
            .status()
            .staged
            .is_some_and(|(_, written, _)| written > frames * 2 / 5)
    });
    let parsed = Checkpoint::parse(&checkpoint).unwrap();
    assert!(parsed.written > 0);
    // The GX restarts: its session is gone (frames it had queued with it) and a new one
    // starts from the journaled checkpoint, which is older than the master's progress.
    let (_, held_before, _) = wire.bms.status().staged.unwrap();
    assert!(held_before >= parsed.written);
    let sent_before = wire.sent.len();
    wire.session = CoralSession::start(request(bundle.clone(), Some(checkpoint), &[])).unwrap();
    wire.gx_head = None;
    wire.phases.clear();
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let resumed: Vec<u32> = wire.sent[sent_before..]
        .iter()
        .filter(|(_, f)| f.id().raw() >> 20 == 0x1C0)
        .map(|(_, f)| f.id().raw() & 0xF_FFFF)
        .collect();
    let lowest = *resumed.iter().min().unwrap();
    assert!(
        lowest >= held_before,
        "frame {lowest} sent again, the master had written {held_before}"
    );
    assert_eq!(
        resumed.len() as u32,
        frames - lowest,
        "every later frame exactly once"
    );
    let commands: Vec<u8> = wire.sent[sent_before..]
        .iter()
        .filter(|(_, f)| f.id() == crate::protocol::COMMAND_ID)
        .map(|(_, f)| f.data()[0])
        .collect();
    assert_eq!(&commands[..3], &[op::HELLO, op::MODULES, op::RESUME]);
    assert!(!commands.contains(&op::BEGIN), "no erase on resume");
    assert_eq!(wire.bms.status().running_version, NEW);
}

#[test]
fn a_checkpoint_of_another_bundle_starts_afresh() {
    let other = bundle_bytes(1000);
    let bundle = bundle_bytes(2000);
    let foreign = Checkpoint {
        token: 1,
        manifest_sha256: crate::bundle::read_bundle(&reader(other))
            .unwrap()
            .manifest_sha256,
        len: bundle.len() as u32,
        written: 64,
    };
    let mut wire = Wire::new(
        CoralSession::start(request(bundle, Some(foreign.to_bytes()), &[])).unwrap(),
        master(1),
    );
    let status = wire.run(Duration::from_secs(60));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    assert!(wire.commands_sent().contains(&op::BEGIN));
    assert!(!wire.commands_sent().contains(&op::RESUME));
}

#[test]
fn an_unknown_token_makes_the_session_start_afresh() {
    let bundle = bundle_bytes(2000);
    let stale = Checkpoint {
        token: 0xDEAD_BEEF,
        manifest_sha256: crate::bundle::read_bundle(&reader(bundle.clone()))
            .unwrap()
            .manifest_sha256,
        len: bundle.len() as u32,
        written: 64,
    };
    let mut wire = Wire::new(
        CoralSession::start(request(bundle, Some(stale.to_bytes()), &[])).unwrap(),
        master(1),
    );
    let status = wire.run(Duration::from_secs(60));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let c = wire.commands_sent();
    let resume = c.iter().position(|&o| o == op::RESUME).unwrap();
    assert_eq!(c[resume + 1], op::BEGIN);
    assert_eq!(*wire.data_sent().first().unwrap(), 0);
}

#[test]
fn a_module_failing_mid_propagation_is_reported_by_number_with_the_others() {
    let mut bms = master(4);
    bms.inject(Fault::ModuleFails {
        module: 3,
        error: 0x32,
        permille: 500,
    });
    let mut wire = Wire::new(session(bundle_bytes(20_000)), bms);
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::FAILED);
    let failure = status.outcome.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::MODULE_UPDATE_FAILED);
    let m = failure.message.as_str();
    assert!(
        m.contains("module 3 of 4 failed: writing its flash failed"),
        "{m}"
    );
    assert!(m.contains("module 1 done, runs v2.04 (build 01)"), "{m}");
    assert!(m.contains("module 4 pending, runs v2.03 (build 01)"), "{m}");
    assert!(m.contains("keeps v1.0F (build 03)"), "{m}");
    assert_eq!(
        states(&status),
        vec![
            (1, ModuleState::DONE, "v2.04 (build 01)".into()),
            (2, ModuleState::DONE, "v2.04 (build 01)".into()),
            (3, ModuleState::FAILED, "v2.03 (build 01)".into()),
            (4, ModuleState::PENDING, "v2.03 (build 01)".into()),
        ]
    );
    // The master kept its firmware and did not restart.
    assert_eq!(wire.bms.status().running_version, OLD);
    assert!(!wire.commands_sent().contains(&op::RESTART));

    // A retry transfers again and skips the modules already updated.
    wire.session = session(bundle_bytes(20_000));
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let retried: Vec<ModuleState> = states(&status).into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(
        retried,
        vec![
            ModuleState::SKIPPED,
            ModuleState::SKIPPED,
            ModuleState::DONE,
            ModuleState::DONE
        ]
    );
}

#[test]
fn selected_modules_only_are_updated() {
    let bundle = bundle_bytes(4000);
    let mut wire = Wire::new(
        CoralSession::start(request(bundle, None, &[2])).unwrap(),
        master(3),
    );
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let s: Vec<ModuleState> = states(&status).into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(
        s,
        vec![
            ModuleState::SKIPPED,
            ModuleState::DONE,
            ModuleState::SKIPPED
        ]
    );
    let versions: Vec<[u8; 3]> = wire
        .bms
        .status()
        .modules
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, vec![[2, 3, 1], MODULE_NEW, [2, 3, 1]]);
    // A module the pack does not have.
    let mut wire = Wire::new(
        CoralSession::start(request(bundle_bytes(4000), None, &[5])).unwrap(),
        master(3),
    );
    let status = wire.run(Duration::from_secs(10));
    assert_eq!(status.failure_code(), Some(ErrorCode::TRANSFER_FAILED));
    let message = status.outcome.unwrap().message;
    assert!(
        message.contains("names module 5, which the pack does not have: its modules are 1 to 3"),
        "{message}"
    );
    assert!(wire.data_sent().is_empty());
    assert_eq!(wire.commands_sent(), vec![op::HELLO, op::MODULES]);
}

#[test]
fn the_masters_full_version_is_reported_from_its_hello() {
    let mut s = session(bundle_bytes(4000));
    assert_eq!(Session::running_version(&s), None);
    let mut wire = Wire::new(s, master(2));
    wire.run(Duration::from_secs(120));
    // After the update: the master's new version, with its build.
    s = wire.session;
    let v = Session::running_version(&s).unwrap();
    assert_eq!(v.raw.as_slice(), &NEW);
    assert_eq!(v.comparable.as_slice(), &[1, 0x10, 0xFF]);
}

#[test]
fn a_module_without_an_image_stops_the_update_before_anything_is_erased() {
    let mut config = CoralConfig::new(PRODUCT, OLD, 3);
    config.modules[1] = ModuleConfig {
        hw_revision: 2,
        firmware: [2, 3, 1],
    };
    let bms = CoralBms::new(config, battery_config(), Timestamp::ZERO).unwrap();
    let mut wire = Wire::new(session(bundle_bytes(4000)), bms);
    let status = wire.run(Duration::from_secs(10));
    let failure = status.outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    assert!(
        failure.message.contains("module 2 is hardware revision 2"),
        "{failure}"
    );
    assert_eq!(wire.commands_sent(), vec![op::HELLO, op::MODULES]);
}

#[test]
fn a_bundle_changed_after_inspection_is_refused_by_the_masters_check() {
    // The master checks what it received against the signed manifest: damage after the
    // plugin read the header (here, a byte of a module image) is caught before install.
    let bundle = bundle_bytes(4000);
    let spoiled = coral_sim::bundle::corrupt(
        &bundle,
        coral_sim::bundle::Corruption::SwapImage { entry: 1 },
    );
    // The plugin's session reads the header and manifest only; the inspection (which would
    // refuse it) ran on the original.
    let mut wire = Wire::new(session(spoiled), master(1));
    let status = wire.run(Duration::from_secs(60));
    let failure = status.outcome.unwrap();
    assert_eq!(failure.code, ErrorCode::VERIFICATION_FAILED);
    assert!(failure.message.contains("hardware revision 1"), "{failure}");
    assert_eq!(wire.bms.status().running_version, OLD);
}

#[test]
fn an_abort_drops_the_transfer_at_the_master() {
    let mut wire = Wire::new(session(bundle_bytes(50_000)), master(1));
    wire.run_until(Duration::from_secs(30), |w| {
        w.bms
            .status()
            .staged
            .is_some_and(|(_, written, _)| written > 1000)
    });
    wire.session
        .abort(wire.now, &AbortReason::new(725, "battery SOC below 50 %"));
    assert_eq!(
        wire.session.status().failure_code(),
        Some(ErrorCode::ABORTED)
    );
    assert!(
        wire.session
            .status()
            .outcome
            .unwrap()
            .message
            .contains("725")
    );
    wire.run(Duration::from_secs(1));
    assert_eq!(*wire.commands_sent().last().unwrap(), op::ABORT);
    assert_eq!(wire.bms.status().staged, None);
}

#[test]
fn a_bus_interruption_is_survived_without_starting_over() {
    let bundle = bundle_bytes(150_000);
    let mut wire = Wire::new(session(bundle.clone()), master(1));
    wire.run_until(Duration::from_secs(30), |w| {
        w.bms
            .status()
            .staged
            .is_some_and(|(_, written, _)| written > 5000)
    });
    // Three seconds of a dead bus.
    let from = wire.now;
    let (_, written_before, _) = wire.bms.status().staged.unwrap();
    wire.drop = Box::new(move |t, _, _| t < from + Duration::from_secs(3));
    let sent_before = wire.sent.len();
    let status = wire.run(Duration::from_secs(120));
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    let after: Vec<u32> = wire.sent[sent_before..]
        .iter()
        .filter(|(_, f)| f.id().raw() >> 20 == 0x1C0)
        .map(|(_, f)| f.id().raw() & 0xF_FFFF)
        .collect();
    assert!(after.iter().all(|&s| s >= written_before));
    assert!(
        wire.session.transfer_stats().ack_requests >= 4,
        "it kept asking"
    );
}

#[test]
fn a_master_that_does_not_come_back_fails_the_restart() {
    let mut wire = Wire::new(session(bundle_bytes(2000)), master(1));
    wire.run_until(Duration::from_secs(60), |w| {
        w.session.status().phase == Phase::RESTARTING
    });
    // The master loses power right after its RESTART answer.
    wire.run_until(Duration::from_millis(2), |_| false);
    wire.bms.power_cut(wire.now);
    let status = wire.run(Duration::from_secs(30));
    assert_eq!(status.failure_code(), Some(ErrorCode::RESTART_FAILED));
}

#[test]
fn another_product_or_protocol_is_refused() {
    let bms = CoralBms::new(
        CoralConfig::new(0xC0A2, OLD, 1),
        battery_config(),
        Timestamp::ZERO,
    )
    .unwrap();
    let mut wire = Wire::new(session(bundle_bytes(2000)), bms);
    let status = wire.run(Duration::from_secs(10));
    assert_eq!(
        status.failure_code(),
        Some(ErrorCode::PACKAGE_WRONG_PRODUCT)
    );
    // The battery's own 0x35F product code is checked when the session starts.
    let mut r = request(bundle_bytes(2000), None, &[]);
    r.battery = BatteryIdentity::new("CORAL").with_raw_35f(&[0xA2, 0xC0, 0x0F, 1]);
    let e = CoralSession::start(r).err().unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
}
