//! `portal.toml`: where the portal listens, which broker it uses, its limits, its
//! installations and its users.
//!
//! Every value is checked against its range and every error names the line and the
//! column: an unknown key, a value out of range, a password hash that is not argon2id or
//! asks for more than the portal allows, text that is not UTF-8, a file without users.

use crate::auth::UserRecord;
use crate::web::WebSettings;
use bmsfw_vrm_wire::{BrokerAddr, PortalId};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
    /// Largest firmware file an installer may upload, in bytes: the GX's staging limit
    /// (`[staging] max_package_bytes` of gx.toml, 16 MiB by default), so that a file the GX
    /// would refuse is refused at once.
    #[serde(default = "defaults::max_upload")]
    pub max_upload_bytes: u64,
    /// Uploads one user may send at once.
    #[serde(default = "defaults::max_uploads_per_user")]
    pub max_uploads_per_user: u64,
    /// Uploads the portal receives at once, from all users.
    #[serde(default = "defaults::max_uploads_total")]
    pub max_uploads_total: u64,
    /// Seconds a client has to send a request's head (also how long an idle connection
    /// stays open).
    #[serde(default = "defaults::header_timeout_seconds")]
    pub header_timeout_seconds: u64,
    /// Longest pause, in seconds, while a request's body arrives.
    #[serde(default = "defaults::body_idle_timeout_seconds")]
    pub body_idle_timeout_seconds: u64,
    /// Seconds a client has to send a whole request body (a firmware file included).
    #[serde(default = "defaults::body_timeout_seconds")]
    pub body_timeout_seconds: u64,
    /// Threads checking passwords at once; each holds one argon2 buffer (the `m` of the
    /// users' hashes, 19 MiB with `bmsfw portal hash-password`).
    #[serde(default = "defaults::password_workers")]
    pub password_workers: u64,
    /// How long a login lasts, in hours.
    #[serde(default = "defaults::session_hours")]
    pub session_hours: u64,
    /// Silence, in seconds, after which a GX counts as offline (its last will makes it
    /// offline at once): 30 to 86400. No update starts toward an offline GX.
    #[serde(default = "defaults::gx_offline_after_seconds")]
    pub gx_offline_after_seconds: u64,
    /// The portal's database: sessions, each installation's last contact, the files
    /// waiting for Update, every update with its event log, and the diagnostics of
    /// failures. Uploaded files are kept in the folder beside it named after it
    /// (`portal-files/` for `portal.sqlite`). A relative path is taken from the folder of
    /// this file.
    #[serde(default = "defaults::database")]
    pub database: PathBuf,
    /// The portal's command-signing key (created on the first start, mode 0600); by
    /// default `portal-signing.key` beside the database. A relative path is taken from the
    /// folder of this file.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The security of the MQTT link (`[mqtt]`): TLS, credentials, the embedded broker's
    /// password file.
    #[serde(default)]
    pub mqtt: MqttSecurityConfig,
    /// The installations.
    #[serde(default)]
    pub installations: Vec<InstallationConfig>,
    /// The users.
    #[serde(default)]
    pub users: Vec<UserRecord>,
}

