use super::*;
use bmsfw_plugin_api::CanId;

fn outcome() -> Outcome {
    Outcome {
        end: None,
        code: None,
        struck: Vec::new(),
        violations: Vec::new(),
    }
}

fn truth(units: &[(&str, &[u8])]) -> Truth {
    Truth {
        units: units
            .iter()
            .map(|(u, i)| (u.to_string(), i.to_vec()))
            .collect(),
        running: true,
    }
}

#[test]
fn an_image_that_is_neither_old_nor_new_breaks_promise_a() {
    let before = truth(&[("node 1", b"old"), ("node 2", b"old")]);
    let mut out = outcome();
    check_images(
        &before,
        &truth(&[("node 1", b"old"), ("node 2", b"new")]),
        b"new",
        &mut out,
    );
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    check_images(
        &before,
        &truth(&[("node 1", b"ne"), ("node 2", b"new")]),
        b"new",
        &mut out,
    );
    assert_eq!(out.violations.len(), 1);
    assert_eq!(out.violations[0].invariant, 'a');
    assert!(
        out.violations[0].what.contains("node 1"),
        "{:?}",
        out.violations
    );
}

fn frame(id: u16, len: usize) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), &vec![0x55; len]).unwrap()
}

/// Frames back to back from `at`, each ending when the next begins.
fn back_to_back(wire: &mut Wire, from: Instant, n: usize, from_gx: bool) -> Instant {
    let mut at = from;
    for _ in 0..n {
        let f = frame(0x602, 8);
        at += bmsfw_protocols::bit_timing::frame_duration(&f, 500_000);
        wire.frames.push((f, at, from_gx));
    }
    at
}

#[tokio::test(start_paused = true)]
async fn promise_e_counts_from_the_first_red_value_the_gx_received() {
    let struck = Instant::now();
    let allowed = Duration::from_millis(750);
    let ms = |n: u64| struck + Duration::from_millis(n);
    let red = frame(0x355, 8);
    let mut wire = Wire::default();
    // The first frame with the red value is lost on the way to the GX; the next one,
    // a second later, arrives.
    wire.frames.push((red, ms(1), false));
    wire.frames.push((red, ms(1001), false));
    wire.to_gx.push((red, ms(1001)));
    // The GX still transfers 900 ms after the lost frame, stops in time after the one
    // it received; its keep-alive never counts.
    wire.frames.push((frame(0x602, 8), ms(900), true));
    wire.frames.push((frame(0x305, 8), ms(1900), true));
    let wire = Mutex::new(wire);
    let check =
        |out: &mut Outcome| check_gates(&wire, Some((struck, Some(0x355))), ms(2000), allowed, out);
    let mut out = outcome();
    check(&mut out);
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    // A transfer frame past the allowed time after the received red value breaks it.
    wire.lock()
        .unwrap()
        .frames
        .push((frame(0x602, 8), ms(1001 + 750 + 20), true));
    check(&mut out);
    assert_eq!(out.violations.len(), 1, "{:?}", out.violations);
    assert_eq!(out.violations[0].invariant, 'e');
}

#[tokio::test(start_paused = true)]
async fn a_window_over_the_cap_breaks_promise_f_and_one_under_does_not() {
    let start = Instant::now();
    let f = frame(0x602, 8);
    let per_window = (WINDOW.as_nanos()
        / bmsfw_protocols::bit_timing::frame_duration(&f, 500_000).as_nanos())
        as usize;
    // 79 % of a window's worth of frames back to back, then silence: under the cap.
    let mut wire = Wire::default();
    let end = back_to_back(&mut wire, start, per_window * 79 / 100, true);
    let mut out = outcome();
    check_budget(&Mutex::new(wire), start, end, &mut out);
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    // 82 %: over it.
    let mut wire = Wire::default();
    let end = back_to_back(&mut wire, start, per_window * 82 / 100, true);
    check_budget(&Mutex::new(wire), start, end, &mut out);
    assert_eq!(out.violations.len(), 1, "{:?}", out.violations);
    assert_eq!(out.violations[0].invariant, 'f');
}

#[test]
fn scenarios_name_their_faults_and_classes_for_the_report() {
    let s = Scenario {
        seed: 3,
        number: 9,
        vendor: "aurora",
        image_bytes: 8192,
        faults: vec![
            Fault::PowerCut {
                at: Trigger::Installing,
                millis: 20,
            },
            Fault::Loss { permille: 12 },
        ],
    };
    assert_eq!(
        s.to_string(),
        "scenario 9 of seed 3: aurora, 8 KiB; BMS power cut for 20 ms while installing; frame loss 1.2 %"
    );
    assert_eq!(s.classes(), vec!["frame loss", "power cut"]);
}
