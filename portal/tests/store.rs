//! The portal's store on its own: migrations from an older layout, files that are not a
//! portal database, and the retention rule of uploaded files.

use bmsfw_portal::StoredFile;
use bmsfw_portal::auth::AccessLevel;
use bmsfw_portal::store::{
    RetentionRule, SCHEMA_VERSION, Store, StoreError, StoreOptions, UpdateRecord, files_dir,
};
use bmsfw_portal::upload::{UploadPhase, UploadStats};
use bmsfw_portal::vrm::UpdateView;
use bmsfw_vrm_wire::command::UpdateCommand;
use bmsfw_vrm_wire::{
    Acknowledgement, CommandId, FileName, JobState, PortalId, Serial, VersionPolicy,
};
use rusqlite::Connection;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const PORTAL: &str = "c0619ab1e2f3";
const DAY_MS: u64 = 24 * 3600 * 1000;

fn now_ms() -> u64 {
    bmsfw_portal::presence::now_ms()
}

fn portal() -> PortalId {
    PortalId::new(PORTAL).unwrap()
}

/// A file of `len` bytes whose content depends on `seed`.
fn file(name: &str, seed: u8, len: usize) -> StoredFile {
    let data = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    StoredFile::new(FileName::new(name).unwrap(), data)
}

/// The record of an update of battery `instance` with `file`, requested at `at`.
fn record(id: &str, instance: u32, file: &StoredFile, at: u64, finished: bool) -> UpdateRecord {
    let view = UpdateView {
        commandid: CommandId::new(id).unwrap(),
        portal_id: portal(),
        instance,
        serial: format!("SN-{instance}"),
        user: "installer".into(),
        file_name: file.name.as_str().into(),
        file_size: file.data.len() as u64,
        job: Some(7),
        state: Some(if finished {
            JobState::Completed
        } else {
            JobState::Transferring
        }),
        states_seen: vec![JobState::Uploading],
        percent: 0,
        error_code: None,
        error: None,
        version_before: None,
        version_target: None,
        version_after: None,
        requested_at: at,
        finished,
        upload_phase: UploadPhase::Received,
        upload: UploadStats::default(),
    };
    let command = UpdateCommand {
        battery: Serial::new(&view.serial).unwrap(),
        file_name: file.name.clone(),
        size: file.data.len() as u64,
        chunk_size: 1024,
        sha256: file.sha256,
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        signature: None,
    };
    UpdateRecord {
        view,
        command,
        last_msgnr: 3,
        archived: finished,
    }
}

