//! The portal's store: an SQLite database (the `database` of `portal.toml`) and, beside it,
//! a folder of uploaded firmware files named by their SHA-256.
//!
//! It keeps what a restart of the portal must not lose: the sessions (so a logged-in user
//! stays logged in), each installation's last contact and last device list, the files
//! waiting for Update, every update started here with its record as the GX's replies built
//! it, the event logs as received from the GX, and a diagnostics snapshot of every failed
//! update. The layout is versioned ([`schema`]); files are kept by the rule of
//! [`retention`].
//!
//! All database work runs on one thread of its own, never on the async runtime's threads:
//!
//! - **writes** ([`Store::save_update`], ...) are queued and return at once; the thread
//!   applies what is queued in one transaction (the latest record of an update replaces the
//!   earlier ones still queued), and keeps a batch that failed to try again, so a database
//!   error never drops what was stored before and never what is still queued;
//! - **reads and file stores** ([`Store::put_pending`], [`Store::event_log`], ...) are
//!   awaited, after the writes queued before them, and bounded by a timeout: a database
//!   that does not answer gives [`StoreError::Timeout`], never a stuck request.

mod retention;
mod schema;

pub use retention::{FileFacts, RetentionRule, Verdict};
pub use schema::SCHEMA_VERSION;

use crate::auth::{AccessLevel, SessionJournal};
use crate::model::Battery;
use crate::presence::now_ms;
use crate::upload::UploadPhase;
use crate::vrm::{StoredFile, UpdateView};
use bmsfw_vrm_wire::command::UpdateCommand;
use bmsfw_vrm_wire::{FileName, PortalId, Sha256Hex};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long opening the store (migrations, reading back what a restart needs) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a read or a file store may take, by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long storing an uploaded file may take, at least.
pub const FILE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often expired sessions are removed and the retention rule applied.
const HOUSEKEEPING: Duration = Duration::from_secs(3600);
/// Most updates read back into memory at start (the newest); older ones stay in the
/// database and in the battery's history.
pub const MAX_RESTORED_UPDATES: usize = 256;
/// Most queued writes applied in one transaction.
const MAX_BATCH: usize = 4096;
/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Which uploaded files are kept.
    pub retention: RetentionRule,
    /// How long a read or a file store may take.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            retention: RetentionRule::default(),
            timeout: CALL_TIMEOUT,
        }
    }
}

/// Why the store could not do what was asked. Every message names the database file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or brought to the current layout.
    #[error("{}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("the portal's database {}: {reason}", path.display())]
    Failed {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database did not answer in time.
    #[error("the portal's database {} did not answer within {} s", path.display(), timeout.as_secs())]
    Timeout {
        /// The database file.
        path: PathBuf,
        /// The time allowed.
        timeout: Duration,
    },
    /// The store was closed.
    #[error("the portal's database {} is closed", path.display())]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

/// One update as the store keeps it: the portal's view of it, the command sent to the GX
/// (to send it again, or to retry it), the newest reply taken, and whether its event log
/// and diagnostics were fetched after its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The update as the GX's replies built it.
    pub view: UpdateView,
    /// The command as sent.
    pub command: UpdateCommand,
    /// The newest reply (`msgnr`) taken into the view.
    pub last_msgnr: u64,
    /// Whether the event log (and, after a failure, the diagnostics) were stored after the
    /// end.
    pub archived: bool,
}

/// A session read back at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The SHA-256 of the token (the token itself is never stored).
    pub token_sha256: [u8; 32],
    /// The user.
    pub user: String,
    /// The access level at login.
    pub access: AccessLevel,
    /// When it expires (ms since the epoch).
    pub expires_at: u64,
}

/// The last device list of an installation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceList {
    /// The GX's firmware.
    pub gx_firmware: Option<String>,
    /// The batteries by device instance, as last published.
    pub batteries: BTreeMap<u32, Battery>,
}

/// An installation read back at start.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInstallation {
    /// The GX's portal id.
    pub portal_id: PortalId,
    /// Last contact with its GX (ms since the epoch).
    pub last_contact: Option<u64>,
    /// Its last device list.
    pub devices: Option<DeviceList>,
}

/// A file waiting for Update, read back at start.
#[derive(Debug, Clone)]
pub struct StoredPending {
    /// Who uploaded it.
    pub user: String,
    /// The installation.
    pub portal_id: PortalId,
    /// The battery.
    pub instance: u32,
    /// The file.
    pub file: StoredFile,
    /// When (ms since the epoch).
    pub uploaded_at: u64,
}

/// An update read back at start, with its file when its upload to the GX has not ended.
#[derive(Debug, Clone)]
pub struct RestoredUpdate {
    /// The record.
    pub record: UpdateRecord,
    /// The file, for an upload to resume; `None` when not needed or no longer on disk.
    pub file: Option<StoredFile>,
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Restored {
    /// The sessions that have not expired.
    pub sessions: Vec<StoredSession>,
    /// The installations.
    pub installations: Vec<StoredInstallation>,
    /// The newest [`MAX_RESTORED_UPDATES`] updates, oldest first.
    pub updates: Vec<RestoredUpdate>,
    /// The files waiting for Update.
    pub pending: Vec<StoredPending>,
    /// The layout version the file had before this start (0: a new file).
    pub migrated_from: u32,
}

/// A battery's event log as the portal last received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEventLog {
    /// The events, oldest first, as the GX sent them.
    pub events: Vec<Value>,
    /// When the newest of them was received (ms since the epoch).
    pub saved_at: u64,
}

