//! The MQTT connection of the link: rumqttc's event loop in a task of its own, reconnecting
//! forever, reporting what happens on a channel.
//!
//! The link must know exactly which of its publishes the broker acknowledged (that is when
//! a durable status message leaves the outbox). rumqttc reports an outgoing publish by
//! packet id, in the order the requests were made, and the acknowledgement by packet id; the
//! link pairs them up. Two rules keep the pairing exact: the session is clean (a reconnect
//! never replays old publishes), and after a lost connection the event loop waits until the
//! link has seen the loss before it clears stale requests and reconnects.
//!
//! Every connection carries a last will on the GX's presence topic (see
//! [`bmsfw_vrm_wire::presence`]): `{"value": 0}`, retained, named after the connection, so
//! the broker tells the portal when the GX goes away without a goodbye (a crash, a cut
//! cable, a silence longer than 1.5 keep-alive intervals). The link answers each
//! [`TransportEvent::Connected`] with the matching "online" message, which replaces the
//! retained will of the connection before.
//!
//! The connection is secured as its [`MqttSecurity`] says: TLS with the broker's
//! certificate checked against the configured CA, and the GX's credentials. A connection
//! attempt that fails for a reason the operator must fix (a certificate refused, the
//! credentials refused) is logged at error level with the host and the reason, once per
//! distinct reason while it persists.

use crate::vrm::access::VrmPortalMode;
use crate::vrm::tls::{MqttSecurity, describe_connection_error};
use bmsfw_vrm_wire::{BrokerAddr, PresenceMessage};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Settings of the connection.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The broker.
    pub broker: BrokerAddr,
    /// TLS and credentials.
    pub security: MqttSecurity,
    /// The MQTT client id.
    pub client_id: String,
    /// MQTT keep-alive interval: the broker gives up on a silent connection (and publishes
    /// its last will) after 1.5 times this.
    pub keep_alive: Duration,
    /// The presence topic that gets a last will on every connection (`None`: no will).
    pub presence_topic: Option<String>,
    /// Pause between two connection attempts.
    pub reconnect_delay: Duration,
    /// Largest packet received; a larger one drops the connection (the broker does not
    /// resend it, so the link reconnects and goes on).
    pub max_incoming_packet: usize,
    /// Largest packet sent.
    pub max_outgoing_packet: usize,
}

/// What the connection reports to the link.
#[derive(Debug)]
pub enum TransportEvent {
    /// Connected (a fresh session: subscribe again).
    Connected {
        /// The connection's name, as in its last will: publish it online.
        session: Option<String>,
    },
    /// The connection was lost. The event loop reconnects once `resume` is answered (or
    /// dropped).
    Disconnected {
        /// Why.
        reason: String,
        /// Answer once the loss is taken into account.
        resume: oneshot::Sender<()>,
    },
    /// A message arrived.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// Whether the broker replayed it as a retained message (sent when the link
        /// subscribed, not published now).
        retained: bool,
    },
    /// The broker confirmed a subscription.
    Subscribed,
    /// A publish left, under this packet id (0 for QoS 0).
    Sent {
        /// The packet id.
        pkid: u16,
    },
    /// The broker acknowledged the QoS 1 publish with this packet id.
    Acked {
        /// The packet id.
        pkid: u16,
    },
}

/// Requests the client channel holds; the link never waits on it (it uses `try_publish`).
const REQUEST_CAPACITY: usize = 1024;
/// Packet ids in use at once. Far above the link's own window, so ids never collide.
const INFLIGHT: u16 = 1000;

/// Starts the connection. While `mode` is Off the event loop stays disconnected.
pub fn spawn(
    config: TransportConfig,
    mode: watch::Receiver<VrmPortalMode>,
) -> (AsyncClient, mpsc::Receiver<TransportEvent>, JoinHandle<()>) {
    let mut options = MqttOptions::new(
        config.client_id.clone(),
        config.broker.host.clone(),
        config.broker.port,
    );
    options
        .set_keep_alive(config.keep_alive.max(Duration::from_secs(1)))
        .set_clean_session(true)
        .set_inflight(INFLIGHT)
        .set_request_channel_capacity(REQUEST_CAPACITY)
        .set_max_packet_size(config.max_incoming_packet, config.max_outgoing_packet);
    config
        .security
        .warn_if_insecure(&config.broker, "the VRM link");
    let secured = config.security.apply(&config.broker, &mut options);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut will = config.presence_topic.map(|topic| Will {
        topic,
        boot: crate::unix_time::UnixMillis::now().0,
        session: None,
    });
    if let Some(w) = &mut will {
        w.arm(&mut eventloop);
    }
    let (tx, rx) = mpsc::channel(256);
    let task = match secured {
        Ok(()) => tokio::spawn(run(
            eventloop,
            tx,
            mode,
            config.reconnect_delay,
            will,
            config.broker,
        )),
        Err(e) => {
            // Never connect less securely than configured: stay disconnected, say why.
            tracing::error!(error = %e, "the VRM link will not connect");
            tokio::spawn(async move {
                let _tx = tx;
                let mut mode = mode;
                while mode.changed().await.is_ok() {}
            })
        }
    };
    (client, rx, task)
}

