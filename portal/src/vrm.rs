//! The portal's side of the MQTT link: keeps every installation's GX publishing, builds the
//! device lists from its values, sends update commands and packages, follows each update's
//! replies, asks GXs for event logs and diagnostics, and follows whether each GX is online
//! (its last will and its silence, see [`crate::presence`]): no update starts toward a GX
//! that is offline.
//!
//! With a [`Store`] it records what arrives: every update's record as the replies build
//! it, each installation's last contact and device list, the event log at an update's end
//! and a diagnostics snapshot at its failure. After a restart it takes the updates back,
//! resumes an upload the restart cut (the GX names the first chunk it lacks), and answers
//! event-log and diagnostics requests from the store while the GX does not answer.

use crate::model::Installation;
use crate::presence::{GxPresence, PresenceTracker, now_ms};
use crate::store::{
    DeviceList, RestoredUpdate, Store, StoreError, StoredInstallation, UpdateRecord,
};
use crate::upload::{UploadPhase, UploadSender, UploadStats, UploadTransmit};
use bmsfw_vrm_wire::command::{
    ChunkCommand, DiagnosticsQuery, EventLogQuery, StatusQuery, UpdateCommand,
};
use bmsfw_vrm_wire::envelope::KeepaliveOptions;
use bmsfw_vrm_wire::limits::{DEFAULT_CHUNK_SIZE, MAX_PACKET};
use bmsfw_vrm_wire::presence::is_presence;
use bmsfw_vrm_wire::{
    Acknowledgement, BrokerAddr, ChunkData, Command, CommandId, Feedback, FileName, JobState,
    Notification, PortalId, PresenceMessage, RpcCommand, RpcResponse, Serial, Sha256Hex, Status,
    TargetList, Topic, VersionPolicy, WireVersion,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Settings of the portal's MQTT side.
#[derive(Debug, Clone)]
pub struct VrmConfig {
    /// The broker.
    pub broker: BrokerAddr,
    /// TLS and the portal's credentials (none by default: loopback only).
    pub security: bmsfw_core::vrm::tls::MqttSecurity,
    /// The MQTT client id.
    pub client_id: String,
    /// How often each GX gets a keepalive (below the GX's 60 s window).
    pub keepalive_interval: Duration,
    /// Pause between two connection attempts.
    pub reconnect_delay: Duration,
    /// How long an event-log or diagnostics request waits for the GX.
    pub rpc_timeout: Duration,
    /// Chunk size of uploads.
    pub chunk_size: u32,
    /// Unacknowledged chunks per upload, at most.
    pub upload_window: usize,
    /// Silence after which an upload asks the GX where it stands.
    pub stall_timeout: Duration,
    /// Silence after which a GX counts as offline: no update starts toward it, its
    /// batteries' values are shown as stale and its running updates as of unknown status.
    /// Above `keepalive_interval`: a GX answers every keepalive.
    pub offline_after: Duration,
    /// The key that signs every update command (without it, GXs refuse the updates: 800).
    pub signer: Option<Arc<crate::signer::PortalSigner>>,
}

impl VrmConfig {
    /// Defaults: keepalive every 25 s, 16 KiB chunks, a window of 8, 5 s stall timeout, a
    /// GX offline after 60 s of silence.
    pub fn new(broker: BrokerAddr) -> VrmConfig {
        VrmConfig {
            broker,
            security: Default::default(),
            client_id: "bmsfw-portal".into(),
            keepalive_interval: Duration::from_secs(25),
            reconnect_delay: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(10),
            chunk_size: DEFAULT_CHUNK_SIZE,
            upload_window: 8,
            stall_timeout: Duration::from_secs(5),
            offline_after: Duration::from_secs(60),
            signer: None,
        }
    }
}

/// The code of the refusal to start an update toward a GX that is offline: the
/// catalogue's `GX_OFFLINE` (`core/src/errors.rs`, `docs/errors.md`).
pub const GX_OFFLINE: u32 = 717;

/// A firmware file the installer uploaded to the portal.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The installer's file name.
    pub name: FileName,
    /// The bytes.
    pub data: Arc<Vec<u8>>,
    /// Their SHA-256.
    pub sha256: Sha256Hex,
}

impl StoredFile {
    /// Keeps `data` under the installer's file name, with its SHA-256.
    pub fn new(name: FileName, data: Vec<u8>) -> StoredFile {
        use sha2::Digest;
        let sha256 = Sha256Hex(sha2::Sha256::digest(&data).into());
        StoredFile {
            name,
            data: Arc::new(data),
            sha256,
        }
    }
}

/// What an installer asks for when pressing Update.
#[derive(Debug, Clone)]
pub struct UpdateOrder {
    /// The installation.
    pub portal_id: PortalId,
    /// The battery's device instance.
    pub instance: u32,
    /// The file.
    pub file: StoredFile,
    /// The warnings the installer confirmed.
    pub acknowledgements: BTreeSet<Acknowledgement>,
    /// Which target versions are accepted.
    pub version_policy: VersionPolicy,
    /// The nodes or modules to update (`None`: every one).
    pub targets: Option<TargetList>,
    /// Who asked.
    pub user: String,
}

/// Why the portal could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VrmError {
    /// No such installation or battery.
    #[error("{0}")]
    NotFound(String),
    /// The GX or the battery does not allow it now.
    #[error("{0}")]
    NotAllowed(String),
    /// The GX is offline (its last will arrived, or it was silent for too long): code
    /// [`GX_OFFLINE`].
    #[error("{0}")]
    GxOffline(String),
    /// The GX did not answer in time.
    #[error("the GX device did not answer within {0:?}")]
    Timeout(Duration),
    /// The GX refused, with its code.
    #[error("error {code}: {message}")]
    Refused {
        /// The GX's code.
        code: u32,
        /// Its message.
        message: String,
    },
    /// The portal's MQTT side is not running.
    #[error("the portal's MQTT connection has stopped")]
    Stopped,
    /// The portal's store failed (the message names the database file).
    #[error("{0}")]
    Store(String),
}

impl From<StoreError> for VrmError {
    fn from(e: StoreError) -> VrmError {
        VrmError::Store(e.to_string())
    }
}

impl VrmError {
    /// The stable code of the error, when it has one.
    pub fn code(&self) -> Option<u32> {
        match self {
            VrmError::Refused { code, .. } => Some(*code),
            VrmError::GxOffline(_) => Some(GX_OFFLINE),
            _ => None,
        }
    }
}