/// A diagnostics bundle as the portal stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDiagnostics {
    /// The bundle, as the GX sent it.
    pub bundle: Value,
    /// When it was received (ms since the epoch).
    pub taken_at: u64,
    /// `failure` (taken when the update failed) or `requested` (someone opened it).
    pub reason: String,
}

/// What one application of the retention rule did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The files deleted by the rule, by SHA-256.
    pub deleted: BTreeSet<String>,
    /// Files on disk the database did not list, deleted.
    pub orphans_deleted: Vec<String>,
    /// Rows of files missing from disk, removed.
    pub missing_rows_removed: Vec<String>,
    /// Bytes of the files kept.
    pub kept_bytes: u64,
}

enum Write {
    SessionOpened {
        hash: [u8; 32],
        user: String,
        access: &'static str,
        expires_at: u64,
    },
    SessionClosed([u8; 32]),
    Installation {
        portal_id: String,
        name: String,
        last_contact: Option<u64>,
        devices: Option<String>,
    },
    Update(Box<UpdateRow>),
    PendingDropped {
        user: String,
        portal_id: String,
        instance: u32,
    },
    Events {
        portal_id: String,
        serial: String,
        events: Vec<(u64, Option<u64>, String)>,
        received_at: u64,
    },
    Diagnostics {
        portal_id: String,
        job: u64,
        serial: Option<String>,
        reason: String,
        taken_at: u64,
        bundle: String,
    },
}

struct UpdateRow {
    commandid: String,
    portal_id: String,
    instance: u32,
    serial: String,
    user: String,
    file_name: String,
    sha256: String,
    requested_at: u64,
    job: Option<u64>,
    state: Option<String>,
    finished: bool,
    archived: bool,
    record: String,
}

type Call = Box<dyn FnOnce(&mut Db) + Send>;

enum Job {
    Write(Write),
    Call(Call),
    Close(oneshot::Sender<()>),
}

struct Shared {
    path: PathBuf,
    files: PathBuf,
    tx: mpsc::Sender<Job>,
    timeout: Duration,
    problem: Arc<Mutex<Option<String>>>,
}

