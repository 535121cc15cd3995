//! The `venus` site source: live values from Venus OS's local MQTT broker.
//!
//! On a GX device, Venus OS's broker (FlashMQ with its dbus-flashmq plugin) carries every
//! D-Bus value as `N/<portal id>/<service>/<instance>/<path>` with the payload
//! `{"value": ...}`. It publishes a value when it changes, but only while a client keeps
//! it alive with `R/<portal id>/keepalive` (alive for 60 s after the last one), and it
//! re-publishes one value on a read request `R/<portal id>/<service>/<instance>/<path>`.
//! `docs/venus.md` lists the paths, their encodings and where they are defined.
//!
//! The source ([`spawn_venus`]):
//!
//! - connects to the broker, subscribes to the watched topics ([`paths`]) and sends a
//!   keepalive that asks for a full publish (so it learns the inverter/chargers' instances);
//! - every `refresh` period sends a keepalive with `suppress-republish` and a read request
//!   for every watched value, so a value that does not change still arrives once per
//!   period;
//! - every quarter of a second (and on every message) computes the three site values
//!   ([`state::VenusState`]) and feeds them to the shared handles the gates read:
//!   [`VrmAccess`] (720), [`SiteStatus`] grid (728) and GX firmware (721). A value never
//!   received, reported invalid, not understood, or not received for `stale_after` is
//!   unknown, and its gate refuses; so is every value while the broker is unreachable.
//! - publishes the daemon's own status in the same layout, as the service `bmsfw`
//!   ([`status`]).

pub mod paths;
pub mod state;
pub mod status;

use crate::gates::SiteStatus;
use crate::vrm::{GxEngine, VrmAccess};
use bmsfw_vrm_wire::BrokerAddr;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use state::VenusState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the site values are recomputed besides on every message.
const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// Pause before reconnecting to an unreachable broker.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Settings of the `venus` source.
#[derive(Debug, Clone)]
pub struct VenusConfig {
    /// Venus OS's local broker.
    pub broker: BrokerAddr,
    /// The GX's portal id (the second level of every topic).
    pub portal_id: String,
    /// Keepalive and read-request period.
    pub refresh: Duration,
    /// A value older than this is stale.
    pub stale_after: Duration,
    /// Whether the daemon publishes its own status.
    pub publish_status: bool,
    /// The daemon's version, published as `/FirmwareVersion` and `/Mgmt/ProcessVersion`.
    pub daemon_version: String,
    /// The BMS-Can interfaces, published as `/Mgmt/Connection`.
    pub connection: String,
}

impl VenusConfig {
    /// Settings for `portal_id` on `broker`, with the `[site]` defaults.
    pub fn new(broker: BrokerAddr, portal_id: impl Into<String>) -> VenusConfig {
        VenusConfig {
            broker,
            portal_id: portal_id.into(),
            refresh: Duration::from_secs(10),
            stale_after: Duration::from_secs(30),
            publish_status: true,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            connection: "BMS-Can".to_owned(),
        }
    }

    /// From `gx.toml`'s `[site]` and `portal_id`.
    pub fn from_gx(config: &crate::config::GxConfig) -> VenusConfig {
        let site = &config.site;
        let mut c = VenusConfig::new(
            BrokerAddr::new(site.broker.host.clone(), site.broker.port),
            config.portal_id.as_str(),
        );
        c.refresh = site.refresh_seconds.duration();
        c.stale_after = site.stale_after_seconds.duration();
        c.publish_status = site.publish_status;
        let names: Vec<&str> = config.can.0.iter().map(|c| c.name.as_str()).collect();
        c.connection = format!("BMS-Can {}", names.join(", "));
        c
    }

    fn topic(&self, kind: &str, path: &str) -> String {
        format!("{kind}/{}/{path}", self.portal_id)
    }
}