/// One update the portal started, as it follows it through the GX's replies. Kept in the
/// portal's store: a member added later must read as absent from older records (an
/// `Option`, or `#[serde(default)]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateView {
    /// The command id all its replies carry.
    pub commandid: CommandId,
    /// The installation.
    pub portal_id: PortalId,
    /// The battery's device instance.
    pub instance: u32,
    /// The battery's serial number.
    pub serial: String,
    /// Who started it.
    pub user: String,
    /// The file.
    pub file_name: String,
    /// Its size.
    pub file_size: u64,
    /// The job on the GX, once known.
    pub job: Option<u64>,
    /// The job's state, once known.
    pub state: Option<JobState>,
    /// Every state seen, in order.
    pub states_seen: Vec<JobState>,
    /// Progress of the state.
    pub percent: u8,
    /// The failure's code.
    pub error_code: Option<u32>,
    /// The failure's message.
    pub error: Option<String>,
    /// Firmware before.
    pub version_before: Option<WireVersion>,
    /// Firmware the package installs.
    pub version_target: Option<WireVersion>,
    /// Firmware after.
    pub version_after: Option<WireVersion>,
    /// When the installer pressed Update (ms since the epoch).
    pub requested_at: u64,
    /// Whether the GX sent the command's last reply.
    pub finished: bool,
    /// Where the upload to the GX stands.
    pub upload_phase: UploadPhase,
    /// The upload's counters.
    pub upload: UploadStats,
}

struct Tracker {
    view: UpdateView,
    upload: UploadSender,
    last_msgnr: u64,
    /// The order, kept (with its file) for a retry by the battery's latest update only.
    /// `None` after a restart: the file is read back from the store for a retry.
    retry: Option<UpdateOrder>,
    /// The command as sent (sent again when the GX's first answer never came).
    command: UpdateCommand,
    /// Whether the event log (and the diagnostics of a failure) were stored after the end.
    archived: bool,
    /// No attempt to store them before this (one is running, or the last one failed).
    archive_after: Option<Instant>,
}

impl Tracker {
    fn record(&self) -> UpdateRecord {
        UpdateRecord {
            view: self.view.clone(),
            command: self.command.clone(),
            last_msgnr: self.last_msgnr,
            archived: self.archived,
        }
    }

    /// Whether the update has ended, by its replies or by the GX's published values.
    fn ended(&self, installations: &BTreeMap<PortalId, Installation>) -> bool {
        if self.view.finished || self.view.upload_phase == UploadPhase::Failed {
            return true;
        }
        let published = installations
            .get(&self.view.portal_id)
            .and_then(|i| i.batteries.get(&self.view.instance))
            .map(|b| &b.update);
        published.is_some_and(|p| {
            p.job.is_some() && p.job == self.view.job && p.state.is_some_and(JobState::is_terminal)
        })
    }

    fn failed(&self, installations: &BTreeMap<PortalId, Installation>) -> bool {
        if self.view.state == Some(JobState::Failed) || self.view.error_code.is_some() {
            return true;
        }
        installations
            .get(&self.view.portal_id)
            .and_then(|i| i.batteries.get(&self.view.instance))
            .is_some_and(|b| {
                b.update.job == self.view.job && b.update.state == Some(JobState::Failed)
            })
    }
}

/// A battery's event log as the portal answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLogAnswer {
    /// The battery's serial number.
    pub serial: String,
    /// The events, oldest first, as the GX sent them.
    pub events: Vec<Value>,
    /// `None` when the GX answered now; else when the portal received the stored events
    /// (ms since the epoch): the GX did not answer.
    pub stored_at: Option<u64>,
}

/// A job's diagnostics bundle as the portal answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticsAnswer {
    /// The bundle, as the GX sent it.
    pub bundle: Value,
    /// `None` when the GX answered now; else when the portal stored the bundle (ms since
    /// the epoch) and why (`failure`: taken when the update failed).
    pub stored: Option<(u64, String)>,
}

/// The batteries of an installation by instance and serial number: a change of them is
/// stored at once.
type BatteryShape = Vec<(u32, Option<String>)>;

/// How long a change of values or of the last contact may wait before it is stored (a
/// battery that appears or goes, or a new serial number, is stored at once).
const INSTALLATION_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before another attempt to store an ended update's event log and diagnostics.
const ARCHIVE_RETRY: Duration = Duration::from_secs(30);
/// Most ended updates whose event log and diagnostics are fetched at once.
const MAX_ARCHIVING: usize = 4;
/// How far ahead an archive in progress marks its next attempt (it sets the real one).
const ARCHIVING: Duration = Duration::from_secs(86_400);

/// Everything the portal knows, as the web layer reads it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VrmSnapshot {
    /// Whether the portal is connected to the broker.
    pub connected: bool,
    /// The installations, by portal id.
    pub installations: BTreeMap<PortalId, Installation>,
    /// The updates started from this portal, oldest first.
    pub updates: Vec<UpdateView>,
    /// The pre-flight checks of uploaded files, oldest first.
    pub preflights: Vec<crate::preflight::PreflightView>,
}

struct State {
    connected: bool,
    installations: BTreeMap<PortalId, Installation>,
    trackers: Vec<Tracker>,
    rpcs: HashMap<CommandId, oneshot::Sender<RpcResponse>>,
    /// Newest `msgnr` seen per command that has no tracker (RPC replies).
    seen: HashMap<CommandId, u64>,
    /// What was heard of each installation's GX, and when.
    presence: BTreeMap<PortalId, PresenceTracker>,
    /// The portal's latest connection to the broker (start-up before the first): the
    /// silence of a GX counts from here at the earliest.
    watching_since: Instant,
    /// GXs that came back online since the driver last looked: their unanswered update
    /// commands go out again (a GX that restarted may never have recorded them).
    returned: Vec<PortalId>,
}

impl State {
    fn new() -> State {
        State {
            connected: false,
            installations: BTreeMap::new(),
            trackers: Vec::new(),
            rpcs: HashMap::new(),
            seen: HashMap::new(),
            presence: BTreeMap::new(),
            watching_since: Instant::now(),
            returned: Vec::new(),
        }
    }

    /// The battery a command (an update or a pre-flight check) may address: the
    /// installation known, its GX not offline, its VRM access Full, the battery there.
    fn commandable_battery(
        &self,
        portal: &PortalId,
        instance: u32,
        offline_after: Duration,
    ) -> Result<&crate::model::Battery, VrmError> {
        let inst = self
            .installations
            .get(portal)
            .ok_or_else(|| VrmError::NotFound(format!("no installation {portal}")))?;
        let presence = self.judge(portal, Instant::now(), offline_after);
        if let Some(why) = presence.refusal(offline_after) {
            return Err(VrmError::GxOffline(why));
        }
        if !inst.allows_updates() {
            return Err(VrmError::NotAllowed(
                "the GX device's VRM Portal access is not Full: remote updates are disabled".into(),
            ));
        }
        inst.batteries.get(&instance).ok_or_else(|| {
            VrmError::NotFound(format!("no battery {instance} on this installation"))
        })
    }

    /// The verdict on `portal`'s GX at `now`.
    fn judge(&self, portal: &PortalId, now: Instant, interval: Duration) -> GxPresence {
        self.presence
            .get(portal)
            .map(|p| p.judge(now, self.watching_since, interval))
            .unwrap_or_default()
    }

    /// Judges every GX again at `now`; true when a verdict changed.
    fn refresh_presence(&mut self, now: Instant, interval: Duration) -> bool {
        let ids: Vec<PortalId> = self.installations.keys().cloned().collect();
        let mut changed = false;
        for id in ids {
            changed |= self.refresh_presence_of(&id, now, interval);
        }
        changed
    }

