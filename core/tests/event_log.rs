//! The event log on a real directory: round trip, torn lines after a crash, garbage,
//! rotation bounds, per-battery history.

use bmsfw_core::UnixMillis;
use bmsfw_core::events::log::{CURRENT_FILE, KEPT_FILE, KEPT_PER_BATTERY, rotated_file};
use bmsfw_core::events::{EventKind, EventLog, EventLogConfig, EventRecord, History, MAX_LINE};
use bmsfw_core::job::{BatteryIdentity, JobId, JobState};
use proptest::prelude::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

fn battery(serial: &str) -> BatteryIdentity {
    BatteryIdentity {
        manufacturer: "Aurora".into(),
        model: "AX-5".into(),
        serial: serial.into(),
    }
}

fn record(n: u64, serial: &str) -> EventRecord {
    EventRecord {
        at: UnixMillis(1_700_000_000_000 + n),
        job: JobId(n),
        battery: battery(serial),
        event: EventKind::Progress {
            state: JobState::Uploading,
            percent: (n % 10 * 10) as u8,
        },
    }
}

fn append_raw(dir: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(dir.join(CURRENT_FILE))
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn appended_events_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    let written: Vec<EventRecord> = (0..20)
        .map(|n| record(n, if n % 2 == 0 { "A" } else { "B" }))
        .collect();
    for r in &written {
        log.append(r).unwrap();
    }
    let history = History::read(dir.path()).unwrap();
    assert_eq!(history.events, written);
    assert!(history.skipped.is_empty());
    let a: Vec<u64> = history.for_battery("A").map(|e| e.job.0).collect();
    assert_eq!(a, (0..20).step_by(2).collect::<Vec<_>>());
    assert_eq!(
        History::read(&dir.path().join("none")).unwrap(),
        History::default()
    );
}

/// A crash in the middle of an append leaves a torn last line: the reader skips it with a
/// warning, and the writer cuts it off on open so the next line starts clean.
#[test]
fn a_torn_last_line_is_ignored_then_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    for n in 0..3 {
        log.append(&record(n, "A")).unwrap();
    }
    drop(log);
    let full = serde_json::to_string(&record(3, "A")).unwrap();
    // Cut at every length, including a complete object that lacks only its newline.
    for cut in (1..=full.len()).step_by(11).chain([full.len()]) {
        let path = dir.path().join(CURRENT_FILE);
        let intact = fs::read(&path).unwrap();
        append_raw(dir.path(), &full.as_bytes()[..cut]);
        let history = History::read(dir.path()).unwrap();
        assert_eq!(history.events.len(), 3, "cut at {cut}");
        assert_eq!(history.skipped.len(), 1);
        assert!(history.skipped[0].reason.contains("torn"));
        assert_eq!(history.skipped[0].line, 4);

        let log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
        drop(log);
        assert_eq!(fs::read(&path).unwrap(), intact, "cut at {cut}");
    }
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    log.append(&record(4, "A")).unwrap();
    let history = History::read(dir.path()).unwrap();
    assert_eq!(history.events.len(), 4);
    assert_eq!(history.events[3], record(4, "A"));
    assert!(history.skipped.is_empty());
}

#[test]
fn a_torn_tail_longer_than_one_block_is_cut_back_to_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    log.append(&record(1, "A")).unwrap();
    drop(log);
    append_raw(dir.path(), &vec![b'x'; 10_000]);
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    log.append(&record(2, "A")).unwrap();
    let history = History::read(dir.path()).unwrap();
    assert_eq!(history.events, vec![record(1, "A"), record(2, "A")]);

    // A file that is one torn line and nothing else ends up empty.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CURRENT_FILE), vec![b'{'; 9000]).unwrap();
    drop(EventLog::open(dir.path(), EventLogConfig::default()).unwrap());
    assert_eq!(fs::read(dir.path().join(CURRENT_FILE)).unwrap().len(), 0);
}

