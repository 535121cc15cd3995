//! `bmsfw plugin conformance`, run as the built binary: every shipped vendor plugin
//! passes with its sample package, and fixture plugins that misbehave fail, each with
//! the check it breaks named in the table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn conformance(library: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["plugin", "conformance"])
        .arg(library)
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("the bmsfw binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table's rows as (check, scenario, result, detail).
fn rows(out: &str) -> Vec<(String, String, String, String)> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("check "));
    let header = lines.next().expect("a table header");
    let scenario_at = header.find("scenario").unwrap();
    let result_at = header.find("result").unwrap();
    let detail_at = header.find("detail").unwrap();
    lines
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cut = |a: usize, b: usize| {
                l.chars()
                    .skip(a)
                    .take(b.saturating_sub(a))
                    .collect::<String>()
                    .trim()
                    .to_owned()
            };
            (
                cut(0, scenario_at),
                cut(scenario_at, result_at),
                cut(result_at, detail_at),
                cut(detail_at, usize::MAX),
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts the run passed: exit 0, no FAIL row, and every session scenario ran.
fn assert_conforms(vendor: &str, sample: &[u8], file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), file, sample);
    let lib = bmsfw_test_fixtures::vendor_library(vendor);
    let out = conformance(&lib, &["--package".as_ref(), package.as_os_str()]);
    let text = stdout(&out);
    println!("{text}");
    let table = rows(&text);
    let failed: Vec<_> = table.iter().filter(|r| r.2 == "FAIL").collect();
    assert!(failed.is_empty(), "{vendor}: {failed:#?}\n{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{vendor}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in [
        "silence",
        "garbage frames",
        "truncated frames",
        "duplicated replies",
        "reordered replies",
        "fuzzed replies",
        "abort at start",
        "abort after the first frame",
        "abort while waiting for an answer",
    ] {
        for check in ["no-panic", "declared-ids", "bus-budget", "terminal-state"] {
            assert!(
                table
                    .iter()
                    .any(|r| r.0 == check && r.1.starts_with(scenario) && r.2 == "PASS"),
                "{vendor}: {check} / {scenario} did not pass:\n{text}"
            );
        }
    }
    for scenario in ["truncated packages", "random packages"] {
        assert!(
            table
                .iter()
                .any(|r| r.0 == "bad-packages" && r.1 == scenario && r.2 == "PASS"),
            "{vendor}: {scenario}:\n{text}"
        );
    }
}

#[test]
fn aurora_conforms() {
    use aurora_sim::package::{PackageSpec, build};
    assert_conforms(
        "aurora",
        &build(&PackageSpec::new(0xA520, [4, 16], 20_000, 7)),
        "aurora.bin",
    );
}

#[test]
fn boreal_conforms() {
    use boreal_sim::package::{PackageSpec, build};
    let (hex, _) = build(&PackageSpec::new(0xB210, [0x02, 0x15], 20_000, 7));
    assert_conforms("boreal", &hex, "boreal.hex");
}

#[test]
fn the_vendor_template_conforms() {
    use template_sim::package::{PackageSpec, build};
    assert_conforms(
        "template",
        &build(&PackageSpec::new(0xAC10, [1, 12], 20_000, 7)),
        "acme.acfw",
    );
}

#[test]
fn coral_conforms() {
    use coral_sim::bundle::{BundleSpec, build};
    let bundle = build(
        &BundleSpec::new(0xC0A1, [1, 0x10, 0xFF], 2, 20_000, 7).with_modules(
            [2, 4, 1],
            &[1, 3],
            8_000,
        ),
    );
    assert_conforms("coral", &bundle, "coral.crb");
}

/// A sealed SPKG package for a conformance fixture: header, image, SHA-256 of both.
fn sealed_package(product_code: u16) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut p = b"SPKG".to_vec();
    p.extend(product_code.to_le_bytes());
    p.extend([1, 2]);
    p.extend((0..700u32).map(|i| (i * 7 + 3) as u8));
    let seal = Sha256::digest(&p);
    p.extend(seal);
    p
}

