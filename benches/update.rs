//! The update benchmark: a 1 MiB Aurora image through the whole engine, and the GX
//! process's memory and CPU during a 4 MiB update.
//!
//! Run with `cargo bench --bench update` (release). Every figure is a ratio measured in
//! this run:
//!
//! 1. In one process, on the simulated bus in virtual time, with the real Aurora plugin
//!    (loaded through the allowlist) and the simulated Aurora BMS: the wall time of a
//!    1 MiB update, the payload throughput of the transfer over the bus's physical limit
//!    at the load cap (exact stuff bits of the frames that carried the image), the worst
//!    extra delay of a BMS-Can telemetry frame during the transfer (beyond what its own
//!    node's queue caused) against one frame time, and the CPU time per MiB (engine and
//!    simulation together).
//! 2. The GX engine in this process, the simulated bus and BMS in a child process, joined
//!    by a Unix socket carrying every frame, in real time: the engine process's peak
//!    resident memory (`VmHWM`, reset once the plugin is loaded and the package written)
//!    and its CPU time per MiB of a 4 MiB update. The child's memory (the BMS's two 4 MiB
//!    flash slots) is not the GX's and is not counted. Set `BMSFW_BENCH_SKIP_PROCESS=1` to
//!    skip this part (it runs for about three minutes, the bus's own pace).

#[path = "update/bridge.rs"]
mod bridge;
#[path = "support/exact_bus.rs"]
mod exact_bus;
#[path = "../tests/gx_site/mod.rs"]
mod gx_site;
#[path = "update/measure.rs"]
mod measure;

use aurora_sim::bms::{AuroraBms, AuroraConfig};
use aurora_sim::{AuroraHandle, Stage};
use bmsfw_can::{CanEvent, CanFrame, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::job::{JobId, JobState};
use bmsfw_core::plugin::{LoadedPlugin, PluginLoader};
use bmsfw_core::vrm::{GxEngine, VrmAccess, VrmPortalMode};
use bmsfw_protocols::bit_timing::{frame_bits, frame_duration};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::SimBus;
use exact_bus::{Recording, is_telemetry, replay, us};
use gx_site::{
    PRODUCT, SERIAL, allowlist, aurora_library, package, request, upload, wait_for_battery,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const BITRATE: u32 = 500_000;
const REQUEST_ID: u32 = 0x7E2;
const RESPONSE_ID: u32 = 0x7EA;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bms-process") {
        bms_process(&args[i + 1], &args[i + 2]);
        return;
    }
    let library = aurora_library();
    println!("bench update: Aurora plugin {}", library.display());
    in_virtual_time();
    if std::env::var_os("BMSFW_BENCH_SKIP_PROCESS").is_none() {
        gx_process();
    }
}

/// A battery of the Aurora family for the bench.
fn battery_config() -> BatteryConfig {
    let mut battery = BatteryConfig::new(IdentityConfig {
        manufacturer: "AURORA".into(),
        bms_name: "PowerCore 10".into(),
        product_code: PRODUCT,
        firmware: [4, 15],
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some(SERIAL.into()),
        product_name: None,
    });
    battery.initial_soc = 66.0;
    battery
}

fn plugin() -> LoadedPlugin {
    PluginLoader::new(allowlist("2.0", "9.99"))
        .load_file(&aurora_library())
        .unwrap_or_else(|r| panic!("{r}"))
}

fn engine(state: &std::path::Path, bus: Arc<dyn CanInterface>) -> Engine {
    Engine::builder(EngineConfig::in_dir(
        state,
        DottedVersion::from(vec![3, 70]),
    ))
    .plugin(plugin())
    .bus(bus)
    .vrm_access(VrmAccess::new(VrmPortalMode::Full))
    .start()
    .unwrap()
}

