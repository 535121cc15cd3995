//! Crash tests of the journal: every write cut at every step, torn and garbage files.

use super::durable::{AtomicWrite, WriteStep, temp_name};
use super::*;
use crate::job::{JobEvent, JobFailure, JobState, Percent};
use crate::journal::recover::RecoveryAction;
use crate::staging::Sha256Digest;
use proptest::prelude::*;

fn battery(serial: &str) -> BatteryIdentity {
    BatteryIdentity {
        manufacturer: "Aurora".into(),
        model: "AX-5".into(),
        serial: serial.into(),
    }
}

fn package(tag: u8) -> UploadAnnouncement {
    UploadAnnouncement::new(format!("fw-{tag}.bin"), 4096, 1024, Sha256Digest([tag; 32])).unwrap()
}

fn v(display: &str) -> VersionInfo {
    VersionInfo {
        raw: display.bytes().collect(),
        display: display.into(),
    }
}

fn new_job(journal: &mut Journal, serial: &str) -> JobId {
    journal
        .create(battery(serial), package(1), Some(v("1.0")), UnixMillis(10))
        .unwrap()
        .id()
}

fn advance(journal: &mut Journal, id: JobId, events: Vec<JobEvent>) {
    for e in events {
        journal
            .update(id, |r| r.apply(e, UnixMillis(20)))
            .unwrap()
            .unwrap();
    }
}

fn upload(p: u8) -> JobEvent {
    JobEvent::UploadProgress(Percent::new(p).unwrap())
}

fn start() -> JobEvent {
    JobEvent::TransferStarted { target: v("2.0") }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(TEMP_SUFFIX))
        .collect();
    names.sort();
    names
}

#[test]
fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let a = new_job(&mut journal, "A");
    let b = new_job(&mut journal, "B");
    advance(&mut journal, a, vec![upload(50), start()]);
    journal
        .update(a, |r| r.set_checkpoint(vec![1, 2, 3], UnixMillis(30)))
        .unwrap()
        .unwrap();
    let before: Vec<JobRecord> = journal.records().cloned().collect();
    drop(journal);
    let (journal, report) = Journal::open(dir.path()).unwrap();
    assert_eq!(report, LoadReport::default());
    let after: Vec<JobRecord> = journal.records().cloned().collect();
    assert_eq!(after, before);
    assert_eq!(journal.get(a).unwrap().checkpoint(), &[1, 2, 3]);
    assert_eq!(journal.get(b).unwrap().state(), JobState::Uploading);
}

/// A power cut after every step of a record replacement: the journal opens, holds the old
/// record before the rename and the new one after, and leaves no temp file behind.
#[test]
fn a_write_cut_at_every_step_keeps_the_old_or_the_new_record() {
    for steps in 0..=WriteStep::ALL.len() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let id = new_job(&mut journal, "A");
        advance(&mut journal, id, vec![upload(40)]);
        let old = journal.get(id).unwrap().clone();
        let mut new = old.clone();
        new.apply(start(), UnixMillis(99)).unwrap();
        let bytes = encode_record(&new).unwrap();
        let mut write = AtomicWrite::new(dir.path(), &record_name(id), &bytes);
        for _ in 0..steps {
            write.step().unwrap();
        }
        drop(write);
        drop(journal);

        let (mut journal, report) = Journal::open(dir.path()).unwrap();
        assert!(report.bad_records.is_empty(), "steps {steps}: {report:?}");
        let expected = if steps >= 4 { &new } else { &old };
        assert_eq!(journal.get(id), Some(expected), "after {steps} steps");
        assert_eq!(
            report.temp_files.len(),
            usize::from((1..4).contains(&steps)),
            "steps {steps}"
        );
        assert!(leftovers(dir.path()).is_empty());
        let (recovered, errors) = journal.recover(UnixMillis(100));
        assert!(errors.is_empty());
        assert_eq!(recovered.len(), 1);
    }
}

/// The temp file of an interrupted write cut at every length, or full of garbage: ignored.
#[test]
fn torn_or_garbage_temp_files_are_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let id = new_job(&mut journal, "A");
    let committed = journal.get(id).unwrap().clone();
    let mut next = committed.clone();
    next.apply(upload(70), UnixMillis(50)).unwrap();
    let full = encode_record(&next).unwrap();
    drop(journal);
    let mut cuts: Vec<Vec<u8>> = (0..full.len())
        .step_by(7)
        .map(|n| full[..n].to_vec())
        .collect();
    cuts.push(b"\x00\xff garbage {{{".to_vec());
    for cut in cuts {
        fs::write(dir.path().join(temp_name(&record_name(id))), &cut).unwrap();
        let (journal, report) = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.get(id), Some(&committed));
        assert_eq!(report.temp_files.len(), 1);
        assert!(report.bad_records.is_empty());
        assert!(leftovers(dir.path()).is_empty());
    }
}