/// Connections named in this process so far.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// The last will of the connections, renamed after every lost connection.
struct Will {
    topic: String,
    /// When the transport started (ms since the epoch), part of every name.
    boot: u64,
    /// The name of the next (or current) connection.
    session: Option<String>,
}

impl Will {
    /// Names the next connection and sets its last will.
    fn arm(&mut self, eventloop: &mut EventLoop) {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let session = format!("{:x}-{n}", self.boot);
        match PresenceMessage::offline(&session) {
            Ok(message) => {
                eventloop.mqtt_options.set_last_will(LastWill::new(
                    self.topic.clone(),
                    message.encode(),
                    QoS::AtLeastOnce,
                    true,
                ));
                self.session = Some(session);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot name the connection; no last will");
                self.session = None;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    Down,
}

async fn run(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<TransportEvent>,
    mut mode: watch::Receiver<VrmPortalMode>,
    reconnect_delay: Duration,
    mut will: Option<Will>,
    broker: BrokerAddr,
) {
    let mut link = Link::Down;
    // The last reason logged at error level, so that a persistent one is said once.
    let mut said: Option<String> = None;
    loop {
        if *mode.borrow_and_update() == VrmPortalMode::Off {
            tracing::info!("VRM portal access is off; staying disconnected");
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let event = tokio::select! {
            event = eventloop.poll() => event,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow() == VrmPortalMode::Off && link == Link::Up {
                    eventloop.clean();
                    link = Link::Down;
                    if !lost(&tx, "VRM portal access switched off".into()).await {
                        return;
                    }
                    eventloop.clean();
                    if let Some(w) = &mut will {
                        w.arm(&mut eventloop);
                    }
                }
                continue;
            }
        };
        let report = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                link = Link::Up;
                said = None;
                tracing::info!("connected to the MQTT broker");
                TransportEvent::Connected {
                    session: will.as_ref().and_then(|w| w.session.clone()),
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => TransportEvent::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
                retained: p.retain,
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => TransportEvent::Acked { pkid: ack.pkid },
            Ok(Event::Incoming(Packet::SubAck(_))) => TransportEvent::Subscribed,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => TransportEvent::Sent { pkid },
            Ok(_) => continue,
            Err(e) => {
                let why = describe_connection_error(&broker, &e);
                if needs_operator(&e) {
                    if said.as_deref() != Some(why.as_str()) {
                        tracing::error!(%broker, "cannot connect to the VRM broker: {why}");
                        said = Some(why.clone());
                    }
                } else {
                    said = None;
                }
                if link == Link::Up {
                    tracing::warn!(error = %e, "MQTT connection lost");
                    link = Link::Down;
                    if !lost(&tx, e.to_string()).await {
                        return;
                    }
                    // Requests the link made before it saw the loss are stale.
                    eventloop.clean();
                    // The next connection gets a will of its own.
                    if let Some(w) = &mut will {
                        w.arm(&mut eventloop);
                    }
                } else {
                    tracing::debug!(error = %e, "MQTT connection attempt failed: {why}");
                }
                tokio::time::sleep(reconnect_delay).await;
                continue;
            }
        };
        if tx.send(report).await.is_err() {
            return;
        }
    }
}

/// Whether a failed attempt needs the operator (a certificate or the credentials), rather
/// than patience (the network, the broker restarting).
fn needs_operator(e: &rumqttc::ConnectionError) -> bool {
    matches!(
        e,
        rumqttc::ConnectionError::Tls(_) | rumqttc::ConnectionError::ConnectionRefused(_)
    )
}

/// Reports a lost connection and waits until the link took it into account. False when the
/// link is gone.
async fn lost(tx: &mpsc::Sender<TransportEvent>, reason: String) -> bool {
    let (resume, wait) = oneshot::channel();
    if tx
        .send(TransportEvent::Disconnected { reason, resume })
        .await
        .is_err()
    {
        return false;
    }
    let _ = wait.await;
    true
}