    /// Judges `id`'s GX again at `now` and keeps its last contact in the installation;
    /// true when either changed.
    fn refresh_presence_of(&mut self, id: &PortalId, now: Instant, interval: Duration) -> bool {
        let verdict = self.judge(id, now, interval);
        let last_contact = self.presence.get(id).and_then(|p| p.last_contact_ms());
        let Some(inst) = self.installations.get_mut(id) else {
            return false;
        };
        let mut changed = false;
        if inst.presence != verdict {
            if verdict.is_offline() {
                tracing::warn!(portal = %id, presence = %verdict.label(), "GX device offline");
            } else if inst.presence.is_offline() {
                tracing::info!(portal = %id, "GX device back online");
                self.returned.push(id.clone());
            }
            inst.presence = verdict;
            changed = true;
        }
        if inst.last_seen != last_contact {
            inst.last_seen = last_contact;
            changed = true;
        }
        changed
    }

    /// When the next GX falls silent for too long, if none speaks first.
    fn next_presence_deadline(&self, now: Instant, interval: Duration) -> Option<Instant> {
        self.presence
            .values()
            .filter_map(|p| p.deadline(now, self.watching_since, interval))
            .min()
    }
}

/// Most finished updates the portal keeps in memory.
const MAX_TRACKERS: usize = 256;

enum Request {
    Update(UpdateOrder, oneshot::Sender<Result<CommandId, VrmError>>),
    Rpc(
        PortalId,
        Command,
        oneshot::Sender<Result<RpcResponse, VrmError>>,
    ),
    Preflight(
        crate::preflight::PreflightOrder,
        oneshot::Sender<Result<CommandId, VrmError>>,
    ),
}

/// The running MQTT side of the portal. Cloning gives another handle.
#[derive(Clone)]
pub struct VrmSide {
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<u64>,
    changes_tx: Arc<watch::Sender<u64>>,
    requests: mpsc::UnboundedSender<Request>,
    config: Arc<VrmConfig>,
    store: Option<Store>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    preflights: crate::preflight::Preflights,
}

impl std::fmt::Debug for VrmSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrmSide").finish_non_exhaustive()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_command_id(kind: &str) -> CommandId {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let salt: u32 = rand::random();
    // Letters, digits and '-' only: always a valid id.
    CommandId::new(&format!("{kind}-{salt:08x}-{n}")).unwrap_or_else(|_| new_command_id("c"))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends a read command through the driver and waits for its last reply.
async fn rpc_via(
    requests: &mpsc::UnboundedSender<Request>,
    portal_id: &PortalId,
    command: Command,
) -> Result<Feedback, VrmError> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(Request::Rpc(portal_id.clone(), command, tx))
        .map_err(|_| VrmError::Stopped)?;
    let reply = rx.await.map_err(|_| VrmError::Stopped)??;
    if reply.feedback.status == Status::Error {
        return Err(VrmError::Refused {
            code: reply.feedback.error_code.unwrap_or(0),
            message: reply.feedback.error.unwrap_or_default(),
        });
    }
    Ok(reply.feedback)
}

/// Takes an update read back from the store into a tracker.
fn restored_tracker(r: RestoredUpdate, config: &VrmConfig, now: Instant) -> Tracker {
    let RestoredUpdate { record, file } = r;
    let mut view = record.view;
    let uploading = !view.finished
        && matches!(
            view.upload_phase,
            UploadPhase::Announced | UploadPhase::Sending
        );
    let upload = match file {
        Some(file) => UploadSender::restored(
            file.data,
            record.command.chunk_size,
            config.upload_window,
            config.stall_timeout,
            now,
            view.upload_phase,
            view.upload.clone(),
        ),
        None => {
            if uploading {
                tracing::error!(commandid = %view.commandid, file = %view.file_name, "the upload cannot resume: the portal's store no longer has the file");
                view.upload_phase = UploadPhase::Failed;
                view.error = Some(format!(
                    "the upload to the GX device was cut by a restart of the portal, and the \
                     portal no longer has the file {}: upload it again",
                    view.file_name
                ));
            }
            UploadSender::restored(
                Arc::new(Vec::new()),
                record.command.chunk_size,
                config.upload_window,
                config.stall_timeout,
                now,
                view.upload_phase,
                view.upload.clone(),
            )
        }
    };
    view.upload_phase = upload.phase();
    Tracker {
        view,
        upload,
        last_msgnr: record.last_msgnr,
        retry: None,
        command: record.command,
        archived: record.archived,
        archive_after: None,
    }
}

impl VrmSide {
    /// Connects to the broker and keeps the listed installations (portal id, name)
    /// publishing. Nothing is stored: a restart forgets everything.
    pub fn start(config: VrmConfig, installations: Vec<(PortalId, String)>) -> VrmSide {
        VrmSide::start_inner(config, installations, None, Vec::new(), Vec::new())
    }

    /// The same, recording into `store` and taking back what it kept: the installations'
    /// last contact and device list, and the updates (an upload a restart cut resumes once
    /// the GX names its first missing chunk).
    pub fn start_with_store(
        config: VrmConfig,
        installations: Vec<(PortalId, String)>,
        store: Store,
        restored_installations: Vec<StoredInstallation>,
        restored_updates: Vec<RestoredUpdate>,
    ) -> VrmSide {
        VrmSide::start_inner(
            config,
            installations,
            Some(store),
            restored_installations,
            restored_updates,
        )
    }

    fn start_inner(
        config: VrmConfig,
        installations: Vec<(PortalId, String)>,
        store: Option<Store>,
        restored_installations: Vec<StoredInstallation>,
        restored_updates: Vec<RestoredUpdate>,
    ) -> VrmSide {
        let mut state = State::new();
        let mut restored: BTreeMap<PortalId, StoredInstallation> = restored_installations
            .into_iter()
            .map(|i| (i.portal_id.clone(), i))
            .collect();
        for (id, name) in installations {
            let mut inst = Installation::new(id.clone(), name);
            let mut presence = PresenceTracker::default();
            if let Some(r) = restored.remove(&id) {
                presence = PresenceTracker::restored(r.last_contact);
                inst.last_seen = r.last_contact;
                if let Some(d) = r.devices {
                    // The last device list, shown until the GX publishes again. The VRM
                    // access stays unknown until then: no update starts from old values.
                    inst.gx_firmware = d.gx_firmware;
                    inst.batteries = d.batteries;
                }
            }
            state.presence.insert(id.clone(), presence);
            state.installations.insert(id, inst);
        }
        let now = Instant::now();
        for r in restored_updates {
            if !state.installations.contains_key(&r.record.view.portal_id) {
                continue;
            }
            let t = restored_tracker(r, &config, now);
            if let Some(store) = &store
                && t.view.upload_phase == UploadPhase::Failed
            {
                store.save_update(&t.record());
            }
            state.trackers.push(t);
        }
        let state = Arc::new(Mutex::new(state));
        let (changes_tx, changes) = watch::channel(0u64);
        let changes_tx = Arc::new(changes_tx);
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let config = Arc::new(config);
        let mut options = MqttOptions::new(
            config.client_id.clone(),
            config.broker.host.clone(),
            config.broker.port,
        );
        // A persistent session: while the portal is away (a network cut), the broker keeps
        // the GXs' replies for it.
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        config
            .security
            .warn_if_insecure(&config.broker, "the portal");
        let secured = config.security.apply(&config.broker, &mut options);
        let (client, eventloop) = AsyncClient::new(options, 256);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let eventloop = match secured {
            Ok(()) => tokio::spawn(run_eventloop(
                eventloop,
                events_tx,
                config.reconnect_delay,
                config.broker.clone(),
            )),
            Err(e) => {
                // Never connect less securely than configured.
                tracing::error!(error = %e, "the portal will not connect to the MQTT broker");
                tokio::spawn(async move {
                    let _events = events_tx;
                    std::future::pending::<()>().await;
                })
            }
        };
        let preflights = crate::preflight::Preflights::default();
        let driver = Driver {
            preflights: preflights.clone(),
            state: Arc::clone(&state),
            changes: Arc::clone(&changes_tx),
            client,
            config: Arc::clone(&config),
            first_keepalive: BTreeSet::new(),
            store: store.clone(),
            requests: requests.clone(),
            dirty: BTreeSet::new(),
            saved_at: HashMap::new(),
        };
        let driver = tokio::spawn(driver.run(events_rx, requests_rx));
        VrmSide {
            state,
            changes,
            changes_tx,
            requests,
            config,
            store,
            tasks: Arc::new(Mutex::new(vec![
                eventloop.abort_handle(),
                driver.abort_handle(),
            ])),
            preflights,
        }
    }

