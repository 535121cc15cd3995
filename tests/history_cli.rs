//! `bmsfw history` against a GX state directory written by the engine.

use bmsfw_core::UnixMillis;
use bmsfw_core::events::EventLogConfig;
use bmsfw_core::job::{
    BatteryIdentity, JobEvent, JobFailure, JobStore, Percent, StateDir, VersionInfo,
};
use bmsfw_core::staging::{Sha256Digest, UploadAnnouncement};
use std::path::Path;
use std::process::{Command, Output};

fn battery(serial: &str) -> BatteryIdentity {
    BatteryIdentity {
        manufacturer: "Aurora".into(),
        model: "AX-5".into(),
        serial: serial.into(),
    }
}

fn v(display: &str, raw: [u8; 2]) -> VersionInfo {
    VersionInfo {
        raw: raw.to_vec(),
        display: display.into(),
    }
}

/// Two batteries: SN-A completed 4.15 -> 5.00, SN-B failed with 780.
fn populate(root: &Path) {
    let state = StateDir::new(root);
    let (mut store, _) = JobStore::open(&state, EventLogConfig::default(), UnixMillis(0)).unwrap();
    let ann = |n: u8| {
        UploadAnnouncement::new(format!("fw{n}.bin"), 4096, 1024, Sha256Digest([n; 32])).unwrap()
    };
    let t0 = 1_768_896_900_000; // 2026-01-20T08:15:00Z
    let a = store
        .create(
            battery("SN-A"),
            ann(1),
            Some(v("v4.15", [4, 15])),
            UnixMillis(t0),
        )
        .unwrap();
    for e in [
        JobEvent::UploadProgress(Percent::FULL),
        JobEvent::TransferStarted {
            target: v("v5.00", [5, 0]),
        },
        JobEvent::VerifyStarted,
        JobEvent::Completed {
            version_after: v("v5.00", [5, 0]),
        },
    ] {
        store.apply(a, e, UnixMillis(t0 + 60_000)).unwrap();
    }
    let b = store
        .create(
            battery("SN-B"),
            ann(2),
            Some(v("v1.17", [1, 0x17])),
            UnixMillis(t0 + 1),
        )
        .unwrap();
    for e in [
        JobEvent::TransferStarted {
            target: v("v1.20", [1, 0x20]),
        },
        JobEvent::Failed(JobFailure {
            code: 780,
            message: "BMS rejected image checksum".into(),
            at: UnixMillis(t0 + 120_000),
            battery_state: None,
        }),
    ] {
        store.apply(b, e, UnixMillis(t0 + 120_000)).unwrap();
    }
}

fn history(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .arg("history")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn prints_jobs_and_events_as_tables() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let text = stdout(&history(&["--state-dir", dir.path().to_str().unwrap()]));
    let job_a = text
        .lines()
        .find(|l| l.starts_with("1 ") && l.contains("SN-A"))
        .unwrap_or_else(|| panic!("no row for job 1:\n{text}"));
    assert!(job_a.contains("2026-01-20T08:15:00.000Z"), "{job_a}");
    assert!(job_a.contains("Completed"));
    assert!(job_a.contains("v4.15 [040F] -> v5.00 [0500]"), "{job_a}");
    let job_b = text.lines().find(|l| l.starts_with("2 ")).unwrap();
    assert!(
        job_b.contains("Failed") && job_b.contains("780 VERIFICATION_FAILED"),
        "{job_b}"
    );
    assert!(text.contains("Event log"));
    assert!(text.contains("update initiated (fw1.bin)"));
    assert!(text.contains("failed: BMS rejected image checksum"));
    assert!(text.contains("state: Transferring to battery"));
}

#[test]
fn filters_by_battery() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let text = stdout(&history(&[
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--battery",
        "SN-B",
    ]));
    assert!(text.contains("SN-B"));
    assert!(!text.contains("SN-A"), "{text}");
    let none = stdout(&history(&[
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--battery",
        "SN-Z",
    ]));
    assert_eq!(none.matches("(none)").count(), 2, "{none}");
}

#[test]
fn prints_json_with_raw_and_decoded_versions() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let text = stdout(&history(&[
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--json",
        "--battery",
        "SN-A",
    ]));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "completed");
    assert_eq!(jobs[0]["version_after"]["raw"], "0500");
    assert_eq!(jobs[0]["version_after"]["display"], "v5.00");
    let events = doc["events"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["event"]["type"], "completed");
    assert_eq!(last["event"]["version_before"]["display"], "v4.15");
    assert!(events.iter().all(|e| e["battery"]["serial"] == "SN-A"));
    assert_eq!(doc["skipped_lines"], 0);
}

#[test]
fn a_torn_event_log_still_prints_and_a_missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let log = dir.path().join("events/events.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"at\":17689");
    std::fs::write(&log, bytes).unwrap();
    let text = stdout(&history(&["--state-dir", dir.path().to_str().unwrap()]));
    assert!(text.contains("1 unreadable event line(s)"), "{text}");
    assert!(text.contains("SN-A"));
    // Reading changed nothing: the torn line stays for the daemon to repair.
    assert!(std::fs::read(&log).unwrap().ends_with(b"{\"at\":17689"));

    let out = history(&["--state-dir", dir.path().join("nope").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no GX state directory"));
}