/// The running source; dropping it stops the task.
#[derive(Debug)]
pub struct VenusHandle {
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl VenusHandle {
    /// Stops the source (the daemon's status goes with its last will) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for VenusHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The shared handles the source feeds.
#[derive(Clone)]
pub struct VenusTargets {
    /// `/Settings/Network/VrmPortal` for the link and gate 720.
    pub vrm: VrmAccess,
    /// The grid (728) and the GX firmware (721).
    pub site: SiteStatus,
    /// The engine, whose running updates the status counts (`None`: nothing published
    /// about updates).
    pub engine: Option<Arc<dyn GxEngine>>,
}

/// Starts the source on the current Tokio runtime. Until the first values arrive, the
/// three values are unknown ("not yet received").
pub fn spawn_venus(config: VenusConfig, targets: VenusTargets) -> VenusHandle {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(config, targets, stopped));
    VenusHandle {
        task: Some(task),
        stop: Some(stop),
    }
}

/// Values pushed to the handles last, to log changes once.
#[derive(Default)]
struct Pushed {
    vrm: Option<String>,
    grid: Option<String>,
    firmware: Option<String>,
}

fn push(state: &VenusState, targets: &VenusTargets, pushed: &mut Pushed, now: Instant) {
    use crate::gates::SiteValue;
    let vrm = state.vrm_portal(now);
    match &vrm {
        SiteValue::Known(mode) => targets.vrm.set(*mode),
        SiteValue::Unknown(why) => targets.vrm.set_unknown(why.clone()),
    }
    let grid = state.grid(now);
    targets.site.set_grid_value(grid.clone());
    let firmware = state.gx_firmware(now);
    targets.site.set_gx_firmware(firmware.clone());
    for (name, value, last) in [
        ("VRM portal access", vrm.to_string(), &mut pushed.vrm),
        ("grid", grid.to_string(), &mut pushed.grid),
        ("GX firmware", firmware.to_string(), &mut pushed.firmware),
    ] {
        if last.as_deref() != Some(value.as_str()) {
            tracing::info!(value = %value, "Venus OS: {name}");
            *last = Some(value);
        }
    }
}

async fn run(config: VenusConfig, targets: VenusTargets, mut stopped: oneshot::Receiver<()>) {
    let broker = format!("{}:{}", config.broker.host, config.broker.port);
    let mut state = VenusState::new(
        &config.portal_id,
        config.stale_after,
        format!("not yet connected to Venus OS's MQTT broker at {broker}"),
    );
    let client_id = format!(
        "bmsfw-site-{}-{}",
        config.portal_id,
        std::process::id() % 100_000
    );
    let mut options = MqttOptions::new(
        client_id.clone(),
        config.broker.host.clone(),
        config.broker.port,
    );
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_session(true);
    if config.publish_status {
        options.set_last_will(LastWill::new(
            config.topic("N", &status::path(status::CONNECTED)),
            Vec::new(),
            QoS::AtMostOnce,
            false,
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let mut pushed = Pushed::default();
    let mut evaluate = tokio::time::interval(EVALUATE_EVERY);
    evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_refresh = Instant::now() + config.refresh;
    let mut status = status::Status::new(&config);
    push(&state, &targets, &mut pushed, Instant::now());
    // Jobs changed since the running updates were last counted.
    let mut updates = targets.engine.as_ref().map(|e| e.subscribe());
    let mut recount = true;
    loop {
        tokio::select! {
            _ = &mut stopped => {
                if config.publish_status {
                    let _ = client.try_publish(
                        config.topic("N", &status::path(status::CONNECTED)),
                        QoS::AtMostOnce,
                        false,
                        Vec::new(),
                    );
                }
                let _ = client.try_disconnect();
                // Let the event loop send what is queued, briefly.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while eventloop.poll().await.is_ok() {}
                })
                .await;
                return;
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(%broker, "connected to Venus OS's MQTT broker");
                    state.online();
                    subscribe(&client, &config);
                    keepalive(&client, &config, true);
                    if config.publish_status {
                        status.publish_all(&client, &config);
                    }
                    next_refresh = Instant::now() + config.refresh;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = Instant::now();
                    if state.message(&p.topic, &p.payload, now) {
                        push(&state, &targets, &mut pushed, now);
                    } else if config.publish_status {
                        status.on_request(&client, &config, &p.topic, &p.payload);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    state.offline(format!("Venus OS's MQTT broker at {broker} is not reachable: {e}"));
                    push(&state, &targets, &mut pushed, Instant::now());
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            },
            update = async {
                match updates.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match update {
                Ok(crate::vrm::EngineUpdate::Job(_))
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => recount = true,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => updates = None,
            },
            _ = evaluate.tick() => {
                let now = Instant::now();
                if now >= next_refresh {
                    next_refresh = now + config.refresh;
                    keepalive(&client, &config, false);
                    read_all(&client, &config, &state);
                }
                push(&state, &targets, &mut pushed, now);
                if config.publish_status
                    && std::mem::take(&mut recount)
                    && let Some(engine) = &targets.engine
                {
                    let running = engine
                        .jobs()
                        .await
                        .iter()
                        .filter(|j| !j.state().is_terminal())
                        .count();
                    status.set_running(&client, &config, running);
                }
            }
        }
    }
}

/// Every topic filter the source subscribes to on Venus OS's broker: the watched `N/`
/// values and, when it publishes its status, the `R/` keepalive and reads of its own
/// service. Never a `W/` or `P/` topic: nothing a client on the site's network publishes
/// there reaches the engine's update path (the source only reads values, which feed the
/// gates, and answers reads of its own status).
pub fn subscriptions(config: &VenusConfig) -> Vec<String> {
    let mut filters: Vec<String> = paths::SUBSCRIPTIONS
        .iter()
        .map(|p| config.topic("N", p))
        .collect();
    if config.publish_status {
        filters.push(config.topic("R", "keepalive"));
        filters.push(config.topic("R", &format!("{}/#", status::SERVICE_PREFIX)));
    }
    filters
}

fn subscribe(client: &AsyncClient, config: &VenusConfig) {
    for f in subscriptions(config) {
        if let Err(e) = client.try_subscribe(f.clone(), QoS::AtMostOnce) {
            tracing::warn!(filter = %f, error = %e, "cannot subscribe on Venus OS's broker");
        }
    }
}

/// `R/<portal id>/keepalive`: with a full publish (at connect, to learn every instance)
/// or with `suppress-republish` (the periodic one).
fn keepalive(client: &AsyncClient, config: &VenusConfig, full: bool) {
    let payload = if full {
        serde_json::json!({ "keepalive-options": [ { "full-publish-completed-echo": "bmsfw" } ] })
    } else {
        serde_json::json!({ "keepalive-options": ["suppress-republish"] })
    };
    let _ = client.try_publish(
        config.topic("R", "keepalive"),
        QoS::AtMostOnce,
        false,
        payload.to_string(),
    );
}

/// A read request for every watched value.
fn read_all(client: &AsyncClient, config: &VenusConfig, state: &VenusState) {
    let mut reads: Vec<String> = paths::READS.iter().map(|p| (*p).to_owned()).collect();
    for i in state.vebus_instances() {
        reads.push(paths::vebus(&i, paths::VEBUS_AC_CONNECTED));
        reads.push(paths::vebus(&i, paths::VEBUS_STATE));
    }
    for path in reads {
        let _ = client.try_publish(config.topic("R", &path), QoS::AtMostOnce, false, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The LAN-facing side is read-only: the source subscribes to no request topic that
    /// could carry a command or a write, with or without its status service.
    #[test]
    fn nothing_on_the_venus_broker_can_command_the_gx() {
        for publish_status in [false, true] {
            let mut config = VenusConfig::new(BrokerAddr::new("127.0.0.1", 1883), "c0619ab1e2f3");
            config.publish_status = publish_status;
            let filters = subscriptions(&config);
            assert!(!filters.is_empty());
            for f in &filters {
                let kind = f.split('/').next().unwrap_or_default();
                assert!(
                    kind == "N" || (publish_status && kind == "R"),
                    "{f} is not a value or a read of the daemon's own status"
                );
                assert!(!f.starts_with('#') && !f.starts_with('+'), "{f}");
                if kind == "R" {
                    assert!(
                        f == "R/c0619ab1e2f3/keepalive"
                            || f.starts_with(&format!(
                                "R/c0619ab1e2f3/{}/",
                                status::SERVICE_PREFIX
                            )),
                        "{f}"
                    );
                }
            }
        }
    }
}