    /// Stops the MQTT side at once (its connection drops; the broker keeps the portal's
    /// session). What was recorded stays in the store.
    pub fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
    }

    /// The store, when the portal keeps one.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// A copy of everything known now.
    pub fn snapshot(&self) -> VrmSnapshot {
        let mut s = lock(&self.state);
        // A GX may have fallen silent since the driver last looked.
        if s.refresh_presence(Instant::now(), self.config.offline_after) {
            drop(s);
            self.touch();
            s = lock(&self.state);
        }
        VrmSnapshot {
            connected: s.connected,
            installations: s.installations.clone(),
            updates: s.trackers.iter().map(|t| t.view.clone()).collect(),
            preflights: self.preflights.views(),
        }
    }

    /// Starts the pre-flight check of a file an installer uploaded: sends it to the GX,
    /// whose plugin inspects it. Refused like an update when the installation or battery
    /// is unknown, the GX is offline or its VRM access is not Full.
    pub async fn start_preflight(
        &self,
        order: crate::preflight::PreflightOrder,
    ) -> Result<CommandId, VrmError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Preflight(order, tx))
            .map_err(|_| VrmError::Stopped)?;
        rx.await.map_err(|_| VrmError::Stopped)?
    }

    /// The pre-flight checks.
    pub fn preflights(&self) -> &crate::preflight::Preflights {
        &self.preflights
    }

    /// A receiver that changes whenever anything does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Tells every watcher that something the page shows changed.
    pub fn touch(&self) {
        self.changes_tx.send_modify(|n| *n += 1);
    }

    /// The settings in use.
    pub fn config(&self) -> &VrmConfig {
        &self.config
    }

    /// Starts an update: sends the command and then the package. Refused when the
    /// installation or battery is unknown, the GX is offline ([`GX_OFFLINE`]), the GX's
    /// VRM access is not Full, the battery is not eligible, or an update of it is still
    /// running.
    pub async fn start_update(&self, order: UpdateOrder) -> Result<CommandId, VrmError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Update(order, tx))
            .map_err(|_| VrmError::Stopped)?;
        rx.await.map_err(|_| VrmError::Stopped)?
    }

    /// The order of the latest update of a battery, to retry it with the same file.
    pub fn last_order(&self, portal_id: &PortalId, instance: u32) -> Option<UpdateOrder> {
        lock(&self.state)
            .trackers
            .iter()
            .rev()
            .find(|t| &t.view.portal_id == portal_id && t.view.instance == instance)
            .and_then(|t| t.retry.clone())
    }

    /// The order of the latest update of a battery, to retry it with the same file; after
    /// a restart the file is read back from the store.
    pub async fn retry_order(
        &self,
        portal_id: &PortalId,
        instance: u32,
    ) -> Result<Option<UpdateOrder>, VrmError> {
        let latest = {
            let s = lock(&self.state);
            let Some(t) = s
                .trackers
                .iter()
                .rev()
                .find(|t| &t.view.portal_id == portal_id && t.view.instance == instance)
            else {
                return Ok(None);
            };
            if let Some(order) = &t.retry {
                return Ok(Some(order.clone()));
            }
            (t.command.clone(), t.view.user.clone())
        };
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let (command, user) = latest;
        let Some(file) = store
            .load_file(command.sha256, command.file_name.clone())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(UpdateOrder {
            portal_id: portal_id.clone(),
            instance,
            file,
            acknowledgements: command.acknowledgements,
            version_policy: command.version_policy,
            targets: command.targets,
            user,
        }))
    }

    /// Sends a read command (event log, diagnostics) and waits for its last reply.
    pub async fn rpc(&self, portal_id: &PortalId, command: Command) -> Result<Feedback, VrmError> {
        rpc_via(&self.requests, portal_id, command).await
    }

    /// Whether `portal_id`'s GX is offline now.
    fn gx_offline(&self, portal_id: &PortalId) -> bool {
        lock(&self.state)
            .judge(portal_id, Instant::now(), self.config.offline_after)
            .is_offline()
    }

    /// The serial number of battery `instance` of `portal_id`: from the device list, else
    /// (the GX has not published it since a restart) from the store.
    pub async fn serial_of(
        &self,
        portal_id: &PortalId,
        instance: u32,
    ) -> Result<Option<String>, VrmError> {
        let known = lock(&self.state)
            .installations
            .get(portal_id)
            .and_then(|i| i.batteries.get(&instance))
            .and_then(|b| b.serial.clone());
        if known.is_some() {
            return Ok(known);
        }
        match &self.store {
            Some(store) => Ok(store.serial_of(portal_id, instance).await?),
            None => Ok(None),
        }
    }

    /// The newest `limit` events of battery `serial`: from the GX, stored as received; while
    /// the GX is offline or does not answer, as the portal last received them.
    pub async fn event_log(
        &self,
        portal_id: &PortalId,
        serial: &str,
        limit: u16,
    ) -> Result<EventLogAnswer, VrmError> {
        let battery = Serial::new(serial)
            .map_err(|e| VrmError::NotFound(format!("battery serial number: {e}")))?;
        let why = if self.gx_offline(portal_id) {
            VrmError::GxOffline(
                "the GX device is offline, and the portal has no event log of this battery \
                 stored"
                    .into(),
            )
        } else {
            match self
                .rpc(
                    portal_id,
                    Command::GetEventLog(EventLogQuery { battery, limit }),
                )
                .await
            {
                Ok(fb) => {
                    let events: Vec<Value> = fb
                        .events
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect();
                    if let Some(store) = &self.store {
                        store.save_events(portal_id, serial, &events);
                    }
                    return Ok(EventLogAnswer {
                        serial: serial.to_owned(),
                        events,
                        stored_at: None,
                    });
                }
                Err(e @ VrmError::Refused { .. }) => return Err(e),
                Err(e) => e,
            }
        };
        let Some(store) = &self.store else {
            return Err(why);
        };
        match store.event_log(portal_id, serial, limit).await? {
            Some(log) => Ok(EventLogAnswer {
                serial: serial.to_owned(),
                events: log.events,
                stored_at: Some(log.saved_at),
            }),
            None => Err(why),
        }
    }

    /// The diagnostics bundle of job `job`: from the GX, stored as received; while the GX
    /// is offline or does not answer, the one the portal stored (at the job's failure, or
    /// when it was last opened).
    pub async fn diagnostics(
        &self,
        portal_id: &PortalId,
        job: u64,
    ) -> Result<DiagnosticsAnswer, VrmError> {
        let why = if self.gx_offline(portal_id) {
            VrmError::GxOffline(
                "the GX device is offline, and the portal has no diagnostics of this update \
                 stored"
                    .into(),
            )
        } else {
            match self
                .rpc(portal_id, Command::GetDiagnostics(DiagnosticsQuery { job }))
                .await
            {
                Ok(fb) => {
                    let bundle = fb.diagnostics.unwrap_or_default();
                    if let Some(store) = &self.store {
                        let serial = bundle.pointer("/battery/serial").and_then(Value::as_str);
                        store.save_diagnostics(portal_id, job, serial, "requested", &bundle);
                    }
                    return Ok(DiagnosticsAnswer {
                        bundle,
                        stored: None,
                    });
                }
                Err(e @ VrmError::Refused { .. }) => return Err(e),
                Err(e) => e,
            }
        };
        let Some(store) = &self.store else {
            return Err(why);
        };
        match store.diagnostics(portal_id, job).await? {
            Some(d) => Ok(DiagnosticsAnswer {
                bundle: d.bundle,
                stored: Some((d.taken_at, d.reason)),
            }),
            None => Err(why),
        }
    }

    /// The updates of battery `instance` of `portal_id` started from this portal, newest
    /// first, each with whether its event log (and the diagnostics of a failure) are
    /// stored: from the store (every one kept), else those in memory.
    pub async fn history(
        &self,
        portal_id: &PortalId,
        instance: u32,
        limit: u32,
    ) -> Result<Vec<(UpdateView, bool)>, VrmError> {
        if let Some(store) = &self.store {
            // What is queued reaches the database first: the answer includes it.
            let records = store.updates_of(portal_id, instance, limit).await?;
            let live: HashMap<CommandId, (UpdateView, bool)> = lock(&self.state)
                .trackers
                .iter()
                .filter(|t| &t.view.portal_id == portal_id && t.view.instance == instance)
                .map(|t| (t.view.commandid.clone(), (t.view.clone(), t.archived)))
                .collect();
            // The view in memory is the newest (the record of an update in progress is
            // written behind it).
            return Ok(records
                .into_iter()
                .map(|r| {
                    live.get(&r.view.commandid)
                        .cloned()
                        .unwrap_or((r.view, r.archived))
                })
                .collect());
        }
        Ok(lock(&self.state)
            .trackers
            .iter()
            .rev()
            .filter(|t| &t.view.portal_id == portal_id && t.view.instance == instance)
            .take(limit as usize)
            .map(|t| (t.view.clone(), t.archived))
            .collect())
    }
}

