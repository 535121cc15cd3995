//! Every misbehaviour of the "misbehave" fixture plugin in the real `bmsfw gx` daemon,
//! beside the real `bmsfw portal`, both as processes on the secure link: the plugin's
//! battery is a simulated BMS loaded from a model library (the SPKG BMS of
//! `tests/fixtures/models/spkg`) on one bus, an Aurora battery with the shipped Aurora
//! plugin on another. The installer drives everything through the portal's HTTP API.
//!
//! For each act (a crash, an endless loop in each call, unbounded allocation, a forbidden
//! socket, file or program, threads left running, a flood on stdout): the job fails with
//! 747 naming the plugin and the cause, within the call's deadline and a margin (or, for
//! the harmless acts, completes); the Aurora updates on the other bus complete all
//! along; the portal keeps receiving status and both batteries stay connected; the
//! daemon stays alive; and the next update of the misbehaving plugin's battery, with a
//! clean package, completes in a fresh host. Approved libraries that crash or hang while
//! loading, and a truncated approved copy of a shipped plugin, are refused at start
//! without harm.

mod support;

use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::daemon::{Approved, DaemonSetup, Daemons, battery};

const BAD: &str = "MISB0001";
const AURORA: &str = "AUR10-000777";
/// gx.toml's deadlines for this site: session calls, start_session, inspect_package.
const SESSION_DEADLINE: Duration = Duration::from_millis(250);
const START_DEADLINE: Duration = Duration::from_millis(2000);
const PACKAGE_DEADLINE: Duration = Duration::from_millis(2000);
/// What a failure may take beyond its deadline: the upload of a small package to the
/// GX, the host's start, and the status's way back through the broker to the portal.
const MARGIN: Duration = Duration::from_secs(6);

fn approved(
    library: std::path::PathBuf,
    vendor_id: &str,
    firmware: (&str, &str),
    manufacturer: &str,
    product: u16,
) -> Approved {
    Approved {
        library,
        file: None,
        vendor_id: vendor_id.into(),
        firmware: (firmware.0.into(), firmware.1.into()),
        manufacturer: manufacturer.into(),
        product_codes: vec![product],
    }
}

fn setup(truncated: &std::path::Path) -> DaemonSetup {
    use bmsfw_test_fixtures::{library, model_library, vendor_library};
    let mut truncated_copy = approved(
        truncated.to_path_buf(),
        "com.acme.bms",
        ("1.0", "1.99"),
        "ACME",
        0x0A11,
    );
    truncated_copy.file = Some("libbmsfw_vendor_template.so".into());
    DaemonSetup {
        plugins: vec![
            approved(
                library("misbehave"),
                bmsfw_test_fixtures::MISBEHAVE_VENDOR_ID,
                ("1.0", "9.99"),
                bmsfw_test_fixtures::MISBEHAVE_MANUFACTURER,
                bmsfw_test_fixtures::MISBEHAVE_PRODUCT,
            ),
            approved(
                vendor_library("aurora"),
                "com.aurora-energy.powercore",
                ("2.0", "9.99"),
                "AURORA",
                0xA520,
            ),
            approved(
                library("crash-identity"),
                "com.example.crash-identity",
                ("1.0", "9.99"),
                "CRASH-ID",
                0x0D06,
            ),
            approved(
                library("hang-identity"),
                "com.example.hang-identity",
                ("1.0", "9.99"),
                "HANG-ID",
                0x0D05,
            ),
            truncated_copy,
        ],
        site: format!(
            r#"
[[bus]]
name = "sim1"
bitrate = 500000

[[bus.battery]]
name = "bad"
vendor = "misbehave"
model = "{model}"
model_options = {{ request_id = 0x{tx:03X}, response_id = 0x{rx:03X}, installs = [1, 1] }}
manufacturer = "{manufacturer}"
bms_name = "Misbehaving BMS"
product_code = 0x{product:04X}
firmware = [1, 0]
capacity_ah = 100
serial = "{BAD}"
soc = 80
temperature_c = 20.0

[[bus]]
name = "sim2"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [0x04, 0x0F]
capacity_ah = 200
serial = "{AURORA}"
soc = 81
temperature_c = 21.0
"#,
            model = model_library("spkg").display(),
            tx = bmsfw_test_fixtures::MISBEHAVE_TX,
            rx = bmsfw_test_fixtures::MISBEHAVE_RX,
            manufacturer = bmsfw_test_fixtures::MISBEHAVE_MANUFACTURER,
            product = bmsfw_test_fixtures::MISBEHAVE_PRODUCT,
        ),
        cans: vec!["sim1".into(), "sim2".into()],
        gx_extra: format!(
            "[plugins.host]\nsession_deadline_ms = {}\nstart_deadline_ms = {}\n\
             package_deadline_ms = {}\nmemory_limit_mib = 128\nquarantine_after = 3\n",
            SESSION_DEADLINE.as_millis(),
            START_DEADLINE.as_millis(),
            PACKAGE_DEADLINE.as_millis(),
        ),
        site_socket: None,
    }
}

