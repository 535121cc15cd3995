//! A simulated Venus OS: the part of a GX device's local MQTT broker that the daemon's
//! `venus` site source reads, for the demo and the tests.
//!
//! Like dbus-flashmq on a GX device, it publishes each value as
//! `N/<portal id>/<service>/<instance>/<path>` with `{"value": ...}` (`null` for an
//! invalid value, an empty payload for a service that left), never retained:
//!
//! - on `R/<portal id>/keepalive` it stays alive for 60 s and publishes every value
//!   (unless the payload asks `suppress-republish`), then `N/<portal id>/full_publish_completed`;
//! - on a read request `R/<portal id>/<path>` it publishes that value, or every value below
//!   that path;
//! - while alive, it publishes a value as soon as it changes.
//!
//! Its values start as a healthy grid-tied site ([`SimVenus::HEALTHY`]): VRM portal access
//! Full, the grid as the active AC input, one inverter/charger (`vebus` 276) with its input
//! connected, Venus OS v3.70. The test or the demo changes them: [`SimVenus::grid_loss`]
//! is the switch for a grid loss (the inverter/charger inverting without its input, as
//! during a power cut), [`SimVenus::freeze`] stops it answering so that its values go
//! stale, [`SimVenus::set`] sets or removes any value.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `settings` `/Settings/Network/VrmPortal`.
pub const VRM_PORTAL: &str = "settings/0/Settings/Network/VrmPortal";
/// `system` `/Ac/ActiveIn/Source`.
pub const AC_SOURCE: &str = "system/0/Ac/ActiveIn/Source";
/// `platform` `/Firmware/Installed/Version`.
pub const FIRMWARE: &str = "platform/0/Firmware/Installed/Version";
/// The inverter/charger's `/Ac/ActiveIn/Connected`.
pub const VEBUS_CONNECTED: &str = "vebus/276/Ac/ActiveIn/Connected";
/// The inverter/charger's `/State`.
pub const VEBUS_STATE: &str = "vebus/276/State";

/// How long a keepalive keeps it publishing changes.
const KEEPALIVE: Duration = Duration::from_secs(60);

struct Inner {
    /// Values by path below `N/<portal id>/` (`Value::Null`: invalid).
    values: BTreeMap<String, Value>,
    alive_until: Option<Instant>,
    frozen: bool,
    /// Paths neither published nor answered.
    muted: std::collections::BTreeSet<String>,
    keepalives: u64,
}

