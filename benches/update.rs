//! The update benchmark: a 1 MiB Aurora image through the whole engine, and the GX
//! daemon's memory and CPU, its plugin hosts included, during a 4 MiB update.
//!
//! Run with `cargo bench --bench update` (release). Every figure is a ratio measured in
//! this run, each part run twice: with the plugin in its own plugin host process (the
//! loader's default, "hosted") and in the engine's process ("in-process"):
//!
//! 1. In one process, on the simulated bus in virtual time, with the real Aurora plugin
//!    (loaded through the allowlist) and the simulated Aurora BMS: the wall time of a
//!    1 MiB update, the payload throughput of the transfer over the bus's physical limit
//!    at the load cap (exact stuff bits of the frames that carried the image), the worst
//!    extra delay of a BMS-Can telemetry frame during the transfer (beyond what its own
//!    node's queue caused) against one frame time, and the CPU time per MiB (engine,
//!    plugin hosts and simulation together).
//! 2. The GX engine in this process, the simulated bus and BMS in a child process, joined
//!    by a Unix socket carrying every frame, in real time, a 4 MiB update: the peak
//!    resident memory of the daemon (`VmHWM`, reset once the plugin is loaded and the
//!    package written) plus that of each plugin host running during the transfer (its
//!    `VmHWM`, read while it runs), and the CPU time per transferred MiB of the daemon and
//!    its hosts together (a host that ended counts through `RUSAGE_CHILDREN`, the
//!    long-lived identity host through `/proc/<pid>/stat`). The child's memory and CPU
//!    (the bus, the BMS and its two 4 MiB flash slots) are not the GX's and are not
//!    counted. Set `BMSFW_BENCH_SKIP_PROCESS=1` to skip this part (it runs for about three
//!    minutes per isolation, the bus's own pace), `BMSFW_BENCH_PROCESS_ONLY=hosted` (or
//!    `in-process`) to run it for one isolation.
//! 3. A hung plugin call: the "misbehave" fixture plugin hangs in its session's
//!    `poll_transmit`; the time from the start of the round trip that hangs to the session
//!    reporting the failure, against the configured deadline of a session call (goal: at
//!    most 50 ms over it).

#[path = "update/bridge.rs"]
mod bridge;
#[path = "support/exact_bus.rs"]
mod exact_bus;
#[path = "../tests/gx_site/mod.rs"]
mod gx_site;
#[path = "update/hung.rs"]
mod hung;
#[path = "support/isolation.rs"]
mod isolation;
#[path = "update/measure.rs"]
mod measure;

