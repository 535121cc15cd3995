//! Measures one aurora update of a 1 MiB package (or the size in KiB given as the first
//! argument) on the simulated 500 kbit/s bus, in virtual time, with the built plugin
//! loaded through the allowlist and driven by the end-to-end tests' thin harness.
//!
//! ```text
//! cargo run --release --example aurora_transfer [KiB]
//! ```
//!
//! It prints, from that one run: the virtual time of each phase; the payload throughput
//! from the first acknowledged block to the last over the bus's physical limit (8
//! payload bytes per frame, frames of the transfer's exact stuffed length back to back,
//! no load cap); the longest gap between two 0x356 telemetry frames (sent every 200 ms)
//! while transferring; and the wall time.

#[path = "../tests/aurora/harness.rs"]
mod harness;

use aurora_sim::package::{PackageSpec, build};
use bmsfw_core::plugin::SessionPhase;
use bmsfw_plugin_api::CanId;
use harness::{PRODUCT, World, drive};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let kib: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("the size in KiB"))
        .unwrap_or(1024);
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let package = build(&PackageSpec::new(PRODUCT, [4, 16], kib * 1024, 1));
    let path = world.stage("powercore-4.16.bin", &package);
    let mut session = world.start(&battery, &path);

    let wall = Instant::now();
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    let wall = wall.elapsed();
    assert_eq!(run.last.phase, SessionPhase::Done, "{:?}", run.last.failure);

    let at = |p| run.entered(p).expect("every phase was entered");
    let transferring = at(SessionPhase::Transferring);
    let installing = at(SessionPhase::Installing);
    let restarting = at(SessionPhase::Restarting);
    let verifying = at(SessionPhase::Verifying);
    let done = at(SessionPhase::Done);
    let span = |a: bmsfw_plugin_api::Timestamp, b: bmsfw_plugin_api::Timestamp| {
        b.saturating_duration_since(a).as_secs_f64()
    };

    // The transfer's own frames: their mean exact length on the wire.
    let request = CanId::standard(0x7E2).expect("an 11-bit identifier");
    let (frames, bits) = world
        .bus
        .load_per_id()
        .into_iter()
        .find(|(id, _)| *id == request)
        .map(|(_, l)| (l.frames, l.bits))
        .expect("the GX sent requests");
    let mean_bits = bits as f64 / frames as f64;
    let limit = 8.0 * f64::from(world.bus.bitrate()) / mean_bits;
    let transfer_secs = span(transferring, installing);
    // Payload throughput while transferring: from the first acknowledged block to the
    // last (the probe and the erase before are no transfer time).
    let (first_at, first_bytes) = run.progress[1];
    let (last_at, last_bytes) = *run.progress.last().expect("progress was reported");
    let achieved = (last_bytes - first_bytes) as f64 / span(first_at, last_at);

    let measurements = run.times_of(0x356, transferring, installing);
    let worst_gap = measurements
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default();

    println!("aurora update of {} bytes ({kib} KiB image)", package.len());
    println!(
        "  virtual time: transferring {:.2} s (erase included), installing {:.3} s, \
         restarting {:.2} s, verifying {:.3} s, total {:.2} s",
        transfer_secs,
        span(installing, restarting),
        span(restarting, verifying),
        span(verifying, done),
        span(transferring, done)
    );
    println!(
        "  payload throughput {:.0} B/s over the physical limit {:.0} B/s \
         ({mean_bits:.1} bits per frame): {:.1} %",
        achieved,
        limit,
        100.0 * achieved / limit
    );
    println!(
        "  longest gap between 0x356 frames while transferring: {:.3} ms (period 200 ms)",
        worst_gap.as_secs_f64() * 1000.0
    );
    println!(
        "  {} frames sent by the session; wall time {:.3} s",
        run.sent,
        wall.as_secs_f64()
    );
}