/// Runs fixture `name` with its sample package and asserts the run fails with exactly
/// the checks `expected` failing; returns the output.
fn assert_fails_only(name: &str, product_code: u16, expected: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), "sample.spkg", &sealed_package(product_code));
    let lib = bmsfw_test_fixtures::library(name);
    let out = conformance(&lib, &["--package".as_ref(), package.as_os_str()]);
    let text = stdout(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{name}:\n{text}");
    let table = rows(&text);
    let mut failed: Vec<&str> = table
        .iter()
        .filter(|r| r.2 == "FAIL")
        .map(|r| r.0.as_str())
        .collect();
    failed.sort_unstable();
    failed.dedup();
    assert_eq!(failed, expected, "{name}: the failed checks\n{text}");
    assert!(
        text.contains("DOES NOT CONFORM"),
        "{name}: the summary says so\n{text}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.0 == "setup" && r.1 == "session start" && r.2 == "PASS"),
        "{name}: the sessions ran\n{text}"
    );
    text
}

fn failed_rows<'a>(
    table: &'a [(String, String, String, String)],
    check: &str,
) -> Vec<&'a (String, String, String, String)> {
    table
        .iter()
        .filter(|r| r.0 == check && r.2 == "FAIL")
        .collect()
}

#[test]
fn a_plugin_that_panics_on_a_garbage_frame_fails_no_panic() {
    let text = assert_fails_only("garbage-panic", 0x0F01, &["no-panic"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "no-panic");
    assert!(
        failed.iter().any(|r| r.1 == "garbage frames"),
        "garbage frames named:\n{text}"
    );
    assert!(
        failed.iter().all(|r| r.3.contains("panic")),
        "the detail says it panicked:\n{text}"
    );
    // Silence sends it nothing to choke on.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "no-panic" && r.1 == "silence" && r.2 == "PASS")
    );
}

