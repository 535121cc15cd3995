//! The embedded MQTT broker (rumqttd), so nothing needs installing to run the portal.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Largest MQTT message the embedded broker carries.
pub const MAX_PAYLOAD: usize = 2 * 1024 * 1024;

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No free port could be found, or the thread could not start.
    #[error("embedded MQTT broker: {0}")]
    Io(#[from] std::io::Error),
    /// The address cannot be listened on (another broker runs there?).
    #[error(
        "embedded MQTT broker cannot listen on {0}: {1} (is another broker running there? use --broker mqtt://host:port)"
    )]
    InUse(SocketAddr, #[source] std::io::Error),
    /// The broker did not accept connections in time.
    #[error(
        "embedded MQTT broker did not start listening on {0} within 5 s (is the address in use?)"
    )]
    NotListening(SocketAddr),
}

/// A running embedded broker. It runs until the process ends.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on `listen` (port 0 picks a free port) and waits until it accepts
    /// connections.
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        // Bind first: a port already taken (another broker) would otherwise look like our
        // broker answering.
        let probe = TcpListener::bind(listen).map_err(|e| BrokerError::InUse(listen, e))?;
        let addr = probe.local_addr()?;
        drop(probe);
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = rumqttd::ServerSettings {
            name: "v4".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections,
        };
        let config = rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: 1024,
                max_outgoing_packet_count: 1024,
                max_segment_size: 16 * 1024 * 1024,
                max_segment_count: 10,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("v4".to_owned(), server)])),
            ..rumqttd::Config::default()
        };
        let mut broker = rumqttd::Broker::new(config);
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                tracing::info!(%addr, "embedded MQTT broker listening");
                return Ok(EmbeddedBroker { addr });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::NotListening(addr))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its address as `mqtt://host:port`.
    pub fn url(&self) -> bmsfw_vrm_wire::BrokerAddr {
        bmsfw_vrm_wire::BrokerAddr::new(self.addr.ip().to_string(), self.addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_address_is_refused_rather_than_mistaken_for_our_broker() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = other.local_addr().unwrap();
        match EmbeddedBroker::start(taken) {
            Err(BrokerError::InUse(addr, _)) => assert_eq!(addr, taken),
            other => panic!("expected InUse, got {other:?}"),
        }
    }
}
