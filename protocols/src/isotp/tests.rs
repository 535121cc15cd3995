//! Sender and receiver talking to each other and to hand-written frames.

use super::*;
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

fn std_id(id: u16) -> CanId {
    CanId::standard(id).unwrap()
}

fn config() -> IsoTpConfig {
    IsoTpConfig::new(std_id(0x7E0), std_id(0x7E8))
}

fn ms(n: u64) -> Timestamp {
    Timestamp::from_micros(n * 1000)
}

fn frame(id: CanId, data: &[u8]) -> CanFrame {
    CanFrame::new(id, data).unwrap()
}

/// Most frames any test moves in one call of [`pump`] or [`events`]: 6000 bytes in 7-byte
/// frames with flow control after each, with room to spare. A channel that keeps handing
/// out frames or events beyond it is broken; the test fails instead of hanging.
const MAX_STEPS: usize = 4_000;

/// Moves frames between two channels at `now` until neither has anything to send.
/// Returns every frame that crossed, in order.
fn pump(a: &mut IsoTpChannel, b: &mut IsoTpChannel, now: Timestamp) -> Vec<CanFrame> {
    crate::test_support::pump(a, b, now, MAX_STEPS)
}

fn events(ch: &mut IsoTpChannel) -> Vec<Event> {
    let events: Vec<Event> = std::iter::from_fn(|| ch.poll_event())
        .take(MAX_STEPS + 1)
        .collect();
    assert!(
        events.len() <= MAX_STEPS,
        "the channel never runs out of events"
    );
    events
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn single_frame_round_trip() {
    let mut a = IsoTpChannel::new(config());
    let mut b = IsoTpChannel::new(config().peer());
    a.send(ms(0), vec![0x10, 0x02]).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].to_string(), "7E0#021002CCCCCCCCCC");
    assert_eq!(events(&mut a), vec![Event::Sent]);
    assert_eq!(events(&mut b), vec![Event::Received(vec![0x10, 0x02])]);
    assert!(a.poll_timeout().is_none() && b.poll_timeout().is_none());
}

#[test]
fn segmented_message_with_block_size_zero_goes_back_to_back() {
    let mut a = IsoTpChannel::new(config());
    let mut b = IsoTpChannel::new(config().peer());
    let msg = message(100);
    a.send(ms(0), msg.clone()).unwrap();
    let ff = a.poll_transmit(ms(0)).unwrap();
    assert_eq!(ff.data()[..2], [0x10, 100]);
    assert_eq!(ff.data()[2..], msg[..6]);
    assert!(
        a.poll_transmit(ms(0)).is_none(),
        "no data before flow control"
    );
    b.handle_frame(ms(0), &ff);
    let fc = b.poll_transmit(ms(1)).unwrap();
    assert_eq!(fc.to_string(), "7E8#300000CCCCCCCCCC");
    a.handle_frame(ms(1), &fc);
    // All 14 consecutive frames are available at the same instant: the caller paces.
    let cfs: Vec<CanFrame> = std::iter::from_fn(|| a.poll_transmit(ms(1)))
        .take(MAX_STEPS)
        .collect();
    assert_eq!(cfs.len(), 14);
    for (i, cf) in cfs.iter().enumerate() {
        assert_eq!(cf.data()[0], 0x20 | ((i as u8 + 1) & 0x0F));
        b.handle_frame(ms(1), cf);
    }
    // 6 bytes in the first frame, 13 full consecutive frames, 3 bytes in the last.
    assert_eq!(cfs[13].data()[1..4], msg[97..100]);
    assert_eq!(cfs[13].data()[4..], [0xCC; 4], "last frame padded");
    assert_eq!(events(&mut a), vec![Event::Sent]);
    assert_eq!(events(&mut b), vec![Event::Received(msg)]);
}

