//! The simulated ReefStack master, frame by frame, as `PROTOCOL.md` describes it: answers,
//! refusals, the staging area across a power cut, aborts, and its telemetry.

use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use bmsfw_sim::battery::{BatteryConfig, IdentityConfig};
use coral_sim::bundle::{BundleSpec, build};
use coral_sim::protocol::{COMMAND_ID, REPLY_ID, code, master, module};
use coral_sim::{CoralBms, CoralConfig, Stage};
use std::time::Duration;

const PRODUCT: u16 = 0xC0A1;
const OLD: [u8; 3] = [1, 0x0F, 0x03];

fn t(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

fn bms(modules: usize) -> CoralBms {
    let battery = BatteryConfig::new(IdentityConfig {
        manufacturer: "CORAL".into(),
        bms_name: "ReefStack 48".into(),
        product_code: PRODUCT,
        // Deliberately wrong: the master broadcasts its own firmware.
        firmware: [0, 0],
        capacity_ah: 200,
        product_info_tail: None,
        serial: None,
        product_name: None,
    });
    CoralBms::new(CoralConfig::new(PRODUCT, OLD, modules), battery, t(0)).unwrap()
}

fn command(bms: &mut CoralBms, now: Timestamp, bytes: [u8; 8]) {
    bms.handle_frame(now, &CanFrame::new(COMMAND_ID, &bytes).unwrap());
}

fn data(bms: &mut CoralBms, now: Timestamp, bundle: &[u8], seq: u32) {
    let at = seq as usize * 8;
    let end = (at + 8).min(bundle.len());
    let id = CanId::extended(0x1C00_0000 + seq).unwrap();
    bms.handle_frame(now, &CanFrame::new(id, &bundle[at..end]).unwrap());
}

/// Every reply the master sends at `now` (its telemetry is left out).
fn replies(bms: &mut CoralBms, now: Timestamp) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| bms.poll_transmit(now))
        .filter(|f| f.id() == REPLY_ID)
        .map(|f| f.data().to_vec())
        .collect()
}