#[test]
fn garbage_and_overlong_lines_in_the_middle_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    log.append(&record(1, "A")).unwrap();
    drop(log);
    append_raw(dir.path(), b"\x00\xffnot json\n");
    append_raw(dir.path(), b"{\"at\":1,\"job\":1,\"battery\":{\"manufacturer\":\"a\",\"model\":\"b\",\"serial\":\"c\"},\"event\":{\"type\":\"from_the_future\"}}\n");
    let mut long = vec![b'a'; MAX_LINE + 10];
    long.push(b'\n');
    append_raw(dir.path(), &long);
    append_raw(dir.path(), b"\n");
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    log.append(&record(2, "A")).unwrap();
    let history = History::read(dir.path()).unwrap();
    assert_eq!(history.events, vec![record(1, "A"), record(2, "A")]);
    let lines: Vec<usize> = history.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![2, 3, 4]);
    assert!(history.skipped[2].reason.contains("longer than"));
}

#[test]
fn rotation_bounds_the_log_and_keeps_the_newest_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = EventLogConfig {
        max_file_bytes: 2_000,
        max_rotated_files: 2,
    };
    let mut log = EventLog::open(dir.path(), config).unwrap();
    for n in 0..200 {
        log.append(&record(n, "A")).unwrap();
    }
    drop(log);
    let mut total = 0;
    for entry in fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == KEPT_FILE {
            continue;
        }
        let len = entry.metadata().unwrap().len();
        assert!(len <= config.max_file_bytes);
        total += len;
    }
    assert!(total <= 3 * config.max_file_bytes);
    // Updates not ended yet moved aside before rotation deleted them: the newest few of the
    // battery, no more.
    let kept = History::read(dir.path()).unwrap();
    let kept_jobs: std::collections::BTreeSet<u64> = kept
        .events
        .iter()
        .map(|e| e.job.0)
        .filter(|j| {
            fs::read_to_string(dir.path().join(KEPT_FILE))
                .unwrap_or_default()
                .contains(&format!("\"job\":{j},"))
        })
        .collect();
    assert!(kept_jobs.len() <= KEPT_PER_BATTERY, "{kept_jobs:?}");
    assert!(dir.path().join(rotated_file(2)).exists());
    assert!(!dir.path().join(rotated_file(3)).exists());
    let history = History::read(dir.path()).unwrap();
    let jobs: Vec<u64> = history.events.iter().map(|e| e.job.0).collect();
    assert_eq!(*jobs.last().unwrap(), 199);
    assert!(jobs.len() > 20, "kept {}", jobs.len());
    assert!(
        jobs.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous and ordered"
    );

    // Reopening continues the same bounded log.
    let mut log = EventLog::open(dir.path(), config).unwrap();
    log.append(&record(200, "A")).unwrap();
    let history = History::read(dir.path()).unwrap();
    assert_eq!(history.events.last().unwrap().job.0, 200);
}

#[test]
fn an_oversized_event_is_refused_and_the_log_stays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
    let mut big = record(1, "A");
    big.event = EventKind::Failed {
        code: 900,
        name: "VENDOR_SPECIFIC".into(),
        message: "x".repeat(MAX_LINE),
    };
    assert!(log.append(&big).is_err());
    log.append(&record(2, "A")).unwrap();
    assert_eq!(
        History::read(dir.path()).unwrap().events,
        vec![record(2, "A")]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes the log files hold, reading never panics and every intact line
    /// written afterwards reads back.
    #[test]
    fn hostile_log_files_never_break_reading(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CURRENT_FILE), &bytes).unwrap();
        fs::write(dir.path().join(rotated_file(1)), &bytes).unwrap();
        let _ = History::read(dir.path()).unwrap();
        let mut log = EventLog::open(dir.path(), EventLogConfig::default()).unwrap();
        log.append(&record(42, "Z")).unwrap();
        let history = History::read(dir.path()).unwrap();
        prop_assert_eq!(history.events.last(), Some(&record(42, "Z")));
    }
}
