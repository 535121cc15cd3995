//! The secure link for tests: a CA and a broker certificate made at run time, a password
//! file with the portal and the GXs provisioned, the embedded broker behind its gate, and
//! mosquitto with TLS, the password file and the ACL file.

use super::free_port;
use bmsfw_core::vrm::tls::{MqttCredentials, MqttSecurity, PORTAL_USERNAME};
use bmsfw_portal::broker::{EmbeddedBroker, SecureBroker};
use bmsfw_portal::pki::{Ca, Validity};
use bmsfw_vrm_wire::BrokerAddr;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, the broker's certificate for localhost and 127.0.0.1, and a password file.
pub struct SecureSite {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca_file: PathBuf,
    pub password_file: PathBuf,
}

impl SecureSite {
    /// Makes the certificates and provisions the portal.
    pub fn new() -> SecureSite {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("bmsfw test CA").unwrap();
        let site = SecureSite {
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            ca_file: dir.path().join("ca.pem"),
            password_file: dir.path().join("passwd"),
            dir,
            ca,
        };
        site.ca.write(&site.ca_file).unwrap();
        site.ca
            .server(&["localhost", "127.0.0.1"], Validity::From(30))
            .unwrap()
            .write(&site.server_cert, &site.server_key)
            .unwrap();
        site.provision(PORTAL_USERNAME);
        site.provision(super::PORTAL_ID);
        site
    }

    /// The credentials provisioned for `user`.
    pub fn credentials(&self, user: &str) -> MqttCredentials {
        MqttCredentials::load(&self.dir.path().join(format!("{user}.credentials"))).unwrap()
    }

    /// The test GX's link settings ([`super::link_config`]) over TLS with its credentials.
    pub fn link_config(&self, broker: &BrokerAddr, state: &Path) -> bmsfw_core::vrm::LinkConfig {
        let mut cfg = super::link_config(broker, state);
        cfg.mqtt_security = self.security(broker, Some(self.credentials(super::PORTAL_ID)));
        cfg
    }

    /// The portal's MQTT settings ([`super::portal_config`]) over TLS with its credentials.
    pub fn portal_config(
        &self,
        broker: &BrokerAddr,
        chunk_size: u32,
        window: usize,
    ) -> bmsfw_portal::VrmConfig {
        let mut cfg = super::portal_config(broker, chunk_size, window);
        cfg.security = self.portal_security(broker);
        cfg
    }

    /// Provisions `user` (a GX's portal id, or the portal) and returns its credentials.
    pub fn provision(&self, user: &str) -> MqttCredentials {
        let out = self.dir.path().join(format!("{user}.credentials"));
        bmsfw_portal::provision::provision(&self.password_file, user, &out).unwrap();
        MqttCredentials::load(&out).unwrap()
    }

    /// The CA's file, for `ca = ...`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The security of a client of `broker` logging in as `credentials`.
    pub fn security(
        &self,
        broker: &BrokerAddr,
        credentials: Option<MqttCredentials>,
    ) -> MqttSecurity {
        MqttSecurity::with_ca_der(broker, &[self.ca.der()], credentials).unwrap()
    }

    /// The portal's security towards `broker`.
    pub fn portal_security(&self, broker: &BrokerAddr) -> MqttSecurity {
        self.security(broker, Some(self.credentials(PORTAL_USERNAME)))
    }

    /// The embedded broker with TLS, this password file and the topic rules.
    pub fn embedded(&self) -> EmbeddedBroker {
        self.embedded_with(
            bmsfw_portal::broker::ServerTls::load(&self.server_cert, &self.server_key).unwrap(),
        )
    }

    /// The embedded broker serving this certificate.
    pub fn embedded_with(&self, tls: bmsfw_portal::broker::ServerTls) -> EmbeddedBroker {
        EmbeddedBroker::start_secure(SecureBroker {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: Some(tls),
            password_file: Some(self.password_file.clone()),
            portal: None,
        })
        .unwrap()
    }

    /// mosquitto with TLS (this certificate), this password file and bmsfw's ACL file.
    pub fn mosquitto(&self) -> SecureMosquitto {
        self.mosquitto_on(free_port())
    }

    /// The same on `port`.
    pub fn mosquitto_on(&self, port: u16) -> SecureMosquitto {
        let mut m = SecureMosquitto {
            port,
            child: Some(self.spawn_mosquitto(port)),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if Instant::now() > deadline
                || m.child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
            {
                panic!(
                    "mosquitto did not start: {}",
                    std::fs::read_to_string(self.dir.path().join("mosquitto.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// Starts a plain mosquitto on `port` (loopback, anonymous), as Venus OS's own.
    pub fn spawn_plain_mosquitto(&self, port: u16) -> Child {
        let conf = self.dir.path().join("mosquitto-plain.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 100\nmax_queued_messages 10000\n"
            ),
        )
        .unwrap();
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed (run scripts/test-all as root to install it)")
    }

    /// Starts mosquitto on `port` with TLS, this password file and bmsfw's ACL file.
    pub fn spawn_mosquitto(&self, port: u16) -> Child {
        let acl = self.dir.path().join("bmsfw.acl");
        std::fs::write(&acl, bmsfw_portal::acl::MOSQUITTO_ACL).unwrap();
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 user root\n\
                 password_file {}\nacl_file {}\n\
                 max_inflight_messages 100\nmax_queued_messages 10000\n\
                 listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                self.password_file.display(),
                acl.display(),
                self.server_cert.display(),
                self.server_key.display(),
            ),
        )
        .unwrap();
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto is not installed (run scripts/test-all as root to install it)")
    }
}

/// A mosquitto started by [`SecureSite::mosquitto`], killed when dropped.
pub struct SecureMosquitto {
    port: u16,
    child: Option<Child>,
}

impl SecureMosquitto {
    /// `mqtts://localhost:port`.
    pub fn addr(&self) -> BrokerAddr {
        BrokerAddr::tls("localhost", self.port)
    }
}

impl Drop for SecureMosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mqtts://localhost:port` of an embedded broker.
pub fn embedded_addr(broker: &EmbeddedBroker) -> BrokerAddr {
    BrokerAddr::tls("localhost", broker.addr().port())
}