use aurora_sim::bms::{AuroraBms, AuroraConfig};
use aurora_sim::{AuroraHandle, Stage};
use bmsfw_can::{CanEvent, CanFrame, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::job::{JobId, JobState};
use bmsfw_core::plugin::VendorPlugin;
use bmsfw_core::vrm::{GxEngine, VrmAccess, VrmPortalMode};
use bmsfw_protocols::bit_timing::{frame_bits, frame_duration};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::SimBus;
use exact_bus::{Recording, busy_within, is_telemetry, replay, us};
use gx_site::{
    PRODUCT, SERIAL, allowlist, aurora_library, package, request, upload, wait_for_battery,
};
use isolation::{Figures, Isolation};
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
    let figures: Vec<Figures> = Isolation::BOTH.into_iter().map(in_virtual_time).collect();
    let real_time: Vec<RealTime> = if std::env::var_os("BMSFW_BENCH_SKIP_PROCESS").is_none() {
        // `BMSFW_BENCH_PROCESS_ONLY=hosted` (or `in-process`) runs that one alone.
        let only = std::env::var("BMSFW_BENCH_PROCESS_ONLY").ok();
        Isolation::BOTH
            .into_iter()
            .filter(|i| only.as_deref().is_none_or(|o| o == i.name()))
            .map(gx_process)
            .collect()
    } else {
        println!("\n(BMSFW_BENCH_SKIP_PROCESS set: the real-time part is skipped)");
        Vec::new()
    };
    let hung = hung::measure();
    isolation::summary(&figures);
    if !real_time.is_empty() {
        real_time_summary(&real_time);
    }
    hung::summary(&hung);
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

/// The engine, with the Aurora plugin loaded to run as `isolation` says; the plugin too,
/// to find its hosts.
fn engine(
    state: &std::path::Path,
    bus: Arc<dyn CanInterface>,
    isolation: Isolation,
) -> (Engine, Arc<dyn VendorPlugin>) {
    let plugin = isolation.load(allowlist("2.0", "9.99"), &aurora_library());
    let handle = plugin.plugin.clone();
    let engine = Engine::builder(EngineConfig::in_dir(
        state,
        DottedVersion::from(vec![3, 70]),
    ))
    .plugin(plugin)
    .bus(bus)
    .vrm_access(VrmAccess::new(VrmPortalMode::Full))
    .start()
    .unwrap();
    (engine, handle)
}

async fn job_state(engine: &Engine, job: JobId) -> JobState {
    engine
        .jobs()
        .await
        .into_iter()
        .find(|r| r.id() == job)
        .map(|r| r.state())
        .unwrap()
}

/// Part 1: a 1 MiB update in one process, virtual time.
fn in_virtual_time(isolation: Isolation) -> Figures {
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
        let (gx, plugin) = engine(&dir.path().join("state"), Arc::new(gx_iface), isolation);
        wait_for_battery(&gx).await;

        let pkg = package([4, 16], 1024 * 1024, 7);
        let payload = pkg.len() as u64;
        let wall = std::time::Instant::now();
        let cpu = measure::CpuMark::now(&plugin.host_pids());
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
        let (cpu_own, cpu_hosts) = cpu.since(&plugin.host_pids());
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

        // Telemetry delays. The simulated bus arbitrates when its task runs on Tokio's
        // millisecond timers; so that this measure does not rest on that, the frames both
        // nodes handed to their controllers, with the instants they did, are replayed on
        // an exact bus: non-preemptive, lowest identifier first among the
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
            let blocked = busy_within(
                &gx_sends,
                &replay[0],
                |f| f.id().raw() == REQUEST_ID,
                earliest,
                start,
            );
            worst_by_transfer = worst_by_transfer.max(blocked);
        }
        let mib = payload as f64 / (1024.0 * 1024.0);
        let ratio = throughput / ceiling * 100.0;
        let frame_times = worst_by_transfer.as_secs_f64() / longest_transfer_frame.as_secs_f64();
        let cpu = cpu_own + cpu_hosts;
        println!(
            "\n== 1 MiB update, one process, virtual time, plugin {}",
            isolation.name()
        );
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
            "throughput / physical limit = {ratio:.1} % (goal: at least {:.0} % hosted; for \
             stop-and-wait UDS with 4 KiB blocks the design asks at least 85 %)",
            isolation::THROUGHPUT_GOAL
        );
        println!("peak bus load during the transfer (100 ms window): {peak_load:.1} %");
        let share = |pick: &dyn Fn(&CanFrame) -> bool| {
            let bits: u64 = seen
                .iter()
                .filter(|(f, at)| in_window(at) && pick(f))
                .map(|(f, _)| u64::from(frame_bits(f)))
                .sum();
            bits as f64 * 100.0 / (window.as_secs_f64() * f64::from(BITRATE))
        };
        println!(
            "mean bus load during the transfer: {:.2} % (image frames {:.2} %, the GX's other \
             frames {:.2} %, the BMS's frames {:.2} %)",
            share(&|_| true),
            share(&|f| f.id().raw() == REQUEST_ID && f.data()[0] >> 4 == 2),
            share(&|f| f.id().raw() != RESPONSE_ID
                && !(f.id().raw() == REQUEST_ID && f.data()[0] >> 4 == 2)
                && (f.id().raw() == REQUEST_ID || f.id().raw() == 0x305 || f.id().raw() == 0x307)),
            share(&|f| f.id().raw() == RESPONSE_ID
                || !(f.id().raw() == REQUEST_ID || f.id().raw() == 0x305 || f.id().raw() == 0x307)),
        );
        println!(
            "worst delay of a telemetry frame caused by the transfer: {:.0} us over {} frames \
             = {frame_times:.2} frame times of the longest transfer frame ({:.0} us) (goal: at \
             most 1; replayed with exact arbitration on the recorded handovers)",
            us(worst_by_transfer),
            telemetry_in_window,
            us(longest_transfer_frame),
        );
        println!(
            "worst wait of a telemetry frame for the bus, any cause: {:.0} us (the GX \
             keep-alive 0x305/0x307 also wins arbitration over telemetry)",
            us(worst_wait)
        );
        println!(
            "CPU time {:.3} s = {:.3} s per transferred MiB (engine and simulation in one \
             process: {:.3} s; plugin hosts: {:.3} s)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / mib,
            cpu_own.as_secs_f64(),
            cpu_hosts.as_secs_f64(),
        );
        gx.shutdown().await;
        Figures {
            run: "aurora, 1 MiB".into(),
            isolation,
            throughput: ratio,
            telemetry: frame_times,
            wall,
            simulated,
            cpu_per_mib: cpu.as_secs_f64() / mib,
        }
    })
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