async fn wait_end(engine: &Engine, job: JobId, poll: Duration) -> JobState {
    loop {
        let state = engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id() == job)
            .map(|r| r.state())
            .unwrap();
        if state.is_terminal() {
            return state;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Part 1: a 1 MiB update in one process, virtual time.
fn in_virtual_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = SimBus::new("can0", BITRATE);
        let epoch = Epoch::starting_now();
        let sends = Arc::new(Mutex::new(Vec::new()));
        let model = AuroraBms::new(
            AuroraConfig::new(PRODUCT, [4, 15]),
            battery_config(),
            epoch.now(),
        )
        .unwrap();
        let bms_iface = Recording {
            inner: bus.attach("bms"),
            sends: sends.clone(),
        };
        let (bms, _bms_task) = AuroraHandle::spawn("powercore", model, epoch, Arc::new(bms_iface));
        // Every frame on the bus, with the end of its last bit.
        let spy = bus.attach("spy");
        let seen = Arc::new(Mutex::new(Vec::<(CanFrame, Instant)>::new()));
        let seen_by_spy = seen.clone();
        let _spy_task = tokio::spawn(async move {
            while let Ok(event) = spy.recv().await {
                if let CanEvent::Frame(rx) = event {
                    seen_by_spy.lock().unwrap().push((rx.frame, rx.at));
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let gx_sends = Arc::new(Mutex::new(Vec::new()));
        let gx_iface = Recording {
            inner: bus.attach("gx"),
            sends: gx_sends.clone(),
        };
        let gx = engine(&dir.path().join("state"), Arc::new(gx_iface));
        wait_for_battery(&gx).await;

        let pkg = package([4, 16], 1024 * 1024, 7);
        let payload = pkg.len() as u64;
        let wall = std::time::Instant::now();
        let cpu = measure::cpu_time();
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
        let cpu = measure::cpu_time().saturating_sub(cpu);
        let simulated = start.elapsed();
        assert_eq!(state, JobState::Completed);
        assert_eq!(bms.status().running_version, [4, 16]);
        assert_eq!(bms.status().stage, Stage::Running);

        let seen = seen.lock().unwrap().clone();
        // The transfer: from the answer to RequestDownload (74) to the answer to
        // RequestTransferExit (77).
        let answer = |sid: u8| {
            seen.iter()
                .find(|(f, _)| f.id().raw() == RESPONSE_ID && f.data().get(1) == Some(&sid))
                .map(|(_, at)| *at)
                .unwrap()
        };
        let (from, to) = (answer(0x74), answer(0x77));
        let window = to - from;
        let in_window = |at: &Instant| *at >= from && *at <= to;
        // The consecutive frames that carried the image.
        let carried: Vec<&CanFrame> = seen
            .iter()
            .filter(|(f, at)| f.id().raw() == REQUEST_ID && in_window(at) && f.data()[0] >> 4 == 2)
            .map(|(f, _)| f)
            .collect();
        let mean_bits = carried
            .iter()
            .map(|f| f64::from(frame_bits(f)))
            .sum::<f64>()
            / carried.len() as f64;
        let cap = 0.80;
        let ceiling = f64::from(BITRATE) * cap / mean_bits * 7.0;
        let throughput = payload as f64 / window.as_secs_f64();
        let longest_transfer_frame = carried
            .iter()
            .map(|f| frame_duration(f, BITRATE))
            .max()
            .unwrap();

        // Telemetry delays. The simulated bus runs on Tokio's millisecond timers, so a frame
        // handed over at a tick may join the arbitration at the end of the previous frame,
        // a little before the tick: too optimistic for this measure. The frames both
        // nodes handed to their controllers, with the instants they did, are therefore
        // replayed on an exact bus: non-preemptive, lowest identifier first among the
        // frames already handed over, each node in its own order. A telemetry frame's
        // delay is the time from its handover (or its own node's previous frame's end)
        // to its first bit; the part of it the bus spent on the GX's transfer frames is
        // the delay the transfer caused.
        let bms_sends = sends.lock().unwrap().clone();
        let gx_sends = gx_sends.lock().unwrap().clone();
        let replay = replay(&[&gx_sends, &bms_sends], BITRATE);
        let (mut worst_by_transfer, mut worst_wait, mut telemetry_in_window) =
            (Duration::ZERO, Duration::ZERO, 0);
        let mut own_end: Option<Instant> = None;
        for (i, (frame, handed)) in bms_sends.iter().enumerate() {
            let (start, end) = replay[1][i];
            let earliest = own_end.map_or(*handed, |e| e.max(*handed));
            own_end = Some(end);
            if !is_telemetry(frame.id().raw()) || !in_window(&end) {
                continue;
            }
            telemetry_in_window += 1;
            worst_wait = worst_wait.max(start.saturating_duration_since(earliest));
            let blocked: Duration = gx_sends
                .iter()
                .zip(&replay[0])
                .filter(|(f, _)| f.0.id().raw() == REQUEST_ID)
                .map(|(_, (s, e))| {
                    (*e).min(start)
                        .saturating_duration_since((*s).max(earliest))
                })
                .sum();
            worst_by_transfer = worst_by_transfer.max(blocked);
        }
        let mib = payload as f64 / (1024.0 * 1024.0);
        println!("\n== 1 MiB update, one process, virtual time");
        println!(
            "update simulated in {:.3} s of wall time for {:.1} s of bus time \
             (goal: under 1 s of wall time): ratio {:.1}x faster than real time",
            wall.as_secs_f64(),
            simulated.as_secs_f64(),
            simulated.as_secs_f64() / wall.as_secs_f64()
        );
        println!(
            "transfer payload {payload} B in {:.3} s = {:.0} B/s; physical limit at the {:.0} % \
             load cap with these frames ({mean_bits:.1} exact bits per 7-byte consecutive \
             frame) {ceiling:.0} B/s",
            window.as_secs_f64(),
            throughput,
            cap * 100.0
        );
        println!(
            "throughput / physical limit = {:.1} % (goal for stop-and-wait UDS with 4 KiB \
             blocks: at least 85 %)",
            throughput / ceiling * 100.0
        );
        println!("peak bus load during the transfer (100 ms window): {peak_load:.1} %");
        println!(
            "worst delay of a telemetry frame caused by the transfer: {:.0} us over {} frames \
             = {:.2} frame times of the longest transfer frame ({:.0} us) (goal: at most 1; \
             replayed with exact arbitration on the recorded handovers)",
            us(worst_by_transfer),
            telemetry_in_window,
            worst_by_transfer.as_secs_f64() / longest_transfer_frame.as_secs_f64(),
            us(longest_transfer_frame),
        );
        println!(
            "worst wait of a telemetry frame for the bus, any cause: {:.0} us (the GX \
             keep-alive 0x305/0x307 also wins arbitration over telemetry)",
            us(worst_wait)
        );
        println!(
            "CPU time {:.3} s = {:.3} s per transferred MiB (engine and simulation in one \
             process)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / mib
        );
        gx.shutdown().await;
    });
}

/// Part 2, the child: the simulated bus and the Aurora BMS, relaying to the GX over
/// `socket`; writes the 4 MiB package to `package_path` first.
fn bms_process(socket: &str, package_path: &str) {
    let pkg = package([4, 16], 4 * 1024 * 1024 - 64, 8);
    std::fs::write(package_path, &pkg).unwrap();
    drop(pkg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = SimBus::new("can0", BITRATE);
        let epoch = Epoch::starting_now();
        let model = AuroraBms::new(
            AuroraConfig::new(PRODUCT, [4, 15]),
            battery_config(),
            epoch.now(),
        )
        .unwrap();
        let (_bms, _task) =
            AuroraHandle::spawn("powercore", model, epoch, Arc::new(bus.attach("bms")));
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        bridge::relay(stream, Arc::new(bus.attach("bridge"))).await;
    });
}

/// Part 2, the parent: the GX engine alone in this process.
fn gx_process() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("can0.sock");
    let package_path = dir.path().join("powercore10-4.16.bin");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--bms-process")
        .arg(&socket)
        .arg(&package_path)
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::from_std(stream).unwrap();
        let iface = Arc::new(bridge::BridgeInterface::new("can0", stream));
        let gx = engine(&dir.path().join("state"), iface);
        wait_for_battery(&gx).await;
        let size = std::fs::metadata(&package_path).unwrap().len();
        let reset = measure::reset_peak_rss();
        let rss_start = measure::status_bytes("VmRSS").unwrap_or(0);
        let cpu = measure::cpu_time();
        let wall = std::time::Instant::now();
        // The package arrives in chunks, as the VRM link delivers them: the GX never
        // holds it whole.
        let sha256 = bmsfw_core::staging::Sha256Digest::of_reader(
            std::fs::File::open(&package_path).unwrap(),
        )
        .unwrap();
        let req = bmsfw_core::vrm::UpdateRequest {
            battery_serial: SERIAL.into(),
            package: bmsfw_core::staging::UploadAnnouncement::new(
                "powercore10-4.16.bin".into(),
                size,
                64 * 1024,
                sha256,
            )
            .unwrap(),
            acknowledgements: bmsfw_core::vrm::Acknowledgements::all(),
            options: bmsfw_core::vrm::UpdateOptions::default(),
        };
        let id = gx.request_update(req).await.unwrap().job;
        let file = std::fs::File::open(&package_path).unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut offset = 0u64;
        let mut index = 0u32;
        while offset < size {
            use std::os::unix::fs::FileExt;
            let n = (size - offset).min(chunk.len() as u64) as usize;
            file.read_exact_at(&mut chunk[..n], offset).unwrap();
            gx.accept_chunk(id, index, chunk[..n].to_vec())
                .await
                .unwrap();
            offset += n as u64;
            index += 1;
        }
        drop(chunk);
        gx.finish_upload(id).await.unwrap();
        let state = wait_end(&gx, id, Duration::from_millis(500)).await;
        let wall = wall.elapsed();
        let cpu = measure::cpu_time().saturating_sub(cpu);
        let peak = measure::status_bytes("VmHWM").unwrap_or(0);
        assert_eq!(state, JobState::Completed);
        let mib = size as f64 / (1024.0 * 1024.0);
        println!(
            "\n== 4 MiB update, GX engine in its own process, bus and BMS in another, real time"
        );
        println!(
            "update completed in {:.1} s of real time ({:.0} B/s of package)",
            wall.as_secs_f64(),
            size as f64 / wall.as_secs_f64()
        );
        println!(
            "GX process peak RSS {:.2} MiB (VmHWM{}; {:.2} MiB resident when the update \
             began) = {:.0} % of the 16 MiB goal",
            measure::mib(peak),
            if reset {
                ", reset after the plugin was loaded"
            } else {
                " since the process started"
            },
            measure::mib(rss_start),
            measure::mib(peak) / 16.0 * 100.0
        );
        println!(
            "GX process CPU time {:.3} s = {:.3} s per transferred MiB ({:.2} % of one core \
             during the update)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / mib,
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
        );
        gx.shutdown().await;
    });
    let _ = child.kill();
    let _ = child.wait();
}
