//! The Boreal benchmark: a 960 KiB image (a full slot) through the whole engine to a bank
//! of one node, then to a bank of two, in virtual time.
//!
//! Run with `cargo bench --bench boreal` (release). Every figure is a ratio measured in
//! this run, on the simulated bus, with the real Boreal plugin (loaded through the
//! allowlist) and the simulated Taiga bank, each update run twice: with the plugin in its
//! own plugin host process (the loader's default, "hosted") and in the engine's process
//! ("in-process"):
//!
//! - per node, the payload throughput of the SDO block download (from the node's answer
//!   to the block initiate to its answer to the block end) over the bus's physical limit
//!   at the load cap (exact stuff bits of the frames that carried the image, 7 bytes each);
//! - the worst extra delay of a BMS-Can telemetry frame during the transfers (beyond what
//!   the bank's own queue caused) against one frame time, replayed with exact arbitration
//!   on the frames each node handed to its controller;
//! - the wall time of the whole update against the bus time it simulated, and the CPU
//!   time per transferred MiB (engine, plugin hosts and simulation together);
//! - for two nodes, the time each node took, one after the other.

#[path = "../tests/boreal_common/mod.rs"]
mod boreal_common;
#[path = "support/isolation.rs"]
mod isolation;
#[path = "update/measure.rs"]
#[allow(dead_code)]
mod measure;
#[path = "boreal/replay.rs"]
mod replay;
// For `busy_within` only; the boreal replay keeps its own arbitration order.
#[path = "support/exact_bus.rs"]
#[allow(dead_code)]
mod exact_bus;