#[test]
fn a_plugin_that_sends_outside_its_identifiers_fails_declared_ids() {
    let text = assert_fails_only("stray-nak", 0x0F02, &["declared-ids"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "declared-ids");
    assert!(failed.iter().any(|r| r.1 == "garbage frames"), "{text}");
    assert!(
        failed
            .iter()
            .all(|r| r.3.contains("7DF") && r.3.contains("7A1")),
        "the detail names the identifier and the declared ones:\n{text}"
    );
}

#[test]
fn a_plugin_that_floods_the_bus_fails_bus_budget() {
    let text = assert_fails_only("retry-flood", 0x0F03, &["bus-budget"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "bus-budget");
    assert!(failed.iter().any(|r| r.1 == "silence"), "{text}");
    assert!(
        failed.iter().all(|r| r.3.contains("the budget is 80 %")),
        "{text}"
    );
    // What could not be judged once the run stopped is skipped, not passed.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "terminal-state" && r.1 == "silence" && r.2 == "SKIP"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_never_ends_after_silence_fails_terminal_state() {
    let text = assert_fails_only("no-timeout", 0x0F04, &["terminal-state"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "terminal-state");
    assert!(failed.iter().any(|r| r.1 == "silence"), "{text}");
    assert!(
        failed
            .iter()
            .all(|r| r.3.contains("watchdog") && r.3.contains("declared timeouts")),
        "{text}"
    );
    // An abort still ends it.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "terminal-state" && r.1 == "abort at start" && r.2 == "PASS"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_accepts_bad_packages_fails_bad_packages() {
    let text = assert_fails_only("lax-package", 0x0F05, &["bad-packages"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "bad-packages");
    let scenarios: Vec<&str> = failed.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        scenarios,
        ["random packages", "truncated packages"],
        "{text}"
    );
    assert!(
        failed.iter().all(|r| r.3.starts_with("accepted ")),
        "{text}"
    );
}

#[test]
fn without_a_package_the_session_checks_are_skipped_not_passed() {
    let lib = bmsfw_test_fixtures::library("no-timeout");
    let out = conformance(&lib, &[]);
    let text = stdout(&out);
    // The hang needs a session to show: without a package nothing fails...
    assert_eq!(out.status.code(), Some(0), "{text}");
    let table = rows(&text);
    for check in ["no-panic", "declared-ids", "bus-budget", "terminal-state"] {
        let row = table
            .iter()
            .find(|r| r.0 == check && r.1 == "silence")
            .unwrap_or_else(|| panic!("a {check} row for silence:\n{text}"));
        assert_eq!(row.2, "SKIP", "{text}");
        assert!(row.3.contains("--package"), "{text}");
    }
    assert!(
        table
            .iter()
            .any(|r| r.0 == "bad-packages" && r.1 == "random packages" && r.2 == "PASS"),
        "{text}"
    );
    // ...and the summary does not claim full conformance.
    assert!(text.contains("skipped checks did not run"), "{text}");
    assert!(!text.contains("checks: 0 skipped"), "{text}");
}

#[test]
fn a_library_that_is_not_a_plugin_fails_the_load_check_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let lib = write(dir.path(), "libnot.so", b"\x7fELF but not really");
    let out = conformance(&lib, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    use sha2::{Digest, Sha256};
    let sha = hex_lower(&Sha256::digest(b"\x7fELF but not really"));
    assert!(text.contains(&sha), "the SHA-256 is printed:\n{text}");
    let table = rows(&text);
    assert!(
        table.iter().any(|r| r.0 == "load" && r.2 == "FAIL"),
        "{text}"
    );
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// The replay peer: a recording of a real update with the sample package, made here by the
// vendor's plugin updating the vendor's simulated BMS on the simulated bus.
// ---------------------------------------------------------------------------------------

use bmsfw_can::CanEvent;
use bmsfw_core::driver::{BudgetConfig, BusBudget, WORST_FRAME_BITS};
use bmsfw_core::plugin::{
    Allowlist, PackageRead, PluginLoader, SessionPhase, SessionStart, plugin_battery,
};
use bmsfw_core::telemetry::BmsCanMonitor;
use bmsfw_plugin_api::SessionOptions;
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{SimBus, SimNode};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A log written into memory, shared with the bus that writes it.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The vendor's library, opened as `bmsfw plugin conformance` opens it (without an
/// allowlist).
fn open_vendor(vendor: &str) -> std::sync::Arc<dyn bmsfw_core::plugin::VendorPlugin> {
    let loader = PluginLoader::new(Allowlist::parse(Path::new("(none)"), "").unwrap());
    let file = loader
        .read_file(&bmsfw_test_fixtures::vendor_library(vendor))
        .unwrap();
    loader.open_unvetted(&file).unwrap()
}

fn identity(manufacturer: &str, product_code: u16, firmware: [u8; 2]) -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: manufacturer.into(),
        bms_name: format!("{manufacturer} bench"),
        product_code,
        firmware,
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some(format!("{manufacturer}-0001")),
        product_name: None,
    })
}

/// Updates the battery on `bus` with `package` through the vendor's plugin, the GX's
/// node standing in for the engine's driver, while the bus logs every frame it carries
/// (what `bmsfw capture` writes on a bench). Returns the log and the session's phases;
/// the update must succeed.
async fn record_update(
    vendor: &str,
    bus: &SimBus,
    epoch: Epoch,
    package: &[u8],
) -> (Vec<u8>, Vec<SessionPhase>) {
    let plugin = open_vendor(vendor);
    let info = plugin.info().clone();
    let gx: SimNode = bus.attach("gx");
    let log = SharedLog::default();
    bus.start_log(log.clone(), Duration::from_secs(1_750_000_000))
        .unwrap();
    // The battery as the GX hears it.
    let mut monitor = BmsCanMonitor::new("can0");
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        tokio::select! {
            event = gx.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    monitor.handle_frame(epoch.timestamp(rx.at), &rx.frame);
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    let battery = plugin_battery(&monitor.battery().expect("the BMS broadcasts").identity());
    let package: Arc<dyn PackageRead> = Arc::new(package.to_vec());
    let mut session = plugin
        .start_session(SessionStart {
            battery,
            package,
            options: SessionOptions::default(),
            resume: None,
        })
        .unwrap_or_else(|f| panic!("{vendor}: {f}"));
    let start = epoch.now();
    let mut phases = Vec::new();
    // The engine's pacing: a frame of the plugin goes out only while one more of the
    // longest fits in the bus budget (80 % of any 100 ms), every frame on the bus counted.
    let mut budget = BusBudget::new(500_000, BudgetConfig::default());
    loop {
        assert!(
            epoch.now().saturating_duration_since(start) < Duration::from_secs(1800),
            "{vendor}: the recorded update did not end"
        );
        // One frame at a time, and what the bus brought meanwhile handed to the session
        // before the next, as the engine's bus task does.
        let mut held = None;
        loop {
            if let Err(until) = budget.room(epoch.now(), WORST_FRAME_BITS) {
                held = Some(until);
                break;
            }
            let Some(frame) = session.poll_transmit(epoch.now()) else {
                break;
            };
            assert!(info.may_send(frame.id()), "{vendor}: {frame}");
            budget.record_sent(epoch.now(), &frame);
            gx.send(frame).await.unwrap();
            loop {
                tokio::select! {
                    biased;
                    event = gx.recv() => {
                        if let Ok(CanEvent::Frame(rx)) = event {
                            let at = epoch.timestamp(rx.at);
                            budget.record_received(at, &rx.frame);
                            if info.wants(rx.frame.id()) {
                                session.handle_frame(at, &rx.frame);
                            }
                        }
                    }
                    () = std::future::ready(()) => break,
                }
            }
        }
        let report = session.status();
        if phases.last() != Some(&report.phase) {
            phases.push(report.phase);
        }
        if report.phase.is_final() {
            assert_eq!(
                report.phase,
                SessionPhase::Done,
                "{vendor}: the recorded update failed: {report:?}"
            );
            break;
        }
        let deadline = match (session.poll_timeout(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            event = gx.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    let at = epoch.timestamp(rx.at);
                    budget.record_received(at, &rx.frame);
                    if info.wants(rx.frame.id()) {
                        session.handle_frame(at, &rx.frame);
                    }
                }
            }
            _ = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(epoch.at(t)).await,
                    None => std::future::pending().await,
                }
            } => {
                if session.poll_timeout().is_some_and(|t| t <= epoch.now()) {
                    session.handle_timeout(epoch.now());
                }
            }
        }
    }
    // The battery's broadcasts after the update close the capture.
    tokio::time::sleep(Duration::from_secs(1)).await;
    bus.stop_log().expect("the bus was logging").unwrap();
    let bytes = log.0.lock().unwrap().clone();
    (bytes, phases)
}

