//! Fault injection on the simulated bus, in virtual time: lost frames, error frames
//! with retransmission and error counters, bus-off, power cuts.

use bmsfw_can::candump::ErrorFrame;
use bmsfw_can::{CanError, CanEvent, CanFrame, CanId, ControllerState, ReceivedFrame};
use bmsfw_protocols::bit_timing::{FrameBits, SUSPEND_TRANSMISSION_BITS, bits_duration};
use bmsfw_sim::bus::{CorruptRule, DropRule, LossReport, SimBus, SimBusError, SimNode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RATE: u32 = 500_000;

fn std_frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn bits(n: u32) -> Duration {
    bits_duration(u64::from(n), RATE)
}

async fn next_frame(node: &SimNode) -> ReceivedFrame {
    match node.recv().await.unwrap() {
        CanEvent::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Every event waiting for `node` right now.
fn drain(node: &SimNode) -> Vec<CanEvent> {
    std::iter::from_fn(|| node.try_recv().unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_drop_rule_takes_frames_from_chosen_receivers_only() {
    let bus = SimBus::new("can0", RATE);
    let tx = bus.attach("battery");
    let gx = bus.attach("gx");
    let logger = bus.attach("logger");
    bus.set_drop_rule(DropRule::when(|d| {
        d.receiver == "gx" && d.sender == "battery" && d.frame.id().raw() == 0x351
    }));
    tx.send(std_frame(0x351, &[1])).await.unwrap();
    tx.send(std_frame(0x355, &[2])).await.unwrap();
    assert_eq!(next_frame(&gx).await.frame.data(), &[2]);
    assert_eq!(next_frame(&logger).await.frame.data(), &[1]);
    assert_eq!(next_frame(&logger).await.frame.data(), &[2]);
    let info = gx.info().unwrap();
    assert_eq!((info.counters.received, info.counters.dropped), (1, 1));
    // A lost frame is no bus error: counters stay clean.
    assert_eq!(info.errors.rec, 0);
    bus.clear_faults();
    tx.send(std_frame(0x351, &[3])).await.unwrap();
    assert_eq!(next_frame(&gx).await.frame.data(), &[3]);
}

/// A rule reported as overflows tells each receiver that lost a frame, when the frame
/// ended, as a controller whose receive buffer was full does; the frame itself never
/// arrives, and the other receivers are told nothing.
#[tokio::test(start_paused = true)]
async fn a_drop_reported_as_an_overflow_reaches_the_receiver_that_lost_the_frame() {
    let bus = SimBus::new("can0", RATE);
    let tx = bus.attach("battery");
    let gx = bus.attach("gx");
    let logger = bus.attach("logger");
    let rule = DropRule::when(|d| d.receiver == "gx" && d.frame.id().raw() == 0x351)
        .reported(LossReport::Overflow);
    assert_eq!(rule.report(), LossReport::Overflow);
    bus.set_drop_rule(rule);
    tx.send(std_frame(0x351, &[1])).await.unwrap();
    tx.send(std_frame(0x355, &[2])).await.unwrap();
    let carried = next_frame(&logger).await;
    let CanEvent::Error(overflow) = gx.recv().await.unwrap() else {
        panic!("expected the overflow first");
    };
    assert_eq!(overflow.frame, ErrorFrame::RX_OVERFLOW);
    assert_eq!(overflow.at, carried.at);
    assert!(
        overflow.description.contains("battery"),
        "{}",
        overflow.description
    );
    assert_eq!(next_frame(&gx).await.frame.data(), &[2]);
    assert_eq!(next_frame(&logger).await.frame.data(), &[2]);
    assert!(drain(&logger).is_empty());
    // Unreported is the default.
    assert_eq!(DropRule::when(|_| true).report(), LossReport::Unreported);
}

#[tokio::test(start_paused = true)]
async fn a_seeded_drop_probability_is_reproducible() {
    async fn run(seed: u64) -> Vec<u8> {
        let bus = SimBus::new("can0", RATE);
        let tx = bus.attach("tx");
        let rx = bus.attach("rx");
        bus.set_drop_rule(DropRule::probability(0.3, seed).unwrap());
        let sender = tokio::spawn(async move {
            for i in 0..=255u8 {
                tx.send(std_frame(0x100, &[i])).await.unwrap();
            }
            tx
        });
        let tx = sender.await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got: Vec<u8> = drain(&rx)
            .into_iter()
            .map(|e| match e {
                CanEvent::Frame(f) => f.frame.data()[0],
                other => panic!("{other:?}"),
            })
            .collect();
        let info = rx.info().unwrap();
        assert_eq!(info.counters.received + info.counters.dropped, 256);
        assert_eq!(info.counters.received as usize, got.len());
        assert_eq!(tx.info().unwrap().counters.sent, 256);
        got
    }
    let first = run(42).await;
    assert_eq!(first, run(42).await);
    assert_ne!(first, run(43).await);
    assert!(
        (140..220).contains(&first.len()),
        "{} of 256 kept at p = 0.3",
        first.len()
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_frame_destroys_the_frame_for_everybody_and_the_sender_retransmits() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let c = bus.attach("c");
    // Destroy the first attempt of every frame.
    bus.set_corrupt_rule(CorruptRule::when(|t| t.retransmission == 0));
    let f = std_frame(0x351, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let fb = FrameBits::of(&f);
    a.send(f).await.unwrap();
    let error_end = bus.epoch() + bits(fb.bits_with_crc_error());
    let frame_end = error_end + bits(fb.total_bits());
    for rx in [&b, &c] {
        match rx.recv().await.unwrap() {
            CanEvent::Error(e) => {
                assert_eq!(e.at, error_end);
                assert!(
                    e.description.contains("351#0102030405060708"),
                    "{}",
                    e.description
                );
            }
            other => panic!("expected the error frame first, got {other:?}"),
        }
        let got = next_frame(rx).await;
        assert_eq!(
            (got.frame, got.at),
            (f, frame_end),
            "retransmitted right after"
        );
    }
    let events = drain(&a);
    assert!(
        matches!(&events[..], [CanEvent::Error(e)] if e.at == error_end && e.description.starts_with("transmit error")),
        "{events:?}"
    );
    // TEC +8 then -1 for the successful retransmission; REC +1 then -1.
    let ia = a.info().unwrap();
    assert_eq!((ia.errors.tec, ia.errors.rec), (7, 0));
    assert_eq!((ia.counters.sent, ia.counters.tx_errors), (1, 1));
    assert_eq!(b.info().unwrap().errors.rec, 0);
    let load = bus.load_at(frame_end);
    assert_eq!((load.frames, load.error_frames), (1, 1));
    assert_eq!(
        load.total_bits,
        u64::from(fb.bits_with_crc_error() + fb.total_bits())
    );
}

#[tokio::test(start_paused = true)]
async fn endless_errors_walk_the_sender_through_passive_to_bus_off() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    bus.set_corrupt_rule(CorruptRule::when(move |t| {
        seen.lock().unwrap().push((t.retransmission, t.at));
        true
    }));
    let f = std_frame(0x7E0, &[0x10, 0x02]);
    let error_bits = FrameBits::of(&f).bits_with_crc_error();
    a.send(f).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // 32 attempts: TEC 8, 16, ..., 256 > 255.
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 32);
    assert!(
        attempts
            .iter()
            .enumerate()
            .all(|(i, (r, _))| *r == i as u32)
    );
    // Attempts follow each other directly while error active or warning; once error
    // passive (after the 16th error, TEC 128) the sender waits 8 bits of suspend
    // transmission before each retransmission.
    let mut t = bus.epoch();
    for (i, (_, at)) in attempts.iter().enumerate() {
        assert_eq!(*at, t, "attempt {i}");
        t += bits(error_bits);
        if i + 1 >= 16 {
            t += bits(SUSPEND_TRANSMISSION_BITS);
        }
    }

    let states: Vec<(usize, ControllerState)> = drain(&a)
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            CanEvent::State(s) => Some((i, s)),
            CanEvent::Error(_) => None,
            CanEvent::Frame(f) => panic!("a sender never hears itself: {f:?}"),
        })
        .collect();
    // Each state event follows the error event that caused it.
    assert_eq!(
        states,
        [
            (12, ControllerState::ErrorWarning),
            (17, ControllerState::ErrorPassive),
            (34, ControllerState::BusOff)
        ]
    );
    assert_eq!(a.controller_state(), ControllerState::BusOff);
    assert_eq!(
        a.info().unwrap().queued,
        0,
        "bus-off loses the transmit queue"
    );
    assert!(matches!(a.send(f).await, Err(CanError::BusOff { .. })));
    // The receiver counted one receive error per error frame and stays error active.
    let ib = b.info().unwrap();
    assert_eq!(ib.errors.rec, 32);
    assert_eq!(ib.state, ControllerState::ErrorActive);
    assert_eq!(drain(&b).len(), 32);

    // A bus-off node hears nothing.
    bus.clear_faults();
    b.send(std_frame(0x100, &[1])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(drain(&a).is_empty());
    // Until it is restarted.
    bus.recover(a.id()).unwrap();
    assert_eq!(drain(&a), [CanEvent::State(ControllerState::ErrorActive)]);
    assert_eq!(a.info().unwrap().errors.tec, 0);
    b.send(std_frame(0x100, &[2])).await.unwrap();
    assert_eq!(next_frame(&a).await.frame.data(), &[2]);
    a.send(f).await.unwrap();
    assert_eq!(next_frame(&b).await.frame, f);
    // The receive counter comes down one per good frame.
    assert_eq!(b.info().unwrap().errors.rec, 31);
}

#[tokio::test(start_paused = true)]
async fn a_node_forced_bus_off_neither_sends_nor_receives_until_recovered() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("a");
    let b = bus.attach("b");
    for i in 0..5 {
        b.send(std_frame(0x200, &[i])).await.unwrap();
    }
    bus.force_bus_off(b.id()).unwrap();
    assert_eq!(drain(&b), [CanEvent::State(ControllerState::BusOff)]);
    assert!(matches!(
        b.send(std_frame(0x200, &[9])).await,
        Err(CanError::BusOff { .. })
    ));
    a.send(std_frame(0x100, &[1])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(drain(&a).is_empty(), "b's queued frames were lost");
    assert!(drain(&b).is_empty(), "b heard nothing");
    bus.recover(b.id()).unwrap();
    assert_eq!(b.controller_state(), ControllerState::ErrorActive);
    a.send(std_frame(0x100, &[2])).await.unwrap();
    assert_eq!(drain_until_frame(&b).await.frame.data(), &[2]);
    b.send(std_frame(0x200, &[3])).await.unwrap();
    assert_eq!(next_frame(&a).await.frame.data(), &[3]);
}

async fn drain_until_frame(node: &SimNode) -> ReceivedFrame {
    loop {
        if let CanEvent::Frame(f) = node.recv().await.unwrap() {
            return f;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_detached_node_loses_its_queue_and_can_come_back_fresh() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("battery");
    let b = bus.attach("gx");
    for i in 0..3 {
        a.send(std_frame(0x351, &[i])).await.unwrap();
    }
    let old = a.id();
    a.detach();
    assert!(matches!(
        a.send(std_frame(0x351, &[9])).await,
        Err(CanError::Closed { .. })
    ));
    assert!(matches!(a.recv().await, Err(CanError::Closed { .. })));
    assert_eq!(a.controller_state(), ControllerState::Stopped);
    assert_eq!(bus.detach(old), Err(SimBusError::NotAttached(old)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(drain(&b).is_empty(), "the power cut lost the queued frames");
    assert_eq!(bus.nodes().len(), 1);

    let again = bus.attach("battery");
    assert_ne!(again.id(), old);
    assert_eq!(again.info().unwrap().queued, 0);
    again.send(std_frame(0x351, &[7])).await.unwrap();
    assert_eq!(next_frame(&b).await.frame.data(), &[7]);
    // The old handle stays dead even though the slot was reused.
    assert!(matches!(a.try_recv(), Err(CanError::Closed { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_mid_frame_leaves_an_error_frame() {
    // At 10 kbit/s a frame lasts long enough to cut the power in the middle of it.
    let bus = SimBus::new("can0", 10_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let f = std_frame(0x351, &[0x55; 8]);
    a.send(f).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    bus.detach(a.id()).unwrap();
    match b.recv().await.unwrap() {
        CanEvent::Error(e) => assert!(e.description.starts_with("receive error")),
        other => panic!("expected an error frame, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(drain(&b).is_empty(), "no retransmission from a dead node");
    assert_eq!(b.info().unwrap().errors.rec, 1);
}

#[tokio::test(start_paused = true)]
async fn blocked_senders_learn_of_bus_off_and_power_cuts() {
    let bus = SimBus::builder("can0", RATE).tx_queue(2).build().unwrap();
    let a = Arc::new(bus.attach("a"));
    let _b = bus.attach("b");
    // Destroy everything so the queue never drains.
    bus.set_corrupt_rule(CorruptRule::probability(1.0, 0).unwrap());
    let f = std_frame(0x100, &[0; 8]);
    a.send(f).await.unwrap();
    a.send(f).await.unwrap();
    // The third send waits, then the node goes bus-off after 32 errors.
    let third = a.send(f).await;
    assert!(matches!(third, Err(CanError::BusOff { .. })), "{third:?}");

    let c = Arc::new(bus.attach("c"));
    bus.force_bus_off(c.id()).unwrap();
    bus.recover(c.id()).unwrap();
    c.send(f).await.unwrap();
    c.send(f).await.unwrap();
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.send(f).await })
    };
    tokio::task::yield_now().await;
    c.detach();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(CanError::Closed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_node_still_sends_what_it_queued_then_leaves() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("a");
    let b = bus.attach("b");
    for i in 0..5 {
        a.send(std_frame(0x351, &[i])).await.unwrap();
    }
    drop(a);
    for i in 0..5 {
        assert_eq!(next_frame(&b).await.frame.data(), &[i]);
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(bus.nodes().len(), 1, "gone once its queue drained");
    // A dropped node with nothing queued leaves at once and hears nothing meanwhile.
    let c = bus.attach("c");
    drop(c);
    assert_eq!(bus.nodes().len(), 1);
}