/// The `[mqtt]` table: the security of the MQTT link (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSecurityConfig {
    /// The CA certificate (PEM) that signed the broker's certificate: required with an
    /// `mqtts://` broker, whose certificate is checked against it.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The portal's credentials file on an external broker (user vrm.portal), as
    /// `bmsfw portal provision vrm.portal` writes it.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// Allow plain `mqtt://` to a broker that is not on loopback (logged at every start).
    #[serde(default)]
    pub insecure: bool,
    /// The embedded broker's password file (mosquitto's format): one entry per GX,
    /// written by `bmsfw portal provision`, re-read when it changes. Without it no GX can
    /// log in to the embedded broker.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The embedded broker's certificate chain (PEM): with `tls_key`, it serves TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl MqttSecurityConfig {
    fn resolve(&mut self, dir: &Path) {
        for p in [
            &mut self.ca,
            &mut self.credentials,
            &mut self.password_file,
            &mut self.tls_cert,
            &mut self.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The settings of the portal's own MQTT client.
    pub fn client(&self) -> bmsfw_core::vrm::tls::SecuritySettings {
        bmsfw_core::vrm::tls::SecuritySettings {
            ca: self.ca.clone(),
            credentials: self.credentials.clone(),
            insecure: self.insecure,
        }
    }
}

mod defaults {
    pub fn database() -> std::path::PathBuf {
        "portal.sqlite".into()
    }
    use std::net::SocketAddr;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn embedded_broker() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1883))
    }
    pub fn max_upload() -> u64 {
        16 * 1024 * 1024
    }
    pub fn max_uploads_per_user() -> u64 {
        2
    }
    pub fn max_uploads_total() -> u64 {
        4
    }
    pub fn header_timeout_seconds() -> u64 {
        15
    }
    pub fn body_idle_timeout_seconds() -> u64 {
        30
    }
    pub fn body_timeout_seconds() -> u64 {
        600
    }
    pub fn password_workers() -> u64 {
        2
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
pub const GX_OFFLINE_AFTER_SECONDS: RangeInclusive<u64> = 30..=86_400;
/// The range of `session_hours`: an hour to 30 days.
pub const SESSION_HOURS: RangeInclusive<u64> = 1..=720;
/// The range of `max_upload_bytes`: 1 KiB to 64 MiB.
pub const MAX_UPLOAD_BYTES: RangeInclusive<u64> = 1024..=64 * 1024 * 1024;
/// The range of `max_uploads_per_user`.
pub const MAX_UPLOADS_PER_USER: RangeInclusive<u64> = 1..=16;
/// The range of `max_uploads_total`.
pub const MAX_UPLOADS_TOTAL: RangeInclusive<u64> = 1..=64;
/// The range of `header_timeout_seconds`.
pub const HEADER_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=300;
/// The range of `body_idle_timeout_seconds`.
pub const BODY_IDLE_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=600;
/// The range of `body_timeout_seconds`.
pub const BODY_TIMEOUT_SECONDS: RangeInclusive<u64> = 10..=3600;
/// The range of `password_workers`.
pub const PASSWORD_WORKERS: RangeInclusive<u64> = 1..=16;
/// Longest user name and installation name, in bytes.
pub const MAX_NAME: usize = 64;

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
    /// The content is wrong.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// What is wrong in a configuration's text, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ConfigProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A value's place in the file, when it is written there.
type At = Option<Spanned<toml::Value>>;

/// Where each checked value is written: a second reading of the same text, for the
/// errors' line and column.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Places {
    listen: At,
    embedded_broker_listen: At,
    max_upload_bytes: At,
    max_uploads_per_user: At,
    max_uploads_total: At,
    header_timeout_seconds: At,
    body_idle_timeout_seconds: At,
    body_timeout_seconds: At,
    password_workers: At,
    session_hours: At,
    gx_offline_after_seconds: At,
    mqtt: At,
    installations: Vec<InstallationPlaces>,
    users: Vec<UserPlaces>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InstallationPlaces {
    portal_id: At,
    name: At,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserPlaces {
    name: At,
    password_hash: At,
    installations: At,
}

/// Builds located errors over one text.
struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, place: &At, message: impl Into<String>) -> ConfigProblem {
        let offset = place.as_ref().map_or(0, |p| p.span().start);
        let (line, column) = line_column(self.text, offset);
        ConfigProblem {
            line,
            column,
            message: message.into(),
        }
    }

    fn range(
        &self,
        key: &str,
        value: u64,
        range: &RangeInclusive<u64>,
        place: &At,
    ) -> Result<(), ConfigProblem> {
        if range.contains(&value) {
            Ok(())
        } else {
            Err(self.at(
                place,
                format!(
                    "{key} must be between {} and {}, is {value}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }
}

/// A user or installation name: 1 to [`MAX_NAME`] bytes, nothing hidden.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "{what} must be 1 to {MAX_NAME} bytes and not blank"
        ));
    }
    if name.chars().any(crate::web::safe_text::is_hidden) {
        return Err(format!(
            "{what} {:?} holds a control or invisible character",
            crate::web::safe_text::shown(name)
        ));
    }
    Ok(())
}

impl Default for PortalConfig {
    /// Every default, without installations or users.
    fn default() -> PortalConfig {
        PortalConfig {
            listen: defaults::listen(),
            broker: None,
            embedded_broker_listen: defaults::embedded_broker(),
            max_upload_bytes: defaults::max_upload(),
            max_uploads_per_user: defaults::max_uploads_per_user(),
            max_uploads_total: defaults::max_uploads_total(),
            header_timeout_seconds: defaults::header_timeout_seconds(),
            body_idle_timeout_seconds: defaults::body_idle_timeout_seconds(),
            body_timeout_seconds: defaults::body_timeout_seconds(),
            password_workers: defaults::password_workers(),
            session_hours: defaults::session_hours(),
            gx_offline_after_seconds: defaults::gx_offline_after_seconds(),
            database: defaults::database(),
            signing_key: None,
            mqtt: MqttSecurityConfig::default(),
            installations: Vec::new(),
            users: Vec::new(),
        }
    }
}

impl PortalConfig {
    /// The command-signing key's file: `signing_key`, else `portal-signing.key` beside the
    /// database.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key.clone().unwrap_or_else(|| {
            self.database.parent().map_or_else(
                || PathBuf::from("portal-signing.key"),
                |d| d.join("portal-signing.key"),
            )
        })
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<PortalConfig, ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let invalid = |p: ConfigProblem| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: p.line,
            column: p.column,
            message: p.message,
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            let (line, column) = line_column(&text, valid);
            invalid(ConfigProblem {
                line,
                column,
                message: format!(
                    "the file is not UTF-8 text (byte 0x{:02X})",
                    e.as_bytes().get(valid).copied().unwrap_or(0)
                ),
            })
        })?;
        let mut config = PortalConfig::parse(&text).map_err(invalid)?;
        if let Some(dir) = path.parent() {
            config.mqtt.resolve(dir);
        }
        // A relative database path is taken from the configuration's folder.
        if config.database.is_relative()
            && let Some(dir) = path.parent()
        {
            config.database = dir.join(&config.database);
        }
        if let Some(key) = &config.signing_key
            && key.is_relative()
            && let Some(dir) = path.parent()
        {
            config.signing_key = Some(dir.join(key));
        }
        Ok(config)
    }

    /// Checks the text of a configuration.
    pub fn parse(text: &str) -> Result<PortalConfig, ConfigProblem> {
        let l = Locator { text };
        let config: PortalConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            ConfigProblem {
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let places: Places = toml::from_str(text).unwrap_or_default();
        let c = &config;
        for (key, value, range, place) in [
            (
                "max_upload_bytes",
                c.max_upload_bytes,
                &MAX_UPLOAD_BYTES,
                &places.max_upload_bytes,
            ),
            (
                "max_uploads_per_user",
                c.max_uploads_per_user,
                &MAX_UPLOADS_PER_USER,
                &places.max_uploads_per_user,
            ),
            (
                "max_uploads_total",
                c.max_uploads_total,
                &MAX_UPLOADS_TOTAL,
                &places.max_uploads_total,
            ),
            (
                "header_timeout_seconds",
                c.header_timeout_seconds,
                &HEADER_TIMEOUT_SECONDS,
                &places.header_timeout_seconds,
            ),
            (
                "body_idle_timeout_seconds",
                c.body_idle_timeout_seconds,
                &BODY_IDLE_TIMEOUT_SECONDS,
                &places.body_idle_timeout_seconds,
            ),
            (
                "body_timeout_seconds",
                c.body_timeout_seconds,
                &BODY_TIMEOUT_SECONDS,
                &places.body_timeout_seconds,
            ),
            (
                "password_workers",
                c.password_workers,
                &PASSWORD_WORKERS,
                &places.password_workers,
            ),
            (
                "session_hours",
                c.session_hours,
                &SESSION_HOURS,
                &places.session_hours,
            ),
            (
                "gx_offline_after_seconds",
                c.gx_offline_after_seconds,
                &GX_OFFLINE_AFTER_SECONDS,
                &places.gx_offline_after_seconds,
            ),
        ] {
            l.range(key, value, range, place)?;
        }
        if c.mqtt.tls_cert.is_some() != c.mqtt.tls_key.is_some() {
            return Err(l.at(
                &places.mqtt,
                "[mqtt] tls_cert and tls_key go together: give both or neither",
            ));
        }
        if c.max_uploads_total < c.max_uploads_per_user {
            return Err(l.at(
                &places.max_uploads_total,
                format!(
                    "max_uploads_total ({}) must be at least max_uploads_per_user ({})",
                    c.max_uploads_total, c.max_uploads_per_user
                ),
            ));
        }
        if c.body_timeout_seconds < c.body_idle_timeout_seconds {
            return Err(l.at(
                &places.body_timeout_seconds,
                format!(
                    "body_timeout_seconds ({}) must be at least body_idle_timeout_seconds ({})",
                    c.body_timeout_seconds, c.body_idle_timeout_seconds
                ),
            ));
        }
        if c.listen.port() == 0 {
            return Err(l.at(
                &places.listen,
                "listen needs a port (0 would pick a different one at every start)",
            ));
        }
        if c.broker.is_none() {
            let broker = c.embedded_broker_listen;
            if broker.port() == 0 {
                return Err(l.at(
                    &places.embedded_broker_listen,
                    "embedded_broker_listen needs a port (the GX devices must know it)",
                ));
            }
            let overlap = broker.ip() == c.listen.ip()
                || broker.ip().is_unspecified()
                || c.listen.ip().is_unspecified();
            if broker.port() == c.listen.port() && overlap {
                let place = if places.embedded_broker_listen.is_some() {
                    &places.embedded_broker_listen
                } else {
                    &places.listen
                };
                return Err(l.at(
                    place,
                    format!(
                        "embedded_broker_listen {broker} and listen {} use the same port",
                        c.listen
                    ),
                ));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, inst) in c.installations.iter().enumerate() {
            let place = places.installations.get(i);
            let at = |f: fn(&InstallationPlaces) -> &At| place.map(f).cloned().flatten();
            if !ids.insert(inst.portal_id.as_str()) {
                return Err(l.at(
                    &at(|p| &p.portal_id),
                    format!("installation {} is listed twice", inst.portal_id),
                ));
            }
            check_name("the installation's name", &inst.name)
                .map_err(|m| l.at(&at(|p| &p.name), m))?;
        }
        if c.users.is_empty() {
            return Err(l.at(
                &None,
                "no [[users]]: the portal needs at least one user to log in \
                 (`bmsfw portal hash-password` makes a password_hash)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, u) in c.users.iter().enumerate() {
            let place = places.users.get(i);
            let at = |f: fn(&UserPlaces) -> &At| place.map(f).cloned().flatten();
            check_name("the user name", &u.name).map_err(|m| l.at(&at(|p| &p.name), m))?;
            if !names.insert(u.name.as_str()) {
                return Err(l.at(
                    &at(|p| &p.name),
                    format!("user {:?} is listed twice", u.name),
                ));
            }
            crate::auth::check_hash(&u.password_hash).map_err(|m| {
                l.at(
                    &at(|p| &p.password_hash),
                    format!("user {:?}: password_hash: {m}", u.name),
                )
            })?;
            if u.installations.is_empty() {
                return Err(l.at(
                    &at(|p| &p.installations),
                    format!(
                        "user {:?} lists no installation (\"*\" for all of them)",
                        u.name
                    ),
                ));
            }
            for inst in &u.installations {
                if inst != "*" && !c.installations.iter().any(|c| c.portal_id.as_str() == inst) {
                    return Err(l.at(
                        &at(|p| &p.installations),
                        format!(
                            "user {:?} lists installation {inst:?}, which is not among [[installations]]",
                            u.name
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The web server's limits this configuration sets. The values are in their ranges
    /// once [`PortalConfig::parse`] accepted them.
    pub fn web_settings(&self) -> WebSettings {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        WebSettings {
            session_lifetime: Duration::from_secs(
                self.session_hours.min(*SESSION_HOURS.end()) * 3600,
            ),
            max_upload_bytes: self.max_upload_bytes,
            max_uploads_per_user: count(self.max_uploads_per_user),
            max_uploads_total: count(self.max_uploads_total),
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            password_workers: count(self.password_workers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// A valid configuration's sections, after `head`.
    fn with(head: &str) -> String {
        format!(
            "{head}\n[[installations]]\nportal_id = \"c0619ab1e2f3\"\nname = \"Harbour\"\n\
             [[users]]\nname = \"ann\"\npassword_hash = \"{HASH}\"\naccess = \"monitor-only\"\n\
             installations = [\"c0619ab1e2f3\"]\n"
        )
    }

    fn problem(text: &str) -> ConfigProblem {
        PortalConfig::parse(text).unwrap_err()
    }

    #[test]
    fn reads_a_configuration_with_defaults() {
        let c = PortalConfig::parse(&with("broker = \"mqtt://10.0.0.2:1884\"")).unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.broker, Some(BrokerAddr::new("10.0.0.2", 1884)));
        assert_eq!(c.installations[0].name, "Harbour");
        assert_eq!(c.users[0].access, crate::auth::AccessLevel::MonitorOnly);
        assert_eq!(c.gx_offline_after_seconds, 60);
        assert_eq!(c.max_upload_bytes, 16 * 1024 * 1024);
        let w = c.web_settings();
        assert_eq!(w.session_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!((w.max_uploads_per_user, w.max_uploads_total), (2, 4));
        assert_eq!(w.password_workers, 2);
        assert_eq!(w, WebSettings::default());
        let c = PortalConfig::parse(&with("gx_offline_after_seconds = 120")).unwrap();
        assert_eq!(c.gx_offline_after_seconds, 120);
    }

    #[test]
    fn the_shipped_configuration_is_valid() {
        let text = include_str!("../../config/portal.toml");
        let c = PortalConfig::parse(text).unwrap();
        assert_eq!(c.web_settings(), WebSettings::default());
    }

    #[test]
    fn errors_name_the_place() {
        let e = problem("listen = 5\n");
        assert_eq!((e.line, e.column), (1, 10), "{e}");
        let e = problem("brokr = \"x\"\n");
        assert!(e.message.contains("brokr"), "{e}");
        let e = problem("broker = \"tcp://x\"\n");
        assert!(e.message.contains("mqtt://"), "{e}");
        let e = problem(&with("gx_offline_after_seconds = 10"));
        assert!(e.message.contains("gx_offline_after_seconds"), "{e}");
        assert_eq!((e.line, e.column), (1, 28), "{e}");
        let text = format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\naccess = \"full-control\"\ninstallations = [\"nope\"]\n"
        );
        let e = problem(&text);
        assert!(e.message.contains("nope"), "{e}");
        assert_eq!((e.line, e.column), (5, 17), "{e}");
    }

    #[test]
    fn every_value_is_range_checked_where_it_is_written() {
        for (line, key) in [
            ("session_hours = 9223372036854775807", "session_hours"),
            ("session_hours = 0", "session_hours"),
            ("session_hours = 721", "session_hours"),
            ("max_upload_bytes = 0", "max_upload_bytes"),
            ("max_upload_bytes = 67108865", "max_upload_bytes"),
            ("max_uploads_per_user = 0", "max_uploads_per_user"),
            ("max_uploads_total = 65", "max_uploads_total"),
            (
                "max_uploads_per_user = 3\nmax_uploads_total = 2",
                "max_uploads_total",
            ),
            ("header_timeout_seconds = 0", "header_timeout_seconds"),
            (
                "body_idle_timeout_seconds = 601",
                "body_idle_timeout_seconds",
            ),
            ("body_timeout_seconds = 5", "body_timeout_seconds"),
            (
                "body_idle_timeout_seconds = 60\nbody_timeout_seconds = 30",
                "body_timeout_seconds",
            ),
            ("password_workers = 0", "password_workers"),
            ("password_workers = 17", "password_workers"),
            ("listen = \"127.0.0.1:0\"", "listen"),
            ("listen = \"127.0.0.1:1883\"", "same port"),
            ("embedded_broker_listen = \"0.0.0.0:8080\"", "same port"),
        ] {
            let text = format!("# portal\n{line}\n{}", with(""));
            let e = problem(&text);
            assert!(e.message.contains(key), "{line}: {e}");
            let last = line.lines().count() + 1;
            assert!(e.line >= 2 && e.line <= last, "{line}: {e}");
            assert!(e.column > 1, "{line}: {e}");
        }
        let e = problem(&with("session_hours = -1"));
        assert_eq!(e.line, 1, "{e}");
        let e = problem(&with("session_hours = 18446744073709551615"));
        assert_eq!(e.line, 1, "{e}");
        // With an external broker the embedded one's address does not matter.
        assert!(
            PortalConfig::parse(&with(
                "broker = \"mqtt://127.0.0.1:1883\"\nlisten = \"127.0.0.1:1883\""
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_configuration_without_users_is_refused() {
        for text in [
            "",
            "# nothing\n",
            "[[installations]]\nportal_id = \"gx1\"\nname = \"a\"\n",
        ] {
            let e = problem(text);
            assert!(e.message.contains("no [[users]]"), "{e}");
            assert_eq!((e.line, e.column), (1, 1));
        }
    }

    #[test]
    fn users_and_installations_are_checked_where_they_are_written() {
        let text = with("").replace("m=19456", "m=1048576");
        let e = problem(&text);
        assert!(e.message.contains("memory cost"), "{e}");
        assert_eq!(e.line, 7, "{e}");
        let e = problem(&with("").replace("$argon2id$", "$argon2i$"));
        assert!(e.message.contains("argon2id"), "{e}");
        let e = problem(&with("").replace("name = \"ann\"", "name = \"a\\u202Eb\""));
        assert!(e.message.contains("[U+202E]"), "{e}");
        assert_eq!(e.line, 6, "{e}");
        let e = problem(&with("").replace("name = \"Harbour\"", "name = \"\""));
        assert_eq!(e.line, 4, "{e}");
        let e =
            problem(&with("").replace("installations = [\"c0619ab1e2f3\"]", "installations = []"));
        assert!(e.message.contains("no installation"), "{e}");
        let twice = format!(
            "{}[[users]]\nname = \"ann\"\npassword_hash = \"{HASH}\"\naccess = \"full-control\"\ninstallations = [\"*\"]\n",
            with("")
        );
        let e = problem(&twice);
        assert!(e.message.contains("twice"), "{e}");
        assert_eq!(e.line, 11, "{e}");
        let twice = with("[[installations]]\nportal_id = \"c0619ab1e2f3\"\nname = \"Again\"");
        let e = problem(&twice);
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let dir = std::env::temp_dir().join(format!("bmsfw-portal-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("portal.toml");
        let mut bytes = with("").into_bytes();
        // "Harbour" becomes "Harb\xFFur" on line 4, column 13.
        let at = bytes.windows(7).position(|w| w == b"Harbour").unwrap() + 4;
        bytes[at] = 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let e = PortalConfig::load(&path).unwrap_err();
        let ConfigError::Invalid {
            line,
            column,
            message,
            ..
        } = &e
        else {
            panic!("{e}");
        };
        assert_eq!((*line, *column), (4, 13), "{e}");
        assert!(message.contains("UTF-8"), "{e}");
        assert!(e.to_string().contains("portal.toml:4:13:"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
