//! Throughput of the simulated bus: how many frames it carries per wall-clock second in
//! virtual time, how much faster than real time that is, and whether a saturated bus is
//! really saturated (bits carried over bit rate times simulated time).
//!
//! Run with `cargo bench -p bmsfw-sim --bench bus_throughput`.

use bmsfw_can::{CanEvent, CanFrame, CanId};
use bmsfw_sim::bus::{SimBus, SimNode};
use std::time::{Duration, Instant as WallInstant};

const BITRATE: u32 = 500_000;

struct Outcome {
    frames: u64,
    wall: Duration,
    simulated: Duration,
    bits: u64,
}

impl Outcome {
    fn print(&self, name: &str) {
        let wall = self.wall.as_secs_f64();
        let simulated = self.simulated.as_secs_f64();
        println!("{name}");
        println!("  frames carried            {:>12}", self.frames);
        println!(
            "  mean bits per frame       {:>12.2}  (stuff bits and intermission included)",
            self.bits as f64 / self.frames as f64
        );
        println!("  wall time                 {:>12.3} s", wall);
        println!("  simulated time            {:>12.3} s", simulated);
        println!(
            "  frames per wall second    {:>12.0}",
            self.frames as f64 / wall
        );
        println!("  speed-up (simulated/wall) {:>12.1} x", simulated / wall);
        println!(
            "  bus utilisation           {:>12.3} %  (bits carried / (bit rate x simulated time))",
            self.bits as f64 * 100.0 / (f64::from(BITRATE) * simulated)
        );
    }
}

fn payload(i: u64) -> [u8; 8] {
    // Varying content, so stuff bits vary as they do for a real image.
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes()
}

/// `senders` nodes send `per_sender` 8-byte frames back to back; one more node reads
/// every frame.
fn saturated(senders: usize, per_sender: u64, extended: bool) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async move {
        let bus = SimBus::new("can0", BITRATE);
        let reader = bus.attach("reader");
        let nodes: Vec<SimNode> = (0..senders)
            .map(|i| bus.attach(&format!("sender{i}")))
            .collect();
        let wall = WallInstant::now();
        for (n, node) in nodes.into_iter().enumerate() {
            tokio::spawn(async move {
                let id = if extended {
                    CanId::extended(0x18DA_0000 | n as u32)
                } else {
                    CanId::standard(0x600 + n as u16)
                }
                .expect("a valid identifier");
                for i in 0..per_sender {
                    let frame = CanFrame::new(id, &payload(i)).expect("8 bytes");
                    node.send(frame).await.expect("the bus accepts frames");
                }
                node
            });
        }
        let total = senders as u64 * per_sender;
        let mut last = bus.epoch();
        let mut frames = 0u64;
        while frames < total {
            if let CanEvent::Frame(f) = reader.recv().await.expect("the reader stays attached") {
                last = f.at;
                frames += 1;
            }
        }
        let wall = wall.elapsed();
        let simulated = last - bus.epoch();
        let load = bus.load_at(last);
        Outcome {
            frames,
            wall,
            simulated,
            bits: load.total_bits,
        }
    })
}

/// A client sends a request, a server answers each one at once: a stop-and-wait
/// protocol, where every frame is a reaction to the one before.
fn ping_pong(round_trips: u64) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async move {
        let bus = SimBus::new("can0", BITRATE);
        let client = bus.attach("client");
        let server = bus.attach("server");
        let reply_id = CanId::standard(0x7E8).expect("a valid identifier");
        tokio::spawn(async move {
            while let Ok(event) = server.recv().await {
                if let CanEvent::Frame(f) = event {
                    let reply = CanFrame::new(reply_id, f.frame.data()).expect("8 bytes");
                    if server.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        });
        let request_id = CanId::standard(0x7E0).expect("a valid identifier");
        let wall = WallInstant::now();
        let mut last = bus.epoch();
        for i in 0..round_trips {
            let request = CanFrame::new(request_id, &payload(i)).expect("8 bytes");
            client.send(request).await.expect("the bus accepts frames");
            loop {
                if let CanEvent::Frame(f) = client.recv().await.expect("attached") {
                    last = f.at;
                    break;
                }
            }
        }
        let wall = wall.elapsed();
        Outcome {
            frames: 2 * round_trips,
            wall,
            simulated: last - bus.epoch(),
            bits: bus.load_at(last).total_bits,
        }
    })
}

fn main() {
    println!("simulated bus at {BITRATE} bit/s, virtual time");
    saturated(2, 100_000, false).print("2 senders, 11-bit identifiers, 8-byte frames");
    saturated(4, 50_000, true).print("4 senders, 29-bit identifiers, 8-byte frames");
    ping_pong(100_000).print("request/response, each frame sent on receipt of the previous");
}