/// The portal's store. Cloning gives another handle to the same database thread.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// The folder of uploaded files beside database `path`: `portal.sqlite` keeps its files in
/// `portal-files/`.
pub fn files_dir(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "portal".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-files"))
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the database at `path` with the default options, brings its
    /// layout up to date and reads back what the portal needs at start.
    pub async fn open(path: &Path) -> Result<(Store, Restored), StoreError> {
        Store::open_with(path, StoreOptions::default()).await
    }

    /// The same with `options`.
    pub async fn open_with(
        path: &Path,
        options: StoreOptions,
    ) -> Result<(Store, Restored), StoreError> {
        let path = path.to_path_buf();
        let files = files_dir(&path);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let problem = Arc::new(Mutex::new(None));
        {
            let thread_path = path.clone();
            let files = files.clone();
            let problem = Arc::clone(&problem);
            let rule = options.retention;
            std::thread::Builder::new()
                .name("portal-store".into())
                .spawn(move || {
                    let mut db = match Db::open(&thread_path, &files, rule) {
                        Ok(db) => db,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let restored = db.restore();
                    let ok = restored.is_ok();
                    let _ = ready_tx.send(restored);
                    if ok {
                        db.run(&rx, &problem);
                    }
                })
                .map_err(|e| StoreError::Open {
                    path: path.clone(),
                    reason: format!("cannot start the database thread: {e}"),
                })?;
        }
        let restored = match tokio::time::timeout(OPEN_TIMEOUT, ready_rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(StoreError::Open {
                    path,
                    reason: "the database thread ended while opening".into(),
                });
            }
            Err(_) => {
                return Err(StoreError::Open {
                    path,
                    reason: format!(
                        "opening took longer than {} s (is the disk responding?)",
                        OPEN_TIMEOUT.as_secs()
                    ),
                });
            }
        };
        let store = Store {
            shared: Arc::new(Shared {
                path,
                files,
                tx,
                timeout: options.timeout,
                problem,
            }),
        };
        Ok((store, restored))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The folder of uploaded files.
    pub fn files_dir(&self) -> &Path {
        &self.shared.files
    }

    /// The latest write error, while writes are failing (they are tried again).
    pub fn problem(&self) -> Option<String> {
        self.shared
            .problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn write(&self, w: Write) {
        if self.shared.tx.send(Job::Write(w)).is_err() {
            tracing::error!(database = %self.shared.path.display(), "the portal's database is closed: a change was not stored");
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_within(self.shared.timeout, f).await
    }

    async fn call_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut Db) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = || self.shared.path.clone();
        let (tx, rx) = oneshot::channel();
        let job: Call = Box::new(move |db: &mut Db| {
            let _ = tx.send(f(db));
        });
        self.shared
            .tx
            .send(Job::Call(job))
            .map_err(|_| StoreError::Closed { path: path() })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(reason))) => Err(StoreError::Failed {
                path: path(),
                reason,
            }),
            Ok(Err(_)) => Err(StoreError::Closed { path: path() }),
            Err(_) => Err(StoreError::Timeout {
                path: path(),
                timeout,
            }),
        }
    }

    // ---- writes: queued, in order -------------------------------------------------------

    /// Keeps (or replaces) an update's record.
    pub fn save_update(&self, record: &UpdateRecord) {
        let record_json = match serde_json::to_string(record) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "an update record could not be encoded");
                return;
            }
        };
        let v = &record.view;
        self.write(Write::Update(Box::new(UpdateRow {
            commandid: v.commandid.to_string(),
            portal_id: v.portal_id.as_str().to_owned(),
            instance: v.instance,
            serial: v.serial.clone(),
            user: v.user.clone(),
            file_name: v.file_name.clone(),
            sha256: record.command.sha256.to_string(),
            requested_at: v.requested_at,
            job: v.job,
            state: v.state.map(|s| s.name().to_owned()),
            finished: v.finished || v.upload_phase == UploadPhase::Failed,
            archived: record.archived,
            record: record_json,
        })));
    }

    /// Keeps an installation's last contact and, when given, its device list.
    pub fn save_installation(
        &self,
        portal_id: &PortalId,
        name: &str,
        last_contact: Option<u64>,
        devices: Option<&DeviceList>,
    ) {
        let devices = devices.and_then(|d| serde_json::to_string(d).ok());
        self.write(Write::Installation {
            portal_id: portal_id.as_str().to_owned(),
            name: name.to_owned(),
            last_contact,
            devices,
        });
    }

    /// The file `user` uploaded for `instance` of `portal_id` is no longer waiting (Update
    /// was pressed, or another file replaced it).
    pub fn drop_pending(&self, user: &str, portal_id: &PortalId, instance: u32) {
        self.write(Write::PendingDropped {
            user: user.to_owned(),
            portal_id: portal_id.as_str().to_owned(),
            instance,
        });
    }

    /// Keeps the events of a battery's event log as received (an event already stored is
    /// not stored twice).
    pub fn save_events(&self, portal_id: &PortalId, serial: &str, events: &[Value]) {
        let events = events
            .iter()
            .filter_map(|e| {
                let at = e.get("at").and_then(Value::as_u64).unwrap_or(0);
                let job = e.get("job").and_then(Value::as_u64);
                serde_json::to_string(e).ok().map(|s| (at, job, s))
            })
            .collect();
        self.write(Write::Events {
            portal_id: portal_id.as_str().to_owned(),
            serial: serial.to_owned(),
            events,
            received_at: now_ms(),
        });
    }

    /// Keeps a diagnostics bundle of job `job` (`reason`: `failure` or `requested`).
    pub fn save_diagnostics(
        &self,
        portal_id: &PortalId,
        job: u64,
        serial: Option<&str>,
        reason: &str,
        bundle: &Value,
    ) {
        self.write(Write::Diagnostics {
            portal_id: portal_id.as_str().to_owned(),
            job,
            serial: serial.map(str::to_owned),
            reason: reason.to_owned(),
            taken_at: now_ms(),
            bundle: bundle.to_string(),
        });
    }

    // ---- awaited ------------------------------------------------------------------------

    /// Stores `file` on disk (once per content) and records it as waiting for Update by
    /// `user` for `instance` of `portal_id`; returns when both are on disk.
    pub async fn put_pending(
        &self,
        user: &str,
        portal_id: &PortalId,
        instance: u32,
        file: &StoredFile,
    ) -> Result<(), StoreError> {
        let user = user.to_owned();
        let portal_id = portal_id.as_str().to_owned();
        let file = file.clone();
        // Writing and syncing a large file takes longer than a read.
        let timeout = self.shared.timeout.max(FILE_TIMEOUT);
        self.call_within(timeout, move |db| {
            db.put_pending(&user, &portal_id, instance, &file)?;
            if let Err(e) = db.apply_retention(now_ms()) {
                tracing::error!(error = %e, "applying the retention rule failed");
            }
            Ok(())
        })
        .await
    }

    /// The file with `sha256`, under the name `name`, when still on disk.
    pub async fn load_file(
        &self,
        sha256: Sha256Hex,
        name: FileName,
    ) -> Result<Option<StoredFile>, StoreError> {
        self.call(move |db| Ok(db.read_file(&sha256, name))).await
    }

    /// The newest `limit` events of battery `serial` of `portal_id`, as last received.
    pub async fn event_log(
        &self,
        portal_id: &PortalId,
        serial: &str,
        limit: u16,
    ) -> Result<Option<StoredEventLog>, StoreError> {
        let portal_id = portal_id.as_str().to_owned();
        let serial = serial.to_owned();
        self.call(move |db| {
            db.event_log(&portal_id, &serial, limit)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// The stored diagnostics of job `job` of `portal_id`.
    pub async fn diagnostics(
        &self,
        portal_id: &PortalId,
        job: u64,
    ) -> Result<Option<StoredDiagnostics>, StoreError> {
        let portal_id = portal_id.as_str().to_owned();
        self.call(move |db| db.diagnostics(&portal_id, job).map_err(|e| e.to_string()))
            .await
    }

    /// The newest `limit` updates of battery `instance` of `portal_id`, newest first.
    pub async fn updates_of(
        &self,
        portal_id: &PortalId,
        instance: u32,
        limit: u32,
    ) -> Result<Vec<UpdateRecord>, StoreError> {
        let portal_id = portal_id.as_str().to_owned();
        self.call(move |db| {
            db.updates_of(&portal_id, instance, limit)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// The serial number of battery `instance` of `portal_id`, from its latest update here
    /// or the last device list.
    pub async fn serial_of(
        &self,
        portal_id: &PortalId,
        instance: u32,
    ) -> Result<Option<String>, StoreError> {
        let portal_id = portal_id.as_str().to_owned();
        self.call(move |db| {
            db.serial_of(&portal_id, instance)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Applies the retention rule as if the time were `now_ms`.
    pub async fn apply_retention(&self, now_ms: u64) -> Result<RetentionReport, StoreError> {
        self.call(move |db| db.apply_retention(now_ms).map_err(|e| e.to_string()))
            .await
    }

    /// Returns once every write queued before is in the database.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|_| Ok(())).await?;
        match self.problem() {
            Some(reason) => Err(StoreError::Failed {
                path: self.shared.path.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Writes what is queued and stops the database thread; later calls answer
    /// [`StoreError::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Job::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(self.shared.timeout, rx).await;
        }
    }
}

impl SessionJournal for Store {
    fn opened(&self, token_sha256: &[u8; 32], user: &str, access: AccessLevel, expires_at: u64) {
        self.write(Write::SessionOpened {
            hash: *token_sha256,
            user: user.to_owned(),
            access: access_name(access),
            expires_at,
        });
    }

    fn closed(&self, token_sha256: &[u8; 32]) {
        self.write(Write::SessionClosed(*token_sha256));
    }
}

fn access_name(a: AccessLevel) -> &'static str {
    match a {
        AccessLevel::FullControl => "full-control",
        AccessLevel::MonitorOnly => "monitor-only",
    }
}

fn access_of(s: &str) -> Option<AccessLevel> {
    match s {
        "full-control" => Some(AccessLevel::FullControl),
        "monitor-only" => Some(AccessLevel::MonitorOnly),
        _ => None,
    }
}

/// The database thread's side.
pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
    files: PathBuf,
    rule: RetentionRule,
    /// The layout version the file had when opened.
    migrated_from: u32,
}

fn open_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase
    )
}

impl Db {
    fn open(path: &Path, files: &Path, rule: RetentionRule) -> Result<Db, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_error(
                    path,
                    format!("cannot create the folder {}: {e}", parent.display()),
                )
            })?;
        }
        // A file that is there must be an SQLite database: say so plainly instead of
        // SQLite's "file is not a database" at the first query.
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mut head = Vec::with_capacity(16);
                std::io::Read::by_ref(&mut f)
                    .take(16)
                    .read_to_end(&mut head)
                    .map_err(|e| open_error(path, format!("cannot read it: {e}")))?;
                if !head.is_empty() && head.as_slice() != SQLITE_HEADER {
                    return Err(open_error(
                        path,
                        "is not an SQLite database (it does not start with the SQLite \
                         header); move it away or set another `database` in portal.toml",
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(open_error(path, format!("cannot read it: {e}"))),
        }
        let sql_error = |e: rusqlite::Error| {
            if is_not_a_database(&e) {
                open_error(
                    path,
                    format!(
                        "is not an SQLite database ({e}); move it away or set another \
                         `database` in portal.toml"
                    ),
                )
            } else {
                open_error(path, format!("cannot open the database: {e}"))
            }
        };
        let mut conn = Connection::open(path).map_err(sql_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql_error)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(sql_error)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sql_error)?;
        let found = schema::migrate(&mut conn, now_ms()).map_err(|e| match e {
            schema::SchemaError::Foreign => open_error(
                path,
                "is an SQLite database but not a bmsfw portal database (it has tables and \
                 no schema_migrations); move it away or set another `database` in portal.toml",
            ),
            schema::SchemaError::Newer(v) => open_error(
                path,
                format!(
                    "has schema version {v}, newer than this portal's {SCHEMA_VERSION}: it \
                     was written by a newer bmsfw portal. Run that version, or set another \
                     `database` in portal.toml"
                ),
            ),
            schema::SchemaError::Sql(e) => sql_error(e),
        })?;
        if found != 0 && found < SCHEMA_VERSION {
            tracing::info!(database = %path.display(), from = found, to = SCHEMA_VERSION, "portal database upgraded");
        }
        std::fs::create_dir_all(files).map_err(|e| {
            open_error(
                path,
                format!("cannot create the file folder {}: {e}", files.display()),
            )
        })?;
        Ok(Db {
            conn,
            path: path.to_path_buf(),
            files: files.to_path_buf(),
            rule,
            migrated_from: found,
        })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    /// Reads back what the portal needs at start, removes expired sessions and applies the
    /// retention rule.
    fn restore(&mut self) -> Result<Restored, StoreError> {
        let now = now_ms();
        self.conn
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", [ms(now)])
            .map_err(|e| self.fail("removing expired sessions", e))?;
        let sessions = self
            .sessions()
            .map_err(|e| self.fail("reading the sessions", e))?;
        let installations = self
            .installations()
            .map_err(|e| self.fail("reading the installations", e))?;
        let updates = self
            .restored_updates()
            .map_err(|e| self.fail("reading the updates", e))?;
        let pending = self
            .pending()
            .map_err(|e| self.fail("reading the files waiting for Update", e))?;
        if let Err(e) = self.apply_retention(now) {
            tracing::error!(error = %e, "applying the retention rule failed");
        }
        Ok(Restored {
            sessions,
            installations,
            updates,
            pending,
            migrated_from: self.migrated_from,
        })
    }

    fn sessions(&self) -> rusqlite::Result<Vec<StoredSession>> {
        let mut stmt = self
            .conn
            .prepare("SELECT token_sha256, user, access, expires_at FROM sessions")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, user, access, expires_at) = row?;
            let (Ok(token_sha256), Some(access)) = (<[u8; 32]>::try_from(hash), access_of(&access))
            else {
                continue;
            };
            out.push(StoredSession {
                token_sha256,
                user,
                access,
                expires_at: unms(expires_at),
            });
        }
        Ok(out)
    }

    fn installations(&self) -> rusqlite::Result<Vec<StoredInstallation>> {
        let mut stmt = self
            .conn
            .prepare("SELECT portal_id, last_contact, devices FROM installations")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, last_contact, devices) = row?;
            let Ok(portal_id) = PortalId::new(&id) else {
                continue;
            };
            let devices = devices.and_then(|d| match serde_json::from_str(&d) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(portal = %id, error = %e, "stored device list unreadable; ignored");
                    None
                }
            });
            out.push(StoredInstallation {
                portal_id,
                last_contact: last_contact.map(unms),
                devices,
            });
        }
        Ok(out)
    }

    fn records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<UpdateRecord>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            match serde_json::from_str::<UpdateRecord>(&json) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(commandid = %id, error = %e, "stored update record unreadable; skipped");
                }
            }
        }
        Ok(out)
    }

    fn restored_updates(&self) -> rusqlite::Result<Vec<RestoredUpdate>> {
        let mut records = self.records(
            "SELECT commandid, record FROM updates ORDER BY requested_at DESC, rowid DESC LIMIT ?1",
            [MAX_RESTORED_UPDATES as i64],
        )?;
        records.reverse();
        Ok(records
            .into_iter()
            .map(|record| {
                let v = &record.view;
                let uploading = !v.finished
                    && matches!(
                        v.upload_phase,
                        UploadPhase::Announced | UploadPhase::Sending
                    );
                let file = uploading
                    .then(|| {
                        self.read_file(&record.command.sha256, record.command.file_name.clone())
                    })
                    .flatten();
                RestoredUpdate { record, file }
            })
            .collect())
    }

    fn pending(&self) -> rusqlite::Result<Vec<StoredPending>> {
        let mut stmt = self.conn.prepare(
            "SELECT user, portal_id, instance, name, sha256, uploaded_at FROM pending_files",
        )?;
        let rows: Vec<(String, String, u32, String, String, i64)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for (user, portal, instance, name, sha, uploaded_at) in rows {
            let file = match (
                PortalId::new(&portal),
                FileName::new(&name),
                Sha256Hex::parse(&sha),
            ) {
                (Ok(portal_id), Ok(name), Ok(sha)) => {
                    self.read_file(&sha, name).map(|file| (portal_id, file))
                }
                _ => None,
            };
            match file {
                Some((portal_id, file)) => out.push(StoredPending {
                    user,
                    portal_id,
                    instance,
                    file,
                    uploaded_at: unms(uploaded_at),
                }),
                None => {
                    tracing::warn!(%user, portal = %portal, instance, file = %name, "a file waiting for Update is missing from the portal's store; the installer must upload it again");
                    self.conn.execute(
                        "DELETE FROM pending_files WHERE user = ?1 AND portal_id = ?2 AND instance = ?3",
                        params![user, portal, instance],
                    )?;
                }
            }
        }
        Ok(out)
    }

    fn file_path(&self, sha256: &str) -> PathBuf {
        self.files.join(sha256)
    }

    /// The file `sha256` from disk, checked against its digest.
    fn read_file(&self, sha256: &Sha256Hex, name: FileName) -> Option<StoredFile> {
        let path = self.file_path(&sha256.to_string());
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "stored firmware file unreadable");
                return None;
            }
        };
        let file = StoredFile::new(name, data);
        if file.sha256 != *sha256 {
            tracing::error!(file = %path.display(), "stored firmware file does not match its SHA-256; not used");
            return None;
        }
        Some(file)
    }

    fn put_pending(
        &mut self,
        user: &str,
        portal_id: &str,
        instance: u32,
        file: &StoredFile,
    ) -> Result<(), String> {
        let sha = file.sha256.to_string();
        let path = self.file_path(&sha);
        let present = std::fs::metadata(&path)
            .map(|m| m.len() == file.data.len() as u64)
            .unwrap_or(false);
        if !present {
            let tmp = self.files.join(format!(".{sha}.tmp"));
            let written = (|| -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&file.data)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                if let Ok(dir) = std::fs::File::open(&self.files) {
                    let _ = dir.sync_all();
                }
                Ok(())
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!(
                    "cannot store the file in {}: {e}",
                    self.files.display()
                ));
            }
        }
        let now = ms(now_ms());
        let tx = self
            .conn
            .transaction()
            .map_err(|e| format!("storing the file: {e}"))?;
        tx.execute(
            "INSERT INTO files (sha256, size, stored_at, last_used_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (sha256) DO UPDATE SET last_used_at = excluded.last_used_at",
            params![sha, file.data.len() as i64, now],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT OR REPLACE INTO pending_files (user, portal_id, instance, name, sha256, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user, portal_id, instance, file.name.as_str(), sha, now],
            )
        })
        .and_then(|_| tx.commit())
        .map_err(|e| format!("storing the file: {e}"))
    }

    fn event_log(
        &self,
        portal_id: &str,
        serial: &str,
        limit: u16,
    ) -> rusqlite::Result<Option<StoredEventLog>> {
        let mut stmt = self.conn.prepare(
            "SELECT event, received_at FROM events WHERE portal_id = ?1 AND serial = ?2
             ORDER BY at DESC, id DESC LIMIT ?3",
        )?;
        let rows: Vec<(String, i64)> = stmt
            .query_map(params![portal_id, serial, i64::from(limit)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if rows.is_empty() {
            return Ok(None);
        }
        let saved_at = rows.iter().map(|(_, t)| unms(*t)).max().unwrap_or(0);
        let events = rows
            .into_iter()
            .rev()
            .filter_map(|(e, _)| serde_json::from_str(&e).ok())
            .collect();
        Ok(Some(StoredEventLog { events, saved_at }))
    }

    fn diagnostics(
        &self,
        portal_id: &str,
        job: u64,
    ) -> rusqlite::Result<Option<StoredDiagnostics>> {
        let row: Option<(String, i64, String)> = self
            .conn
            .query_row(
                "SELECT bundle, taken_at, reason FROM diagnostics WHERE portal_id = ?1 AND job = ?2",
                params![portal_id, ms(job)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.and_then(|(bundle, taken_at, reason)| {
            serde_json::from_str(&bundle)
                .ok()
                .map(|bundle| StoredDiagnostics {
                    bundle,
                    taken_at: unms(taken_at),
                    reason,
                })
        }))
    }

    fn updates_of(
        &self,
        portal_id: &str,
        instance: u32,
        limit: u32,
    ) -> rusqlite::Result<Vec<UpdateRecord>> {
        self.records(
            "SELECT commandid, record FROM updates WHERE portal_id = ?1 AND instance = ?2
             ORDER BY requested_at DESC, rowid DESC LIMIT ?3",
            params![portal_id, instance, i64::from(limit)],
        )
    }

    fn serial_of(&self, portal_id: &str, instance: u32) -> rusqlite::Result<Option<String>> {
        let from_updates: Option<String> = self
            .conn
            .query_row(
                "SELECT serial FROM updates WHERE portal_id = ?1 AND instance = ?2
                 ORDER BY requested_at DESC, rowid DESC LIMIT 1",
                params![portal_id, instance],
                |r| r.get(0),
            )
            .optional()?;
        if from_updates.is_some() {
            return Ok(from_updates);
        }
        let devices: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT devices FROM installations WHERE portal_id = ?1",
                [portal_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(devices
            .flatten()
            .and_then(|d| serde_json::from_str::<DeviceList>(&d).ok())
            .and_then(|d| d.batteries.get(&instance).and_then(|b| b.serial.clone())))
    }

    /// Applies the retention rule at `now` (see [`retention`]).
    fn apply_retention(&mut self, now: u64) -> rusqlite::Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let strings = |conn: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]| {
            let mut stmt = conn.prepare(sql)?;
            stmt.query_map(p, |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<BTreeSet<String>>>()
        };
        let protected = strings(
            &self.conn,
            "SELECT sha256 FROM pending_files
             UNION SELECT sha256 FROM updates WHERE finished = 0
             UNION SELECT sha256 FROM (
                 SELECT sha256, row_number() OVER (
                     PARTITION BY portal_id, instance ORDER BY requested_at DESC, rowid DESC
                 ) AS n FROM updates
             ) WHERE n = 1",
            &[],
        )?;
        let recent = strings(
            &self.conn,
            "SELECT sha256 FROM (
                 SELECT sha256, row_number() OVER (
                     PARTITION BY portal_id, instance ORDER BY requested_at DESC, rowid DESC
                 ) AS n FROM updates
             ) WHERE n <= ?1",
            &[&i64::from(self.rule.updates_per_battery)],
        )?;
        let mut files: Vec<FileFacts> = {
            let mut stmt = self
                .conn
                .prepare("SELECT sha256, size, last_used_at FROM files")?;
            stmt.query_map([], |r| {
                Ok(FileFacts {
                    sha256: r.get(0)?,
                    size: unms(r.get(1)?),
                    last_used_at: unms(r.get(2)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        // Rows whose file is gone describe nothing.
        files.retain(|f| {
            if self.file_path(&f.sha256).is_file() {
                return true;
            }
            report.missing_rows_removed.push(f.sha256.clone());
            false
        });
        let verdict = retention::decide(&self.rule, now, &files, &protected, &recent);
        let tx = self.conn.transaction()?;
        for sha in verdict.delete.iter().chain(&report.missing_rows_removed) {
            tx.execute("DELETE FROM pending_files WHERE sha256 = ?1", [sha])?;
            tx.execute("DELETE FROM files WHERE sha256 = ?1", [sha])?;
        }
        tx.commit()?;
        for sha in &verdict.delete {
            let path = self.file_path(sha);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "could not delete a stored file");
            }
            tracing::info!(sha256 = %sha, "stored firmware file deleted by the retention rule");
        }
        // Files on disk the database does not list: an interrupted store.
        let listed: BTreeSet<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
        if let Ok(dir) = std::fs::read_dir(&self.files) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours_tmp = name.starts_with('.') && name.ends_with(".tmp") && name.len() == 69;
                let ours = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if (ours_tmp || (ours && !listed.contains(name.as_str())))
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    report.orphans_deleted.push(name);
                }
            }
        }
        report.deleted = verdict.delete;
        report.kept_bytes = verdict.kept_bytes;
        Ok(report)
    }

    // ---- the thread ---------------------------------------------------------------------

    fn run(&mut self, rx: &mpsc::Receiver<Job>, problem: &Mutex<Option<String>>) {
        let mut pending: Vec<Write> = Vec::new();
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        loop {
            let wake = retry_at.map_or(next_housekeeping, |r| r.min(next_housekeeping));
            let mut call: Option<Call> = None;
            let mut close: Option<oneshot::Sender<()>> = None;
            match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Job::Write(w)) => pending.push(w),
                Ok(Job::Call(c)) => call = Some(c),
                Ok(Job::Close(done)) => close = Some(done),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&mut pending, problem);
                    return;
                }
            }
            // Everything already queued behind it, up to a call.
            while call.is_none() && close.is_none() && pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Job::Write(w)) => pending.push(w),
                    Ok(Job::Call(c)) => call = Some(c),
                    Ok(Job::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            if !pending.is_empty()
                && retry_at.is_none_or(|r| Instant::now() >= r || call.is_some() || close.is_some())
            {
                if self.flush(&mut pending, problem) {
                    backoff = Duration::from_millis(200);
                    retry_at = None;
                } else {
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            if let Some(c) = call {
                c(self);
            }
            if let Some(done) = close {
                self.flush(&mut pending, problem);
                let _ = done.send(());
                return;
            }
            if Instant::now() >= next_housekeeping {
                next_housekeeping = Instant::now() + HOUSEKEEPING;
                let now = now_ms();
                if let Err(e) = self
                    .conn
                    .execute("DELETE FROM sessions WHERE expires_at <= ?1", [ms(now)])
                {
                    tracing::error!(error = %e, "removing expired sessions failed");
                }
                if let Err(e) = self.apply_retention(now) {
                    tracing::error!(error = %e, "applying the retention rule failed");
                }
            }
        }
    }

    /// Applies `pending` in one transaction; on success empties it. On failure keeps it
    /// (to try again), notes the problem and returns false.
    fn flush(&mut self, pending: &mut Vec<Write>, problem: &Mutex<Option<String>>) -> bool {
        if pending.is_empty() {
            return true;
        }
        coalesce(pending);
        let result = self.apply(pending);
        let mut p = problem.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if p.take().is_some() {
                    tracing::info!(database = %self.path.display(), "the portal's database accepts writes again");
                }
                pending.clear();
                true
            }
            Err(e) => {
                let message = format!(
                    "writing {} change(s) failed, kept to try again: {e}",
                    pending.len()
                );
                tracing::error!(database = %self.path.display(), "{message}");
                *p = Some(message);
                false
            }
        }
    }

    fn apply(&mut self, writes: &[Write]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for w in writes {
            match w {
                Write::SessionOpened {
                    hash,
                    user,
                    access,
                    expires_at,
                } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO sessions (token_sha256, user, access, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![hash.as_slice(), user, access, ms(*expires_at)],
                    )?;
                }
                Write::SessionClosed(hash) => {
                    tx.execute(
                        "DELETE FROM sessions WHERE token_sha256 = ?1",
                        [hash.as_slice()],
                    )?;
                }
                Write::Installation {
                    portal_id,
                    name,
                    last_contact,
                    devices,
                } => {
                    tx.execute(
                        "INSERT INTO installations (portal_id, name, last_contact, devices)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (portal_id) DO UPDATE SET
                             name = excluded.name,
                             last_contact = coalesce(excluded.last_contact, last_contact),
                             devices = coalesce(excluded.devices, devices)",
                        params![portal_id, name, last_contact.map(ms), devices],
                    )?;
                }
                Write::Update(u) => {
                    tx.execute(
                        "INSERT INTO updates (commandid, portal_id, instance, serial, user,
                             file_name, sha256, requested_at, job, state, finished, archived, record)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                         ON CONFLICT (commandid) DO UPDATE SET
                             job = excluded.job, state = excluded.state,
                             finished = excluded.finished, archived = excluded.archived,
                             record = excluded.record",
                        params![
                            u.commandid,
                            u.portal_id,
                            u.instance,
                            u.serial,
                            u.user,
                            u.file_name,
                            u.sha256,
                            ms(u.requested_at),
                            u.job.map(ms),
                            u.state,
                            u.finished,
                            u.archived,
                            u.record
                        ],
                    )?;
                    tx.execute(
                        "UPDATE files SET last_used_at = ?2 WHERE sha256 = ?1 AND last_used_at < ?2",
                        params![u.sha256, ms(u.requested_at)],
                    )?;
                }
                Write::PendingDropped {
                    user,
                    portal_id,
                    instance,
                } => {
                    tx.execute(
                        "DELETE FROM pending_files WHERE user = ?1 AND portal_id = ?2 AND instance = ?3",
                        params![user, portal_id, instance],
                    )?;
                }
                Write::Events {
                    portal_id,
                    serial,
                    events,
                    received_at,
                } => {
                    let mut stmt = tx.prepare_cached(
                        "INSERT OR IGNORE INTO events (portal_id, serial, job, at, digest, event, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    for (at, job, event) in events {
                        let digest: [u8; 32] = sha2::Sha256::digest(event.as_bytes()).into();
                        stmt.execute(params![
                            portal_id,
                            serial,
                            job.map(ms),
                            ms(*at),
                            digest.as_slice(),
                            event,
                            ms(*received_at)
                        ])?;
                    }
                }
                Write::Diagnostics {
                    portal_id,
                    job,
                    serial,
                    reason,
                    taken_at,
                    bundle,
                } => {
                    tx.execute(
                        "INSERT INTO diagnostics (portal_id, job, serial, reason, taken_at, bundle)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (portal_id, job) DO UPDATE SET
                             serial = coalesce(excluded.serial, serial),
                             reason = CASE WHEN reason = 'failure' THEN reason ELSE excluded.reason END,
                             taken_at = excluded.taken_at, bundle = excluded.bundle",
                        params![portal_id, ms(*job), serial, reason, ms(*taken_at), bundle],
                    )?;
                }
            }
        }
        tx.commit()
    }
}