#[test]
fn sequence_numbers_wrap_from_f_to_0() {
    let mut a = IsoTpChannel::new(config());
    let mut b = IsoTpChannel::new(config().peer());
    let msg = message(6 + 7 * 40);
    a.send(ms(0), msg.clone()).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    let seqs: Vec<u8> = log
        .iter()
        .filter(|f| f.id() == std_id(0x7E0) && f.data()[0] >> 4 == 2)
        .map(|f| f.data()[0] & 0x0F)
        .collect();
    assert_eq!(seqs.len(), 40);
    let want: Vec<u8> = (1..=40).map(|i| (i % 16) as u8).collect();
    assert_eq!(seqs, want);
    assert_eq!(events(&mut b), vec![Event::Received(msg)]);
}

#[test]
fn lengths_at_the_frame_format_boundaries() {
    for len in [7usize, 8, 13, 14, 4095, 4096, 5000] {
        let mut a = IsoTpChannel::new(config());
        let mut b = IsoTpChannel::new(config().peer());
        let msg = message(len);
        a.send(ms(0), msg.clone()).unwrap();
        let log = pump(&mut a, &mut b, ms(0));
        let first = log[0].data();
        match len {
            7 => assert_eq!(first[0], 0x07),
            4095 => assert_eq!(first[..2], [0x1F, 0xFF]),
            4096 | 5000 => {
                assert_eq!(first[..2], [0x10, 0x00], "32-bit escape");
                assert_eq!(first[2..6], (len as u32).to_be_bytes());
                assert_eq!(first[6..], msg[..2]);
            }
            _ => assert_eq!(
                u16::from_be_bytes([first[0], first[1]]),
                0x1000 | len as u16
            ),
        }
        assert_eq!(events(&mut b), vec![Event::Received(msg)], "length {len}");
    }
}

#[test]
fn block_size_makes_the_sender_wait_for_flow_control_after_each_block() {
    let mut rx_cfg = config().peer();
    rx_cfg.block_size = 4;
    let mut a = IsoTpChannel::new(config());
    let mut b = IsoTpChannel::new(rx_cfg);
    let msg = message(6 + 7 * 10);
    a.send(ms(0), msg.clone()).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    let kinds: String = log
        .iter()
        .map(|f| match f.data()[0] >> 4 {
            1 => 'F',
            2 => 'C',
            3 => 'W',
            _ => '?',
        })
        .collect();
    assert_eq!(kinds, "FWCCCCWCCCCWCC");
    assert_eq!(log[1].data()[1], 4, "flow control carries the block size");
    assert_eq!(events(&mut b), vec![Event::Received(msg)]);
}

#[test]
fn sender_stops_after_a_block_until_flow_control() {
    let mut s = Sender::new(&config());
    s.send(ms(0), message(50)).unwrap();
    s.poll_transmit(ms(0)).unwrap();
    s.handle_frame(ms(1), &frame(std_id(0x7E8), &[0x30, 2, 0]));
    assert!(s.poll_transmit(ms(1)).is_some());
    assert!(s.poll_transmit(ms(1)).is_some());
    assert!(s.poll_transmit(ms(1)).is_none(), "block of 2 is complete");
    assert_eq!(s.poll_timeout(), Some(ms(1001)), "N_Bs runs again");
    s.handle_frame(ms(2), &frame(std_id(0x7E8), &[0x30, 0, 0]));
    let rest: Vec<_> = std::iter::from_fn(|| s.poll_transmit(ms(2)))
        .take(MAX_STEPS)
        .collect();
    // 50 bytes: 6 in the first frame, 14 in the first block, 30 in five more frames.
    assert_eq!(rest.len(), 5);
    assert_eq!(s.poll_event(), Some(Event::Sent));
}