/// A committed file damaged afterwards (truncated at every length, garbage, oversized,
/// another job's content): quarantined and reported; every other record still loads and
/// the damaged job's id is never handed out again.
#[test]
fn damaged_record_files_are_quarantined_without_losing_others() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let good = new_job(&mut journal, "GOOD");
    let bad = new_job(&mut journal, "BAD");
    let good_record = journal.get(good).unwrap().clone();
    let bad_bytes = fs::read(dir.path().join(record_name(bad))).unwrap();
    let good_bytes = fs::read(dir.path().join(record_name(good))).unwrap();
    drop(journal);

    let mut damages: Vec<Vec<u8>> = (0..bad_bytes.len())
        .step_by(5)
        .map(|n| bad_bytes[..n].to_vec())
        .collect();
    damages.push(b"\xde\xad\xbe\xef".to_vec());
    damages.push(vec![b' '; MAX_RECORD_FILE as usize + 1]);
    damages.push(good_bytes.clone());
    damages.push(
        String::from_utf8(bad_bytes.clone())
            .unwrap()
            .replace("\"format\":1", "\"format\":2")
            .into_bytes(),
    );
    damages.push(
        String::from_utf8(bad_bytes.clone())
            .unwrap()
            .replace("\"state\":\"uploading\"", "\"state\":\"failed\"")
            .into_bytes(),
    );
    for damage in damages {
        let path = dir.path().join(record_name(bad));
        fs::write(&path, &damage).unwrap();
        let (mut journal, report) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            report.bad_records.len(),
            1,
            "{:?}",
            String::from_utf8_lossy(&damage)
        );
        let quarantined = report.bad_records[0].quarantined_to.clone().unwrap();
        assert!(quarantined.exists() && !path.exists());
        assert_eq!(journal.get(good), Some(&good_record));
        assert_eq!(journal.get(bad), None);
        let next = new_job(&mut journal, "NEXT");
        assert!(next > bad);
        journal.remove(next).unwrap();
        fs::remove_file(quarantined).unwrap();
    }
}

#[test]
fn ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let a = new_job(&mut journal, "A");
    journal.remove(a).unwrap();
    drop(journal);
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let b = new_job(&mut journal, "B");
    assert!(b > a);
    // A lost or garbled sequence file: ids continue after the records on disk.
    fs::write(dir.path().join(SEQUENCE_FILE), b"garbage").unwrap();
    drop(journal);
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    assert!(new_job(&mut journal, "C") > b);
}

#[test]
fn recovery_resumes_uploads_and_checkpointed_transfers_and_fails_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let uploading = new_job(&mut journal, "U");
    advance(&mut journal, uploading, vec![upload(30)]);
    let resumable = new_job(&mut journal, "T1");
    advance(&mut journal, resumable, vec![upload(100), start()]);
    journal
        .update(resumable, |r| {
            r.set_checkpoint(vec![0xAB; 8], UnixMillis(40))
        })
        .unwrap()
        .unwrap();
    let no_checkpoint = new_job(&mut journal, "T2");
    advance(&mut journal, no_checkpoint, vec![start()]);
    let installing = new_job(&mut journal, "I");
    advance(
        &mut journal,
        installing,
        vec![start(), JobEvent::InstallStarted],
    );
    let restarting = new_job(&mut journal, "R");
    advance(
        &mut journal,
        restarting,
        vec![start(), JobEvent::RestartStarted],
    );
    let verifying = new_job(&mut journal, "V");
    advance(
        &mut journal,
        verifying,
        vec![start(), JobEvent::VerifyStarted],
    );
    let completed = new_job(&mut journal, "C");
    advance(
        &mut journal,
        completed,
        vec![
            start(),
            JobEvent::VerifyStarted,
            JobEvent::Completed {
                version_after: v("2.0"),
            },
        ],
    );
    let failed = new_job(&mut journal, "F");
    advance(
        &mut journal,
        failed,
        vec![JobEvent::Failed(JobFailure {
            code: 705,
            message: "digest".into(),
            at: UnixMillis(20),
            battery_state: None,
        })],
    );
    let ended_before: Vec<JobRecord> = [completed, failed]
        .iter()
        .map(|id| journal.get(*id).unwrap().clone())
        .collect();
    drop(journal);

    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let (recovered, errors) = journal.recover(UnixMillis(1_000));
    assert!(errors.is_empty());
    let action = |id: JobId| {
        recovered
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.action.clone())
    };
    assert_eq!(action(uploading), Some(RecoveryAction::ContinueUpload));
    assert_eq!(
        action(resumable),
        Some(RecoveryAction::ResumeTransfer {
            checkpoint: vec![0xAB; 8]
        })
    );
    for (id, state) in [
        (no_checkpoint, JobState::Transferring),
        (installing, JobState::Installing),
        (restarting, JobState::Restarting),
        (verifying, JobState::Verifying),
    ] {
        assert_eq!(
            action(id),
            Some(RecoveryAction::Failed { interrupted: state })
        );
        let record = journal.get(id).unwrap();
        assert_eq!(record.state(), JobState::Failed);
        assert_eq!(record.failure().unwrap().code, 740);
        assert_eq!(record.failure().unwrap().at, UnixMillis(1_000));
    }
    assert_eq!(action(completed), None);
    assert_eq!(action(failed), None);
    assert_eq!(recovered.len(), 6);
    drop(journal);

    // The failures were committed: a second start finds nothing stuck.
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    for id in [no_checkpoint, installing, restarting, verifying] {
        assert_eq!(journal.get(id).unwrap().state(), JobState::Failed);
    }
    for record in &ended_before {
        assert_eq!(journal.get(record.id()), Some(record));
    }
    let (again, _) = journal.recover(UnixMillis(2_000));
    let ids: Vec<JobId> = again.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![uploading, resumable]);
}

