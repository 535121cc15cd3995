//! Jobs through their whole life on a real state directory, with restarts in between.

mod common;

use bmsfw_core::UnixMillis;
use bmsfw_core::events::{EventKind, EventLogConfig, History};
use bmsfw_core::job::{
    BatteryIdentity, JobEvent, JobFailure, JobState, JobStore, JobStoreError, Percent,
    StartupReport, StateDir, VersionInfo,
};
use bmsfw_core::journal::RecoveryAction;
use bmsfw_core::staging::{StagingArea, StagingConfig, UploadAnnouncement};
use common::{TestInspector, build_package};

fn battery(serial: &str) -> BatteryIdentity {
    BatteryIdentity {
        manufacturer: "Aurora".into(),
        model: "AX-5".into(),
        serial: serial.into(),
    }
}

fn v(raw: [u8; 2]) -> VersionInfo {
    VersionInfo {
        raw: raw.to_vec(),
        display: format!("v{}.{:02}", raw[0], raw[1]),
    }
}

fn open(state: &StateDir, now: u64) -> (JobStore, StartupReport) {
    JobStore::open(state, EventLogConfig::default(), UnixMillis(now)).unwrap()
}

fn pct(p: u8) -> Percent {
    Percent::new(p).unwrap()
}

#[test]
fn a_completed_update_leaves_its_whole_story_in_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let (mut store, report) = open(&state, 0);
    assert!(report.recovered.is_empty());
    let bytes = build_package("AX-5", [5, 0], 1000, 1);
    let ann = UploadAnnouncement::new(
        "ax5.bin".into(),
        bytes.len() as u64,
        256,
        bmsfw_core::staging::Sha256Digest::of(&bytes),
    )
    .unwrap();
    let id = store
        .create(
            battery("SN1"),
            ann.clone(),
            Some(v([4, 15])),
            UnixMillis(1_000),
        )
        .unwrap();
    for (t, p) in [(1_100, 25), (1_200, 55), (1_300, 100)] {
        store
            .apply(id, JobEvent::UploadProgress(pct(p)), UnixMillis(t))
            .unwrap();
    }
    let steps = [
        JobEvent::TransferStarted { target: v([5, 0]) },
        JobEvent::TransferProgress(pct(50)),
        JobEvent::TransferProgress(pct(100)),
        JobEvent::InstallStarted,
        JobEvent::RestartStarted,
        JobEvent::VerifyStarted,
        JobEvent::Completed {
            version_after: v([5, 0]),
        },
    ];
    for (i, step) in steps.into_iter().enumerate() {
        store.apply(id, step, UnixMillis(2_000 + i as u64)).unwrap();
    }
    let job = store.get(id).unwrap();
    assert_eq!(job.state(), JobState::Completed);
    assert_eq!(job.version_after(), Some(&v([5, 0])));

    let history = History::read(&state.events()).unwrap();
    let kinds: Vec<&EventKind> = history.for_battery("SN1").map(|e| &e.event).collect();
    use JobState::*;
    let expected = vec![
        EventKind::Initiated {
            file_name: "ax5.bin".into(),
            size: bytes.len() as u64,
            sha256: ann.sha256(),
            version_before: Some(v([4, 15])),
            targets: Vec::new(),
        },
        EventKind::Progress {
            state: Uploading,
            percent: 20,
        },
        EventKind::Progress {
            state: Uploading,
            percent: 50,
        },
        EventKind::Progress {
            state: Uploading,
            percent: 100,
        },
        EventKind::StateChanged {
            from: Uploading,
            to: Transferring,
        },
        EventKind::TargetVersion { version: v([5, 0]) },
        EventKind::Progress {
            state: Transferring,
            percent: 50,
        },
        EventKind::Progress {
            state: Transferring,
            percent: 100,
        },
        EventKind::StateChanged {
            from: Transferring,
            to: Installing,
        },
        EventKind::StateChanged {
            from: Installing,
            to: Restarting,
        },
        EventKind::StateChanged {
            from: Restarting,
            to: Verifying,
        },
        EventKind::StateChanged {
            from: Verifying,
            to: Completed,
        },
        EventKind::Completed {
            version_before: Some(v([4, 15])),
            version_after: v([5, 0]),
        },
    ];
    assert_eq!(kinds, expected.iter().collect::<Vec<_>>());
    assert_eq!(history.events[0].at, UnixMillis(1_000));
    assert!(history.for_battery("OTHER").next().is_none());

    // Nothing changes an ended job.
    let err = store
        .apply(id, JobEvent::VerifyStarted, UnixMillis(9_000))
        .unwrap_err();
    assert!(matches!(err, JobStoreError::Transition(_)));
    assert_eq!(
        History::read(&state.events()).unwrap().events.len(),
        expected.len()
    );
}