/// A paused runtime for one recorded update.
fn recorded<F: std::future::Future<Output = (Vec<u8>, Vec<SessionPhase>)>>(
    f: impl FnOnce() -> F,
) -> (Vec<u8>, Vec<SessionPhase>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f())
}

fn aurora_sample(seed: u64) -> Vec<u8> {
    use aurora_sim::package::{PackageSpec, build};
    build(&PackageSpec::new(0xA520, [4, 16], 20_000, seed))
}

fn record_aurora(package: &[u8]) -> (Vec<u8>, Vec<SessionPhase>) {
    use aurora_sim::{AuroraBms, AuroraConfig, AuroraHandle};
    recorded(|| async {
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let model = AuroraBms::new(
            AuroraConfig::new(0xA520, [4, 15]),
            identity("AURORA", 0xA520, [4, 15]),
            epoch.now(),
        )
        .unwrap();
        let (_bms, _task) =
            AuroraHandle::spawn("powercore", model, epoch, Arc::new(bus.attach("bms")));
        record_update("aurora", &bus, epoch, package).await
    })
}

fn boreal_sample() -> Vec<u8> {
    use boreal_sim::package::{PackageSpec, build};
    build(&PackageSpec::new(0xB210, [0x02, 0x15], 20_000, 7)).0
}

fn record_boreal(package: &[u8]) -> (Vec<u8>, Vec<SessionPhase>) {
    use boreal_sim::{BankConfig, BankHandle, BorealBank};
    recorded(|| async {
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let model = BorealBank::new(
            BankConfig::new(0xB210, [0x02, 0x10], 2),
            identity("BOREAL", 0xB210, [0x02, 0x10]),
            epoch.now(),
        )
        .unwrap();
        let (_bank, _task) = BankHandle::spawn("taiga", model, epoch, Arc::new(bus.attach("bms")));
        record_update("boreal", &bus, epoch, package).await
    })
}

fn coral_sample() -> Vec<u8> {
    use coral_sim::bundle::{BundleSpec, build};
    build(
        &BundleSpec::new(0xC0A1, [1, 0x10, 0xFF], 2, 20_000, 7).with_modules(
            [2, 4, 1],
            &[1, 3],
            8_000,
        ),
    )
}

