//! Retention: a flood of failed uploads never prunes a real firmware change from the job
//! history or the event log. Checked through the job store the engine writes with, and
//! through `bmsfw history` as an installer reads it.

use bmsfw_core::UnixMillis;
use bmsfw_core::events::{EventKind, EventLogConfig, History};
use bmsfw_core::job::{
    BatteryIdentity, JobEvent, JobFailure, JobId, JobState, JobStore, Percent, StateDir,
    VersionInfo,
};
use bmsfw_core::staging::{Sha256Digest, UploadAnnouncement};
use std::path::Path;
use std::process::Command;

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

fn ann(n: u64) -> UploadAnnouncement {
    UploadAnnouncement::new(
        format!("fw-{n}.bin"),
        4096,
        1024,
        Sha256Digest([n as u8; 32]),
    )
    .unwrap()
}

/// A small log (8 KiB files, 2 rotated) so the flood rotates it many times.
fn small_log() -> EventLogConfig {
    EventLogConfig {
        max_file_bytes: 8 * 1024,
        max_rotated_files: 2,
    }
}

fn complete(store: &mut JobStore, serial: &str, n: u64, t: u64) -> JobId {
    let id = store
        .create(
            battery(serial),
            ann(n),
            Some(v("v4.15", [4, 15])),
            UnixMillis(t),
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
        store.apply(id, e, UnixMillis(t + 10)).unwrap();
    }
    id
}

fn fail(store: &mut JobStore, serial: &str, n: u64, t: u64) -> JobId {
    let id = store
        .create(battery(serial), ann(n), None, UnixMillis(t))
        .unwrap();
    let failure = JobFailure {
        code: 718,
        message: "the firmware file did not reach the GX device within 3600 s".into(),
        at: UnixMillis(t + 1),
        battery_state: None,
    };
    store
        .apply(id, JobEvent::Failed(failure), UnixMillis(t + 1))
        .unwrap();
    id
}

fn completed_in_log(dir: &Path) -> Vec<JobId> {
    History::read(&StateDir::new(dir).events())
        .unwrap()
        .events
        .iter()
        .filter(|e| matches!(e.event, EventKind::Completed { .. }))
        .map(|e| e.job)
        .collect()
}

#[test]
fn a_flood_of_failed_attempts_never_prunes_a_firmware_change() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let t0 = 1_768_896_900_000;
    let (mut store, _) = JobStore::open(&state, small_log(), UnixMillis(t0)).unwrap();
    store.set_keep_ended(4);
    let changed_a = complete(&mut store, "SN-A", 1, t0);
    let changed_b = complete(&mut store, "SN-B", 2, t0 + 100);
    // Then hundreds of failed attempts, far beyond what the journal and the log keep.
    let mut last_failed = JobId(0);
    for n in 0..400 {
        last_failed = fail(&mut store, "SN-A", 10 + n, t0 + 1_000 + n * 10);
    }
    let kept: Vec<JobId> = store.jobs().map(|r| r.id()).collect();
    // The journal: the firmware changes stay, the failures are bounded.
    assert!(
        kept.contains(&changed_a) && kept.contains(&changed_b),
        "{kept:?}"
    );
    assert!(kept.contains(&last_failed));
    let failed = store
        .jobs()
        .filter(|r| r.state() == JobState::Failed)
        .count();
    // Pruned when a job is created: the bound, plus the one that failed since.
    assert_eq!(failed, 4 + 1);
    drop(store);
    // The log rotated many times and still has both completions.
    let events = std::fs::read_dir(state.events()).unwrap().count();
    assert!(events <= 4, "{events} files");
    let history = History::read(&state.events()).unwrap();
    assert!(history.skipped.is_empty(), "{:?}", history.skipped);
    let completed = completed_in_log(dir.path());
    assert_eq!(completed, vec![changed_a, changed_b]);
    // With their initiation and versions, as the portal and the installer read them.
    assert!(history.events.iter().any(|e| e.job == changed_a
        && matches!(&e.event, EventKind::Initiated { version_before: Some(b), .. } if b.display == "v4.15")));
    // The oldest failures did go: the log is bounded.
    assert!(
        !history.events.iter().any(|e| e.job == JobId(3)),
        "the first failure is still there"
    );

    // `bmsfw history`, run from elsewhere, shows both firmware changes.
    let out = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["history", "--state-dir", dir.path().to_str().unwrap()])
        .current_dir(tempfile::tempdir().unwrap().path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for (job, serial) in [(changed_a, "SN-A"), (changed_b, "SN-B")] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", job.0)) && l.contains(serial))
            .unwrap_or_else(|| panic!("no job row for {job}:\n{text}"));
        assert!(
            row.contains("Completed") && row.contains("v4.15 [040F] -> v5.00 [0500]"),
            "{row}"
        );
        assert!(
            text.lines().any(|l| l.contains(serial)
                && l.contains(&format!(" {} ", job.0))
                && l.contains("update completed")),
            "no completion event of {job}:\n{text}"
        );
    }
}

#[test]
fn each_battery_keeps_its_newest_changes_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let t0 = 1_768_896_900_000;
    let (mut store, _) = JobStore::open(&state, small_log(), UnixMillis(t0)).unwrap();
    store.set_keep_ended(2);
    let mut changes = Vec::new();
    for n in 0..30 {
        changes.push(complete(&mut store, "SN-A", n, t0 + n * 1000));
        for k in 0..10 {
            fail(
                &mut store,
                "SN-A",
                100 + n * 10 + k,
                t0 + n * 1000 + 100 + k,
            );
        }
    }
    // The journal keeps the newest completed jobs up to its bound, the latest among them.
    let completed: Vec<JobId> = store
        .jobs()
        .filter(|r| r.state() == JobState::Completed)
        .map(|r| r.id())
        .collect();
    assert_eq!(completed, changes[changes.len() - 2..].to_vec());
    drop(store);
    // The log keeps at least the newest KEPT_PER_BATTERY changes, newest included, and
    // stays bounded.
    let logged = completed_in_log(dir.path());
    let newest = &changes[changes.len() - bmsfw_core::events::log::KEPT_PER_BATTERY..];
    for job in newest {
        assert!(logged.contains(job), "{job} missing from {logged:?}");
    }
    let total: u64 = std::fs::read_dir(state.events())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 4 * 8 * 1024, "{total} bytes");
}