/// Runs the master to `until`, keeping its replies.
fn run(bms: &mut CoralBms, from: Timestamp, until: Timestamp) -> Vec<Vec<u8>> {
    let mut out = replies(bms, from);
    let mut now = from;
    while let Some(next) = bms.poll_timeout().filter(|n| *n <= until) {
        now = next.max(now);
        bms.handle_timeout(now);
        out.extend(replies(bms, now));
    }
    bms.handle_timeout(until);
    out.extend(replies(bms, until));
    out
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn bundle() -> Vec<u8> {
    build(
        &BundleSpec::new(PRODUCT, [1, 0x10, 0xFF], 2, 3000, 1).with_modules([2, 4, 1], &[1], 2000),
    )
}

#[test]
fn hello_and_modules_answer_as_documented() {
    let mut b = bms(3);
    command(&mut b, t(1), [0x01, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(1)),
        vec![vec![0x81, 1, 0xA1, 0xC0, 1, 0x0F, 3, 3]]
    );
    command(&mut b, t(2), [0x02, 0, 0, 0, 0, 0, 0, 0]);
    let r = replies(&mut b, t(2));
    assert_eq!(r.len(), 4);
    assert_eq!(r[0], vec![0x82, 0, 2, 1, 0x0F, 3, master::IDLE, 0]);
    assert_eq!(r[3], vec![0x82, 3, 1, 2, 3, 1, module::PENDING, 0]);
    // 0x35F carries the firmware as 0x010F little-endian.
    let product_info = b.battery().snapshot().product_info;
    assert_eq!(&product_info[..4], &[0xA1, 0xC0, 0x0F, 0x01]);
    // A short command, an unknown one.
    b.handle_frame(t(3), &CanFrame::new(COMMAND_ID, &[0x01]).unwrap());
    command(&mut b, t(3), [0x42, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(3)),
        vec![
            vec![0xEE, 0x01, code::UNKNOWN_COMMAND, 0, 0, 0, 0, 0],
            vec![0xEE, 0x42, code::UNKNOWN_COMMAND, 0, 0, 0, 0, 0]
        ]
    );
}

#[test]
fn begin_erases_once_and_refuses_what_does_not_fit() {
    let mut b = bms(1);
    command(&mut b, t(0), [0x03, 0, 0, 0, 0, 0, 0, 0]);
    command(&mut b, t(0), [0x03, 0x01, 0, 0x80, 0, 0, 0, 0]); // 8 MiB + 1
    assert_eq!(
        replies(&mut b, t(0)),
        vec![
            vec![0xEE, 0x03, code::BAD_LENGTH, 0, 0, 0, 0, 0],
            vec![0xEE, 0x03, code::BAD_LENGTH, 0, 0, 0, 0, 0]
        ]
    );
    // 1 MiB: 16 sectors of 40 ms, busy at once and every 500 ms.
    command(&mut b, t(0), [0x03, 0, 0, 0x10, 0, 0, 0, 0]);
    let r = run(&mut b, t(0), t(700));
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(&r[0][..2], &[0xB0, 0x03]);
    assert_eq!(&r[1][..2], &[0xB0, 0x03]);
    assert_eq!(r[2][0], 0x83);
    let token = le32(&r[2][1..5]);
    assert_eq!(r[2][5..7], [0x00, 0x04], "window 1024");
    assert_eq!(b.status().staged, Some((token, 0, 131_072)));
    // The same BEGIN again before any data: the same token, at once.
    command(&mut b, t(800), [0x03, 0, 0, 0x10, 0, 0, 0, 0]);
    let r = replies(&mut b, t(800));
    assert_eq!(r.len(), 1);
    assert_eq!(le32(&r[0][1..5]), token);
}

#[test]
fn what_was_written_survives_a_power_cut_and_the_transfer_resumes() {
    let file = bundle();
    let frames = file.len().div_ceil(8) as u32;
    let mut b = bms(1);
    command(&mut b, t(0), [0x03, 0, 0, 0, 0, 0, 0, 0]);
    let len = (file.len() as u32).to_le_bytes();
    command(
        &mut b,
        t(0),
        [0x03, len[0], len[1], len[2], len[3], 0, 0, 0],
    );
    let r = run(&mut b, t(0), t(100));
    let token = le32(&r.last().unwrap()[1..5]);
    // 300 frames with frame 100 missing: pages up to frame 96 are written.
    let mut now = t(100);
    for seq in (0..300).filter(|s| *s != 100) {
        data(&mut b, now, &file, seq);
        now = now + Duration::from_micros(270);
    }
    let r = run(&mut b, now, now + Duration::from_millis(50));
    assert!(
        r.contains(&vec![0xA1, 100, 0, 0, 1, 0, 0, 0]),
        "one NACK: {r:?}"
    );
    assert_eq!(b.status().staged, Some((token, 96, frames)));
    // The power goes: RAM (the frames beyond 96) is lost, the staging area is not.
    b.power_cut(t(1000));
    b.power_restore(t(2000));
    assert_eq!(b.status().stage, Stage::Restarting(t(5000)));
    run(&mut b, t(2000), t(5000));
    assert_eq!(b.status().stage, Stage::Running);
    // Another token: unknown. The right one: resumed from frame 96.
    command(&mut b, t(5001), [0x04, 9, 9, 9, 9, 0, 0, 0]);
    let t4 = token.to_le_bytes();
    command(&mut b, t(5001), [0x04, t4[0], t4[1], t4[2], t4[3], 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(5001)),
        vec![
            vec![0x84, 1, 0, 0, 0, 0, 0, 0],
            vec![0x84, 0, 96, 0, 0, 0, 0, 0]
        ]
    );
    // END before the last frame: refused.
    command(&mut b, t(5002), [0x05, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(5002)),
        vec![vec![0xEE, 0x05, code::OUT_OF_SEQUENCE, 0, 0, 0, 0, 0]]
    );
    let mut now = t(5010);
    for seq in 96..frames {
        data(&mut b, now, &file, seq);
        now = now + Duration::from_micros(270);
    }
    let r = run(&mut b, now, now + Duration::from_millis(100));
    let last = r.last().unwrap();
    assert_eq!(last[0], 0xA0);
    assert_eq!(last[1..4], frames.to_le_bytes()[..3]);
    assert_eq!(b.staged_bytes().unwrap(), &file[..], "byte for byte");
}

#[test]
fn install_and_restart_refuse_what_is_out_of_sequence_and_abort_stops_the_modules() {
    let file = bundle();
    let frames = file.len().div_ceil(8) as u32;
    let mut b = bms(3);
    command(&mut b, t(0), [0x06, 0, 0, 0, 0, 0, 0, 0]);
    command(&mut b, t(0), [0x07, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(0)),
        vec![
            vec![0xEE, 0x06, code::OUT_OF_SEQUENCE, 0, 0, 0, 0, 0],
            vec![0xEE, 0x07, code::OUT_OF_SEQUENCE, 0, 0, 0, 0, 0]
        ]
    );
    let len = (file.len() as u32).to_le_bytes();
    command(
        &mut b,
        t(0),
        [0x03, len[0], len[1], len[2], len[3], 0, 0, 0],
    );
    run(&mut b, t(0), t(100));
    for seq in 0..frames {
        data(&mut b, t(100), &file, seq);
    }
    run(&mut b, t(100), t(200));
    command(&mut b, t(200), [0x05, 0, 0, 0, 0, 0, 0, 0]);
    let r = run(&mut b, t(200), t(400));
    assert_eq!(r.last().unwrap(), &vec![0x85, 0, 0, 0, 0, 0, 0, 0]);
    // Module 4 does not exist.
    command(&mut b, t(400), [0x06, 0b1000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(400)),
        vec![vec![0xEE, 0x06, code::NO_SUCH_MODULE, 0, 0, 0, 0, 0]]
    );
    // Modules 1 and 3.
    command(&mut b, t(400), [0x06, 0b101, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(400)),
        vec![vec![0x86, 0, 0, 0, 0, 0, 0, 0]]
    );
    run(&mut b, t(400), t(2000));
    let s = b.status();
    assert_eq!(s.master_state, master::UPDATING_MODULES);
    let states: Vec<u8> = s.modules.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        vec![module::UPDATING, module::SKIPPED, module::PENDING]
    );
    // ABORT while module 1 updates: it keeps its old firmware, nothing is installed.
    command(&mut b, t(2000), [0x08, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        replies(&mut b, t(2000)),
        vec![vec![0x88, 0, 0, 0, 0, 0, 0, 0]]
    );
    let s = b.status();
    assert_eq!(s.master_state, master::IDLE);
    assert_eq!(s.staged, None);
    assert_eq!(s.modules[0].state, module::PENDING);
    assert_eq!(s.modules[0].version, [2, 3, 1]);
    assert_eq!(s.running_version, OLD);
}

#[test]
fn a_bundle_for_another_pack_is_refused_by_the_check_and_dropped() {
    // Module images only for revision 3: module 1 (revision 1) has none.
    let file = build(
        &BundleSpec::new(PRODUCT, [1, 0x10, 0xFF], 2, 1000, 2).with_modules([2, 4, 1], &[3], 500),
    );
    let frames = file.len().div_ceil(8) as u32;
    let mut b = bms(2);
    let len = (file.len() as u32).to_le_bytes();
    command(
        &mut b,
        t(0),
        [0x03, len[0], len[1], len[2], len[3], 0, 0, 0],
    );
    run(&mut b, t(0), t(100));
    for seq in 0..frames {
        data(&mut b, t(100), &file, seq);
    }
    run(&mut b, t(100), t(200));
    command(&mut b, t(200), [0x05, 0, 0, 0, 0, 0, 0, 0]);
    let r = run(&mut b, t(200), t(400));
    assert_eq!(r.last().unwrap()[..3], [0x85, code::MODULE_REVISION, 1]);
    let s = b.status();
    assert_eq!(
        (s.master_state, s.master_error),
        (master::FAILED, code::MODULE_REVISION)
    );
    assert_eq!(s.staged, None);
}
