//! The embedded MQTT broker (rumqttd), so nothing needs installing to run the portal.
//!
//! [`EmbeddedBroker::start`] runs rumqttd alone: open to anyone who reaches it, for
//! loopback stand-ins (the demo's simulated Venus OS) and old tests.
//!
//! [`EmbeddedBroker::start_secure`] is what the portal runs: rumqttd listens on a random
//! loopback port and accepts only the gate's own login (a random secret), and the gate, in
//! front, is what clients reach. rumqttd 0.20 checks a login at CONNECT (a static map or a
//! callback) but has no per-topic authorization (its only topic check is the fixed
//! `/tenants/<id>/` prefix of client-certificate tenants), so the gate does it:
//! - TLS (rustls) with the configured certificate; plain TCP only on a loopback address;
//! - CONNECT: the user name and password must match the password file (a GX) or the
//!   portal's own identity, else CONNACK "bad user name or password" and the connection
//!   closes; the client id is prefixed with the user name (one GX cannot take over
//!   another's session), and the last will must be a topic the client may publish;
//! - every SUBSCRIBE and PUBLISH is checked against [`crate::acl`]: a forbidden one closes
//!   the connection;
//! - a GX whose entry is removed or changed in the password file (revoked, provisioned
//!   again) is disconnected within [`RECHECK`].

mod gate;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Plain MQTT on an address that is not loopback.
    #[error(
        "embedded MQTT broker: plain MQTT on {0} is refused (not a loopback address); give it \
         a certificate (tls_cert, tls_key)"
    )]
    PlainNotLoopback(SocketAddr),
    /// The TLS settings are unusable.
    #[error("embedded MQTT broker TLS: {0}")]
    Tls(String),
}

/// A running embedded broker. It runs until the process ends.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    tls: bool,
}

impl EmbeddedBroker {
    /// Starts a broker on `listen` (port 0 picks a free port) and waits until it accepts
    /// connections.
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        let addr = start_rumqttd(listen, None)?;
        tracing::info!(%addr, "embedded MQTT broker listening (no credentials, no topic rules)");
        Ok(EmbeddedBroker { addr, tls: false })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its address as `mqtts://host:port` (with TLS) or `mqtt://host:port`.
    pub fn url(&self) -> bmsfw_vrm_wire::BrokerAddr {
        if self.tls {
            bmsfw_vrm_wire::BrokerAddr::tls(self.addr.ip().to_string(), self.addr.port())
        } else {
            bmsfw_vrm_wire::BrokerAddr::new(self.addr.ip().to_string(), self.addr.port())
        }
    }

    /// Starts rumqttd on a random loopback port, behind the gate on `config.listen`
    /// (see the module's documentation), and waits until the gate accepts connections.
    pub fn start_secure(config: SecureBroker) -> Result<EmbeddedBroker, BrokerError> {
        if config.tls.is_none() && !config.listen.ip().is_loopback() {
            return Err(BrokerError::PlainNotLoopback(config.listen));
        }
        let backend_secret = crate::passwd::new_password();
        let backend = start_rumqttd(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(HashMap::from([(
                GATE_USER.to_owned(),
                backend_secret.clone(),
            )])),
        )?;
        let listener =
            TcpListener::bind(config.listen).map_err(|e| BrokerError::InUse(config.listen, e))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = config.tls.is_some();
        let acceptor = match config.tls {
            Some(t) => Some(t.acceptor()?),
            None => None,
        };
        let gate = Arc::new(gate::Gate {
            backend,
            backend_secret,
            acceptor,
            users: gate::Users::new(config.password_file, config.portal),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("mqtt-gate".into())
            .spawn(move || runtime.block_on(gate::serve(gate, listener)))?;
        tracing::info!(%addr, tls, "embedded MQTT broker listening (TLS, credentials, topic rules)");
        Ok(EmbeddedBroker { addr, tls })
    }
}

/// The settings of [`EmbeddedBroker::start_secure`].
#[derive(Debug)]
pub struct SecureBroker {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The broker's certificate and key; `None`: plain TCP, refused unless `listen` is a
    /// loopback address.
    pub tls: Option<ServerTls>,
    /// The GXs' entries, in mosquitto's format; re-read when it changes. A missing file
    /// has no entries.
    pub password_file: Option<PathBuf>,
    /// The portal's own identity (user name [`crate::acl::PORTAL_USERNAME`]).
    pub portal: Option<bmsfw_core::vrm::tls::Secret>,
}

/// A server certificate chain and its private key.
pub struct ServerTls {
    /// The chain, the server's certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads PEM files: the certificate chain and the private key.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, BrokerError> {
        use rustls::pki_types::pem::PemObject;
        let bad = |path: &Path, why: String| BrokerError::Tls(format!("{}: {why}", path.display()));
        let read = |path: &Path| -> Result<Vec<u8>, BrokerError> {
            let meta = std::fs::metadata(path).map_err(|e| bad(path, e.to_string()))?;
            if meta.len() > 1024 * 1024 {
                return Err(bad(path, "larger than 1 MiB".into()));
            }
            std::fs::read(path).map_err(|e| bad(path, e.to_string()))
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(cert, format!("not PEM certificates: {e}")))?;
        if chain.is_empty() {
            return Err(bad(cert, "holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|_| bad(key, "holds no usable private key".into()))?;
        Ok(ServerTls { chain, key })
    }

    fn acceptor(self) -> Result<tokio_rustls::TlsAcceptor, BrokerError> {
        let config =
            rustls::ServerConfig::builder_with_provider(bmsfw_core::vrm::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| BrokerError::Tls(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(self.chain, self.key)
                .map_err(|e| BrokerError::Tls(format!("the certificate and key: {e}")))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// The gate's login at rumqttd.
const GATE_USER: &str = "bmsfw-gate";
/// How often a connection checks that its credentials still stand.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Starts rumqttd on `listen` (with these logins, if any) and waits until it accepts
/// connections; returns its address.
fn start_rumqttd(
    listen: SocketAddr,
    auth: Option<HashMap<String, String>>,
) -> Result<SocketAddr, BrokerError> {
    // Bind first: a port already taken (another broker) would otherwise look like our
    // broker answering.
    let probe = TcpListener::bind(listen).map_err(|e| BrokerError::InUse(listen, e))?;
    let addr = probe.local_addr()?;
    drop(probe);
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 500,
        auth,
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
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
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
