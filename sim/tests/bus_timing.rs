//! Timing, arbitration and delivery of the simulated bus, in virtual time.

use bmsfw_can::{CanEvent, CanFilter, CanFrame, CanId, CanInterface, ReceivedFrame};
use bmsfw_protocols::bit_timing::{bits_duration, frame_bits};
use bmsfw_sim::bus::{SimBus, SimNode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn std_frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn ext_frame(id: u32, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::extended(id).unwrap(), data).unwrap()
}

fn duration(frame: &CanFrame, bitrate: u32) -> Duration {
    bits_duration(u64::from(frame_bits(frame)), bitrate)
}

async fn next_frame(node: &SimNode) -> ReceivedFrame {
    match node.recv().await.unwrap() {
        CanEvent::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn back_to_back_frames_pass_at_the_exact_bit_rate() {
    let bus = SimBus::new("can0", 500_000);
    let a = bus.attach("a");
    let rx = bus.attach("rx");
    let frame = std_frame(0x351, &[1, 2, 3, 4, 5, 6, 7, 8]);
    // 111 bits + 8 stuff bits = 119 bits = 238 us at 500 kbit/s.
    assert_eq!(frame_bits(&frame), 119);
    let tick = duration(&frame, 500_000);
    assert_eq!(tick, Duration::from_micros(238));
    let sender = tokio::spawn(async move {
        for _ in 0..100 {
            a.send(frame).await.unwrap();
        }
        a
    });
    for k in 1..=100u32 {
        let got = next_frame(&rx).await;
        assert_eq!(got.frame, frame);
        assert_eq!(got.at, bus.epoch() + tick * k, "frame {k}");
        assert!(
            Instant::now() >= got.at,
            "a frame is never seen before its end"
        );
    }
    sender.await.unwrap();
    // 100 frames in 23.8 ms: 500000 / 119 frames per second.
    let load = bus.load_at(bus.epoch() + tick * 100);
    assert_eq!(load.frames, 100);
    assert_eq!(load.total_bits, 11_900);
}

#[tokio::test(start_paused = true)]
async fn two_senders_share_a_saturated_bus_without_gaps() {
    let bus = SimBus::new("can0", 250_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let rx = bus.attach("rx");
    let fa = std_frame(0x100, &[0x55; 8]);
    let fb = ext_frame(0x18FF_50E5, &[0xAA; 8]);
    let (da, db) = (duration(&fa, 250_000), duration(&fb, 250_000));
    tokio::spawn(async move {
        for _ in 0..20 {
            a.send(fa).await.unwrap();
        }
        std::future::pending::<()>().await;
    });
    tokio::spawn(async move {
        for _ in 0..20 {
            b.send(fb).await.unwrap();
        }
        std::future::pending::<()>().await;
    });
    let mut t = bus.epoch();
    let mut seen = Vec::new();
    for _ in 0..40 {
        let got = next_frame(&rx).await;
        t += if got.frame == fa { da } else { db };
        assert_eq!(got.at, t, "frames follow each other without a gap");
        seen.push(got.frame.id());
    }
    // 0x100 wins every arbitration while it has frames queued.
    assert!(seen[..20].iter().all(|id| *id == fa.id()));
    assert!(seen[20..].iter().all(|id| *id == fb.id()));
}

#[tokio::test(start_paused = true)]
async fn arbitration_lets_the_lowest_identifier_through_first() {
    let bus = SimBus::new("can0", 500_000);
    let nodes: Vec<SimNode> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| bus.attach(n))
        .collect();
    let rx = bus.attach("rx");
    let frames = [
        std_frame(0x300, &[3]),
        ext_frame(0x100 << 18, &[2]), // base identifier 0x100, extended
        std_frame(0x100, &[1]),       // same base identifier, standard: wins
        std_frame(0x200, &[4]),
        ext_frame((0x0FF << 18) | 0x3_FFFF, &[0]), // lower base identifier wins anyway
    ];
    for (node, frame) in nodes.iter().zip(frames) {
        node.send(frame).await.unwrap();
    }
    let mut t = bus.epoch();
    let mut order = Vec::new();
    for _ in 0..frames.len() {
        let got = next_frame(&rx).await;
        t += duration(&got.frame, 500_000);
        assert_eq!(got.at, t);
        order.push(got.frame.data()[0]);
    }
    assert_eq!(order, [0, 1, 2, 4, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_transmit_queue_is_first_in_first_out() {
    let bus = SimBus::new("can0", 500_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let rx = bus.attach("rx");
    // a's high-priority frame waits behind its own low-priority one, and b's frame
    // beats the low-priority one in the first arbitration.
    a.send(std_frame(0x700, &[1])).await.unwrap();
    a.send(std_frame(0x010, &[2])).await.unwrap();
    b.send(std_frame(0x300, &[3])).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(next_frame(&rx).await.frame.data()[0]);
    }
    assert_eq!(order, [3, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn senders_do_not_hear_themselves_and_everybody_else_does() {
    let bus = SimBus::new("can0", 500_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let c = bus.attach("c");
    let f = std_frame(0x35E, b"bmsfw");
    a.send(f).await.unwrap();
    assert_eq!(next_frame(&b).await.frame, f);
    assert_eq!(next_frame(&c).await.frame, f);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(a.try_recv().unwrap(), None);
    assert_eq!(a.info().unwrap().counters.sent, 1);
    assert_eq!(b.info().unwrap().counters.received, 1);
}

#[tokio::test(start_paused = true)]
async fn filters_select_what_a_node_receives() {
    let bus = SimBus::new("can0", 500_000);
    let tx = bus.attach("tx");
    let rx = bus.attach("rx");
    rx.set_filters(&[
        CanFilter {
            id: CanId::standard(0x350).unwrap(),
            mask: 0x7F0,
        },
        CanFilter {
            id: CanId::extended(0x18FF_0000).unwrap(),
            mask: 0x1FFF_0000,
        },
    ])
    .unwrap();
    let sent = [
        std_frame(0x351, &[1]),
        std_frame(0x305, &[2]),
        ext_frame(0x351, &[3]), // same number, 29-bit: the 11-bit filter rejects it
        std_frame(0x35A, &[4]),
        ext_frame(0x18FF_50E5, &[5]),
        ext_frame(0x18FE_50E5, &[6]),
    ];
    for f in sent {
        tx.send(f).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_frame(&rx).await.frame.data()[0]);
    }
    assert_eq!(got, [1, 4, 5]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rx.try_recv().unwrap(), None);
    // An empty list accepts everything again.
    rx.set_filters(&[]).unwrap();
    tx.send(std_frame(0x305, &[7])).await.unwrap();
    assert_eq!(next_frame(&rx).await.frame.data(), &[7]);
}

#[tokio::test(start_paused = true)]
async fn a_reply_starts_when_its_node_queued_it_never_before() {
    let bus = SimBus::new("can0", 500_000);
    let client = bus.attach("client");
    let server = bus.attach("server");
    let request = std_frame(0x7E0, &[0x02, 0x10, 0x02, 0, 0, 0, 0, 0]);
    let reply = std_frame(0x7E8, &[0x02, 0x50, 0x02, 0, 0, 0, 0, 0]);
    // When the server heard each request and when it queued the reply.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let got = next_frame(&server).await;
            assert_eq!(got.frame, request);
            log.lock().unwrap().push((got.at, Instant::now()));
            server.send(reply).await.unwrap();
        }
    });
    let dr = duration(&reply, 500_000);
    let mut early = 0;
    for i in 0..50 {
        client.send(request).await.unwrap();
        let got = next_frame(&client).await;
        assert_eq!(got.frame, reply);
        let (request_end, queued) = seen.lock().unwrap()[i];
        // The reply starts once the server has it: the bus's clock may trail the Tokio
        // clock by up to a timer tick, and the reply never starts in that gap.
        assert_eq!(got.at, queued.max(request_end) + dr, "round trip {i}");
        if queued > request_end {
            early += 1;
        }
    }
    // The requests end between the timer's ticks: the rule above was exercised.
    assert!(
        early > 0,
        "every reply was queued at its request's exact end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_frame_queued_on_an_idle_bus_starts_when_it_is_sent() {
    let bus = SimBus::new("can0", 125_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let f = std_frame(0x123, &[]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let sent_at = Instant::now();
    a.send(f).await.unwrap();
    let got = next_frame(&b).await;
    assert_eq!(got.at, sent_at + duration(&f, 125_000));
}

#[tokio::test(start_paused = true)]
async fn a_full_transmit_queue_paces_the_sender() {
    let bus = SimBus::builder("can0", 500_000)
        .tx_queue(10)
        .build()
        .unwrap();
    let a = bus.attach("a");
    let _rx = bus.attach("rx");
    let f = std_frame(0x200, &[0xFF; 8]);
    let tick = duration(&f, 500_000);
    for _ in 0..100 {
        a.send(f).await.unwrap();
        assert!(a.info().unwrap().queued <= 10);
    }
    // The 100th frame was accepted only after the 90th had left the bus.
    assert!(Instant::now() >= bus.epoch() + tick * 90);
    assert!(Instant::now() < bus.epoch() + tick * 91 + Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn nodes_are_can_interfaces() {
    let bus = SimBus::new("sim0", 500_000);
    let a: Arc<dyn CanInterface> = Arc::new(bus.attach("a"));
    let b: Arc<dyn CanInterface> = Arc::new(bus.attach("b"));
    assert_eq!(a.name(), "sim0");
    assert_eq!(a.bitrate(), Some(500_000));
    assert_eq!(
        a.controller_state(),
        bmsfw_can::ControllerState::ErrorActive
    );
    let f = std_frame(0x305, &[0; 8]);
    a.send(f).await.unwrap();
    match b.recv().await.unwrap() {
        CanEvent::Frame(got) => assert_eq!(got.frame, f),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_real_time_on_a_threaded_runtime() {
    let bus = SimBus::new("can0", 1_000_000);
    let a = bus.attach("a");
    let b = bus.attach("b");
    let f = std_frame(0x100, &[0x11; 8]);
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..500 {
            a.send(f).await.unwrap();
        }
        a
    });
    let mut last = None;
    for _ in 0..500 {
        let got = next_frame(&b).await;
        assert!(
            Instant::now() >= got.at,
            "delivered only once its time has come"
        );
        if let Some(prev) = last {
            assert!(got.at - prev >= duration(&f, 1_000_000));
        }
        last = Some(got.at);
    }
    sender.await.unwrap();
    // 500 frames of at least 111 bits at 1 Mbit/s take at least 55.5 ms of real time.
    assert!(started.elapsed() >= Duration::from_micros(55_500));
}