#[test]
fn st_min_spaces_consecutive_frames() {
    for (st, gap_us) in [
        (0x0Au8, 10_000u64),
        (0xF3, 300),
        (0x80, 127_000),
        (0xFA, 127_000),
    ] {
        let mut s = Sender::new(&config());
        s.send(ms(0), message(30)).unwrap();
        s.poll_transmit(ms(0)).unwrap();
        let t0 = ms(5);
        s.handle_frame(t0, &frame(std_id(0x7E8), &[0x30, 0, st]));
        assert!(s.poll_transmit(t0).is_some(), "first CF goes at once");
        let next = Timestamp::from_micros(t0.as_micros() + gap_us);
        assert_eq!(s.poll_timeout(), Some(next), "STmin 0x{st:02X}");
        let just_before = Timestamp::from_micros(next.as_micros() - 1);
        assert!(s.poll_transmit(just_before).is_none(), "STmin 0x{st:02X}");
        assert!(s.poll_transmit(next).is_some(), "STmin 0x{st:02X}");
    }
}

#[test]
fn wait_frames_extend_n_bs_up_to_the_configured_maximum() {
    let mut cfg = config();
    cfg.max_wait_frames = 2;
    let fc_wait = frame(std_id(0x7E8), &[0x31, 0, 0]);
    let mut s = Sender::new(&cfg);
    s.send(ms(0), message(20)).unwrap();
    s.poll_transmit(ms(0)).unwrap();
    s.handle_frame(ms(900), &fc_wait);
    assert_eq!(
        s.poll_timeout(),
        Some(ms(1900)),
        "a wait frame restarts N_Bs"
    );
    s.handle_timeout(ms(1000));
    assert_eq!(
        s.poll_event(),
        None,
        "the original deadline no longer applies"
    );
    s.handle_frame(ms(1500), &fc_wait);
    s.handle_frame(ms(1600), &frame(std_id(0x7E8), &[0x30, 0, 0]));
    assert!(s.poll_transmit(ms(1600)).is_some(), "two waits are allowed");

    let mut s = Sender::new(&cfg);
    s.send(ms(0), message(20)).unwrap();
    s.poll_transmit(ms(0)).unwrap();
    for t in [10, 20, 30] {
        s.handle_frame(ms(t), &fc_wait);
    }
    assert_eq!(
        s.poll_event(),
        Some(Event::SendFailed(IsoTpError::TooManyWaits { max: 2 }))
    );
    assert!(s.is_idle());
}

#[test]
fn overflow_and_reserved_flow_status_abort_the_send() {
    for (fs, want) in [
        (0x32u8, IsoTpError::Overflow),
        (0x35, IsoTpError::InvalidFlowStatus(5)),
    ] {
        let mut s = Sender::new(&config());
        s.send(ms(0), message(20)).unwrap();
        s.poll_transmit(ms(0)).unwrap();
        s.handle_frame(ms(1), &frame(std_id(0x7E8), &[fs, 0, 0]));
        assert_eq!(s.poll_event(), Some(Event::SendFailed(want)));
        assert!(s.poll_transmit(ms(1)).is_none());
    }
}

#[test]
fn receiver_refuses_messages_over_its_limit_with_overflow() {
    let mut cfg = config().peer();
    cfg.max_message_len = 100;
    let mut a = IsoTpChannel::new(config());
    let mut b = IsoTpChannel::new(cfg);
    a.send(ms(0), message(101)).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].data()[0], 0x32);
    assert_eq!(
        events(&mut b),
        vec![Event::ReceiveFailed(IsoTpError::MessageTooLarge {
            len: 101,
            max: 100
        })]
    );
    assert_eq!(
        events(&mut a),
        vec![Event::SendFailed(IsoTpError::Overflow)]
    );
    // A huge escaped length is refused without allocating it.
    let mut r = Receiver::new(&config().peer());
    r.handle_frame(
        ms(0),
        &frame(std_id(0x7E0), &[0x10, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2]),
    );
    assert!(matches!(
        r.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::MessageTooLarge { .. }))
    ));
}