fn record_coral(package: &[u8]) -> (Vec<u8>, Vec<SessionPhase>) {
    use coral_sim::{CoralBms, CoralConfig, CoralHandle};
    recorded(|| async {
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let mut battery = identity("CORAL", 0xC0A1, [0x0F, 1]);
        battery.modules = 2;
        let model = CoralBms::new(
            CoralConfig::new(0xC0A1, [1, 0x0F, 0x03], 2),
            battery,
            epoch.now(),
        )
        .unwrap();
        let (_bms, _task) =
            CoralHandle::spawn("reefstack", model, epoch, Arc::new(bus.attach("bms")));
        record_update("coral", &bus, epoch, package).await
    })
}

fn template_sample() -> Vec<u8> {
    use template_sim::package::{PackageSpec, build};
    build(&PackageSpec::new(0xAC10, [1, 12], 20_000, 7))
}

fn record_template(package: &[u8]) -> (Vec<u8>, Vec<SessionPhase>) {
    use template_sim::{TemplateBms, TemplateConfig, TemplateHandle};
    recorded(|| async {
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let model = TemplateBms::new(
            TemplateConfig::new(0xAC10, [1, 11]),
            identity("ACME", 0xAC10, [1, 11]),
            epoch.now(),
        )
        .unwrap();
        let (_bms, _task) =
            TemplateHandle::spawn("acme", model, epoch, Arc::new(bus.attach("bms")));
        record_update("template", &bus, epoch, package).await
    })
}

/// Runs the conformance of `vendor` with `sample` and `recording`: the table.
fn conformance_with_recording(
    vendor: &str,
    sample: &[u8],
    file: &str,
    recording: &[u8],
) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), file, sample);
    let log = write(dir.path(), "update.log", recording);
    let out = conformance(
        &bmsfw_test_fixtures::vendor_library(vendor),
        &[
            "--package".as_ref(),
            package.as_os_str(),
            "--recording".as_ref(),
            log.as_os_str(),
        ],
    );
    let text = stdout(&out);
    println!("{text}");
    (out, text)
}

/// The replayed update passes and every later phase the recorded session went through
/// is aborted, each abort ending Failed with 753 in time.
fn assert_replay_reaches_every_phase(
    vendor: &str,
    sample: &[u8],
    file: &str,
    (recording, phases): (Vec<u8>, Vec<SessionPhase>),
) {
    if let Some(dir) = std::env::var_os("KEEP_RECORDING") {
        std::fs::write(Path::new(&dir).join(format!("{vendor}.log")), &recording).unwrap();
    }
    let (out, text) = conformance_with_recording(vendor, sample, file, &recording);
    let table = rows(&text);
    let failed: Vec<_> = table.iter().filter(|r| r.2 == "FAIL").collect();
    assert!(failed.is_empty(), "{vendor}: {failed:#?}\n{text}");
    assert_eq!(out.status.code(), Some(0), "{vendor}:\n{text}");
    let replay = table
        .iter()
        .find(|r| r.0 == "replay" && r.1 == "replayed update")
        .unwrap_or_else(|| panic!("{vendor}: a replay row\n{text}"));
    assert_eq!(replay.2, "PASS", "{vendor}:\n{text}");
    assert!(replay.3.starts_with("Done after"), "{vendor}: {}", replay.3);
    for check in ["no-panic", "declared-ids", "bus-budget", "terminal-state"] {
        assert!(
            table
                .iter()
                .any(|r| r.0 == check && r.1 == "replayed update" && r.2 == "PASS"),
            "{vendor}: {check} / replayed update:\n{text}"
        );
    }
    let later: Vec<SessionPhase> = phases
        .iter()
        .copied()
        .filter(|p| {
            matches!(
                p,
                SessionPhase::Installing | SessionPhase::Restarting | SessionPhase::Verifying
            )
        })
        .collect();
    assert!(
        !later.is_empty(),
        "{vendor}: the recorded session shows a later phase: {phases:?}"
    );
    for phase in later {
        let scenario = format!("abort in {phase:?} (reached with the replayed update)");
        let terminal = table
            .iter()
            .find(|r| r.0 == "terminal-state" && r.1 == scenario)
            .unwrap_or_else(|| panic!("{vendor}: no row {scenario}\n{text}"));
        assert_eq!(terminal.2, "PASS", "{vendor}: {scenario}\n{text}");
        assert!(
            terminal.3.contains("Failed") && terminal.3.contains("753"),
            "{vendor}: {scenario} ends Failed with 753: {}",
            terminal.3
        );
    }
    assert!(
        !table
            .iter()
            .any(|r| r.1 == "abort in Installing, Restarting, Verifying"),
        "{vendor}: no later phase is skipped\n{text}"
    );
}

