//! The GX side of the VRM link: one task that speaks MQTT with the portal on behalf of the
//! engine.
//!
//! - values (batteries, their latest update, the GX's own settings) are published on
//!   `N/<portalId>/...` while VRM keeps `R/<portalId>/keepalive` fresh; a keepalive without
//!   `suppress-republish` brings a full dump, an `R/` read republishes one value;
//! - commands arrive on `P/<portalId>/in` and are answered on `P/<portalId>/out`, through the
//!   ordered, partly durable [`Outbox`];
//! - `/Settings/Network/VrmPortal` is enforced: outside Full every command and every write
//!   gets an error reply (710), and while Off the GX does not connect at all;
//! - after every reconnect the GX asks the portal for the first missing chunk of each upload
//!   in progress, so an upload resumes instead of starting over;
//! - every connection sets a last will on `N/<portalId>/system/0/Connected` and publishes
//!   itself online there (retained), so the portal knows when the GX is gone;
//! - retained messages on the request topics (`R/`, `W/`, `P/<portalId>/in`) are ignored:
//!   the broker replays them on every subscription, and a command replayed must never act
//!   again (start a job, write a setting) — only a command published now does;
//! - an upload not finished within [`LinkConfig::upload_timeout`] of its request fails
//!   with 718 and frees its bus ([`crate::vrm::deadlines`]); `cancel` stops an update in
//!   stage 1 (719) and is refused once stage 2 has begun.

use crate::errors::codes;
use crate::job::{JobId, JobRecord, JobState, Percent};
use crate::staging::{ChunkOutcome, Sha256Digest, UploadAnnouncement};
use crate::unix_time::UnixMillis;
use crate::vrm::access::{VrmAccess, VrmPortalMode};
use crate::vrm::authority::{CommandAuthority, Signed, admit};
use crate::vrm::commands::CommandRegistry;
use crate::vrm::deadlines::UploadDeadlines;
use crate::vrm::engine::{
    Acknowledgement, Acknowledgements, BatteryView, EngineRefusal, EngineUpdate, GxEngine,
    PreflightRequest, UpdateOptions, UpdateRequest, UpdateTargets, UploadStatus, VersionPolicy,
};
use crate::vrm::outbox::{Durability, Outbox, OutboxError};
use crate::vrm::replies::{job_feedback, waiting_for_chunks};
use crate::vrm::transport::{self, TransportConfig, TransportEvent};
use crate::vrm::values::{battery_values, system_values, wire_event, wire_version};
use bmsfw_vrm_wire::command::{
    CancelCommand, ChunkCommand, EventLogQuery, StatusQuery, UpdateCommand,
};
use bmsfw_vrm_wire::envelope::{KeepaliveOptions, WriteRequest};
use bmsfw_vrm_wire::limits::{MAX_COMMAND_MESSAGE, MAX_PACKET, MAX_RESPONSE_MESSAGE};
use bmsfw_vrm_wire::preflight::{PREFLIGHT_JOB, PreflightCommand};
use bmsfw_vrm_wire::presence::presence_topic;
use bmsfw_vrm_wire::{
    BrokerAddr, Command, CommandId, Feedback, PortalId, RpcCommand, RpcResponse, Status, Topic,
};
use rumqttc::{AsyncClient, QoS};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// This GX's VRM portal id.
    pub portal_id: PortalId,
    /// The MQTT broker.
    pub broker: BrokerAddr,
    /// TLS and credentials of the connection to the broker (none by default: loopback only).
    pub mqtt_security: crate::vrm::tls::MqttSecurity,
    /// The GX's firmware version, published for the portal.
    pub gx_firmware_version: String,
    /// Where the link keeps its outbox and command registry (`<state dir>/vrm`).
    pub dir: PathBuf,
    /// How long a keepalive keeps the GX publishing values (60 s on a GX).
    pub keepalive_window: Duration,
    /// MQTT keep-alive interval (10 s on a GX): the broker publishes the GX's last will
    /// (offline) when it hears nothing from the GX for 1.5 times this.
    pub mqtt_keep_alive: Duration,
    /// Pause between two connection attempts.
    pub reconnect_delay: Duration,
    /// Replies sent and not yet acknowledged by the broker, at most.
    pub outbox_window: usize,
    /// Messages the outbox holds at most.
    pub max_outbox_entries: usize,
    /// How long an upload may take from its request until the whole package is on the GX;
    /// beyond, the job fails with 718 and its bus is free again.
    pub upload_timeout: Duration,
    /// The portal keys whose signature an update or cancel must carry, and the window of
    /// its timestamp (`[command_signing]`; none by default: every update is refused).
    pub command_signing: crate::vrm::authority::CommandSigningConfig,
}

impl LinkConfig {
    /// Default bound of an upload: 1 hour.
    pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

    /// The defaults of a GX: 60 s keepalive window, 10 s MQTT keep-alive, 1 s between
    /// connection attempts, 1 hour for an upload.
    pub fn new(portal_id: PortalId, broker: BrokerAddr, dir: impl Into<PathBuf>) -> LinkConfig {
        LinkConfig {
            portal_id,
            broker,
            mqtt_security: Default::default(),
            gx_firmware_version: "unknown".into(),
            dir: dir.into(),
            keepalive_window: Duration::from_secs(60),
            mqtt_keep_alive: Duration::from_secs(10),
            reconnect_delay: Duration::from_secs(1),
            outbox_window: 16,
            max_outbox_entries: Outbox::DEFAULT_MAX_ENTRIES,
            upload_timeout: Self::DEFAULT_UPLOAD_TIMEOUT,
            command_signing: Default::default(),
        }
    }
}

/// Why the link stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The outbox's files failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The command registry's file failed.
    #[error("VRM command registry: {0}")]
    Registry(#[source] io::Error),
    /// The MQTT connection task ended.
    #[error("the MQTT connection task ended")]
    TransportEnded,
    /// The engine dropped its update channel.
    #[error("the engine stopped")]
    EngineGone,
}