/// The limit is inclusive: a message of exactly `max_message_len` bytes is received,
/// one byte more is refused with an overflow.
#[test]
fn a_message_of_exactly_the_limit_is_received() {
    for (len, received) in [(100, true), (101, false), (4095, true), (4096, false)] {
        let mut cfg = config().peer();
        cfg.max_message_len = if len < 4095 { 100 } else { 4095 };
        let mut a = IsoTpChannel::new(config());
        let mut b = IsoTpChannel::new(cfg);
        a.send(ms(0), message(len)).unwrap();
        pump(&mut a, &mut b, ms(0));
        if received {
            assert_eq!(events(&mut b), vec![Event::Received(message(len))], "{len}");
            assert_eq!(events(&mut a), vec![Event::Sent], "{len}");
        } else {
            assert!(
                matches!(
                    events(&mut b)[..],
                    [Event::ReceiveFailed(IsoTpError::MessageTooLarge { .. })]
                ),
                "{len}"
            );
            assert_eq!(
                events(&mut a),
                vec![Event::SendFailed(IsoTpError::Overflow)]
            );
        }
    }
}

#[test]
fn wrong_sequence_number_aborts_the_message() {
    let mut r = Receiver::new(&config().peer());
    let rx = std_id(0x7E0);
    r.handle_frame(ms(0), &frame(rx, &[0x10, 20, 1, 2, 3, 4, 5, 6]));
    r.poll_transmit(ms(0)).unwrap();
    r.handle_frame(ms(1), &frame(rx, &[0x21, 7, 8, 9, 10, 11, 12, 13]));
    r.handle_frame(ms(2), &frame(rx, &[0x23, 14, 15, 16, 17, 18, 19, 20]));
    assert_eq!(
        r.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::WrongSequenceNumber {
            expected: 2,
            got: 3
        }))
    );
    r.handle_frame(ms(3), &frame(rx, &[0x22, 14, 15, 16, 17, 18, 19, 20]));
    assert_eq!(r.poll_event(), None, "the rest of the message is ignored");
    assert!(!r.is_receiving());
}

#[test]
fn a_new_first_or_single_frame_interrupts_a_reception() {
    let mut r = Receiver::new(&config().peer());
    let rx = std_id(0x7E0);
    r.handle_frame(ms(0), &frame(rx, &[0x10, 20, 1, 2, 3, 4, 5, 6]));
    r.poll_transmit(ms(0)).unwrap();
    r.handle_frame(ms(1), &frame(rx, &[0x02, 0xAA, 0xBB]));
    assert_eq!(
        r.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::Interrupted))
    );
    assert_eq!(r.poll_event(), Some(Event::Received(vec![0xAA, 0xBB])));
}

#[test]
fn timers_fire_at_their_configured_deadlines() {
    let mut cfg = config();
    cfg.timeouts = Timeouts {
        n_as: Duration::from_millis(30),
        n_ar: Duration::from_millis(40),
        n_bs: Duration::from_millis(200),
        n_cr: Duration::from_millis(300),
    };
    // N_Bs: no flow control after the first frame.
    let mut s = Sender::new(&cfg);
    s.send(ms(0), message(20)).unwrap();
    s.poll_transmit(ms(10)).unwrap();
    assert_eq!(s.poll_timeout(), Some(ms(210)));
    s.handle_timeout(ms(209));
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(ms(210));
    assert_eq!(
        s.poll_event(),
        Some(Event::SendFailed(IsoTpError::Timeout(Timer::NBs)))
    );
    // N_As: a ready frame nobody takes.
    let mut s = Sender::new(&cfg);
    s.send(ms(0), vec![1, 2, 3]).unwrap();
    assert_eq!(s.poll_timeout(), Some(ms(30)));
    assert!(s.poll_transmit(ms(30)).is_none());
    assert_eq!(
        s.poll_event(),
        Some(Event::SendFailed(IsoTpError::Timeout(Timer::NAs)))
    );
    // N_Cr: consecutive frames stop coming.
    let peer = cfg.peer();
    let mut r = Receiver::new(&peer);
    r.handle_frame(ms(0), &frame(std_id(0x7E0), &[0x10, 20, 1, 2, 3, 4, 5, 6]));
    assert_eq!(r.poll_timeout(), Some(ms(40)), "N_Ar for the flow control");
    r.poll_transmit(ms(5)).unwrap();
    assert_eq!(r.poll_timeout(), Some(ms(305)));
    r.handle_frame(
        ms(100),
        &frame(std_id(0x7E0), &[0x21, 7, 8, 9, 10, 11, 12, 13]),
    );
    assert_eq!(r.poll_timeout(), Some(ms(400)), "each frame restarts N_Cr");
    r.handle_timeout(ms(400));
    assert_eq!(
        r.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::Timeout(Timer::NCr)))
    );
    // N_Ar: a flow control nobody takes.
    let mut r = Receiver::new(&peer);
    r.handle_frame(ms(0), &frame(std_id(0x7E0), &[0x10, 20, 1, 2, 3, 4, 5, 6]));
    r.handle_timeout(ms(40));
    assert_eq!(
        r.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::Timeout(Timer::NAr)))
    );
    assert!(r.poll_transmit(ms(41)).is_none());
}