#[test]
fn aurora_replays_its_recorded_update_and_is_aborted_in_every_later_phase() {
    let sample = aurora_sample(7);
    let recording = record_aurora(&sample);
    assert_replay_reaches_every_phase("aurora", &sample, "aurora.bin", recording);
}

#[test]
fn boreal_replays_its_recorded_update_and_is_aborted_in_every_later_phase() {
    let sample = boreal_sample();
    let recording = record_boreal(&sample);
    assert_replay_reaches_every_phase("boreal", &sample, "boreal.hex", recording);
}

#[test]
fn coral_replays_its_recorded_update_and_is_aborted_in_every_later_phase() {
    let sample = coral_sample();
    let recording = record_coral(&sample);
    assert_replay_reaches_every_phase("coral", &sample, "coral.crb", recording);
}

#[test]
fn the_template_replays_its_recorded_update_and_is_aborted_in_every_later_phase() {
    let sample = template_sample();
    let recording = record_template(&sample);
    assert_replay_reaches_every_phase("template", &sample, "acme.acfw", recording);
}

#[test]
fn a_recording_of_another_package_diverges_and_fails_the_replay_check() {
    let (recording, _) = record_aurora(&aurora_sample(7));
    // Same version and size, other image bytes.
    let other = aurora_sample(8);
    let (out, text) = conformance_with_recording("aurora", &other, "aurora.bin", &recording);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DOES NOT CONFORM"), "{text}");
    let table = rows(&text);
    let failed: Vec<&str> = table
        .iter()
        .filter(|r| r.2 == "FAIL")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(failed, ["replay"], "only the replay fails:\n{text}");
    let replay = table
        .iter()
        .find(|r| r.0 == "replay" && r.1 == "replayed update")
        .unwrap();
    assert!(
        replay.3.contains("departed from the recording") && replay.3.contains("(line "),
        "the detail names the frame and its line: {}",
        replay.3
    );
    // The session itself behaved: it ended in time once the peer went silent.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "terminal-state" && r.1 == "replayed update" && r.2 == "PASS"),
        "{text}"
    );
    // The later phases were not reached, and the rows say why.
    let skipped = table
        .iter()
        .find(|r| r.0 == "terminal-state" && r.1 == "abort in Installing, Restarting, Verifying")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(skipped.2, "SKIP");
    assert!(
        skipped
            .3
            .contains("the replay did not get past Transferring"),
        "{}",
        skipped.3
    );
}

#[test]
fn without_a_recording_the_later_phases_are_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), "acme.acfw", &template_sample());
    let out = conformance(
        &bmsfw_test_fixtures::vendor_library("template"),
        &["--package".as_ref(), package.as_os_str()],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let table = rows(&text);
    for r in table
        .iter()
        .filter(|r| r.1 == "abort in Installing, Restarting, Verifying" || r.1 == "replayed update")
    {
        assert_eq!(r.2, "SKIP", "{text}");
        assert!(
            r.3.contains("give --recording to reach later phases"),
            "{text}"
        );
    }
    assert!(
        table
            .iter()
            .any(|r| r.0 == "replay" && r.1 == "replayed update"),
        "{text}"
    );
}

#[test]
fn a_malformed_recording_is_refused_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), "acme.acfw", &template_sample());
    let log = write(
        dir.path(),
        "update.log",
        b"(1.000000) can0 351#0102\n(1.000100) can0 7A0#01020\n",
    );
    let out = conformance(
        &bmsfw_test_fixtures::vendor_library("template"),
        &[
            "--package".as_ref(),
            package.as_os_str(),
            "--recording".as_ref(),
            log.as_os_str(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("update.log") && err.contains("line 2, column"),
        "{err}"
    );
}