fn on_disk(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn count(db: &Path, table: &str) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The layout of version 1, written here by hand as that version created it.
const V1: &str = "
    CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL, description TEXT NOT NULL
    );
    INSERT INTO schema_migrations VALUES (1, 1000, 'the first layout');
    CREATE TABLE sessions (
        token_sha256 BLOB PRIMARY KEY, user TEXT NOT NULL, access TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE installations (
        portal_id TEXT PRIMARY KEY, name TEXT NOT NULL, last_contact INTEGER
    );
    CREATE TABLE files (
        sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, stored_at INTEGER NOT NULL
    );
    CREATE TABLE pending_files (
        user TEXT NOT NULL, portal_id TEXT NOT NULL, instance INTEGER NOT NULL,
        name TEXT NOT NULL, sha256 TEXT NOT NULL REFERENCES files(sha256),
        uploaded_at INTEGER NOT NULL, PRIMARY KEY (user, portal_id, instance)
    );
    CREATE TABLE updates (
        commandid TEXT PRIMARY KEY, portal_id TEXT NOT NULL, instance INTEGER NOT NULL,
        serial TEXT NOT NULL, user TEXT NOT NULL, file_name TEXT NOT NULL,
        sha256 TEXT NOT NULL, requested_at INTEGER NOT NULL, job INTEGER, state TEXT,
        finished INTEGER NOT NULL, record TEXT NOT NULL
    );
    CREATE INDEX updates_by_battery ON updates (portal_id, instance, requested_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, portal_id TEXT NOT NULL, serial TEXT NOT NULL, job INTEGER,
        at INTEGER NOT NULL, digest BLOB NOT NULL, event TEXT NOT NULL,
        received_at INTEGER NOT NULL, UNIQUE (portal_id, serial, digest)
    );
    CREATE INDEX events_by_battery ON events (portal_id, serial, at);
";

#[tokio::test]
async fn a_version_1_database_is_upgraded_and_keeps_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("portal.sqlite");
    let files = files_dir(&db);
    std::fs::create_dir_all(&files).unwrap();
    let pending = file("waiting.bin", 1, 3000);
    let used = file("used.bin", 2, 2000);
    for f in [&pending, &used] {
        std::fs::write(files.join(f.sha256.to_string()), f.data.as_slice()).unwrap();
    }
    let now = now_ms();
    let update = record("u-1", 512, &used, now - 1000, true);
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(V1).unwrap();
        c.execute(
            "INSERT INTO sessions VALUES (?1, 'installer', 'full-control', ?2)",
            rusqlite::params![[7u8; 32].as_slice(), (now + 3_600_000) as i64],
        )
        .unwrap();
        c.execute(
            "INSERT INTO sessions VALUES (?1, 'installer', 'full-control', ?2)",
            rusqlite::params![[8u8; 32].as_slice(), (now - 1) as i64],
        )
        .unwrap();
        c.execute(
            "INSERT INTO installations VALUES (?1, 'Harbour', ?2)",
            rusqlite::params![PORTAL, (now - 5000) as i64],
        )
        .unwrap();
        for f in [&pending, &used] {
            c.execute(
                "INSERT INTO files VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    f.sha256.to_string(),
                    f.data.len() as i64,
                    (now - 100) as i64
                ],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO pending_files VALUES ('installer', ?1, 512, 'waiting.bin', ?2, ?3)",
            rusqlite::params![PORTAL, pending.sha256.to_string(), (now - 100) as i64],
        )
        .unwrap();
        c.execute(
            "INSERT INTO updates VALUES ('u-1', ?1, 512, 'SN-512', 'installer', 'used.bin', ?2,
             ?3, 7, 'completed', 1, ?4)",
            rusqlite::params![
                PORTAL,
                used.sha256.to_string(),
                (now - 1000) as i64,
                serde_json::to_string(&update).unwrap()
            ],
        )
        .unwrap();
        c.execute(
            "INSERT INTO events (portal_id, serial, job, at, digest, event, received_at)
             VALUES (?1, 'SN-512', 7, 5, x'01', ?2, 6)",
            rusqlite::params![
                PORTAL,
                json!({"at": 5, "job": 7, "kind": "completed", "label": "done"}).to_string()
            ],
        )
        .unwrap();
    }

    let (store, restored) = Store::open(&db).await.unwrap();
    assert_eq!(restored.migrated_from, 1);
    // Everything version 1 held is there.
    assert_eq!(restored.sessions.len(), 1, "the expired session is gone");
    assert_eq!(restored.sessions[0].token_sha256, [7u8; 32]);
    assert_eq!(restored.sessions[0].access, AccessLevel::FullControl);
    assert_eq!(restored.installations.len(), 1);
    assert_eq!(restored.installations[0].last_contact, Some(now - 5000));
    assert_eq!(restored.installations[0].devices, None);
    assert_eq!(restored.pending.len(), 1);
    assert_eq!(restored.pending[0].file.data, pending.data);
    assert_eq!(restored.updates.len(), 1);
    assert_eq!(restored.updates[0].record.view.commandid.as_str(), "u-1");
    let log = store
        .event_log(&portal(), "SN-512", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.events[0]["kind"], "completed");
    let history = store.updates_of(&portal(), 512, 10).await.unwrap();
    assert!(history[0].archived, "a finished update counts as archived");
    // What version 2 adds works.
    store.save_diagnostics(&portal(), 7, Some("SN-512"), "failure", &json!({"job": 7}));
    let d = store.diagnostics(&portal(), 7).await.unwrap().unwrap();
    assert_eq!(d.bundle["job"], 7);
    assert_eq!(d.reason, "failure");
    store.close().await;

    let c = Connection::open(&db).unwrap();
    let versions: Vec<i64> = c
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        versions,
        (1..=i64::from(SCHEMA_VERSION)).collect::<Vec<_>>()
    );
    let last_used: i64 = c
        .query_row(
            "SELECT last_used_at FROM files WHERE sha256 = ?1",
            [pending.sha256.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last_used as u64, now - 100, "taken from stored_at");
    // Opening again changes nothing.
    drop(c);
    let (store, restored) = Store::open(&db).await.unwrap();
    assert_eq!(restored.migrated_from, SCHEMA_VERSION);
    assert_eq!(restored.updates.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_portal_database_is_refused_with_its_name_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();

    // Not SQLite at all.
    let text = dir.path().join("notes.sqlite");
    std::fs::write(&text, "installer notes, not a database\n").unwrap();
    let e = Store::open(&text).await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(message.contains(&text.display().to_string()), "{message}");
    assert!(message.contains("not an SQLite database"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "installer notes, not a database\n"
    );

    // SQLite, but another program's.
    let foreign = dir.path().join("other.sqlite");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE things (x)")
        .unwrap();
    let message = Store::open(&foreign).await.unwrap_err().to_string();
    assert!(
        message.contains(&foreign.display().to_string()),
        "{message}"
    );
    assert!(message.contains("not a bmsfw portal database"), "{message}");

    // Written by a newer portal.
    let newer = dir.path().join("portal.sqlite");
    let (store, _) = Store::open(&newer).await.unwrap();
    store.close().await;
    let future = SCHEMA_VERSION + 1;
    Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations VALUES (?1, 0, 'from a newer portal')",
            [future],
        )
        .unwrap();
    let message = Store::open(&newer).await.unwrap_err().to_string();
    assert!(message.contains(&newer.display().to_string()), "{message}");
    assert!(
        message.contains(&format!(
            "schema version {future}, newer than this portal's {SCHEMA_VERSION}"
        )),
        "{message}"
    );
    let versions = count(&newer, "schema_migrations");
    assert_eq!(
        versions,
        i64::from(SCHEMA_VERSION) + 1,
        "nothing was changed"
    );
}

#[tokio::test]
async fn the_retention_rule_deletes_what_it_says_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("portal.sqlite");
    let rule = RetentionRule {
        updates_per_battery: 2,
        keep_younger_than: Duration::from_millis(10 * DAY_MS),
        max_total_bytes: u64::MAX,
    };
    let options = StoreOptions {
        retention: rule,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open_with(&db, options.clone()).await.unwrap();
    let files = store.files_dir().to_path_buf();
    let now = now_ms();
    let p = portal();

    // Battery 1: four finished updates, one file each.
    let f: Vec<StoredFile> = (1..=4u8)
        .map(|i| file(&format!("b1-{i}.bin"), i, 1000 + usize::from(i)))
        .collect();
    for (i, fi) in f.iter().enumerate() {
        store.put_pending("installer", &p, 1, fi).await.unwrap();
        store.save_update(&record(&format!("u-1-{i}"), 1, fi, now + i as u64, true));
        store.drop_pending("installer", &p, 1);
    }
    // Battery 2: an update still running.
    let running = file("b2.bin", 20, 1500);
    store
        .put_pending("installer", &p, 2, &running)
        .await
        .unwrap();
    store.save_update(&record("u-2", 2, &running, now, false));
    store.drop_pending("installer", &p, 2);
    // Battery 3: a file waiting for Update.
    let waiting = file("b3.bin", 30, 1600);
    store
        .put_pending("installer", &p, 3, &waiting)
        .await
        .unwrap();
    // Battery 4: a file uploaded and then replaced by another (still waiting).
    let replaced = file("b4-old.bin", 40, 1700);
    let replacement = file("b4-new.bin", 41, 1800);
    store
        .put_pending("installer", &p, 4, &replaced)
        .await
        .unwrap();
    store
        .put_pending("installer", &p, 4, &replacement)
        .await
        .unwrap();
    // Left on disk by an interrupted store, and a file that is not the portal's.
    let orphan = file("orphan.bin", 50, 100);
    std::fs::write(
        files.join(orphan.sha256.to_string()),
        orphan.data.as_slice(),
    )
    .unwrap();
    std::fs::write(files.join("README.txt"), "kept by someone else").unwrap();
    store.save_events(
        &p,
        "SN-1",
        &[json!({"at": 1, "job": 7, "kind": "completed"})],
    );
    store.flush().await.unwrap();
    let name = |f: &StoredFile| f.sha256.to_string();

    // Everything is young: only the orphan goes.
    let r = store.apply_retention(now + 5 * DAY_MS).await.unwrap();
    assert!(r.deleted.is_empty(), "{r:?}");
    assert_eq!(r.orphans_deleted, vec![name(&orphan)]);
    let mut expected: BTreeSet<String> = f.iter().map(name).collect();
    expected.extend([
        name(&running),
        name(&waiting),
        name(&replaced),
        name(&replacement),
        "README.txt".to_owned(),
    ]);
    assert_eq!(on_disk(&files), expected);

    // Eleven days on: the two older updates of battery 1 and the replaced file go; the last
    // two updates of battery 1, the running update's file and the waiting files stay.
    let r = store.apply_retention(now + 11 * DAY_MS).await.unwrap();
    let gone: BTreeSet<String> = [name(&f[0]), name(&f[1]), name(&replaced)].into();
    assert_eq!(r.deleted, gone);
    for g in &gone {
        expected.remove(g);
    }
    assert_eq!(on_disk(&files), expected);
    assert_eq!(
        r.kept_bytes,
        [&f[2], &f[3], &running, &waiting, &replacement]
            .iter()
            .map(|f| f.data.len() as u64)
            .sum::<u64>()
    );
    // Only files: every update record, the event log and the waiting files stay.
    store.flush().await.unwrap();
    assert_eq!(count(&db, "updates"), 5);
    assert_eq!(count(&db, "events"), 1);
    assert_eq!(count(&db, "pending_files"), 2);
    assert_eq!(count(&db, "files"), 5);
    assert_eq!(store.updates_of(&p, 1, 10).await.unwrap().len(), 4);
    // A retry of the latest update of battery 1 still finds its file.
    let latest = store
        .load_file(f[3].sha256, f[3].name.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.data, f[3].data);
    store.close().await;

    // Bounded bytes: the oldest unprotected file goes first, a protected one never.
    let tight = StoreOptions {
        retention: RetentionRule {
            max_total_bytes: 1,
            ..rule
        },
        ..options
    };
    let (store, _) = Store::open_with(&db, tight).await.unwrap();
    let r = store.apply_retention(now + 11 * DAY_MS).await.unwrap();
    assert!(r.deleted.is_empty(), "deleted when the store opened");
    expected.remove(&name(&f[2]));
    assert_eq!(on_disk(&files), expected);
    assert_eq!(count(&db, "files"), 4);
    store.close().await;
}