#[test]
fn read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let id = new_job(&mut journal, "A");
    drop(journal);
    let tmp = dir.path().join(temp_name(&record_name(id)));
    fs::write(&tmp, b"half").unwrap();
    let junk = dir.path().join("job-77.json");
    fs::write(&junk, b"junk").unwrap();
    let (journal, report) = Journal::read_only(dir.path()).unwrap();
    assert!(journal.get(id).is_some());
    assert_eq!(report.temp_files, vec![tmp.clone()]);
    assert_eq!(report.bad_records[0].quarantined_to, None);
    assert!(tmp.exists() && junk.exists());
    let (empty, _) = Journal::read_only(&dir.path().join("missing")).unwrap();
    assert_eq!(empty.records().count(), 0);
}

#[test]
fn pruning_keeps_the_newest_ended_jobs_and_all_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let mut ended = Vec::new();
    for i in 0..5u64 {
        let id = new_job(&mut journal, "A");
        journal
            .update(id, |r| {
                r.apply(
                    JobEvent::Failed(JobFailure {
                        code: 750,
                        message: "timeout".into(),
                        at: UnixMillis(100 + i),
                        battery_state: None,
                    }),
                    UnixMillis(100 + i),
                )
            })
            .unwrap()
            .unwrap();
        ended.push(id);
    }
    let running = new_job(&mut journal, "B");
    let removed = journal.prune_ended(2).unwrap();
    assert_eq!(removed, ended[..3].to_vec());
    assert!(journal.get(running).is_some());
    assert!(journal.get(ended[4]).is_some());
    drop(journal);
    let (journal, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.records().count(), 3);
}

/// Completed jobs are pruned beyond the newest `keep` too, but the latest firmware change
/// of every battery stays however old it is.
#[test]
fn pruning_keeps_the_newest_completed_jobs_and_each_batterys_latest_change() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let complete = |journal: &mut Journal, serial: &str, at: u64| {
        let id = new_job(journal, serial);
        for e in [
            start(),
            JobEvent::VerifyStarted,
            JobEvent::Completed {
                version_after: v("2.0"),
            },
        ] {
            journal
                .update(id, |r| r.apply(e, UnixMillis(at)))
                .unwrap()
                .unwrap();
        }
        id
    };
    let old = complete(&mut journal, "OLD", 100);
    let a: Vec<JobId> = [200, 210, 220, 230]
        .into_iter()
        .map(|at| complete(&mut journal, "A", at))
        .collect();
    let removed = journal.prune_ended(2).unwrap();
    assert_eq!(removed, vec![a[0], a[1]]);
    assert!(
        journal.get(old).is_some(),
        "battery OLD's only change stays"
    );
    assert!(journal.get(a[2]).is_some() && journal.get(a[3]).is_some());
}

