//! The bus-load meter and the candump log of the simulated bus, in virtual time.

use bmsfw_can::candump::{CandumpReader, ErrorFrame, LogEntry};
use bmsfw_can::{CanEvent, CanFrame, CanId};
use bmsfw_protocols::bit_timing::{FrameBits, bits_duration, frame_bits};
use bmsfw_sim::bus::{CorruptRule, SimBus, SimBusError};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RATE: u32 = 500_000;

fn std_frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn bits(n: u64) -> Duration {
    bits_duration(n, RATE)
}

#[tokio::test(start_paused = true)]
async fn the_load_meter_counts_exact_bits_in_its_window() {
    let bus = SimBus::builder("can0", RATE)
        .load_window(Duration::from_millis(10))
        .build()
        .unwrap();
    let a = bus.attach("a");
    let _rx = bus.attach("rx");
    // 0x000 with eight zero bytes: 111 + 16 stuff bits; 0x7FF with 0xFF: 111 + 15.
    let zeros = std_frame(0x000, &[0; 8]);
    let ones = std_frame(0x7FF, &[0xFF; 8]);
    assert_eq!((frame_bits(&zeros), frame_bits(&ones)), (127, 126));
    for _ in 0..30 {
        a.send(zeros).await.unwrap();
        a.send(ones).await.unwrap();
    }
    let end = bus.epoch() + bits(30 * (127 + 126));
    tokio::time::sleep_until(end + Duration::from_millis(20)).await;

    // Saturated: the 10 ms before the last frame's end were all busy.
    let full = bus.load_at(end);
    assert_eq!(full.busy, Duration::from_millis(10));
    assert_eq!(full.percent, 100.0);
    assert_eq!(full.window_bits, 5_000.0);
    assert_eq!(full.total_bits, 30 * (127 + 126));
    assert_eq!(full.frames, 60);
    // Half the window idle after the burst: 50 %.
    let half = bus.load_at(end + Duration::from_millis(5));
    assert_eq!(half.percent, 50.0);
    assert_eq!(half.window_bits, 2_500.0);
    // A window that cuts a frame counts the part inside: 1 ms idle + 9 ms busy.
    let cut = bus.load_at(end + Duration::from_millis(1));
    assert_eq!(cut.busy, Duration::from_millis(9));
    // Long after: nothing in the window, totals kept.
    let idle = bus.load_at(end + Duration::from_millis(20));
    assert_eq!((idle.percent, idle.total_bits), (0.0, 30 * 253));
    assert_eq!(bus.load().percent, 0.0);

    let per_id = bus.load_per_id();
    assert_eq!(per_id.len(), 2);
    assert_eq!(per_id[0].0, zeros.id());
    assert_eq!((per_id[0].1.frames, per_id[0].1.bits), (30, 30 * 127));
    assert_eq!((per_id[1].1.frames, per_id[1].1.bits), (30, 30 * 126));
}

#[tokio::test(start_paused = true)]
async fn error_frames_load_the_bus_too() {
    let bus = SimBus::builder("can0", RATE)
        .load_window(Duration::from_millis(1))
        .build()
        .unwrap();
    let a = bus.attach("a");
    let _b = bus.attach("b");
    let f = std_frame(0x123, &[0x12, 0x34]);
    let fb = FrameBits::of(&f);
    bus.set_corrupt_rule(CorruptRule::when(|t| t.retransmission < 2));
    a.send(f).await.unwrap();
    let total = 2 * u64::from(fb.bits_with_crc_error()) + u64::from(fb.total_bits());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let load = bus.load_at(bus.epoch() + bits(total));
    assert_eq!(
        (load.frames, load.error_frames, load.total_bits),
        (1, 2, total)
    );
    assert_eq!(load.busy, bits(total).min(Duration::from_millis(1)));
    assert_eq!(bus.load_per_id()[0].1.errors, 2);
}

/// A writer the test can read while the bus owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_bus_logs_what_it_carries_in_candump_format() {
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("battery");
    let gx = bus.attach("gx");
    let out = Shared::default();
    let base = Duration::new(1_700_000_000, 0);
    bus.start_log(out.clone(), base).unwrap();
    bus.set_corrupt_rule(CorruptRule::when(|t| {
        t.frame.id().raw() == 0x356 && t.retransmission == 0
    }));
    let frames = [
        std_frame(0x351, &[0x40, 0x02, 0xE8, 0x03, 0xE8, 0x03, 0xC0, 0x01]),
        std_frame(0x356, &[0x88, 0x13, 0x00, 0x00, 0xFA, 0x00]),
        CanFrame::new(CanId::extended(0x18FF_50E5).unwrap(), &[]).unwrap(),
    ];
    for f in frames {
        a.send(f).await.unwrap();
    }
    let mut ends = Vec::new();
    while ends.len() < 3 {
        if let CanEvent::Frame(got) = gx.recv().await.unwrap() {
            ends.push(got.at - bus.epoch());
        }
    }
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let records: Vec<_> = CandumpReader::new(text.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 4, "{text}");
    assert!(records.iter().all(|r| r.interface == "can0"));
    assert_eq!(records[0].entry, LogEntry::Frame(frames[0]));
    assert_eq!(records[1].entry, LogEntry::Error(ErrorFrame::CRC_ERROR));
    assert_eq!(records[2].entry, LogEntry::Frame(frames[1]));
    assert_eq!(records[3].entry, LogEntry::Frame(frames[2]));
    let micros = |d: Duration| Duration::from_micros(d.as_micros() as u64);
    assert_eq!(records[0].timestamp, base + micros(ends[0]));
    assert_eq!(records[2].timestamp, base + micros(ends[1]));
    assert_eq!(records[3].timestamp, base + micros(ends[2]));
    assert!(text.starts_with(&format!(
        "(1700000000.{:06}) can0 351#4002E803E803C001\n",
        ends[0].as_micros()
    )));

    // Stopping hands the writer back; nothing is logged after.
    assert!(bus.stop_log().unwrap().is_ok());
    assert!(bus.stop_log().is_none());
    a.send(frames[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(out.0.lock().unwrap().len(), text.len());
}

#[tokio::test(start_paused = true)]
async fn a_failing_log_writer_is_reported_and_the_bus_goes_on() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let bus = SimBus::new("can0", RATE);
    let a = bus.attach("a");
    let b = bus.attach("b");
    bus.start_log(Broken, Duration::ZERO).unwrap();
    a.send(std_frame(0x100, &[1])).await.unwrap();
    assert!(matches!(b.recv().await.unwrap(), CanEvent::Frame(_)));
    let err = bus.stop_log().unwrap().err().unwrap();
    assert_eq!(err.to_string(), "disk full");
    // A bus whose name cannot stand in a log refuses to log.
    let odd = SimBus::new("bus with spaces", RATE);
    assert!(matches!(
        odd.start_log(Shared::default(), Duration::ZERO),
        Err(SimBusError::LogName { .. })
    ));
}