#[test]
fn consecutive_frames_are_n_as_bounded_once_due() {
    let mut s = Sender::new(&config());
    s.send(ms(0), message(30)).unwrap();
    s.poll_transmit(ms(0)).unwrap();
    s.handle_frame(ms(1), &frame(std_id(0x7E8), &[0x30, 0, 0]));
    assert_eq!(s.poll_timeout(), Some(ms(1001)));
    assert!(s.poll_transmit(ms(1001)).is_none());
    assert_eq!(
        s.poll_event(),
        Some(Event::SendFailed(IsoTpError::Timeout(Timer::NAs)))
    );
}

#[test]
fn unpadded_frames_are_as_short_as_their_content() {
    let mut cfg = config();
    cfg.padding = Padding::None;
    let mut a = IsoTpChannel::new(cfg.clone());
    let mut b = IsoTpChannel::new(cfg.peer());
    a.send(ms(0), message(9)).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    let lens: Vec<usize> = log.iter().map(CanFrame::len).collect();
    assert_eq!(lens, vec![8, 3, 4]);
    assert_eq!(events(&mut b), vec![Event::Received(message(9))]);
}

#[test]
fn extended_identifiers_and_foreign_frames() {
    let tx = CanId::extended(0x18DA_F1E5).unwrap();
    let rx = CanId::extended(0x18DA_E5F1).unwrap();
    let mut a = IsoTpChannel::new(IsoTpConfig::new(tx, rx));
    let mut b = IsoTpChannel::new(IsoTpConfig::new(rx, tx));
    a.send(ms(0), message(20)).unwrap();
    let log = pump(&mut a, &mut b, ms(0));
    assert!(log.iter().all(|f| f.id().is_extended()));
    assert_eq!(events(&mut b), vec![Event::Received(message(20))]);
    // The same raw identifier in standard format is another identifier.
    let mut r = IsoTpChannel::new(IsoTpConfig::new(std_id(0x7E8), std_id(0x7E0)));
    r.handle_frame(
        ms(0),
        &frame(CanId::extended(0x7E0).unwrap(), &[0x01, 0x55]),
    );
    r.handle_frame(ms(0), &frame(std_id(0x351), &[0x01, 0x55]));
    assert_eq!(r.poll_event(), None);
    r.handle_frame(ms(0), &frame(std_id(0x7E0), &[0x01, 0x55]));
    assert_eq!(r.poll_event(), Some(Event::Received(vec![0x55])));
}

#[test]
fn send_refuses_while_busy_and_empty_messages() {
    let mut s = Sender::new(&config());
    assert_eq!(s.send(ms(0), Vec::new()), Err(SendError::Empty));
    s.send(ms(0), message(20)).unwrap();
    assert_eq!(s.send(ms(0), message(3)), Err(SendError::Busy));
    assert_eq!(s.progress(), Some((0, 20)));
    s.poll_transmit(ms(0)).unwrap();
    assert_eq!(s.progress(), Some((6, 20)));
}