/// An ended update whose event log (and diagnostics) the portal stores.
struct EndedUpdate {
    commandid: CommandId,
    portal: PortalId,
    serial: String,
    job: Option<u64>,
    failed: bool,
}

/// Fetches and stores the event log of an ended update and, after a failure, its
/// diagnostics; then marks it archived. A GX that does not answer is asked again later.
async fn archive(
    requests: mpsc::UnboundedSender<Request>,
    state: Arc<Mutex<State>>,
    store: Store,
    ended: EndedUpdate,
) {
    let EndedUpdate {
        commandid,
        portal,
        serial,
        job,
        failed,
    } = ended;
    let done = async {
        let battery = Serial::new(&serial).map_err(|e| VrmError::NotFound(e.to_string()))?;
        let limit = bmsfw_vrm_wire::limits::MAX_EVENTS;
        match rpc_via(
            &requests,
            &portal,
            Command::GetEventLog(EventLogQuery { battery, limit }),
        )
        .await
        {
            Ok(fb) => {
                let events: Vec<Value> = fb
                    .events
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| serde_json::to_value(e).ok())
                    .collect();
                store.save_events(&portal, &serial, &events);
            }
            Err(VrmError::Refused { code, message }) => {
                tracing::info!(%portal, %serial, code, %message, "the GX has no event log to store");
            }
            Err(e) => return Err(e),
        }
        if let (true, Some(job)) = (failed, job) {
            match rpc_via(
                &requests,
                &portal,
                Command::GetDiagnostics(DiagnosticsQuery { job }),
            )
            .await
            {
                Ok(fb) => {
                    let bundle = fb.diagnostics.unwrap_or_default();
                    store.save_diagnostics(&portal, job, Some(&serial), "failure", &bundle);
                    tracing::info!(%portal, job, "diagnostics of the failed update stored");
                }
                Err(VrmError::Refused { code, message }) => {
                    tracing::info!(%portal, job, code, %message, "the GX has no diagnostics to store");
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<(), VrmError>(())
    }
    .await;
    let mut s = lock(&state);
    let Some(t) = s
        .trackers
        .iter_mut()
        .find(|t| t.view.commandid == commandid)
    else {
        return;
    };
    match done {
        Ok(()) => {
            t.archived = true;
            t.archive_after = None;
            store.save_update(&t.record());
        }
        Err(e) => {
            tracing::info!(%commandid, error = %e, "the event log of an ended update could not be stored yet; trying again later");
            t.archive_after = Some(Instant::now() + ARCHIVE_RETRY);
        }
    }
}

enum TransportEvent {
    Connected,
    Disconnected,
    /// Topic, payload, and whether the broker replayed it as a retained message.
    Message(String, Vec<u8>, bool),
}

async fn run_eventloop(
    mut eventloop: rumqttc::EventLoop,
    tx: mpsc::UnboundedSender<TransportEvent>,
    reconnect_delay: Duration,
    broker: BrokerAddr,
) {
    let mut up = false;
    let mut said: Option<String> = None;
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                said = None;
                up = true;
                TransportEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                TransportEvent::Message(p.topic, p.payload.to_vec(), p.retain)
            }
            Ok(_) => continue,
            Err(e) => {
                if matches!(
                    e,
                    rumqttc::ConnectionError::Tls(_)
                        | rumqttc::ConnectionError::ConnectionRefused(_)
                ) {
                    let why = bmsfw_core::vrm::tls::describe_connection_error(&broker, &e);
                    if said.as_deref() != Some(why.as_str()) {
                        tracing::error!("portal cannot connect to the MQTT broker: {why}");
                        said = Some(why);
                    }
                }
                if up {
                    tracing::warn!(error = %e, "portal lost the MQTT broker");
                    up = false;
                    if tx.send(TransportEvent::Disconnected).is_err() {
                        return;
                    }
                }
                tokio::time::sleep(reconnect_delay).await;
                continue;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}

struct Driver {
    preflights: crate::preflight::Preflights,
    state: Arc<Mutex<State>>,
    changes: Arc<watch::Sender<u64>>,
    client: AsyncClient,
    config: Arc<VrmConfig>,
    /// Installations that got their first keepalive of this connection (a full dump).
    first_keepalive: BTreeSet<PortalId>,
    store: Option<Store>,
    /// The driver's own requests (the reads of an ended update's archive).
    requests: mpsc::UnboundedSender<Request>,
    /// Installations whose last contact or device list changed since last stored.
    dirty: BTreeSet<PortalId>,
    /// When each installation was last stored, and its batteries then.
    saved_at: HashMap<PortalId, (Instant, BatteryShape)>,
}

impl Driver {
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Stores the installations that changed and were not stored for a while; returns when
    /// the next one is due.
    fn save_installations(&mut self, now: Instant) -> Option<Instant> {
        let Some(store) = &self.store else {
            self.dirty.clear();
            return None;
        };
        let mut next: Option<Instant> = None;
        let s = lock(&self.state);
        let ids: Vec<PortalId> = self.dirty.iter().cloned().collect();
        for id in ids {
            let shape: BatteryShape = s
                .installations
                .get(&id)
                .map(|i| {
                    i.batteries
                        .values()
                        .map(|b| (b.instance, b.serial.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let due = match self.saved_at.get(&id) {
                Some((at, saved)) if *saved == shape => *at + INSTALLATION_SAVE_INTERVAL,
                _ => now,
            };
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            self.dirty.remove(&id);
            self.saved_at.insert(id.clone(), (now, shape));
            if let Some(inst) = s.installations.get(&id) {
                let devices = DeviceList {
                    gx_firmware: inst.gx_firmware.clone(),
                    batteries: inst.batteries.clone(),
                };
                store.save_installation(&id, &inst.name, inst.last_seen, Some(&devices));
            }
        }
        next
    }

    /// Starts storing the event log (and the diagnostics of a failure) of every ended
    /// update not archived yet, while its GX is not offline; returns when to look again.
    fn archive_ended(&self, now: Instant) -> Option<Instant> {
        let store = self.store.as_ref()?;
        let mut s = lock(&self.state);
        let interval = self.config.offline_after;
        let mut jobs = Vec::new();
        let mut next: Option<Instant> = None;
        let s = &mut *s;
        let mut running = s
            .trackers
            .iter()
            .filter(|t| t.archive_after.is_some_and(|a| a > now + ARCHIVE_RETRY))
            .count();
        for t in &mut s.trackers {
            if t.archived || !t.ended(&s.installations) {
                continue;
            }
            if let Some(after) = t.archive_after {
                if after > now {
                    next = Some(next.map_or(after, |n| n.min(after)));
                }
                continue;
            }
            let offline = s
                .presence
                .get(&t.view.portal_id)
                .map(|p| p.judge(now, s.watching_since, interval))
                .unwrap_or_default()
                .is_offline();
            if offline || !s.connected || running >= MAX_ARCHIVING {
                continue;
            }
            running += 1;
            // Far in the future while it runs; the task sets it when done.
            t.archive_after = Some(now + ARCHIVING);
            jobs.push(EndedUpdate {
                commandid: t.view.commandid.clone(),
                portal: t.view.portal_id.clone(),
                serial: t.view.serial.clone(),
                job: t.view.job,
                failed: t.failed(&s.installations),
            });
        }
        for ended in jobs {
            tokio::spawn(archive(
                self.requests.clone(),
                Arc::clone(&self.state),
                store.clone(),
                ended,
            ));
        }
        next
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<TransportEvent>,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) {
        let mut next_keepalive = Instant::now();
        loop {
            self.pump().await;
            if lock(&self.state).connected {
                for (topic, payload) in self.preflights.transmits(Instant::now()) {
                    self.publish(topic, QoS::AtLeastOnce, payload).await;
                }
            }
            let now = Instant::now();
            if lock(&self.state).connected && now >= next_keepalive {
                self.keepalives().await;
                next_keepalive = now + self.config.keepalive_interval;
            }
            let save_due = self.save_installations(now);
            let archive_due = self.archive_ended(now);
            let (wake, presence_changed) = {
                let mut s = lock(&self.state);
                let changed = s.refresh_presence(now, self.config.offline_after);
                let wake = s
                    .trackers
                    .iter()
                    .filter_map(|t| t.upload.poll_timeout())
                    .chain(std::iter::once(next_keepalive))
                    .chain(s.next_presence_deadline(now, self.config.offline_after))
                    .chain(save_due)
                    .chain(archive_due)
                    .chain(self.preflights.next_timeout())
                    .min()
                    .unwrap_or(next_keepalive);
                (wake, changed)
            };
            if presence_changed {
                self.changed();
                self.resend_to_returned().await;
            }
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_transport(event).await,
                    None => return,
                },
                request = requests.recv() => match request {
                    Some(request) => self.on_request(request).await,
                    None => return,
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    async fn publish(&self, topic: String, qos: QoS, payload: Vec<u8>) {
        if let Err(e) = self.client.publish(topic, qos, false, payload).await {
            tracing::warn!(error = %e, "portal could not publish");
        }
    }

    async fn keepalives(&mut self) {
        // An installation whose GX has not answered with its values yet (it may not have
        // been subscribed when the first keepalive went out) asks for all of them again.
        let ids: Vec<(PortalId, bool)> = lock(&self.state)
            .installations
            .values()
            .map(|i| (i.portal_id.clone(), i.vrm_portal.is_some()))
            .collect();
        for (portal, answered) in ids {
            let options = KeepaliveOptions {
                suppress_republish: answered && self.first_keepalive.contains(&portal),
            };
            self.first_keepalive.insert(portal.clone());
            let topic = Topic::Keepalive { portal }.to_string();
            self.publish(topic, QoS::AtMostOnce, options.encode()).await;
        }
    }

    /// Publishes whatever the uploads want to send.
    async fn pump(&mut self) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut s = lock(&self.state);
            if !s.connected {
                return;
            }
            for t in &mut s.trackers {
                let portal = t.view.portal_id.clone();
                while let Some(tx) = t.upload.poll_transmit(now) {
                    let command = match tx {
                        UploadTransmit::Chunk { index, data } => match ChunkData::new(data) {
                            Ok(data) => Command::UploadChunk(ChunkCommand {
                                job: t.view.job.unwrap_or(0),
                                index,
                                data,
                            }),
                            Err(e) => {
                                tracing::error!(error = %e, "chunk out of bounds");
                                break;
                            }
                        },
                        UploadTransmit::StatusQuery => Command::UploadStatus(StatusQuery {
                            job: t.view.job.unwrap_or(0),
                        }),
                    };
                    let rpc = RpcCommand {
                        id: t.view.commandid.clone(),
                        command,
                    };
                    out.push((
                        Topic::RpcIn {
                            portal: portal.clone(),
                        }
                        .to_string(),
                        rpc.encode(),
                    ));
                }
                t.view.upload = t.upload.stats().clone();
            }
        }
        for (topic, payload) in out {
            self.publish(topic, QoS::AtLeastOnce, payload).await;
        }
    }

    /// For each unfinished upload to `only`'s GX (every GX when `None`) that is waiting
    /// for the GX: where it stands when the GX named its job, else the same update
    /// command again, which the GX answers with where it stands (or starts, if it never
    /// recorded it).
    fn unanswered(&self, s: &State, only: Option<&PortalId>) -> Vec<(PortalId, RpcCommand)> {
        s.trackers
            .iter()
            .filter(|t| {
                only.is_none_or(|p| *p == t.view.portal_id)
                    && !t.view.finished
                    && matches!(
                        t.upload.phase(),
                        UploadPhase::Announced | UploadPhase::Sending
                    )
            })
            .map(|t| {
                // Where the upload stands; without a job (the GX's first
                // answer never came, or a restart lost it) the same command
                // again, which the GX answers with where it stands.
                let command = match t.view.job {
                    Some(job) => Command::UploadStatus(StatusQuery { job }),
                    // Signed anew: a fresh timestamp and nonce.
                    None => Command::Update(crate::signer::signed_update(
                        self.config.signer.as_deref(),
                        &t.view.portal_id,
                        &t.view.commandid,
                        t.command.clone(),
                    )),
                };
                (
                    t.view.portal_id.clone(),
                    RpcCommand {
                        id: t.view.commandid.clone(),
                        command,
                    },
                )
            })
            .collect()
    }

    /// Sends the unanswered update commands, status queries and pre-flight checks again
    /// to every GX that came back online.
    async fn resend_to_returned(&mut self) {
        let (returned, queries): (Vec<PortalId>, Vec<(PortalId, RpcCommand)>) = {
            let mut s = lock(&self.state);
            let returned = std::mem::take(&mut s.returned);
            let queries = returned
                .iter()
                .flat_map(|portal| self.unanswered(&s, Some(portal)))
                .collect();
            (returned, queries)
        };
        for (portal, rpc) in queries {
            tracing::info!(%portal, commandid = %rpc.id, "asking a GX that came back where an update stands");
            let topic = Topic::RpcIn { portal }.to_string();
            self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
        }
        // Pre-flight uploads too: a GX that restarted may have lost them.
        for portal in &returned {
            for (topic, payload) in self.preflights.resends(Some(portal)) {
                self.publish(topic, QoS::AtLeastOnce, payload).await;
            }
        }
    }

    async fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Connected => {
                for f in Topic::portal_filters() {
                    if let Err(e) = self.client.subscribe(f, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "portal could not subscribe");
                    }
                }
                self.first_keepalive.clear();
                let queries = {
                    let mut s = lock(&self.state);
                    s.connected = true;
                    s.watching_since = Instant::now();
                    self.unanswered(&s, None)
                };
                self.keepalives().await;
                for (portal, rpc) in queries {
                    let topic = Topic::RpcIn { portal }.to_string();
                    self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
                }
                // Pre-flight uploads continue where the GX says they stand.
                for (topic, payload) in self.preflights.resends(None) {
                    self.publish(topic, QoS::AtLeastOnce, payload).await;
                }
                self.changed();
            }
            TransportEvent::Disconnected => {
                lock(&self.state).connected = false;
                self.changed();
            }
            TransportEvent::Message(topic, payload, retained) => {
                self.on_message(&topic, &payload, retained);
                self.resend_to_returned().await;
            }
        }
    }

    fn on_message(&mut self, topic: &str, payload: &[u8], retained: bool) {
        let topic = match Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring message");
                return;
            }
        };
        match topic {
            Topic::Notify { portal, path } if is_presence(&path) => {
                let message = match PresenceMessage::parse(payload) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(%portal, error = %e, "unreadable presence");
                        return;
                    }
                };
                let mut s = lock(&self.state);
                if let Some(p) = s.presence.get_mut(&portal) {
                    tracing::info!(%portal, online = message.online, session = ?message.session, retained, "GX presence");
                    p.announced(&message, retained, Instant::now(), now_ms());
                    s.refresh_presence_of(&portal, Instant::now(), self.config.offline_after);
                    drop(s);
                    self.dirty.insert(portal);
                    self.changed();
                }
            }
            Topic::Notify { portal, path } => {
                let Ok(value) = Notification::parse(payload) else {
                    tracing::debug!(%portal, %path, "unreadable value");
                    return;
                };
                let mut s = lock(&self.state);
                if !s.installations.contains_key(&portal) {
                    return;
                }
                if !retained {
                    self.contact(&mut s, &portal);
                }
                if let Some(inst) = s.installations.get_mut(&portal) {
                    inst.apply(&path, &value);
                }
                drop(s);
                self.dirty.insert(portal);
                self.changed();
            }
            Topic::RpcOut { portal } => {
                {
                    let mut s = lock(&self.state);
                    if s.installations.contains_key(&portal) && !retained {
                        self.contact(&mut s, &portal);
                        self.dirty.insert(portal.clone());
                    }
                }
                match RpcResponse::parse(payload) {
                    Ok(reply) => self.on_reply(&portal, reply),
                    Err(e) => tracing::warn!(%portal, error = %e, "unreadable reply from GX"),
                }
            }
            _ => {}
        }
    }

    /// A live message from `portal`'s GX: it is connected now.
    fn contact(&self, s: &mut State, portal: &PortalId) {
        if let Some(p) = s.presence.get_mut(portal) {
            p.contact(Instant::now(), now_ms());
        }
        s.refresh_presence_of(portal, Instant::now(), self.config.offline_after);
    }

    fn on_reply(&mut self, portal: &PortalId, reply: RpcResponse) {
        let Some(id) = reply.commandid.clone() else {
            tracing::warn!(%portal, error = ?reply.feedback.error, "GX refused an unreadable command");
            return;
        };
        if self.preflights.apply_reply(portal, &reply) {
            self.changed();
            return;
        }
        let mut s = lock(&self.state);
        if let Some(t) = s
            .trackers
            .iter_mut()
            .find(|t| t.view.commandid == id && &t.view.portal_id == portal)
        {
            if reply.msgnr <= t.last_msgnr {
                return;
            }
            t.last_msgnr = reply.msgnr;
            apply_reply(t, &reply);
            if let Some(store) = &self.store {
                store.save_update(&t.record());
            }
            drop(s);
            self.changed();
            return;
        }
        let last = s.seen.entry(id.clone()).or_insert(0);
        if reply.msgnr <= *last {
            return;
        }
        *last = reply.msgnr;
        if s.seen.len() > 4096 {
            s.seen.clear();
        }
        if reply.finished
            && let Some(waiter) = s.rpcs.remove(&id)
        {
            let _ = waiter.send(reply);
        }
    }

    async fn on_request(&mut self, request: Request) {
        match request {
            Request::Preflight(order, done) => {
                let result = self.begin_preflight(order).await;
                let _ = done.send(result);
            }
            Request::Update(order, done) => {
                let result = self.begin_update(order).await;
                let _ = done.send(result);
            }
            Request::Rpc(portal, command, done) => {
                let id = new_command_id("q");
                let (tx, rx) = oneshot::channel();
                lock(&self.state).rpcs.insert(id.clone(), tx);
                let rpc = RpcCommand {
                    id: id.clone(),
                    command,
                };
                let topic = Topic::RpcIn {
                    portal: portal.clone(),
                }
                .to_string();
                self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
                let timeout = self.config.rpc_timeout;
                let state = Arc::clone(&self.state);
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, rx).await {
                        Ok(Ok(reply)) => Ok(reply),
                        Ok(Err(_)) => Err(VrmError::Stopped),
                        Err(_) => {
                            lock(&state).rpcs.remove(&id);
                            Err(VrmError::Timeout(timeout))
                        }
                    };
                    let _ = done.send(result);
                });
            }
        }
    }

    async fn begin_preflight(
        &mut self,
        order: crate::preflight::PreflightOrder,
    ) -> Result<CommandId, VrmError> {
        let serial = {
            let s = lock(&self.state);
            let battery =
                s.commandable_battery(&order.portal_id, order.instance, self.config.offline_after)?;
            Serial::new(battery.serial.as_deref().unwrap_or_default())
                .map_err(|e| VrmError::NotFound(format!("battery serial number: {e}")))?
        };
        let id = new_command_id("p");
        let rpc = self.preflights.begin(
            &order,
            serial,
            id.clone(),
            self.config.chunk_size,
            self.config.upload_window,
            self.config.stall_timeout,
        );
        tracing::info!(commandid = %id, portal = %order.portal_id, instance = order.instance, user = %order.user, "pre-flight check requested");
        let topic = Topic::RpcIn {
            portal: order.portal_id,
        }
        .to_string();
        self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
        self.changed();
        Ok(id)
    }

    async fn begin_update(&mut self, order: UpdateOrder) -> Result<CommandId, VrmError> {
        let (command, id) = {
            let mut s = lock(&self.state);
            let battery = s
                .commandable_battery(&order.portal_id, order.instance, self.config.offline_after)
                .inspect_err(|e| {
                    if matches!(e, VrmError::GxOffline(_)) {
                        tracing::info!(portal = %order.portal_id, instance = order.instance, user = %order.user, "update refused: GX device offline");
                    }
                })?;
            if battery.eligible != Some(true) {
                return Err(VrmError::NotAllowed(format!(
                    "this battery cannot be updated remotely: {}",
                    battery
                        .eligibility_reason
                        .as_deref()
                        .unwrap_or("not supported")
                )));
            }
            let serial = battery.serial.clone().unwrap_or_default();
            let serial = Serial::new(&serial)
                .map_err(|e| VrmError::NotFound(format!("battery serial number: {e}")))?;
            // A job the GX reported Completed or Failed is over, even before its last
            // reply arrives: the installer sees it ended and may start the next one.
            let running = s.trackers.iter().any(|t| {
                t.view.portal_id == order.portal_id
                    && t.view.instance == order.instance
                    && !t.view.finished
                    && !matches!(t.view.state, Some(JobState::Completed | JobState::Failed))
                    && t.upload.phase() != UploadPhase::Failed
            });
            if running {
                return Err(VrmError::NotAllowed(
                    "an update of this battery is already running".into(),
                ));
            }
            let id = new_command_id("u");
            let command = UpdateCommand {
                battery: serial.clone(),
                file_name: order.file.name.clone(),
                size: order.file.data.len() as u64,
                chunk_size: self.config.chunk_size,
                sha256: order.file.sha256,
                acknowledgements: order.acknowledgements.clone(),
                version_policy: order.version_policy,
                targets: order.targets.clone(),
                signature: None,
            };
            let view = UpdateView {
                commandid: id.clone(),
                portal_id: order.portal_id.clone(),
                instance: order.instance,
                serial: serial.as_str().to_owned(),
                user: order.user.clone(),
                file_name: order.file.name.as_str().to_owned(),
                file_size: order.file.data.len() as u64,
                job: None,
                state: None,
                states_seen: Vec::new(),
                percent: 0,
                error_code: None,
                error: None,
                version_before: None,
                version_target: None,
                version_after: None,
                requested_at: now_ms(),
                finished: false,
                upload_phase: UploadPhase::Announced,
                upload: UploadStats::default(),
            };
            let upload = UploadSender::new(
                Arc::clone(&order.file.data),
                self.config.chunk_size,
                self.config.upload_window,
                self.config.stall_timeout,
                Instant::now(),
            );
            if s.trackers.len() >= MAX_TRACKERS
                && let Some(pos) = s.trackers.iter().position(|t| t.view.finished)
            {
                s.trackers.remove(pos);
            }
            // Only the latest update of a battery keeps its file for a retry.
            for t in s.trackers.iter_mut().filter(|t| {
                t.view.portal_id == order.portal_id && t.view.instance == order.instance
            }) {
                t.retry = None;
            }
            let tracker = Tracker {
                view,
                upload,
                last_msgnr: 0,
                retry: Some(order.clone()),
                command: command.clone(),
                archived: false,
                archive_after: None,
            };
            if let Some(store) = &self.store {
                store.save_update(&tracker.record());
            }
            s.trackers.push(tracker);
            (command, id)
        };
        tracing::info!(commandid = %id, portal = %order.portal_id, instance = order.instance, user = %order.user, "update requested");
        let command = crate::signer::signed_update(
            self.config.signer.as_deref(),
            &order.portal_id,
            &id,
            command,
        );
        let rpc = RpcCommand {
            id: id.clone(),
            command: Command::Update(command),
        };
        let topic = Topic::RpcIn {
            portal: order.portal_id,
        }
        .to_string();
        self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
        self.changed();
        Ok(id)
    }
}