/// The battery's latest update once it ended (waits at most `limit`).
async fn ended(d: &Daemons, serial: &str, after: Option<&Value>, limit: Duration) -> Value {
    d.until(&format!("the end of {serial}'s update"), limit, |s| {
        let u = &battery(s, serial)?["latest_update"];
        let new = after.is_none_or(|a| u["job"] != a["job"]);
        (new && u["ended"] == true).then(|| u.clone())
    })
    .await
}

/// The battery's latest update, whatever its state.
async fn latest(d: &Daemons, serial: &str) -> Value {
    battery(&d.state().await, serial).map_or(Value::Null, |b| b["latest_update"].clone())
}

/// Both batteries connected, the GX online and heard from since `since` (ms).
async fn site_monitored(d: &Daemons, since: u64) {
    d.until(
        "both batteries connected and the GX reporting",
        Duration::from_secs(30),
        |s| {
            let inst = &s["installations"][0];
            let fresh = inst["last_seen"].as_u64().is_some_and(|t| t > since);
            let connected = [BAD, AURORA]
                .iter()
                .all(|serial| battery(s, serial).is_some_and(|b| b["connected"] == true));
            (fresh && connected && inst["presence"] == "online").then_some(())
        },
    )
    .await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Keeps the Aurora battery updating, one update after another, until `stop`; returns
/// every finished update.
fn keep_aurora_busy(d: Arc<Daemons>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let mut done = Vec::new();
        let mut previous: Option<Value> = None;
        let mut seed = 1;
        while !stop.load(Ordering::SeqCst) {
            let package = aurora_package(seed);
            seed += 1;
            d.update(AURORA, "powercore10.bin", package, true)
                .await
                .expect("the portal takes the Aurora update");
            let u = ended(&d, AURORA, previous.as_ref(), Duration::from_secs(180)).await;
            done.push(u.clone());
            previous = Some(u);
        }
        done
    })
}

fn aurora_package(seed: u64) -> Vec<u8> {
    aurora_sim::package::build(&aurora_sim::package::PackageSpec::new(
        0xA520,
        [4, 16],
        256 * 1024,
        seed,
    ))
}

/// One misbehaving job: its failure (code and message) or its completion, and how long
/// it took from the update request.
async fn run_bad(d: &Daemons, act: &str, place: &str) -> (Value, Duration) {
    let before = latest(d, BAD).await;
    let package = bmsfw_test_fixtures::misbehave_package(act, place, 1, 1, 2000);
    let asked = Instant::now();
    match d.update(BAD, "misbehave.spkg", package, true).await {
        // Refused before a job exists (the package's inspection crashed or hung).
        Err(refusal) => (serde_json::json!({"refusal": refusal}), asked.elapsed()),
        Ok(()) => {
            let u = ended(d, BAD, Some(&before), Duration::from_secs(60)).await;
            (u, asked.elapsed())
        }
    }
}