proptest! {
    #[test]
    fn any_message_crosses_intact(
        len in 1usize..6000,
        block_size in 0u8..20,
        pad in prop::option::of(any::<u8>()),
    ) {
        let mut cfg = config();
        cfg.padding = pad.map_or(Padding::None, Padding::Fill);
        let mut rx_cfg = cfg.peer();
        rx_cfg.block_size = block_size;
        let mut a = IsoTpChannel::new(cfg);
        let mut b = IsoTpChannel::new(rx_cfg);
        let msg = message(len);
        a.send(ms(0), msg.clone()).unwrap();
        pump(&mut a, &mut b, ms(0));
        prop_assert_eq!(events(&mut a), vec![Event::Sent]);
        prop_assert_eq!(events(&mut b), vec![Event::Received(msg)]);
    }

    #[test]
    fn hostile_frames_never_panic_nor_deliver_more_than_announced(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=8), 0..40),
    ) {
        let mut ch = IsoTpChannel::new(config().peer());
        let mut t = 0;
        for data in &frames {
            t += 1;
            ch.handle_frame(ms(t), &frame(std_id(0x7E0), data));
            let sent = std::iter::from_fn(|| ch.poll_transmit(ms(t))).take(2).count();
            prop_assert!(sent <= 1, "one flow control per frame at most");
            ch.handle_timeout(ms(t));
        }
        for e in events(&mut ch) {
            if let Event::Received(m) = e {
                prop_assert!(!m.is_empty());
                prop_assert!(m.len() <= 6 + 7 * frames.len());
            }
        }
    }
}

#[test]
fn a_channel_reports_its_halves_and_aborts_its_send() {
    let cfg = config();
    let mut a = IsoTpChannel::new(cfg.clone());
    let mut b = IsoTpChannel::new(cfg.peer());
    assert_eq!(a.config(), &cfg);
    assert!(a.can_send() && !a.is_receiving());
    assert_eq!(a.poll_timeout(), None);
    a.send(ms(0), message(20)).unwrap();
    assert!(!a.can_send(), "a message is under way");
    assert_eq!(a.send(ms(0), vec![1]), Err(SendError::Busy));
    // Only the first frame crosses: the receiver is now mid-message.
    let first = a.poll_transmit(ms(0)).unwrap();
    b.handle_frame(ms(0), &first);
    assert!(b.is_receiving() && !a.is_receiving());
    // a waits for the flow control until N_Bs; b's flow control is due within N_Ar.
    assert_eq!(a.poll_timeout(), Some(ms(1000)));
    assert_eq!(b.poll_timeout(), Some(ms(1000)));
    // Both halves of one channel: the earlier deadline counts.
    b.send(ms(400), vec![9; 3]).unwrap();
    assert_eq!(b.poll_timeout(), Some(ms(1000)), "N_Ar runs out first");
    let fc = b.poll_transmit(ms(500)).unwrap();
    assert_eq!(fc.data()[0], 0x30, "flow control goes before data");
    assert_eq!(
        b.poll_timeout(),
        Some(ms(1400)),
        "N_As of the queued single frame, before N_Cr at 1500 ms"
    );
    a.handle_frame(ms(500), &fc);
    a.abort_send();
    assert!(a.can_send(), "an aborted send frees the sender");
    assert_eq!(a.poll_transmit(ms(500)), None);
    assert_eq!(a.poll_event(), None, "aborting reports nothing");
    a.send(ms(500), vec![7]).unwrap();
    assert_eq!(a.poll_transmit(ms(500)).unwrap().data()[..2], [0x01, 7]);
    assert_eq!(a.poll_event(), Some(Event::Sent));
    // b's reception runs into N_Cr; its own single frame is still due.
    b.handle_timeout(ms(1399));
    assert!(b.is_receiving());
    assert_eq!(b.poll_event(), None);
    b.handle_timeout(ms(1400));
    assert_eq!(
        b.poll_event(),
        Some(Event::SendFailed(IsoTpError::Timeout(Timer::NAs)))
    );
    b.handle_timeout(ms(1500));
    assert!(!b.is_receiving());
    assert_eq!(
        b.poll_event(),
        Some(Event::ReceiveFailed(IsoTpError::Timeout(Timer::NCr)))
    );
}
