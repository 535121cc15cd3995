//! The portal's side of the MQTT link: keeps every installation's GX publishing, builds the
//! device lists from its values, sends update commands and packages, follows each update's
//! replies, asks GXs for event logs and diagnostics, and follows whether each GX is online
//! (its last will and its silence, see [`crate::presence`]): no update starts toward a GX
//! that is offline.

use crate::model::Installation;
use crate::presence::{GxPresence, PresenceTracker, now_ms};
use crate::upload::{UploadPhase, UploadSender, UploadStats, UploadTransmit};
use bmsfw_vrm_wire::command::{ChunkCommand, StatusQuery, UpdateCommand};
use bmsfw_vrm_wire::envelope::KeepaliveOptions;
use bmsfw_vrm_wire::limits::{DEFAULT_CHUNK_SIZE, MAX_PACKET};
use bmsfw_vrm_wire::presence::is_presence;
use bmsfw_vrm_wire::{
    Acknowledgement, BrokerAddr, ChunkData, Command, CommandId, Feedback, FileName, JobState,
    Notification, PortalId, PresenceMessage, RpcCommand, RpcResponse, Serial, Sha256Hex, Status,
    TargetList, Topic, VersionPolicy, WireVersion,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
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
}

impl VrmConfig {
    /// Defaults: keepalive every 25 s, 16 KiB chunks, a window of 8, 5 s stall timeout, a
    /// GX offline after 60 s of silence.
    pub fn new(broker: BrokerAddr) -> VrmConfig {
        VrmConfig {
            broker,
            client_id: "bmsfw-portal".into(),
            keepalive_interval: Duration::from_secs(25),
            reconnect_delay: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(10),
            chunk_size: DEFAULT_CHUNK_SIZE,
            upload_window: 8,
            stall_timeout: Duration::from_secs(5),
            offline_after: Duration::from_secs(60),
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

/// One update the portal started, as it follows it through the GX's replies.
#[derive(Debug, Clone, Serialize)]
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
    retry: Option<UpdateOrder>,
}

/// Everything the portal knows, as the web layer reads it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VrmSnapshot {
    /// Whether the portal is connected to the broker.
    pub connected: bool,
    /// The installations, by portal id.
    pub installations: BTreeMap<PortalId, Installation>,
    /// The updates started from this portal, oldest first.
    pub updates: Vec<UpdateView>,
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
        }
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
}

/// The running MQTT side of the portal. Cloning gives another handle.
#[derive(Clone)]
pub struct VrmSide {
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<u64>,
    changes_tx: Arc<watch::Sender<u64>>,
    requests: mpsc::UnboundedSender<Request>,
    config: Arc<VrmConfig>,
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

impl VrmSide {
    /// Connects to the broker and keeps the listed installations (portal id, name)
    /// publishing.
    pub fn start(config: VrmConfig, installations: Vec<(PortalId, String)>) -> VrmSide {
        let mut state = State::new();
        for (id, name) in installations {
            state
                .presence
                .insert(id.clone(), PresenceTracker::default());
            state
                .installations
                .insert(id.clone(), Installation::new(id, name));
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
        let (client, eventloop) = AsyncClient::new(options, 256);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_eventloop(eventloop, events_tx, config.reconnect_delay));
        let driver = Driver {
            state: Arc::clone(&state),
            changes: Arc::clone(&changes_tx),
            client,
            config: Arc::clone(&config),
            first_keepalive: BTreeSet::new(),
        };
        tokio::spawn(driver.run(events_rx, requests_rx));
        VrmSide {
            state,
            changes,
            changes_tx,
            requests,
            config,
        }
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
        }
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