/// A record may be as large as [`MAX_RECORD_FILE`]: a 2 KiB record and one of exactly the
/// limit load; one byte more is set aside as corrupt.
#[test]
fn records_up_to_the_size_limit_load_and_larger_ones_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let id = new_job(&mut journal, "BIG");
    let record = journal.get(id).unwrap().clone();
    drop(journal);
    let path = dir.path().join(record_name(id));
    let bytes = fs::read(&path).unwrap();
    let padded = |len: usize| {
        let mut b = bytes.clone();
        b.resize(len, b' ');
        b
    };
    for len in [2 * 1024 + 1, 3 * 1024, MAX_RECORD_FILE as usize] {
        fs::write(&path, padded(len)).unwrap();
        let (journal, report) = Journal::open(dir.path()).unwrap();
        assert_eq!(report, LoadReport::default(), "{len} bytes");
        assert_eq!(journal.get(id), Some(&record), "{len} bytes");
    }
    fs::write(&path, padded(MAX_RECORD_FILE as usize + 1)).unwrap();
    let (journal, report) = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.get(id), None);
    assert_eq!(report.bad_records.len(), 1);
    assert_eq!(
        report.bad_records[0].reason,
        format!("larger than {MAX_RECORD_FILE} bytes")
    );
}

/// Only `job-<digits>.json` names a record: a stray file such as `job-+5.json` is
/// neither loaded as job 5 nor quarantined.
#[test]
fn only_decimal_digits_name_a_record() {
    assert_eq!(id_of("job-5.json"), Some(JobId(5)));
    assert_eq!(id_of("job-12.json.corrupt"), Some(JobId(12)));
    for name in [
        "job-+5.json",
        "job--5.json",
        "job-5a.json",
        "job- 5.json",
        "job-.json",
        "job-5.txt",
        "jobs-5.json",
    ] {
        assert_eq!(id_of(name), None, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    for _ in 0..5 {
        new_job(&mut journal, "A");
    }
    let five = fs::read(dir.path().join(record_name(JobId(5)))).unwrap();
    for id in 1..=5 {
        journal.remove(JobId(id)).unwrap();
    }
    drop(journal);
    fs::remove_file(dir.path().join(SEQUENCE_FILE)).unwrap();
    let stray = dir.path().join("job-+5.json");
    fs::write(&stray, &five).unwrap();
    let (mut journal, report) = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.records().count(), 0);
    assert_eq!(report, LoadReport::default());
    assert!(stray.exists());
    assert_eq!(
        new_job(&mut journal, "B"),
        JobId(1),
        "the stray file takes no id"
    );
}

/// A record that cannot be deleted is an error, and the journal keeps it: it would come
/// back after a restart. A record already gone is not.
#[test]
fn a_failed_delete_is_reported_and_keeps_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let id = new_job(&mut journal, "A");
    // A directory in the record's place cannot be removed as a file.
    let path = dir.path().join(record_name(id));
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"x").unwrap();
    match journal.remove(id) {
        Err(JournalError::Io { op, path: p, .. }) => assert_eq!((op, p), ("delete", path.clone())),
        other => panic!("expected a delete error, got {other:?}"),
    }
    assert!(journal.get(id).is_some());
    fs::remove_dir_all(&path).unwrap();
    journal.remove(id).unwrap();
    assert_eq!(journal.get(id), None);
    journal.remove(id).unwrap();
}

/// Quarantining a record is made durable with a sync of the directory; an open that
/// quarantines nothing, or a read-only one, syncs nothing.
#[test]
fn a_repair_syncs_the_directory_and_only_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    new_job(&mut journal, "A");
    drop(journal);
    durable::dir_syncs::take();
    Journal::open(dir.path()).unwrap();
    assert_eq!(durable::dir_syncs::take(), 0, "nothing to repair");
    fs::write(dir.path().join("job-9.json"), b"junk").unwrap();
    let (_, report) = Journal::read_only(dir.path()).unwrap();
    assert_eq!(report.bad_records.len(), 1);
    assert_eq!(durable::dir_syncs::take(), 0, "read-only");
    let (_, report) = Journal::open(dir.path()).unwrap();
    assert_eq!(report.bad_records.len(), 1);
    assert_eq!(durable::dir_syncs::take(), 1, "after the quarantine");
    // A temp file alone is removed without a sync: the record it would have replaced is
    // still whole.
    fs::write(dir.path().join(temp_name("job-1.json")), b"half").unwrap();
    let (_, report) = Journal::open(dir.path()).unwrap();
    assert_eq!(report.temp_files.len(), 1);
    assert_eq!(durable::dir_syncs::take(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes a record file holds, opening never panics or fails, and a good record
    /// beside it still loads.
    #[test]
    fn hostile_record_files_never_break_opening(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let good = new_job(&mut journal, "A");
        drop(journal);
        fs::write(dir.path().join("job-9.json"), &bytes).unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        prop_assert!(journal.get(good).is_some());
    }
}
