//! The daemon's own status, published as a Venus OS service would be: the service type
//! `bmsfw`, instance 0, under `N/<portal id>/bmsfw/0/`, each value as `{"value": ...}`.
//!
//! | path | value |
//! |---|---|
//! | `/Connected` | 1 while the daemon runs; empty payload when it stops or dies (its last will), as for a service that left the D-Bus |
//! | `/ProductName` | `bmsfw` |
//! | `/FirmwareVersion` | the daemon's version |
//! | `/DeviceInstance` | 0 |
//! | `/Mgmt/ProcessName` | `bmsfw` |
//! | `/Mgmt/ProcessVersion` | the daemon's version |
//! | `/Mgmt/Connection` | `BMS-Can` and the interfaces |
//! | `/Updates/Running` | the number of updates not yet ended (any state before Completed or Failed) |
//!
//! The values are published at connection, on a keepalive that asks for a full publish,
//! on a read request below `R/<portal id>/bmsfw/0/`, and `/Updates/Running` whenever it
//! changes.

use super::VenusConfig;
use rumqttc::{AsyncClient, QoS};

/// The service type and instance.
pub const SERVICE_PREFIX: &str = "bmsfw/0";
/// `/Connected`.
pub const CONNECTED: &str = "Connected";
/// `/Updates/Running`.
pub const UPDATES_RUNNING: &str = "Updates/Running";

/// `bmsfw/0/<leaf>`.
pub fn path(leaf: &str) -> String {
    format!("{SERVICE_PREFIX}/{leaf}")
}

/// What the daemon publishes.
#[derive(Debug)]
pub struct Status {
    values: Vec<(&'static str, serde_json::Value)>,
    running: Option<usize>,
}

impl Status {
    /// The fixed values of `config`.
    pub fn new(config: &VenusConfig) -> Status {
        use serde_json::json;
        Status {
            values: vec![
                (CONNECTED, json!(1)),
                ("ProductName", json!("bmsfw")),
                ("FirmwareVersion", json!(config.daemon_version)),
                ("DeviceInstance", json!(0)),
                ("Mgmt/ProcessName", json!("bmsfw")),
                ("Mgmt/ProcessVersion", json!(config.daemon_version)),
                ("Mgmt/Connection", json!(config.connection)),
            ],
            running: None,
        }
    }

    fn publish(client: &AsyncClient, config: &VenusConfig, leaf: &str, value: &serde_json::Value) {
        let payload = serde_json::json!({ "value": value }).to_string();
        let _ = client.try_publish(
            config.topic("N", &path(leaf)),
            QoS::AtMostOnce,
            false,
            payload,
        );
    }

    /// Publishes every value.
    pub fn publish_all(&self, client: &AsyncClient, config: &VenusConfig) {
        for (leaf, value) in &self.values {
            Status::publish(client, config, leaf, value);
        }
        if let Some(n) = self.running {
            Status::publish(client, config, UPDATES_RUNNING, &serde_json::json!(n));
        }
    }

    /// Answers a keepalive (a full publish unless suppressed) or a read request below
    /// `R/<portal id>/bmsfw/0/`.
    pub fn on_request(
        &self,
        client: &AsyncClient,
        config: &VenusConfig,
        topic: &str,
        payload: &[u8],
    ) {
        if topic == config.topic("R", "keepalive") {
            let suppressed = String::from_utf8_lossy(payload).contains("suppress-republish");
            if !suppressed {
                self.publish_all(client, config);
            }
            return;
        }
        let Some(rest) = topic.strip_prefix(&config.topic("R", SERVICE_PREFIX)) else {
            return;
        };
        let rest = rest.trim_start_matches('/');
        for (leaf, value) in &self.values {
            if rest.is_empty() || *leaf == rest || leaf.starts_with(&format!("{rest}/")) {
                Status::publish(client, config, leaf, value);
            }
        }
        if let Some(n) = self.running
            && (rest.is_empty() || UPDATES_RUNNING.starts_with(rest))
        {
            Status::publish(client, config, UPDATES_RUNNING, &serde_json::json!(n));
        }
    }

    /// Records the number of running updates; publishes it when it changed.
    pub fn set_running(&mut self, client: &AsyncClient, config: &VenusConfig, n: usize) {
        if self.running != Some(n) {
            self.running = Some(n);
            Status::publish(client, config, UPDATES_RUNNING, &serde_json::json!(n));
        }
    }
}