/// Whether the link is connected to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkConnection {
    /// Connected and subscribed: commands reach the GX.
    Connected,
    /// Connected; the subscriptions are not confirmed yet (the GX already publishes).
    Subscribing,
    /// Not connected (broker unreachable, network cut, or VRM access Off).
    Disconnected,
}

/// What the link reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Connected or not.
    pub connection: LinkConnection,
    /// Connections made since start.
    pub connects: u64,
    /// Messages waiting in the outbox.
    pub outbox_pending: usize,
    /// Durable messages waiting in the outbox.
    pub outbox_durable: usize,
}

/// The running link. Dropping it stops it.
#[derive(Debug)]
pub struct LinkHandle {
    status: watch::Receiver<LinkStatus>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), LinkError>>>,
    transport: JoinHandle<()>,
}

impl LinkHandle {
    /// The link's status now.
    pub fn status(&self) -> LinkStatus {
        *self.status.borrow()
    }

    /// A receiver of every status change.
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// Stops the link and returns how it ended.
    pub async fn shutdown(mut self) -> Result<(), LinkError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        };
        self.transport.abort();
        result
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.transport.abort();
    }
}

/// Starts the link for `engine`: opens the outbox and the command registry in
/// `config.dir`, connects (unless VRM access is Off) and serves until stopped.
pub fn spawn_link(
    config: LinkConfig,
    engine: Arc<dyn GxEngine>,
    access: VrmAccess,
) -> Result<LinkHandle, LinkError> {
    let outbox = Outbox::open(&config.dir.join("outbox"), config.max_outbox_entries)?;
    let commands = CommandRegistry::open(&config.dir).map_err(LinkError::Registry)?;
    let authority = CommandAuthority::open(
        &config.dir,
        config.command_signing.clone(),
        UnixMillis::now(),
    )
    .map_err(LinkError::Registry)?;
    let transport_config = TransportConfig {
        broker: config.broker.clone(),
        security: config.mqtt_security.clone(),
        client_id: format!("bmsfw-gx-{}", config.portal_id),
        keep_alive: config.mqtt_keep_alive,
        presence_topic: Some(presence_topic(&config.portal_id)),
        reconnect_delay: config.reconnect_delay,
        // Room to read an oversized command and refuse it by reply.
        max_incoming_packet: 32 * MAX_COMMAND_MESSAGE,
        max_outgoing_packet: MAX_PACKET,
    };
    let (client, events, transport) = transport::spawn(transport_config, access.subscribe());
    let initial = LinkStatus {
        connection: LinkConnection::Disconnected,
        connects: 0,
        outbox_pending: outbox.pending(),
        outbox_durable: outbox.pending_durable(),
    };
    let (status_tx, status) = watch::channel(initial);
    let updates = engine.subscribe();
    let access_rx = access.subscribe();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let config_upload_timeout = config.upload_timeout;
    let link = Link {
        cfg: config,
        engine,
        access,
        client,
        connection: LinkConnection::Disconnected,
        connects: 0,
        outbox,
        commands,
        values: BTreeMap::new(),
        battery_topics: BTreeMap::new(),
        batteries: BTreeMap::new(),
        latest_job: BTreeMap::new(),
        changed: BTreeSet::new(),
        requested: BTreeSet::new(),
        keepalive: Keepalive::Idle,
        dump_due: true,
        presence: VrmPresence::Unknown,
        presence_due: None,
        awaiting: VecDeque::new(),
        by_pkid: HashMap::new(),
        reported: HashMap::new(),
        preflights: VecDeque::new(),
        deadlines: UploadDeadlines::new(config_upload_timeout),
        authority,
        status_tx,
    };
    let task = tokio::spawn(link.run(events, updates, access_rx, shutdown_rx));
    Ok(LinkHandle {
        status,
        shutdown: Some(shutdown_tx),
        task: Some(task),
        transport,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keepalive {
    Idle,
    Active { until: Instant },
}

/// Whether VRM has shown itself on the current connection (a keepalive, a read, a write
/// or a command). The broker acknowledges a publish even when nobody subscribes, so
/// durable status waits until VRM is there to receive it: after a broker restart the GX
/// may be back before the portal has subscribed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VrmPresence {
    Unknown,
    Seen,
}

/// A publish handed to the client, waiting for its packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// A value (QoS 0).
    Value,
    /// A reply of the outbox (QoS 1), by sequence number.
    Reply(u64),
    /// The GX's presence (QoS 1, nothing waits for its acknowledgement).
    Presence,
}

struct Link {
    cfg: LinkConfig,
    engine: Arc<dyn GxEngine>,
    access: VrmAccess,
    client: AsyncClient,
    connection: LinkConnection,
    connects: u64,
    outbox: Outbox,
    commands: CommandRegistry,
    /// Every current `N/` value, encoded, by topic.
    values: BTreeMap<String, Vec<u8>>,
    /// The topics of each battery.
    battery_topics: BTreeMap<u32, BTreeSet<String>>,
    batteries: BTreeMap<u32, BatteryView>,
    /// The newest job of each battery, by serial number.
    latest_job: BTreeMap<String, JobRecord>,
    /// Values changed and not yet published (published while a keepalive is active).
    changed: BTreeSet<String>,
    /// Values an `R/` read asked for (published regardless of keepalive).
    requested: BTreeSet<String>,
    keepalive: Keepalive,
    /// The next keepalive brings every value, whatever its options: VRM cannot have the
    /// values that changed while this GX was disconnected.
    dump_due: bool,
    presence: VrmPresence,
    /// The connection to publish online (retained) on the presence topic, until handed to
    /// the client.
    presence_due: Option<String>,
    /// One entry per publish handed to the client, in order.
    awaiting: VecDeque<Publish>,
    /// Outbox sequence number of each packet id in flight.
    by_pkid: HashMap<u16, u64>,
    /// The last state and percent reported for each job.
    reported: HashMap<JobId, (JobState, Percent)>,
    /// The pre-flight checks in progress: command id, battery serial, file digest (kept in
    /// memory only: after a GX restart the portal starts the check again).
    preflights: VecDeque<(CommandId, String, Sha256Digest)>,
    /// The bound of every upload in progress.
    deadlines: UploadDeadlines,
    /// The portal's signature every update and cancel must carry.
    authority: CommandAuthority,
    status_tx: watch::Sender<LinkStatus>,
}

/// Pre-flight checks the link follows at once; the oldest is forgotten beyond.
const MAX_PREFLIGHTS: usize = 16;

impl Link {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<TransportEvent>,
        mut updates: broadcast::Receiver<EngineUpdate>,
        mut access_rx: watch::Receiver<VrmPortalMode>,
        mut shutdown: oneshot::Receiver<()>,
    ) -> Result<(), LinkError> {
        self.snapshot().await?;
        loop {
            self.flush_presence();
            self.flush_outbox();
            self.flush_values();
            self.report_status();
            let expiry = match self.keepalive {
                Keepalive::Active { until } => Some(until),
                Keepalive::Idle => None,
            };
            let upload_due = self
                .deadlines
                .next_deadline()
                .map(|due| Instant::now() + UploadDeadlines::until(UnixMillis::now(), due));
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                event = events.recv() => match event {
                    Some(event) => self.on_transport(event).await?,
                    None => return Err(LinkError::TransportEnded),
                },
                update = updates.recv() => match update {
                    Ok(update) => self.on_engine(update).await?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "link fell behind the engine; reading a snapshot");
                        self.snapshot().await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(LinkError::EngineGone),
                },
                changed = access_rx.changed() => {
                    if changed.is_ok() {
                        self.refresh_system();
                    }
                }
                () = sleep_until_opt(expiry) => {
                    tracing::debug!("keepalive expired; values are no longer published");
                    self.keepalive = Keepalive::Idle;
                    self.changed.clear();
                }
                () = sleep_until_opt(upload_due) => self.expire_uploads().await?,
            }
        }
    }

    fn report_status(&self) {
        let status = LinkStatus {
            connection: self.connection,
            connects: self.connects,
            outbox_pending: self.outbox.pending(),
            outbox_durable: self.outbox.pending_durable(),
        };
        self.status_tx.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    // ---- values ------------------------------------------------------------------------

    fn set_value(&mut self, topic: String, payload: Vec<u8>) {
        if self.values.get(&topic) == Some(&payload) {
            return;
        }
        self.values.insert(topic.clone(), payload);
        if matches!(self.keepalive, Keepalive::Active { .. }) {
            self.changed.insert(topic);
        }
    }

    fn refresh_system(&mut self) {
        let instances: Vec<u32> = self.batteries.keys().copied().collect();
        let values = system_values(
            &self.cfg.portal_id,
            self.access.get(),
            &self.cfg.gx_firmware_version,
            &instances,
        );
        for (topic, value) in values {
            self.set_value(topic, value.encode());
        }
    }

    fn refresh_battery(&mut self, instance: u32) {
        let Some(battery) = self.batteries.get(&instance) else {
            return;
        };
        let job = self.latest_job.get(&battery.identity.serial);
        let values = battery_values(&self.cfg.portal_id, battery, job);
        let topics: BTreeSet<String> = values.keys().cloned().collect();
        let gone: Vec<String> = self
            .battery_topics
            .get(&instance)
            .map(|old| old.difference(&topics).cloned().collect())
            .unwrap_or_default();
        for topic in gone {
            self.set_value(topic, bmsfw_vrm_wire::Notification::invalid().encode());
        }
        for (topic, value) in values {
            self.set_value(topic, value.encode());
        }
        self.battery_topics.insert(instance, topics);
    }

    fn remove_battery(&mut self, instance: u32) {
        self.batteries.remove(&instance);
        for topic in self.battery_topics.remove(&instance).unwrap_or_default() {
            self.set_value(
                topic.clone(),
                bmsfw_vrm_wire::Notification::invalid().encode(),
            );
        }
        self.refresh_system();
    }

    fn note_job(&mut self, job: &JobRecord) {
        let serial = job.battery().serial.clone();
        let newer = self
            .latest_job
            .get(&serial)
            .is_none_or(|known| known.id() <= job.id());
        if newer {
            self.latest_job.insert(serial.clone(), job.clone());
            let instances: Vec<u32> = self
                .batteries
                .values()
                .filter(|b| b.identity.serial == serial)
                .map(|b| b.instance)
                .collect();
            for instance in instances {
                self.refresh_battery(instance);
            }
        }
    }

    /// Reads every battery and job from the engine again.
    async fn snapshot(&mut self) -> Result<(), LinkError> {
        let batteries = self.engine.batteries().await;
        let known: Vec<u32> = self.batteries.keys().copied().collect();
        let present: BTreeSet<u32> = batteries.iter().map(|b| b.instance).collect();
        for instance in known {
            if !present.contains(&instance) {
                self.remove_battery(instance);
            }
        }
        for b in batteries {
            self.batteries.insert(b.instance, b);
        }
        for job in self.engine.jobs().await {
            self.on_job(job)?;
        }
        let instances: Vec<u32> = self.batteries.keys().copied().collect();
        for instance in instances {
            self.refresh_battery(instance);
        }
        self.refresh_system();
        Ok(())
    }

    fn publish_value(&mut self, topic: &str) -> bool {
        let Some(payload) = self.values.get(topic) else {
            return true;
        };
        match self
            .client
            .try_publish(topic, QoS::AtMostOnce, false, payload.clone())
        {
            Ok(()) => {
                self.awaiting.push_back(Publish::Value);
                true
            }
            Err(_) => false,
        }
    }

    fn flush_values(&mut self) {
        if self.connection == LinkConnection::Disconnected {
            return;
        }
        while let Some(topic) = self.requested.pop_first() {
            if !self.publish_value(&topic) {
                self.requested.insert(topic);
                return;
            }
        }
        if !matches!(self.keepalive, Keepalive::Active { .. }) {
            return;
        }
        while let Some(topic) = self.changed.pop_first() {
            if !self.publish_value(&topic) {
                self.changed.insert(topic);
                return;
            }
        }
    }

    // ---- replies -----------------------------------------------------------------------

    fn reply(
        &mut self,
        commandid: Option<&CommandId>,
        finished: bool,
        feedback: Feedback,
        durability: Durability,
    ) -> Result<(), LinkError> {
        if durability == Durability::Volatile && self.connection == LinkConnection::Disconnected {
            return Ok(());
        }
        let topic = Topic::RpcOut {
            portal: self.cfg.portal_id.clone(),
        }
        .to_string();
        let commandid = commandid.cloned();
        let mut feedback = Some(feedback);
        self.outbox.push(&topic, durability, |msgnr| {
            let response = RpcResponse {
                commandid,
                msgnr,
                finished,
                feedback: feedback
                    .take()
                    .unwrap_or_else(|| Feedback::new(Status::Error)),
            };
            let bytes = response.encode();
            if bytes.len() <= MAX_RESPONSE_MESSAGE {
                return bytes;
            }
            // Only a huge diagnostics bundle or event log gets here; say so instead.
            RpcResponse {
                feedback: Feedback::error(
                    codes::COMMAND_INVALID,
                    format!(
                        "the reply of {} bytes exceeds the message limit",
                        bytes.len()
                    ),
                ),
                ..response
            }
            .encode()
        })?;
        Ok(())
    }

    /// Checks a signed command ([`admit`]); a refused one is answered here (`finished`
    /// as the refusal's reply says) and the caller does nothing else: `Ok(false)`.
    async fn admit(
        &mut self,
        id: &CommandId,
        command: Signed<'_>,
        resend: bool,
        finished: bool,
    ) -> Result<bool, LinkError> {
        match admit(
            &mut self.authority,
            &*self.engine,
            &self.cfg.portal_id,
            id,
            command,
            resend,
        )
        .await
        {
            Ok(()) => Ok(true),
            Err(refusal) => self.refuse(Some(id), finished, &refusal).map(|()| false),
        }
    }

    fn refuse(
        &mut self,
        commandid: Option<&CommandId>,
        finished: bool,
        refusal: &EngineRefusal,
    ) -> Result<(), LinkError> {
        self.reply(
            commandid,
            finished,
            Feedback::error(refusal.code, refusal.message.clone()),
            Durability::Volatile,
        )
    }

    /// Publishes this connection online, retained: it replaces the last will the broker
    /// published for the connection before.
    fn flush_presence(&mut self) {
        if self.connection == LinkConnection::Disconnected {
            return;
        }
        let Some(session) = self.presence_due.take() else {
            return;
        };
        let message = match bmsfw_vrm_wire::PresenceMessage::online(&session) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot publish the GX's presence");
                return;
            }
        };
        match self.client.try_publish(
            presence_topic(&self.cfg.portal_id),
            QoS::AtLeastOnce,
            true,
            message.encode(),
        ) {
            Ok(()) => self.awaiting.push_back(Publish::Presence),
            Err(_) => self.presence_due = Some(session),
        }
    }

    fn flush_outbox(&mut self) {
        if self.connection == LinkConnection::Disconnected || self.presence != VrmPresence::Seen {
            return;
        }
        while self.outbox.in_flight() < self.cfg.outbox_window.max(1) {
            let Some(entry) = self.outbox.next_to_send() else {
                return;
            };
            match self
                .client
                .try_publish(entry.topic, QoS::AtLeastOnce, false, entry.payload)
            {
                Ok(()) => self.awaiting.push_back(Publish::Reply(entry.seq)),
                Err(_) => {
                    self.outbox.unsend(entry.seq);
                    return;
                }
            }
        }
    }

    // ---- transport ---------------------------------------------------------------------

    async fn on_transport(&mut self, event: TransportEvent) -> Result<(), LinkError> {
        match event {
            TransportEvent::Connected { session } => {
                self.connection = LinkConnection::Subscribing;
                self.presence_due = session;
                self.presence = VrmPresence::Unknown;
                self.dump_due = true;
                self.connects += 1;
                let qos = |f: &String| {
                    if f.starts_with("P/") {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    }
                };
                let filters: Vec<rumqttc::SubscribeFilter> = Topic::gx_filters(&self.cfg.portal_id)
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos(f)))
                    .collect();
                if let Err(e) = self.client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "could not subscribe");
                }
                if matches!(self.keepalive, Keepalive::Active { .. }) {
                    self.changed = self.values.keys().cloned().collect();
                }
                self.ask_for_missing_chunks().await?;
            }
            TransportEvent::Disconnected { reason, resume } => {
                tracing::warn!(%reason, "VRM link down; status is kept until it returns");
                self.connection = LinkConnection::Disconnected;
                self.presence = VrmPresence::Unknown;
                self.awaiting.clear();
                self.presence_due = None;
                self.by_pkid.clear();
                self.outbox.connection_lost();
                let _ = resume.send(());
            }
            TransportEvent::Sent { pkid } => match (pkid, self.awaiting.pop_front()) {
                (0, Some(Publish::Value)) => {}
                (pkid, Some(Publish::Presence)) if pkid != 0 => {}
                (pkid, Some(Publish::Reply(seq))) if pkid != 0 => {
                    self.by_pkid.insert(pkid, seq);
                }
                (pkid, other) => {
                    tracing::warn!(pkid, ?other, "publish not paired with a request");
                }
            },
            TransportEvent::Subscribed => {
                if self.connection == LinkConnection::Subscribing {
                    self.connection = LinkConnection::Connected;
                }
            }
            TransportEvent::Acked { pkid } => {
                if let Some(seq) = self.by_pkid.remove(&pkid) {
                    self.outbox.delivered(seq)?;
                }
            }
            TransportEvent::Message {
                topic,
                payload,
                retained,
            } => {
                if retained {
                    // Replayed by the broker, not sent now: a stale command or write must
                    // never act again on a reconnect.
                    tracing::warn!(%topic, bytes = payload.len(), "ignoring a retained message on a request topic");
                } else {
                    self.on_message(&topic, &payload).await?;
                }
            }
        }
        Ok(())
    }

    /// After a reconnect: where each upload in progress stands, so the portal continues
    /// from the first missing chunk.
    async fn ask_for_missing_chunks(&mut self) -> Result<(), LinkError> {
        for job in self.commands.jobs() {
            let uploading = self
                .engine
                .jobs()
                .await
                .into_iter()
                .any(|r| r.id() == job && r.state() == JobState::Uploading);
            if !uploading {
                continue;
            }
            if let Ok(status) = self.engine.resume_upload(job).await
                && let Some(id) = self.commands.command_for(job).cloned()
            {
                tracing::info!(%job, first_missing = ?status.first_missing, "asking VRM to continue the upload");
                self.continue_upload(&id, status).await?;
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) -> Result<(), LinkError> {
        let topic = match Topic::parse(topic) {
            Ok(t) if t.portal() == &self.cfg.portal_id => t,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "ignoring message on a foreign topic");
                return Ok(());
            }
        };
        if matches!(
            topic,
            Topic::Keepalive { .. }
                | Topic::Read { .. }
                | Topic::Write { .. }
                | Topic::RpcIn { .. }
        ) {
            self.presence = VrmPresence::Seen;
        }
        match topic {
            Topic::Keepalive { .. } => {
                let options = KeepaliveOptions::parse(payload).unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "keepalive with unreadable options");
                    KeepaliveOptions::default()
                });
                self.keepalive = Keepalive::Active {
                    until: Instant::now() + self.cfg.keepalive_window,
                };
                if !options.suppress_republish || self.dump_due {
                    self.changed = self.values.keys().cloned().collect();
                    self.dump_due = false;
                }
                // The portal id answers every keepalive: VRM's "last contact".
                let serial = crate::vrm::values::notify_topic(
                    &self.cfg.portal_id,
                    bmsfw_vrm_wire::SystemPath::PortalSerial.device_path(),
                );
                self.requested.insert(serial);
            }
            Topic::Read { path, .. } => {
                let notify = crate::vrm::values::notify_topic(&self.cfg.portal_id, path);
                if self.values.contains_key(&notify) {
                    self.requested.insert(notify);
                }
            }
            Topic::Write { path, .. } => self.on_write(&path.to_string(), payload)?,
            Topic::RpcIn { .. } => self.on_command(payload).await?,
            Topic::Notify { .. } | Topic::RpcOut { .. } => {}
        }
        Ok(())
    }

    fn on_write(&mut self, path: &str, payload: &[u8]) -> Result<(), LinkError> {
        let mode = self.access.get();
        let request = WriteRequest::parse(payload);
        let commandid = request.as_ref().ok().and_then(|w| w.commandid.clone());
        let feedback = if !mode.allows_remote_control() {
            Feedback::error(
                codes::VRM_READ_ONLY,
                format!(
                    "VRM Portal access of this GX device is {mode}; writes from VRM are refused"
                ),
            )
        } else if let Err(e) = request {
            Feedback::error(codes::COMMAND_INVALID, format!("write to {path}: {e}"))
        } else {
            Feedback::error(
                codes::SETTING_NOT_WRITABLE,
                format!("{path} can only be changed on the GX device itself"),
            )
        };
        tracing::info!(%path, code = ?feedback.error_code, "write from VRM refused");
        self.reply(commandid.as_ref(), true, feedback, Durability::Volatile)
    }

    // ---- commands ----------------------------------------------------------------------

    async fn on_command(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let parsed = RpcCommand::parse(payload);
        let mode = self.access.get();
        if !mode.allows_remote_control() {
            let commandid = match &parsed {
                Ok(c) => Some(c.id.clone()),
                Err(e) => e.commandid.clone(),
            };
            tracing::info!(?commandid, %mode, "command from VRM refused: access is not Full");
            let feedback = Feedback::error(
                codes::VRM_READ_ONLY,
                format!(
                    "VRM Portal access of this GX device is {mode}; remote commands and updates \
                     need Full"
                ),
            );
            return self.reply(commandid.as_ref(), true, feedback, Durability::Volatile);
        }
        let command = match parsed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable command from VRM");
                let feedback = Feedback::error(codes::COMMAND_INVALID, e.error.to_string());
                return self.reply(e.commandid.as_ref(), true, feedback, Durability::Volatile);
            }
        };
        let id = command.id;
        match command.command {
            Command::Update(u) => self.on_update(id, u).await,
            Command::UploadChunk(c) => self.on_chunk(id, c).await,
            Command::UploadStatus(q) => self.on_status(id, q).await,
            Command::GetEventLog(q) => self.on_event_log(id, q).await,
            Command::GetDiagnostics(q) => self.on_diagnostics(id, q.job).await,
            Command::Preflight(p) => self.on_preflight(id, p).await,
            Command::Cancel(c) => self.on_cancel(id, c).await,
        }
    }

    // ---- pre-flight checks -------------------------------------------------------------

    fn preflight_of(&self, id: &CommandId) -> Option<(String, Sha256Digest)> {
        self.preflights
            .iter()
            .find(|(c, _, _)| c == id)
            .map(|(_, serial, sha)| (serial.clone(), *sha))
    }

    fn forget_preflight(&mut self, id: &CommandId) {
        self.preflights.retain(|(c, _, _)| c != id);
    }

    fn preflight_waiting(status: &UploadStatus) -> Feedback {
        Feedback {
            state: None,
            job: Some(PREFLIGHT_JOB),
            ..waiting_for_chunks(status)
        }
    }

    async fn on_preflight(&mut self, id: CommandId, p: PreflightCommand) -> Result<(), LinkError> {
        let sha256 = Sha256Digest(p.sha256.0);
        let package = match UploadAnnouncement::new(
            p.file_name.as_str().to_owned(),
            p.size,
            p.chunk_size,
            sha256,
        ) {
            Ok(a) => a,
            Err(e) => {
                let refusal = EngineRefusal::new(e.code(), e.to_string());
                return self.refuse(Some(&id), true, &refusal);
            }
        };
        let request = PreflightRequest {
            battery_serial: p.battery.as_str().to_owned(),
            package,
        };
        match self.engine.begin_preflight(request).await {
            Ok(status) => {
                tracing::info!(commandid = %id, battery = %p.battery, file = ?p.file_name, "pre-flight check requested");
                self.forget_preflight(&id);
                if self.preflights.len() >= MAX_PREFLIGHTS {
                    self.preflights.pop_front();
                }
                self.preflights
                    .push_back((id.clone(), p.battery.as_str().to_owned(), sha256));
                self.continue_preflight(&id, status).await
            }
            Err(refusal) => self.refuse(Some(&id), true, &refusal),
        }
    }

    async fn continue_preflight(
        &mut self,
        id: &CommandId,
        status: UploadStatus,
    ) -> Result<(), LinkError> {
        if status.first_missing.is_some() {
            return self.reply(
                Some(id),
                false,
                Self::preflight_waiting(&status),
                Durability::Volatile,
            );
        }
        let Some((serial, sha256)) = self.preflight_of(id) else {
            return Ok(());
        };
        let result = self.engine.finish_preflight(serial, sha256).await;
        self.forget_preflight(id);
        match result {
            Ok(report) => {
                tracing::info!(commandid = %id, verdict = ?report.verdict, code = ?report.code, "pre-flight check done");
                let fb = Feedback {
                    job: Some(PREFLIGHT_JOB),
                    received_bytes: Some(report.size),
                    version_before: report.version_current.clone(),
                    version_target: report.version_new.clone(),
                    preflight: Some(report),
                    ..Feedback::new(Status::Finished)
                };
                self.reply(Some(id), true, fb, Durability::Volatile)
            }
            Err(refusal) => self.refuse(Some(id), true, &refusal),
        }
    }

    async fn on_preflight_chunk(
        &mut self,
        id: CommandId,
        sha256: Sha256Digest,
        c: ChunkCommand,
    ) -> Result<(), LinkError> {
        let index = c.index;
        match self
            .engine
            .preflight_chunk(sha256, index, c.data.into_bytes())
            .await
        {
            Ok(receipt) => {
                let mut fb = Self::preflight_waiting(&receipt.status);
                fb.chunk = Some(index);
                fb.duplicate = Some(receipt.outcome == ChunkOutcome::Duplicate);
                self.reply(Some(&id), false, fb, Durability::Volatile)?;
                if receipt.status.first_missing.is_none() {
                    self.continue_preflight(&id, receipt.status).await?;
                }
                Ok(())
            }
            Err(refusal) => {
                let mut fb = Feedback::error(refusal.code, refusal.message);
                fb.job = Some(PREFLIGHT_JOB);
                fb.chunk = Some(index);
                self.reply(Some(&id), false, fb, Durability::Volatile)
            }
        }
    }

    async fn on_preflight_status(
        &mut self,
        id: CommandId,
        sha256: Sha256Digest,
    ) -> Result<(), LinkError> {
        match self.engine.preflight_status(sha256).await {
            Ok(status) => self.continue_preflight(&id, status).await,
            Err(refusal) => {
                self.forget_preflight(&id);
                self.refuse(Some(&id), true, &refusal)
            }
        }
    }

    async fn on_update(&mut self, id: CommandId, u: UpdateCommand) -> Result<(), LinkError> {
        let sha256 = Sha256Digest(u.sha256.0);
        // Before anything else: the portal's signature (a resend of a command that already
        // started this package only asks where it stands).
        let resend = self
            .commands
            .job_for(&id)
            .is_some_and(|(_, known)| known == sha256);
        if !self.admit(&id, Signed::Update(&u), resend, true).await? {
            return Ok(());
        }
        if let Some((job, known)) = self.commands.job_for(&id) {
            if known == sha256 {
                // The same command again (a resend after a reconnect): say where it stands.
                return self.on_status(id, StatusQuery { job: job.0 }).await;
            }
            let refusal = EngineRefusal::new(
                codes::COMMAND_INVALID,
                format!("command id {id} already started update {job}"),
            );
            return self.refuse(Some(&id), true, &refusal);
        }
        if let Some(job) = self.orphan_upload(u.battery.as_str(), sha256).await {
            tracing::info!(%job, commandid = %id, "update command matched to the job it started before a restart");
            self.commands
                .insert(job, id.clone(), sha256)
                .map_err(LinkError::Registry)?;
            return self.on_status(id, StatusQuery { job: job.0 }).await;
        }
        let package = match UploadAnnouncement::new(
            u.file_name.as_str().to_owned(),
            u.size,
            u.chunk_size,
            sha256,
        ) {
            Ok(p) => p,
            Err(e) => {
                return self.refuse(
                    Some(&id),
                    true,
                    &EngineRefusal::new(e.code(), e.to_string()),
                );
            }
        };
        let acknowledgements = Acknowledgements(
            u.acknowledgements
                .iter()
                .map(|a| match a {
                    bmsfw_vrm_wire::Acknowledgement::SiteReachable => {
                        Acknowledgement::SiteReachable
                    }
                    bmsfw_vrm_wire::Acknowledgement::BackupCapacity => {
                        Acknowledgement::BackupCapacity
                    }
                    bmsfw_vrm_wire::Acknowledgement::MaintenanceWindow => {
                        Acknowledgement::MaintenanceWindow
                    }
                })
                .collect(),
        );
        let missing = acknowledgements.missing();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
            let refusal = EngineRefusal::new(
                codes::ACKNOWLEDGEMENT_MISSING,
                format!("the installer did not confirm: {}", names.join(", ")),
            );
            return self.refuse(Some(&id), true, &refusal);
        }
        let version_policy = match u.version_policy {
            bmsfw_vrm_wire::VersionPolicy::NewerOnly => VersionPolicy::NewerOnly,
            bmsfw_vrm_wire::VersionPolicy::AllowReinstallOrDowngrade => {
                VersionPolicy::AllowReinstallOrDowngrade
            }
        };
        let request = UpdateRequest {
            battery_serial: u.battery.as_str().to_owned(),
            package,
            acknowledgements,
            options: UpdateOptions {
                version_policy,
                targets: UpdateTargets::from_wire(u.targets.as_ref()),
            },
        };
        let status = match self.engine.request_update(request).await {
            Ok(s) => s,
            Err(refusal) => {
                tracing::info!(code = refusal.code, message = %refusal.message, "update refused");
                return self.refuse(Some(&id), true, &refusal);
            }
        };
        let job = status.job;
        tracing::info!(%job, commandid = %id, battery = %u.battery, "update requested from VRM");
        self.commands
            .insert(job, id.clone(), sha256)
            .map_err(LinkError::Registry)?;
        let mut starting = waiting_for_chunks(&status);
        starting.status = Status::Starting;
        starting.first_missing = None;
        if let Some(record) = self.engine.jobs().await.into_iter().find(|r| r.id() == job) {
            starting.version_before = record.version_before().map(wire_version);
        }
        self.reply(Some(&id), false, starting, Durability::Durable)?;
        self.continue_upload(&id, status).await
    }

    /// A job still uploading `sha256` for the battery `serial` that answers to no
    /// command: the GX died between recording the job and recording the command that
    /// started it, and that command, sent again, is its command.
    async fn orphan_upload(&self, serial: &str, sha256: Sha256Digest) -> Option<JobId> {
        self.engine
            .jobs()
            .await
            .into_iter()
            .find(|r| {
                r.state() == JobState::Uploading
                    && r.battery().serial == serial
                    && r.package().sha256() == sha256
                    && self.commands.command_for(r.id()).is_none()
            })
            .map(|r| r.id())
    }

    /// Asks for the next chunks, or ends stage 1 when every chunk is here.
    async fn continue_upload(
        &mut self,
        id: &CommandId,
        status: UploadStatus,
    ) -> Result<(), LinkError> {
        if status.first_missing.is_some() {
            return self.reply(
                Some(id),
                false,
                waiting_for_chunks(&status),
                Durability::Volatile,
            );
        }
        self.finish(id, status.job).await
    }

    async fn finish(&mut self, id: &CommandId, job: JobId) -> Result<(), LinkError> {
        match self.engine.finish_upload(job).await {
            Ok(receipt) => {
                let fb = Feedback {
                    job: Some(job.0),
                    state: Some(bmsfw_vrm_wire::JobState::Transferring),
                    // The transfer to the battery starts at 0 %; the upload's 100 % belongs
                    // to the state before.
                    percent: Some(0),
                    received_bytes: Some(receipt.size),
                    version_target: Some(wire_version(&receipt.target)),
                    ..Feedback::new(Status::FileReceivedOk)
                };
                tracing::info!(%job, size = receipt.size, "package staged; stage 2 takes over");
                self.reply(Some(id), false, fb, Durability::Durable)
            }
            Err(refusal) if refusal.code == codes::UPLOAD_INCOMPLETE => {
                match self.engine.resume_upload(job).await {
                    Ok(status) if status.first_missing.is_some() => self.reply(
                        Some(id),
                        false,
                        waiting_for_chunks(&status),
                        Durability::Volatile,
                    ),
                    _ => self.refuse(Some(id), false, &refusal),
                }
            }
            Err(refusal) => {
                tracing::warn!(%job, code = refusal.code, message = %refusal.message, "stage 1 failed");
                let mut fb = Feedback::error(refusal.code, refusal.message.clone());
                fb.job = Some(job.0);
                fb.state = Some(bmsfw_vrm_wire::JobState::Failed);
                self.reported.remove(&job);
                self.reply(Some(id), true, fb, Durability::Durable)?;
                self.commands.remove(job).map_err(LinkError::Registry)
            }
        }
    }

    /// The job `id` may address, or an error reply.
    fn own_job(&mut self, id: &CommandId, job: u64) -> Result<Option<JobId>, LinkError> {
        match self.commands.job_for(id) {
            Some((j, _)) if j.0 == job => Ok(Some(j)),
            _ => {
                let refusal = EngineRefusal::new(
                    codes::UPDATE_NOT_FOUND,
                    format!("command {id} has no upload for update {job} in progress"),
                );
                self.refuse(Some(id), true, &refusal)?;
                Ok(None)
            }
        }
    }

    async fn on_chunk(&mut self, id: CommandId, c: ChunkCommand) -> Result<(), LinkError> {
        if c.job == PREFLIGHT_JOB
            && let Some((_, sha256)) = self.preflight_of(&id)
        {
            return self.on_preflight_chunk(id, sha256, c).await;
        }
        let Some(job) = self.own_job(&id, c.job)? else {
            return Ok(());
        };
        let index = c.index;
        match self
            .engine
            .accept_chunk(job, index, c.data.into_bytes())
            .await
        {
            Ok(receipt) => {
                let mut fb = waiting_for_chunks(&receipt.status);
                fb.chunk = Some(index);
                fb.duplicate = Some(receipt.outcome == ChunkOutcome::Duplicate);
                self.reply(Some(&id), false, fb, Durability::Volatile)?;
                if receipt.status.first_missing.is_none() {
                    self.finish(&id, job).await?;
                }
                Ok(())
            }
            Err(refusal) => {
                tracing::info!(%job, index, code = refusal.code, message = %refusal.message, "chunk refused");
                let mut fb = Feedback::error(refusal.code, refusal.message);
                fb.job = Some(job.0);
                fb.chunk = Some(index);
                self.reply(Some(&id), false, fb, Durability::Volatile)
            }
        }
    }

    async fn on_status(&mut self, id: CommandId, q: StatusQuery) -> Result<(), LinkError> {
        if q.job == PREFLIGHT_JOB
            && let Some((_, sha256)) = self.preflight_of(&id)
        {
            return self.on_preflight_status(id, sha256).await;
        }
        let Some(job) = self.own_job(&id, q.job)? else {
            return Ok(());
        };
        match self.engine.resume_upload(job).await {
            Ok(status) => self.continue_upload(&id, status).await,
            Err(refusal) => {
                let record = self.engine.jobs().await.into_iter().find(|r| r.id() == job);
                match record {
                    Some(record) => {
                        let finished = record.state().is_terminal();
                        self.reply(
                            Some(&id),
                            finished,
                            job_feedback(&record),
                            Durability::Volatile,
                        )
                    }
                    None => self.refuse(Some(&id), true, &refusal),
                }
            }
        }
    }

    /// `cancel`: honoured in stage 1 (the update's last reply says failed, 719); refused,
    /// with the update going on, once stage 2 has begun.
    async fn on_cancel(&mut self, id: CommandId, c: CancelCommand) -> Result<(), LinkError> {
        let signed = Signed::Cancel {
            job: c.job,
            signature: c.signature.as_ref(),
        };
        if !self.admit(&id, signed, false, false).await? {
            return Ok(());
        }
        let Some(job) = self.own_job(&id, c.job)? else {
            return Ok(());
        };
        let reason = EngineRefusal::new(
            codes::UPDATE_CANCELLED,
            format!(
                "update {job} was cancelled from VRM before the transfer to the battery began; \
                 the battery was not touched"
            ),
        );
        match self.engine.cancel_update(job, reason).await {
            Ok(record) => {
                tracing::info!(%job, commandid = %id, "update cancelled from VRM");
                self.on_job(record)
            }
            Err(refusal) => {
                tracing::info!(%job, code = refusal.code, message = %refusal.message, "cancel refused");
                let mut fb = Feedback::error(refusal.code, refusal.message);
                fb.job = Some(job.0);
                self.reply(Some(&id), false, fb, Durability::Volatile)
            }
        }
    }

    /// Fails every upload past its bound (718), which frees its bus.
    async fn expire_uploads(&mut self) -> Result<(), LinkError> {
        let bound = self.deadlines.bound();
        for job in self.deadlines.overdue(UnixMillis::now()) {
            // Whatever happens next, this deadline has been acted on.
            self.deadlines.forget(job);
            let reason = EngineRefusal::new(
                codes::UPLOAD_TIMED_OUT,
                format!(
                    "the firmware file of update {job} did not reach the GX device within {} s \
                     of the request; the update was stopped before the transfer to the battery",
                    bound.as_secs()
                ),
            );
            match self.engine.cancel_update(job, reason).await {
                Ok(record) => {
                    tracing::warn!(%job, "upload not finished in time; update failed with 718");
                    self.on_job(record)?;
                }
                Err(refusal) => {
                    // It left stage 1 meanwhile (or the engine forgot it): nothing to stop.
                    tracing::debug!(%job, code = refusal.code, message = %refusal.message, "upload deadline passed without effect");
                }
            }
        }
        Ok(())
    }

    async fn on_event_log(&mut self, id: CommandId, q: EventLogQuery) -> Result<(), LinkError> {
        match self.engine.history(q.battery.as_str()).await {
            Ok(events) => {
                let skip = events.len().saturating_sub(usize::from(q.limit));
                let mut wire: Vec<_> = events[skip..].iter().map(wire_event).collect();
                // Keep the newest events that fit one message.
                loop {
                    let fb = Feedback {
                        events: Some(wire.clone()),
                        ..Feedback::new(Status::Finished)
                    };
                    let probe = RpcResponse {
                        commandid: Some(id.clone()),
                        msgnr: u64::MAX,
                        finished: true,
                        feedback: fb.clone(),
                    };
                    if probe.encode().len() <= MAX_RESPONSE_MESSAGE || wire.is_empty() {
                        return self.reply(Some(&id), true, fb, Durability::Volatile);
                    }
                    let drop = wire.len().div_ceil(4);
                    wire.drain(..drop);
                }
            }
            Err(refusal) => self.refuse(Some(&id), true, &refusal),
        }
    }

    async fn on_diagnostics(&mut self, id: CommandId, job: u64) -> Result<(), LinkError> {
        match self.engine.diagnostics(JobId(job)).await {
            Ok(bundle) => {
                let fb = Feedback {
                    job: Some(job),
                    diagnostics: serde_json::to_value(&bundle).ok(),
                    ..Feedback::new(Status::Finished)
                };
                self.reply(Some(&id), true, fb, Durability::Volatile)
            }
            Err(refusal) => self.refuse(Some(&id), true, &refusal),
        }
    }

    // ---- engine updates ----------------------------------------------------------------

    async fn on_engine(&mut self, update: EngineUpdate) -> Result<(), LinkError> {
        match update {
            EngineUpdate::Battery(b) => {
                let instance = b.instance;
                let new = !self.batteries.contains_key(&instance);
                self.batteries.insert(instance, *b);
                self.refresh_battery(instance);
                if new {
                    self.refresh_system();
                }
            }
            EngineUpdate::BatteryGone { instance } => self.remove_battery(instance),
            EngineUpdate::Job(job) => self.on_job(*job)?,
        }
        Ok(())
    }

    /// Publishes a job's values and, for an update that came through the link, reports
    /// each new state and percent as a durable reply; the last one ends the command.
    fn on_job(&mut self, job: JobRecord) -> Result<(), LinkError> {
        self.deadlines.note(&job);
        self.note_job(&job);
        let Some(id) = self.commands.command_for(job.id()).cloned() else {
            return Ok(());
        };
        let key = (job.state(), job.percent());
        if job.state() == JobState::Uploading || self.reported.get(&job.id()) == Some(&key) {
            // Upload progress travels with the chunk acknowledgements.
            return Ok(());
        }
        self.reported.insert(job.id(), key);
        let terminal = job.state().is_terminal();
        tracing::debug!(job = %job.id(), state = ?job.state(), percent = job.percent().get(), "reporting job status");
        self.reply(Some(&id), terminal, job_feedback(&job), Durability::Durable)?;
        if terminal {
            // The command ends here: later changes of the job have no command to report to.
            self.reported.remove(&job.id());
            self.commands
                .remove(job.id())
                .map_err(LinkError::Registry)?;
        }
        Ok(())
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