/// Takes a reply into an update's view and its upload.
fn apply_reply(t: &mut Tracker, reply: &RpcResponse) {
    let fb = &reply.feedback;
    let v = &mut t.view;
    if let Some(job) = fb.job {
        v.job = Some(job);
    }
    let state = fb.state.or(match fb.status {
        Status::Starting | Status::WaitingForChunks => Some(JobState::Uploading),
        _ => None,
    });
    if let Some(state) = state
        && v.state.is_none_or(|old| old <= state)
    {
        if v.state != Some(state) {
            v.states_seen.push(state);
        }
        v.state = Some(state);
    }
    if let Some(p) = fb.percent {
        v.percent = p;
    }
    if fb.status == Status::Error {
        v.error_code = fb.error_code;
        v.error = fb.error.clone();
        if reply.finished && v.state != Some(JobState::Failed) {
            v.states_seen.push(JobState::Failed);
            v.state = Some(JobState::Failed);
        }
    }
    for (slot, value) in [
        (&mut v.version_before, &fb.version_before),
        (&mut v.version_target, &fb.version_target),
        (&mut v.version_after, &fb.version_after),
    ] {
        if value.is_some() {
            *slot = value.clone();
        }
    }
    if reply.finished {
        v.finished = true;
    }
    t.upload.handle_feedback(fb, Instant::now());
    v.upload_phase = t.upload.phase();
    v.upload = t.upload.stats().clone();
}