/// The simulated Venus OS. Dropping it stops it.
pub struct SimVenus {
    portal_id: String,
    inner: Arc<Mutex<Inner>>,
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl SimVenus {
    /// The values of a healthy grid-tied site.
    pub const HEALTHY: [(&'static str, &'static str); 5] = [
        (VRM_PORTAL, "2"),
        (AC_SOURCE, "1"),
        (VEBUS_CONNECTED, "1"),
        (VEBUS_STATE, "3"),
        (FIRMWARE, "\"v3.70\""),
    ];

    /// Starts it on the broker at `host:port` for `portal_id`, with the healthy values.
    /// Must run inside a Tokio runtime.
    pub fn start(host: &str, port: u16, portal_id: &str) -> SimVenus {
        let values = SimVenus::HEALTHY
            .iter()
            .map(|(p, v)| {
                (
                    (*p).to_owned(),
                    serde_json::from_str(v).unwrap_or(Value::Null),
                )
            })
            .collect();
        SimVenus::start_with(host, port, portal_id, values)
    }

    /// Starts it with exactly `values` (paths below `N/<portal id>/`).
    pub fn start_with(
        host: &str,
        port: u16,
        portal_id: &str,
        values: BTreeMap<String, Value>,
    ) -> SimVenus {
        let mut options = MqttOptions::new(format!("sim-venus-{portal_id}"), host, port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(true);
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let inner = Arc::new(Mutex::new(Inner {
            values,
            alive_until: None,
            frozen: false,
            muted: Default::default(),
            keepalives: 0,
        }));
        let (connected_tx, connected) = watch::channel(false);
        let task = tokio::spawn(run(
            eventloop,
            client.clone(),
            portal_id.to_owned(),
            inner.clone(),
            connected_tx,
        ));
        SimVenus {
            portal_id: portal_id.to_owned(),
            inner,
            client,
            connected,
            task,
        }
    }

    /// Waits until it is connected and subscribed.
    pub async fn connected(&self) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// How many keepalives it received.
    pub fn keepalives(&self) -> u64 {
        self.lock().keepalives
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `path` to `value` (`Some(Value::Null)`: invalid) or removes it (`None`: it is
    /// no longer published, as if its service never existed). A change is published at
    /// once while a client keeps it alive.
    pub fn set(&self, path: &str, value: Option<Value>) {
        let publish = {
            let mut inner = self.lock();
            match &value {
                Some(v) => {
                    inner.values.insert(path.to_owned(), v.clone());
                }
                None => {
                    inner.values.remove(path);
                }
            }
            is_alive(&inner) && !inner.muted.contains(path)
        };
        if publish && let Some(v) = value {
            publish_value(&self.client, &self.portal_id, path, &v);
        }
    }

    /// The service of `path` leaves: an empty payload, then nothing more.
    pub fn gone(&self, path: &str) {
        let publish = {
            let mut inner = self.lock();
            inner.values.remove(path);
            is_alive(&inner)
        };
        if publish {
            let _ = self.client.try_publish(
                format!("N/{}/{path}", self.portal_id),
                QoS::AtMostOnce,
                false,
                Vec::new(),
            );
        }
    }

    /// `/Settings/Network/VrmPortal` (as changed on the GX's own menu).
    pub fn set_vrm_portal(&self, n: i64) {
        self.set(VRM_PORTAL, Some(json!(n)));
    }

    /// The GX firmware version text.
    pub fn set_firmware(&self, text: &str) {
        self.set(FIRMWARE, Some(json!(text)));
    }

    /// The grid is lost: the inverter/charger inverts from the batteries, its AC input
    /// not connected, and the system's active input becomes 240.
    pub fn grid_loss(&self) {
        self.set(VEBUS_CONNECTED, Some(json!(0)));
        self.set(VEBUS_STATE, Some(json!(9)));
        self.set(AC_SOURCE, Some(json!(240)));
    }

    /// The grid is back.
    pub fn grid_restored(&self) {
        self.set(AC_SOURCE, Some(json!(1)));
        self.set(VEBUS_CONNECTED, Some(json!(1)));
        self.set(VEBUS_STATE, Some(json!(3)));
    }

    /// Stops (`true`) or resumes answering keepalives and read requests and publishing
    /// changes: while frozen, every value the source read goes stale.
    pub fn freeze(&self, frozen: bool) {
        self.lock().frozen = frozen;
    }

    /// Stops (`true`) or resumes publishing and answering `path` alone: that value goes
    /// stale, the others stay fresh.
    pub fn mute(&self, path: &str, muted: bool) {
        let mut inner = self.lock();
        if muted {
            inner.muted.insert(path.to_owned());
        } else {
            inner.muted.remove(path);
        }
    }
}

impl Drop for SimVenus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_alive(inner: &Inner) -> bool {
    !inner.frozen && inner.alive_until.is_some_and(|t| Instant::now() < t)
}

fn publish_value(client: &AsyncClient, portal_id: &str, path: &str, value: &Value) {
    let _ = client.try_publish(
        format!("N/{portal_id}/{path}"),
        QoS::AtMostOnce,
        false,
        json!({ "value": value }).to_string(),
    );
}

async fn run(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    portal_id: String,
    inner: Arc<Mutex<Inner>>,
    connected: watch::Sender<bool>,
) {
    let read_prefix = format!("R/{portal_id}/");
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(format!("R/{portal_id}/#"), QoS::AtMostOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                connected.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(path) = p.topic.strip_prefix(&read_prefix) else {
                    continue;
                };
                let answer: Vec<(String, Value)> = {
                    let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
                    if inner.frozen {
                        continue;
                    }
                    if path == "keepalive" {
                        inner.keepalives += 1;
                        inner.alive_until = Some(Instant::now() + KEEPALIVE);
                        if String::from_utf8_lossy(&p.payload).contains("suppress-republish") {
                            Vec::new()
                        } else {
                            let mut all: Vec<(String, Value)> = inner
                                .values
                                .iter()
                                .filter(|(k, _)| !inner.muted.contains(*k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            all.push(("full_publish_completed".into(), json!(0)));
                            all
                        }
                    } else {
                        inner
                            .values
                            .iter()
                            .filter(|(k, _)| {
                                (k.as_str() == path || k.starts_with(&format!("{path}/")))
                                    && !inner.muted.contains(*k)
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    }
                };
                for (path, value) in answer {
                    publish_value(&client, &portal_id, &path, &value);
                }
            }
            Ok(_) => {}
            Err(_) => {
                connected.send_replace(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
