//! `portal.toml`: where the portal listens, which broker it uses, its installations and
//! its users.

use crate::auth::UserRecord;
use bmsfw_vrm_wire::{BrokerAddr, PortalId};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// One installation the portal knows (VRM's site list).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallationConfig {
    /// The GX's portal id.
    pub portal_id: PortalId,
    /// The installation's name.
    pub name: String,
}

fn broker<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BrokerAddr>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The portal's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Where the web UI and HTTP API listen.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// An external MQTT broker (`mqtt://host:port`); without it the portal runs the
    /// embedded broker on `embedded_broker_listen`.
    #[serde(default, deserialize_with = "broker")]
    pub broker: Option<BrokerAddr>,
    /// Where the embedded broker listens.
    #[serde(default = "defaults::embedded_broker")]
    pub embedded_broker_listen: SocketAddr,
    /// Largest firmware file an installer may upload, in bytes.
    #[serde(default = "defaults::max_upload")]
    pub max_upload_bytes: u64,
    /// How long a login lasts, in hours.
    #[serde(default = "defaults::session_hours")]
    pub session_hours: u64,
    /// Silence, in seconds, after which a GX counts as offline (its last will makes it
    /// offline at once): 30 to 86400. No update starts toward an offline GX.
    #[serde(default = "defaults::gx_offline_after_seconds")]
    pub gx_offline_after_seconds: u64,
    /// The installations.
    #[serde(default)]
    pub installations: Vec<InstallationConfig>,
    /// The users.
    #[serde(default)]
    pub users: Vec<UserRecord>,
}

mod defaults {
    use std::net::SocketAddr;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn embedded_broker() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1883))
    }
    pub fn max_upload() -> u64 {
        64 * 1024 * 1024
    }
    pub fn session_hours() -> u64 {
        12
    }
    pub fn gx_offline_after_seconds() -> u64 {
        60
    }
}

/// The range of `gx_offline_after_seconds`: above the portal's 25 s keepalive period (a GX
/// answers each keepalive), at most a day.
pub const GX_OFFLINE_AFTER_SECONDS: std::ops::RangeInclusive<u64> = 30..=86_400;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large to be a configuration.
    #[error("{} is larger than {MAX_CONFIG} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The content is wrong (the message names line and column).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl PortalConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<PortalConfig, ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_CONFIG + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        PortalConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Checks the text of a configuration.
    pub fn parse(text: &str) -> Result<PortalConfig, String> {
        let config: PortalConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if !GX_OFFLINE_AFTER_SECONDS.contains(&config.gx_offline_after_seconds) {
            return Err(format!(
                "gx_offline_after_seconds must be between {} and {}, is {}",
                GX_OFFLINE_AFTER_SECONDS.start(),
                GX_OFFLINE_AFTER_SECONDS.end(),
                config.gx_offline_after_seconds
            ));
        }
        for u in &config.users {
            for i in &u.installations {
                if i != "*"
                    && !config
                        .installations
                        .iter()
                        .any(|c| c.portal_id.as_str() == i)
                {
                    return Err(format!(
                        "user {:?} lists installation {i:?}, which is not among [[installations]]",
                        u.name
                    ));
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn reads_a_configuration_with_defaults() {
        let text = format!(
            r#"
            broker = "mqtt://10.0.0.2:1884"
            [[installations]]
            portal_id = "c0619ab1e2f3"
            name = "Harbour"
            [[users]]
            name = "ann"
            password_hash = "{HASH}"
            access = "monitor-only"
            installations = ["c0619ab1e2f3"]
            "#
        );
        let c = PortalConfig::parse(&text).unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.broker, Some(BrokerAddr::new("10.0.0.2", 1884)));
        assert_eq!(c.installations[0].name, "Harbour");
        assert_eq!(c.users[0].access, crate::auth::AccessLevel::MonitorOnly);
        assert_eq!(c.gx_offline_after_seconds, 60);
        let c = PortalConfig::parse("gx_offline_after_seconds = 120\n").unwrap();
        assert_eq!(c.gx_offline_after_seconds, 120);
    }

    #[test]
    fn errors_name_the_place() {
        let e = PortalConfig::parse("listen = 5\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = PortalConfig::parse("brokr = \"x\"\n").unwrap_err();
        assert!(e.contains("brokr"), "{e}");
        let e = PortalConfig::parse("broker = \"tcp://x\"\n").unwrap_err();
        assert!(e.contains("mqtt://"), "{e}");
        let e = PortalConfig::parse("gx_offline_after_seconds = 10\n").unwrap_err();
        assert!(e.contains("gx_offline_after_seconds"), "{e}");
        let text = format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\naccess = \"full-control\"\ninstallations = [\"nope\"]\n"
        );
        let e = PortalConfig::parse(&text).unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