/// A clean package for the misbehaving plugin's battery: the next job, in a fresh host
/// once the restart pause is over, completes.
async fn clean_update_completes(d: &Daemons, what: &str) {
    let before = latest(d, BAD).await;
    let clean = bmsfw_test_fixtures::misbehave_package_with(b"", 1, 1, 2000);
    // The host restarts after a pause that grows with failures in a row.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match d.update(BAD, "clean.spkg", clean.clone(), true).await {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "after {what}: {e}\n{}", d.logs());
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    // Completed, as the portal shows it once the GX's reports are in (right after the
    // new job starts, the portal may still show the previous job's end for a moment).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = latest(d, BAD).await;
        if u["job"] != before["job"] && u["state"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {what}: the clean update did not complete: {u:#}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaving_plugin_costs_its_own_job_only_in_the_real_daemon() {
    // A truncated copy of a shipped plugin, approved by its own hash.
    let work = tempfile::tempdir().unwrap();
    let template = std::fs::read(bmsfw_test_fixtures::vendor_library("template")).unwrap();
    let truncated = work.path().join("truncated.so");
    std::fs::write(&truncated, &template[..template.len() / 3]).unwrap();

    let d = Arc::new(Daemons::start(&setup(&truncated)).await);
    d.until("both batteries updatable", Duration::from_secs(90), |s| {
        [BAD, AURORA]
            .iter()
            .all(|serial| battery(s, serial).is_some_and(|b| b["can_update"] == true))
            .then_some(())
    })
    .await;
    // The libraries refused at start are named in the daemon's log; nothing else broke.
    let log = std::fs::read_to_string(d.path("gx.log")).unwrap();
    for refused in [
        "libbmsfw_fixture_crash_identity.so",
        "libbmsfw_fixture_hang_identity.so",
        "libbmsfw_vendor_template.so",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(refused) && l.contains("refused")),
            "{refused} is not reported refused:\n{}",
            d.logs()
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let aurora = keep_aurora_busy(d.clone(), stop.clone());
    d.until("the Aurora transfer", Duration::from_secs(60), |s| {
        (battery(s, AURORA)?["latest_update"]["state"] == "transferring").then_some(())
    })
    .await;

    // (act, place, the cause the failure names, the call's deadline); cause None: the
    // plugin's business, the update completes.
    let cases: &[(&str, &str, Option<&str>, Duration)] = &[
        (
            "segfault",
            "poll_transmit",
            Some("SIGSEGV"),
            SESSION_DEADLINE,
        ),
        ("abort", "status", Some("SIGABRT"), SESSION_DEADLINE),
        (
            "exit",
            "start",
            Some("exited with status 3"),
            START_DEADLINE,
        ),
        ("hang", "start", Some("deadline"), START_DEADLINE),
        ("hang", "handle_frame", Some("deadline"), SESSION_DEADLINE),
        ("hang", "poll_transmit", Some("deadline"), SESSION_DEADLINE),
        ("hang", "poll_timeout", Some("deadline"), SESSION_DEADLINE),
        ("hang", "status", Some("deadline"), SESSION_DEADLINE),
        ("hang", "checkpoint", Some("deadline"), SESSION_DEADLINE),
        (
            "alloc",
            "poll_transmit",
            Some("memory limit"),
            SESSION_DEADLINE,
        ),
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        ("socket", "poll_transmit", Some("forbids"), SESSION_DEADLINE),
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        ("passwd", "handle_frame", Some("forbids"), SESSION_DEADLINE),
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        ("fork", "status", Some("forbids"), SESSION_DEADLINE),
        ("segfault", "inspect", Some("SIGSEGV"), PACKAGE_DEADLINE),
        ("hang", "inspect", Some("deadline"), PACKAGE_DEADLINE),
        ("threads", "start", None, SESSION_DEADLINE),
        ("stdout", "poll_transmit", None, SESSION_DEADLINE),
    ];
    for &(act, place, cause, deadline) in cases {
        let what = format!("{act} in {place}");
        let heard = now_ms();
        let (outcome, took) = run_bad(&d, act, place).await;
        match cause {
            Some(cause) => {
                let text = outcome.to_string();
                assert!(text.contains("747"), "{what}: {text}\n{}", d.logs());
                assert!(text.contains("com.example.misbehave"), "{what}: {text}");
                assert!(text.contains(cause), "{what}: expected {cause:?} in {text}");
                assert!(
                    took < deadline + MARGIN,
                    "{what}: the failure took {took:?} (deadline {deadline:?})"
                );
            }
            None => assert_eq!(outcome["state"], "completed", "{what}: {outcome:#}"),
        }
        assert!(gx_alive(&d), "{what}: the daemon died\n{}", d.logs());
        site_monitored(&d, heard).await;
        clean_update_completes(&d, &what).await;
    }

    stop.store(true, Ordering::SeqCst);
    let aurora = aurora.await.unwrap();
    assert!(!aurora.is_empty());
    for u in &aurora {
        assert_eq!(
            u["state"], "completed",
            "an Aurora update beside the misbehaving plugin: {u:#}"
        );
    }
    assert!(gx_alive(&d), "the daemon died\n{}", d.logs());
}

/// Whether the daemon's process still runs (by its pid: the handle is shared).
fn gx_alive(d: &Daemons) -> bool {
    let pid = d.gx_pid();
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