/// A GX restart with jobs in every state: uploads and checkpointed transfers resume, the
/// rest fail with 740, the event log says so, and the staged packages those jobs need stay
/// on disk for a resume or an immediate retry.
#[test]
fn restart_leaves_every_job_resumed_or_failed_and_keeps_their_packages() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let mut config = StagingConfig::new(state.staging());
    config.free_space_margin = 0;
    let staging = StagingArea::open(config.clone()).unwrap();
    let inspector = TestInspector::for_product("AX-5");

    let stage = |seed: u8| {
        let bytes = build_package("AX-5", [5, seed], 600, seed);
        let ann = UploadAnnouncement::new(
            format!("fw{seed}.bin"),
            bytes.len() as u64,
            256,
            bmsfw_core::staging::Sha256Digest::of(&bytes),
        )
        .unwrap();
        (bytes, ann)
    };
    let (up_bytes, up_ann) = stage(1);
    let (_, tr_ann) = stage(2);
    let (_, inst_ann) = stage(3);
    let (_, done_ann) = stage(4);
    for (seed, ann) in [(2u8, &tr_ann), (3, &inst_ann), (4, &done_ann)] {
        let bytes = build_package("AX-5", [5, seed], 600, seed);
        let mut upload = staging.begin(ann).unwrap();
        for i in 0..ann.chunk_count() {
            let start = ann.chunk_offset(i) as usize;
            let len = ann.chunk_len(i).unwrap() as usize;
            upload.accept_chunk(i, &bytes[start..start + len]).unwrap();
        }
        upload.finish(&inspector).unwrap();
    }
    let mut partial = staging.begin(&up_ann).unwrap();
    partial.accept_chunk(0, &up_bytes[..256]).unwrap();
    drop(partial);

    let (mut store, _) = open(&state, 0);
    let uploading = store
        .create(battery("U"), up_ann.clone(), None, UnixMillis(10))
        .unwrap();
    store
        .apply(uploading, JobEvent::UploadProgress(pct(42)), UnixMillis(11))
        .unwrap();
    let transferring = store
        .create(battery("T"), tr_ann.clone(), None, UnixMillis(10))
        .unwrap();
    store
        .apply(
            transferring,
            JobEvent::TransferStarted { target: v([5, 2]) },
            UnixMillis(12),
        )
        .unwrap();
    store
        .set_checkpoint(transferring, b"block=17".to_vec(), UnixMillis(13))
        .unwrap();
    let installing = store
        .create(battery("I"), inst_ann.clone(), None, UnixMillis(10))
        .unwrap();
    store
        .apply(
            installing,
            JobEvent::TransferStarted { target: v([5, 3]) },
            UnixMillis(12),
        )
        .unwrap();
    store
        .apply(installing, JobEvent::InstallStarted, UnixMillis(14))
        .unwrap();
    let done = store
        .create(battery("D"), done_ann.clone(), None, UnixMillis(10))
        .unwrap();
    for e in [
        JobEvent::TransferStarted { target: v([5, 4]) },
        JobEvent::VerifyStarted,
        JobEvent::Completed {
            version_after: v([5, 4]),
        },
    ] {
        store.apply(done, e, UnixMillis(15)).unwrap();
    }
    drop(store);

    // The GX restarts.
    let (store, report) = open(&state, 50_000);
    let action = |id| {
        report
            .recovered
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.action.clone())
    };
    assert_eq!(action(uploading), Some(RecoveryAction::ContinueUpload));
    assert_eq!(
        action(transferring),
        Some(RecoveryAction::ResumeTransfer {
            checkpoint: b"block=17".to_vec()
        })
    );
    assert_eq!(
        action(installing),
        Some(RecoveryAction::Failed {
            interrupted: JobState::Installing
        })
    );
    assert_eq!(action(done), None);
    let failed = store.get(installing).unwrap();
    assert_eq!(failed.failure().unwrap().code, 740);
    assert_eq!(store.get(uploading).unwrap().percent().get(), 42);

    let history = History::read(&state.events()).unwrap();
    let after_restart: Vec<_> = history
        .events
        .iter()
        .filter(|e| e.at == UnixMillis(50_000))
        .collect();
    assert!(after_restart.iter().any(|e| e.job == installing
        && matches!(&e.event, EventKind::Failed { code: 740, name, .. } if name == "GX_RESTARTED")));
    assert!(after_restart.iter().any(|e| e.job == uploading
        && matches!(
            e.event,
            EventKind::Resumed {
                state: JobState::Uploading,
                ..
            }
        )));
    assert!(after_restart.iter().any(|e| e.job == transferring
        && matches!(
            e.event,
            EventKind::Resumed {
                state: JobState::Transferring,
                ..
            }
        )));

    // Packages: the upload resumes from its first missing chunk, the resumed transfer and
    // the failed job keep theirs, the completed job's package goes.
    let staging = StagingArea::open(config).unwrap();
    let removed = staging.collect_garbage(&store.packages_in_use()).unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(!staging.is_staged(&done_ann.sha256()));
    assert_eq!(staging.begin(&up_ann).unwrap().first_missing(), Some(1));
    assert_eq!(
        staging
            .staged(&tr_ann, &inspector)
            .unwrap()
            .package()
            .version
            .display,
        "v5.02"
    );
    assert!(
        staging.staged(&inst_ann, &inspector).is_ok(),
        "retry needs no new upload"
    );
}

#[test]
fn running_jobs_are_found_per_battery_and_unknown_jobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let (mut store, _) = open(&state, 0);
    let ann = UploadAnnouncement::new(
        "a.bin".into(),
        10,
        10,
        bmsfw_core::staging::Sha256Digest([1; 32]),
    )
    .unwrap();
    let id = store
        .create(battery("SN9"), ann, None, UnixMillis(1))
        .unwrap();
    assert_eq!(store.active_for("SN9").unwrap().id(), id);
    assert!(store.active_for("SN8").is_none());
    store
        .apply(
            id,
            JobEvent::Failed(JobFailure {
                code: 753,
                message: "aborted by installer".into(),
                at: UnixMillis(2),
                battery_state: None,
            }),
            UnixMillis(2),
        )
        .unwrap();
    assert!(store.active_for("SN9").is_none());
    let unknown = bmsfw_core::job::JobId(999);
    assert!(matches!(
        store.apply(unknown, JobEvent::InstallStarted, UnixMillis(3)),
        Err(JobStoreError::UnknownJob(_))
    ));
    assert!(matches!(
        store.set_checkpoint(id, vec![1], UnixMillis(3)),
        Err(JobStoreError::Checkpoint(_))
    ));
}