/// Drops queued records of an update that a later record of the same update replaces.
fn coalesce(writes: &mut Vec<Write>) {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        if let Write::Update(u) = w {
            last.insert(u.commandid.clone(), i);
        }
    }
    let mut i = 0;
    writes.retain(|w| {
        let keep = match w {
            Write::Update(u) => last.get(&u.commandid) == Some(&i),
            _ => true,
        };
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_folder_sits_beside_the_database() {
        assert_eq!(
            files_dir(Path::new("/a/portal.sqlite")),
            Path::new("/a/portal-files")
        );
        assert_eq!(files_dir(Path::new("db")), Path::new("db-files"));
    }

    #[test]
    fn a_failed_write_keeps_what_was_stored_and_what_was_queued_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.sqlite");
        let mut db = Db::open(&path, &files_dir(&path), RetentionRule::default()).unwrap();
        let problem = Mutex::new(None);
        let session = |n: u8| Write::SessionOpened {
            hash: [n; 32],
            user: format!("user{n}"),
            access: "full-control",
            expires_at: u64::MAX / 2,
        };
        let mut pending = vec![session(1)];
        assert!(db.flush(&mut pending, &problem));
        assert!(pending.is_empty());
        // The database refuses writes (as a full or read-only disk would).
        db.conn.execute_batch("PRAGMA query_only = 1").unwrap();
        let mut pending = vec![session(2), Write::SessionClosed([1; 32])];
        assert!(!db.flush(&mut pending, &problem));
        assert_eq!(pending.len(), 2, "kept to try again");
        let message = problem.lock().unwrap().clone().unwrap();
        assert!(message.contains("kept to try again"), "{message}");
        assert_eq!(db.sessions().unwrap().len(), 1, "what was stored is intact");
        // The disk is back: the same batch goes in, and the problem is cleared.
        db.conn.execute_batch("PRAGMA query_only = 0").unwrap();
        assert!(db.flush(&mut pending, &problem));
        assert!(problem.lock().unwrap().is_none());
        let users: Vec<String> = db.sessions().unwrap().into_iter().map(|s| s.user).collect();
        assert_eq!(users, ["user2"]);
    }

    #[test]
    fn a_later_record_of_the_same_update_replaces_the_queued_ones() {
        let row = |id: &str, n: &str| {
            Write::Update(Box::new(UpdateRow {
                commandid: id.into(),
                portal_id: "p".into(),
                instance: 1,
                serial: "s".into(),
                user: "u".into(),
                file_name: "f".into(),
                sha256: "x".into(),
                requested_at: 0,
                job: None,
                state: None,
                finished: false,
                archived: false,
                record: n.into(),
            }))
        };
        let mut w = vec![
            row("a", "1"),
            row("b", "1"),
            Write::SessionClosed([0; 32]),
            row("a", "2"),
        ];
        coalesce(&mut w);
        let kept: Vec<String> = w
            .iter()
            .map(|w| match w {
                Write::Update(u) => format!("{}{}", u.commandid, u.record),
                _ => "session".into(),
            })
            .collect();
        assert_eq!(kept, ["b1", "session", "a2"]);
    }
}