/// Part 2's figures for one isolation.
struct RealTime {
    isolation: Isolation,
    mib: f64,
    wall: Duration,
    daemon_cpu: Duration,
    hosts_cpu: Duration,
    daemon_peak: u64,
    /// The hosts running during the transfer: (pid, peak).
    hosts_peak: Vec<(u32, u64)>,
    /// The other hosts seen (package inspection): (pid, peak).
    other_hosts: Vec<(u32, u64)>,
}

impl RealTime {
    fn cpu_per_mib(&self) -> f64 {
        (self.daemon_cpu + self.hosts_cpu).as_secs_f64() / self.mib
    }

    fn peak_together(&self) -> u64 {
        self.daemon_peak + self.hosts_peak.iter().map(|(_, b)| b).sum::<u64>()
    }
}

/// Part 2, the parent: the GX engine alone in this process, its plugin hosts as its
/// children.
fn gx_process(isolation: Isolation) -> RealTime {
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
    let figures = rt.block_on(async {
        let stream = tokio::net::UnixStream::from_std(stream).unwrap();
        let iface = Arc::new(bridge::BridgeInterface::new("can0", stream));
        let (gx, plugin) = engine(&dir.path().join("state"), iface, isolation);
        wait_for_battery(&gx).await;
        let size = std::fs::metadata(&package_path).unwrap().len();
        let reset = measure::reset_peak_rss();
        let rss_start = measure::status_bytes("VmRSS").unwrap_or(0);
        let mut memory = measure::HostMemory {
            others: vec![child.id()],
            ..Default::default()
        };
        memory.sample();
        let cpu = measure::CpuMark::now(&plugin.host_pids());
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
        // Until the job ends: the hosts' peaks, read while they run (the session's host
        // is stopped and reaped as the job ends).
        let mut during_transfer = std::collections::BTreeSet::new();
        let state = loop {
            let read = memory.sample();
            let state = job_state(&gx, id).await;
            if state == JobState::Transferring {
                during_transfer.extend(read);
            }
            if state.is_terminal() {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let wall = wall.elapsed();
        memory.sample();
        let (daemon_cpu, hosts_cpu) = cpu.since(&plugin.host_pids());
        let daemon_peak = measure::status_bytes("VmHWM").unwrap_or(0);
        assert_eq!(state, JobState::Completed);
        let figures = RealTime {
            isolation,
            mib: size as f64 / (1024.0 * 1024.0),
            wall,
            daemon_cpu,
            hosts_cpu,
            daemon_peak,
            hosts_peak: memory
                .peaks
                .iter()
                .filter(|(p, _)| during_transfer.contains(*p))
                .map(|(p, b)| (*p, *b))
                .collect(),
            other_hosts: memory
                .peaks
                .iter()
                .filter(|(p, _)| !during_transfer.contains(*p))
                .map(|(p, b)| (*p, *b))
                .collect(),
        };
        println!(
            "\n== 4 MiB update, GX engine in its own process, bus and BMS in another, real \
             time, plugin {}",
            isolation.name()
        );
        println!(
            "update completed in {:.1} s of real time ({:.0} B/s of package)",
            wall.as_secs_f64(),
            size as f64 / wall.as_secs_f64()
        );
        let hosts: Vec<String> = figures
            .hosts_peak
            .iter()
            .map(|(p, b)| format!("host {p} {:.2} MiB", measure::mib(*b)))
            .collect();
        println!(
            "peak RSS, daemon and plugin hosts together: {:.2} MiB = {:.0} % of the 16 MiB \
             goal (daemon {:.2} MiB, VmHWM{}, {:.2} MiB resident when the update began{}{})",
            measure::mib(figures.peak_together()),
            measure::mib(figures.peak_together()) / 16.0 * 100.0,
            measure::mib(daemon_peak),
            if reset {
                " reset after the plugin was loaded"
            } else {
                " since the process started"
            },
            measure::mib(rss_start),
            if hosts.is_empty() {
                String::new()
            } else {
                format!(
                    "; hosts running during the transfer, VmHWM: {}",
                    hosts.join(", ")
                )
            },
            if figures.other_hosts.is_empty() {
                String::new()
            } else {
                format!(
                    "; not counted, hosts that ended before the transfer: {}",
                    figures
                        .other_hosts
                        .iter()
                        .map(|(p, b)| format!("host {p} {:.2} MiB", measure::mib(*b)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        );
        println!(
            "CPU time, daemon and plugin hosts together: {:.3} s = {:.3} s per transferred \
             MiB (goal: at most 1.0 s; daemon {:.3} s, hosts {:.3} s; {:.2} % of one core \
             during the update)",
            (daemon_cpu + hosts_cpu).as_secs_f64(),
            figures.cpu_per_mib(),
            daemon_cpu.as_secs_f64(),
            hosts_cpu.as_secs_f64(),
            (daemon_cpu + hosts_cpu).as_secs_f64() / wall.as_secs_f64() * 100.0
        );
        gx.shutdown().await;
        figures
    });
    let _ = child.kill();
    let _ = child.wait();
    figures
}

fn real_time_summary(rows: &[RealTime]) {
    println!("\n== summary: 4 MiB update in real time, daemon and plugin hosts together");
    println!("goals: CPU at most 1.0 s per transferred MiB; peak RSS at most 16 MiB");
    println!(
        "{:<10} {:>11} {:>10} {:>10} {:>11} {:>13} {:>12}",
        "plugin", "CPU s/MiB", "daemon s", "hosts s", "peak RSS", "daemon peak", "update time"
    );
    for r in rows {
        println!(
            "{:<10} {:>11.3} {:>10.3} {:>10.3} {:>7.2} MiB {:>9.2} MiB {:>10.1} s   CPU goal \
             {}, RSS goal {}",
            r.isolation.name(),
            r.cpu_per_mib(),
            r.daemon_cpu.as_secs_f64(),
            r.hosts_cpu.as_secs_f64(),
            measure::mib(r.peak_together()),
            measure::mib(r.daemon_peak),
            r.wall.as_secs_f64(),
            if r.cpu_per_mib() <= 1.0 {
                "met"
            } else {
                "MISSED"
            },
            if measure::mib(r.peak_together()) <= 16.0 {
                "met"
            } else {
                "MISSED"
            },
        );
    }
}