    /// Sends a read command (event log, diagnostics) and waits for its last reply.
    pub async fn rpc(&self, portal_id: &PortalId, command: Command) -> Result<Feedback, VrmError> {
        let (tx, rx) = oneshot::channel();
        self.requests
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
) {
    let mut up = false;
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up = true;
                TransportEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                TransportEvent::Message(p.topic, p.payload.to_vec(), p.retain)
            }
            Ok(_) => continue,
            Err(e) => {
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
    state: Arc<Mutex<State>>,
    changes: Arc<watch::Sender<u64>>,
    client: AsyncClient,
    config: Arc<VrmConfig>,
    /// Installations that got their first keepalive of this connection (a full dump).
    first_keepalive: BTreeSet<PortalId>,
}

impl Driver {
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<TransportEvent>,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) {
        let mut next_keepalive = Instant::now();
        loop {
            self.pump().await;
            let now = Instant::now();
            if lock(&self.state).connected && now >= next_keepalive {
                self.keepalives().await;
                next_keepalive = now + self.config.keepalive_interval;
            }
            let (wake, presence_changed) = {
                let mut s = lock(&self.state);
                let changed = s.refresh_presence(now, self.config.offline_after);
                let wake = s
                    .trackers
                    .iter()
                    .filter_map(|t| t.upload.poll_timeout())
                    .chain(std::iter::once(next_keepalive))
                    .chain(s.next_presence_deadline(now, self.config.offline_after))
                    .min()
                    .unwrap_or(next_keepalive);
                (wake, changed)
            };
            if presence_changed {
                self.changed();
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

    async fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Connected => {
                for f in Topic::portal_filters() {
                    if let Err(e) = self.client.subscribe(f, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "portal could not subscribe");
                    }
                }
                self.first_keepalive.clear();
                let queries: Vec<(PortalId, RpcCommand)> = {
                    let mut s = lock(&self.state);
                    s.connected = true;
                    s.watching_since = Instant::now();
                    s.trackers
                        .iter()
                        .filter(|t| {
                            t.view.job.is_some()
                                && matches!(
                                    t.upload.phase(),
                                    UploadPhase::Announced | UploadPhase::Sending
                                )
                        })
                        .map(|t| {
                            (
                                t.view.portal_id.clone(),
                                RpcCommand {
                                    id: t.view.commandid.clone(),
                                    command: Command::UploadStatus(StatusQuery {
                                        job: t.view.job.unwrap_or(0),
                                    }),
                                },
                            )
                        })
                        .collect()
                };
                self.keepalives().await;
                for (portal, rpc) in queries {
                    let topic = Topic::RpcIn { portal }.to_string();
                    self.publish(topic, QoS::AtLeastOnce, rpc.encode()).await;
                }
                self.changed();
            }
            TransportEvent::Disconnected => {
                lock(&self.state).connected = false;
                self.changed();
            }
            TransportEvent::Message(topic, payload, retained) => {
                self.on_message(&topic, &payload, retained);
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
                self.changed();
            }
            Topic::RpcOut { portal } => {
                {
                    let mut s = lock(&self.state);
                    if s.installations.contains_key(&portal) && !retained {
                        self.contact(&mut s, &portal);
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

    async fn begin_update(&mut self, order: UpdateOrder) -> Result<CommandId, VrmError> {
        let (command, id) = {
            let mut s = lock(&self.state);
            if !s.installations.contains_key(&order.portal_id) {
                return Err(VrmError::NotFound(format!(
                    "no installation {}",
                    order.portal_id
                )));
            }
            let presence = s.judge(&order.portal_id, Instant::now(), self.config.offline_after);
            if let Some(why) = presence.refusal(self.config.offline_after) {
                tracing::info!(portal = %order.portal_id, instance = order.instance, user = %order.user, "update refused: GX device offline");
                return Err(VrmError::GxOffline(why));
            }
            let inst = s.installations.get(&order.portal_id).ok_or_else(|| {
                VrmError::NotFound(format!("no installation {}", order.portal_id))
            })?;
            if !inst.allows_updates() {
                return Err(VrmError::NotAllowed(
                    "the GX device's VRM Portal access is not Full: remote updates are disabled"
                        .into(),
                ));
            }
            let battery = inst.batteries.get(&order.instance).ok_or_else(|| {
                VrmError::NotFound(format!(
                    "no battery {} on this installation",
                    order.instance
                ))
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
            let running = s.trackers.iter().any(|t| {
                t.view.portal_id == order.portal_id
                    && t.view.instance == order.instance
                    && !t.view.finished
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
            s.trackers.push(Tracker {
                view,
                upload,
                last_msgnr: 0,
                retry: Some(order.clone()),
            });
            (command, id)
        };
        tracing::info!(commandid = %id, portal = %order.portal_id, instance = order.instance, user = %order.user, "update requested");
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