use bmsfw_can::{CanEvent, CanFrame, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::job::JobState;
use bmsfw_core::plugin::VendorPlugin;
use bmsfw_core::vrm::{GxEngine, VrmAccess, VrmPortalMode};
use bmsfw_protocols::bit_timing::{frame_bits, frame_duration};
use bmsfw_sim::battery::Epoch;
use bmsfw_sim::bus::SimBus;
use boreal_common::{
    NEW, OLD, allowlist, boreal_library, package, request, spawn_bank, upload, wait_for_battery,
};
use exact_bus::busy_within;
use isolation::{Figures, Isolation};
use replay::{Recording, Sends, replay};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const BITRATE: u32 = 500_000;
const CAP: f64 = 0.80;
const IMAGE_LEN: usize = 960 * 1024;

fn main() {
    println!("bench boreal: plugin {}", boreal_library().display());
    let mut figures = Vec::new();
    for nodes in [&[(1u8, OLD)][..], &[(1, OLD), (2, OLD)]] {
        for isolation in Isolation::BOTH {
            figures.push(run(nodes, isolation));
        }
    }
    isolation::summary(&figures);
}

fn is_telemetry(id: u32) -> bool {
    (0x351..=0x382).contains(&id)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One node's block download as seen on the bus.
struct Transfer {
    node: u8,
    from: Instant,
    to: Instant,
    /// Exact bits of each frame the GX sent to the node inside the window, but the end
    /// request.
    carried: Vec<u32>,
    longest: Duration,
    /// From the stop command (0x1F51 = 0) to the node's boot-up message after its start.
    span: (Instant, Instant),
}

fn transfers(seen: &[(CanFrame, Instant)], nodes: &[(u8, [u8; 2])]) -> Vec<Transfer> {
    nodes
        .iter()
        .map(|&(node, _)| {
            let request = 0x600 + u32::from(node);
            let response = 0x580 + u32::from(node);
            let answer = |pred: &dyn Fn(u8) -> bool| {
                seen.iter()
                    .find(|(f, _)| f.id().raw() == response && pred(f.data()[0]))
                    .map(|(_, at)| *at)
                    .expect("the node answered the block download")
            };
            let from = answer(&|b| b & 0xFB == 0xA0);
            let to = answer(&|b| b == 0xA1);
            let mut sent: Vec<&(CanFrame, Instant)> = seen
                .iter()
                .filter(|(f, at)| f.id().raw() == request && *at > from && *at < to)
                .collect();
            sent.pop();
            let stop = seen
                .iter()
                .find(|(f, _)| {
                    f.id().raw() == request && f.data()[..5] == [0x2F, 0x51, 0x1F, 0x01, 0x00]
                })
                .map(|(_, at)| *at)
                .expect("the node was stopped");
            let booted = seen
                .iter()
                .find(|(f, at)| {
                    *at > to && f.id().raw() == 0x700 + u32::from(node) && f.data() == [0x00]
                })
                .map(|(_, at)| *at)
                .expect("the node booted its new firmware");
            Transfer {
                node,
                from,
                to,
                carried: sent.iter().map(|(f, _)| frame_bits(f)).collect(),
                longest: sent
                    .iter()
                    .map(|(f, _)| frame_duration(f, BITRATE))
                    .max()
                    .unwrap_or_default(),
                span: (stop, booted),
            }
        })
        .collect()
}

fn run(nodes: &[(u8, [u8; 2])], isolation: Isolation) -> Figures {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = SimBus::new("can0", BITRATE);
        let epoch = Epoch::new(bus.epoch());
        let bank_sends: Sends = Arc::new(Mutex::new(Vec::new()));
        let bank = spawn_bank(
            nodes,
            epoch,
            Arc::new(Recording {
                inner: bus.attach("taiga"),
                sends: bank_sends.clone(),
            }),
        );
        let spy = bus.attach("spy");
        let seen = Arc::new(Mutex::new(Vec::<(CanFrame, Instant)>::new()));
        let seen_by_spy = seen.clone();
        let _spy = tokio::spawn(async move {
            while let Ok(event) = spy.recv().await {
                if let CanEvent::Frame(rx) = event {
                    seen_by_spy.lock().unwrap().push((rx.frame, rx.at));
                }
            }
        });
        let gx_sends: Sends = Arc::new(Mutex::new(Vec::new()));
        let dir = tempfile::tempdir().unwrap();
        let plugin = isolation.load(allowlist(), &boreal_library());
        let handle: Arc<dyn VendorPlugin> = plugin.plugin.clone();
        let gx = Engine::builder(EngineConfig::in_dir(
            dir.path().join("state"),
            DottedVersion::from(vec![3, 70]),
        ))
        .plugin(plugin)
        .bus(Arc::new(Recording {
            inner: bus.attach("gx"),
            sends: gx_sends.clone(),
        }) as Arc<dyn CanInterface>)
        .vrm_access(VrmAccess::new(VrmPortalMode::Full))
        .start()
        .unwrap();
        wait_for_battery(&gx).await;

        let pkg = package(NEW, IMAGE_LEN, 11);
        let wall = std::time::Instant::now();
        let cpu = measure::CpuMark::now(&handle.host_pids());
        let start = Instant::now();
        let id = upload(&gx, request(&pkg), &pkg).await.unwrap();
        drop(pkg);
        let mut peak_load: f64 = 0.0;
        let state = loop {
            let record = gx.jobs().await.into_iter().find(|r| r.id() == id).unwrap();
            if record.state() == JobState::Transferring {
                peak_load = peak_load.max(bus.load().percent);
            }
            if record.state().is_terminal() {
                break record.state();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let wall = wall.elapsed();
        let (cpu_own, cpu_hosts) = cpu.since(&handle.host_pids());
        let cpu = cpu_own + cpu_hosts;
        let simulated = start.elapsed();
        assert_eq!(state, JobState::Completed);
        assert!(bank.status().iter().all(|n| n.running_version == NEW));

        let seen = seen.lock().unwrap().clone();
        let transfers = transfers(&seen, nodes);
        println!(
            "\n== {} KiB image to a bank of {} node(s), one process, virtual time, plugin {}",
            IMAGE_LEN / 1024,
            nodes.len(),
            isolation.name()
        );
        let mut lowest_ratio = f64::INFINITY;
        for t in &transfers {
            let window = t.to - t.from;
            let mean_bits =
                t.carried.iter().map(|b| f64::from(*b)).sum::<f64>() / t.carried.len() as f64;
            let ceiling = f64::from(BITRATE) * CAP / mean_bits * 7.0;
            let throughput = IMAGE_LEN as f64 / window.as_secs_f64();
            lowest_ratio = lowest_ratio.min(throughput / ceiling * 100.0);
            println!(
                "node {}: block download of {IMAGE_LEN} B in {:.3} s = {throughput:.0} B/s over \
                 {} frames; physical limit at the {:.0} % load cap with these frames \
                 ({mean_bits:.1} exact bits per 7-byte segment) {ceiling:.0} B/s; \
                 throughput / physical limit = {:.1} %",
                t.node,
                window.as_secs_f64(),
                t.carried.len(),
                CAP * 100.0,
                throughput / ceiling * 100.0
            );
            println!(
                "node {}: from its stop command at {:.1} s to its boot-up message at {:.1} s: \
                 {:.1} s (clear, download, check, start, restart)",
                t.node,
                (t.span.0 - start).as_secs_f64(),
                (t.span.1 - start).as_secs_f64(),
                (t.span.1 - t.span.0).as_secs_f64()
            );
        }
        println!("peak bus load during the transfer (100 ms window): {peak_load:.1} %");

        // Telemetry delays, replayed on an exact bus (see the aurora bench for why).
        let bank_sends = bank_sends.lock().unwrap().clone();
        let gx_sends = gx_sends.lock().unwrap().clone();
        let replayed = replay(&[&gx_sends, &bank_sends], BITRATE);
        let in_window = |at: &Instant| transfers.iter().any(|t| *at >= t.from && *at <= t.to);
        let is_sdo_request = |id: u32| (0x601..=0x610).contains(&id);
        let (mut worst_by_transfer, mut worst_wait, mut telemetry_in_window) =
            (Duration::ZERO, Duration::ZERO, 0);
        let mut own_end: Option<Instant> = None;
        for (i, (frame, handed)) in bank_sends.iter().enumerate() {
            let (start, end) = replayed[1][i];
            let earliest = own_end.map_or(*handed, |e| e.max(*handed));
            own_end = Some(end);
            if !is_telemetry(frame.id().raw()) || !in_window(&end) {
                continue;
            }
            telemetry_in_window += 1;
            worst_wait = worst_wait.max(start.saturating_duration_since(earliest));
            let blocked = busy_within(
                &gx_sends,
                &replayed[0],
                |f| is_sdo_request(f.id().raw()),
                earliest,
                start,
            );
            worst_by_transfer = worst_by_transfer.max(blocked);
        }
        let longest = transfers.iter().map(|t| t.longest).max().unwrap();
        let frame_times = worst_by_transfer.as_secs_f64() / longest.as_secs_f64();
        println!(
            "worst delay of a telemetry frame caused by the transfer: {:.0} us over \
             {telemetry_in_window} frames = {frame_times:.2} frame times of the longest \
             transfer frame ({:.0} us) (goal: at most 1)",
            us(worst_by_transfer),
            us(longest),
        );
        println!(
            "worst wait of a telemetry frame for the bus, any cause: {:.0} us",
            us(worst_wait)
        );
        let mib = (IMAGE_LEN * nodes.len()) as f64 / (1024.0 * 1024.0);
        println!(
            "update simulated in {:.3} s of wall time for {:.1} s of bus time: {:.1}x faster \
             than real time; CPU time {:.3} s = {:.3} s per transferred MiB (engine and \
             simulation in one process: {:.3} s; plugin hosts: {:.3} s)",
            wall.as_secs_f64(),
            simulated.as_secs_f64(),
            simulated.as_secs_f64() / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / mib,
            cpu_own.as_secs_f64(),
            cpu_hosts.as_secs_f64(),
        );
        gx.shutdown().await;
        Figures {
            run: format!(
                "boreal, {} KiB to {} node(s)",
                IMAGE_LEN / 1024,
                nodes.len()
            ),
            isolation,
            throughput: lowest_ratio,
            telemetry: frame_times,
            wall,
            simulated,
            cpu_per_mib: cpu.as_secs_f64() / mib,
        }
    })
}
