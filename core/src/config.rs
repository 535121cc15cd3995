//! `gx.toml`: the GX daemon's configuration.
//!
//! Read with `deny_unknown_fields` everywhere, so a misspelt key is an error rather than
//! a silently ignored setting; every error names the file, line and column. Every key
//! but `portal_id` has a default; `config/gx.toml` lists them all with their meaning.
//! Relative paths are resolved against the directory of the configuration file.

use crate::dotted_version::DottedVersion;
use crate::plugin::LoadMethod;
use crate::toml_file::{self, LoadError, TomlFileError};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// The only bit rate of BMS-Can, in bit/s.
pub const BMS_CAN_BITRATE: u32 = 500_000;
/// The lowest state of charge an update may start at, in percent. The manual's
/// requirement: the configuration may raise it, never lower it.
pub const SOC_FLOOR_PERCENT: u8 = 50;

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GxConfig {
    /// The GX device's VRM portal id, used in MQTT topics.
    pub portal_id: PortalId,
    /// Where jobs, the journal and the event log are kept.
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    /// Vendor plugins.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The CAN interfaces carrying BMS-Can.
    #[serde(default)]
    pub can: CanInterfaces,
    /// Safety-gate thresholds.
    #[serde(default)]
    pub gates: GatesConfig,
    /// Stage 1: where packages are kept before the transfer.
    #[serde(default)]
    pub staging: StagingConfig,
    /// The VRM link.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Where the site's state (VRM access, grid, GX firmware) comes from.
    #[serde(default)]
    pub site: SiteConfig,
    /// The portal keys whose signature every update command must carry.
    #[serde(default)]
    pub command_signing: crate::vrm::authority::CommandSigningConfig,
}

mod defaults {
    use std::path::PathBuf;
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/data/bmsfw/state")
    }
}

impl GxConfig {
    /// Reads `path`, checks it, and resolves relative paths against its directory.
    pub fn load(path: &Path) -> Result<GxConfig, LoadError> {
        let text = toml_file::read(path)?;
        let mut config = GxConfig::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Checks `text`, the content of `path`; paths stay as written.
    pub fn parse(path: &Path, text: &str) -> Result<GxConfig, TomlFileError> {
        toml_file::parse(path, text)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.state_dir,
            &mut self.plugins.dir,
            &mut self.plugins.allowlist,
            &mut self.staging.dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [&mut self.mqtt.ca, &mut self.mqtt.credentials]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Where the daemon's plugins run: each in its plugin hosts, as `[plugins.host]` says.
    pub fn isolation(&self) -> crate::plugin::Isolation {
        crate::plugin::Isolation::Hosted(std::sync::Arc::new(self.plugins.host.settings()))
    }

    /// How the plugin loader should open libraries under this configuration.
    pub fn load_method(&self) -> LoadMethod {
        match self.plugins.load_method {
            LoadMethodSetting::SealedMemfd => LoadMethod::SealedMemfd,
            LoadMethodSetting::PrivateCopy => LoadMethod::PrivateCopy {
                dir: self.state_dir.join("plugin-copies"),
            },
        }
    }
}

/// A VRM portal id: 1 to 64 ASCII letters and digits (it is an MQTT topic level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalId(String);

impl PortalId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PortalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortalId, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(serde::de::Error::custom(format!(
                "portal_id must be 1 to 64 ASCII letters and digits, got {s:?}"
            )));
        }
        Ok(PortalId(s))
    }
}

/// How plugin libraries are opened (see `docs/plugin-loading.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMethodSetting {
    /// A sealed memfd.
    #[default]
    SealedMemfd,
    /// A private copy under `<state_dir>/plugin-copies`.
    PrivateCopy,
}

/// The `[plugins]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The directory scanned for plugin libraries (`*.so`).
    pub dir: PathBuf,
    /// The allowlist file.
    pub allowlist: PathBuf,
    /// How libraries are opened.
    pub load_method: LoadMethodSetting,
    /// Largest library file read, in bytes.
    pub max_library_bytes: u64,
    /// The plugin hosts: deadlines, limits, supervision.
    pub host: PluginHostConfig,
}

impl Default for PluginsConfig {
    fn default() -> PluginsConfig {
        PluginsConfig {
            dir: PathBuf::from("/data/bmsfw/plugins"),
            allowlist: PathBuf::from("/data/conf/bmsfw/allowlist.toml"),
            load_method: LoadMethodSetting::SealedMemfd,
            max_library_bytes: crate::plugin::loader::DEFAULT_MAX_LIBRARY_BYTES,
            host: PluginHostConfig::default(),
        }
    }
}

/// A whole number in `MIN..=MAX`, refused with the range named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// `v`, when in range.
    pub const fn new(v: u64) -> Option<Self> {
        if v >= MIN && v <= MAX {
            Some(Bounded(v))
        } else {
            None
        }
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        u64::try_from(v).ok().and_then(Self::new).ok_or_else(|| {
            serde::de::Error::custom(format!("must be between {MIN} and {MAX}, got {v}"))
        })
    }
}

/// The `[plugins.host]` section: how plugin host processes run (see
/// `docs/plugin-host.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginHostConfig {
    /// The host executable; default: `bmsfw-plugin-host` beside `bmsfw`, else
    /// `bmsfw plugin-host`.
    pub program: Option<PathBuf>,
    /// Deadline of every session call, in milliseconds (10 to 10000; default 250).
    pub session_deadline_ms: Bounded<10, 10_000>,
    /// Deadline of `match_battery` and `decode_version`, in milliseconds (10 to 10000;
    /// default 100).
    pub identity_deadline_ms: Bounded<10, 10_000>,
    /// Deadline of `inspect_package`, in milliseconds (100 to 600000; default 30000).
    pub package_deadline_ms: Bounded<100, 600_000>,
    /// Deadline of `start_session`, in milliseconds (100 to 600000; default 5000).
    pub start_deadline_ms: Bounded<100, 600_000>,
    /// Deadline of starting a host and loading the library, in milliseconds (100 to
    /// 60000; default 5000).
    pub load_deadline_ms: Bounded<100, 60_000>,
    /// Each host's address-space limit, in MiB (32 to 4096; default 256).
    pub memory_limit_mib: Bounded<32, 4096>,
    /// Each host's CPU time limit, in seconds (1 to 86400; default 120).
    pub cpu_limit_seconds: Bounded<1, 86_400>,
    /// Host failures in a row after which a plugin is suspended (1 to 100; default 3).
    pub quarantine_after: Bounded<1, 100>,
}

impl Default for PluginHostConfig {
    fn default() -> PluginHostConfig {
        let d = crate::plugin::hosted::Deadlines::default();
        let l = crate::plugin::hosted::HostLimits::default();
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        PluginHostConfig {
            program: None,
            session_deadline_ms: Bounded(ms(d.session)),
            identity_deadline_ms: Bounded(ms(d.identity)),
            package_deadline_ms: Bounded(ms(d.package)),
            start_deadline_ms: Bounded(ms(d.start)),
            load_deadline_ms: Bounded(ms(d.load)),
            memory_limit_mib: Bounded(l.memory_bytes >> 20),
            cpu_limit_seconds: Bounded(l.cpu_seconds),
            quarantine_after: Bounded(3),
        }
    }
}

impl PluginHostConfig {
    /// The settings the loader gives its hosts.
    pub fn settings(&self) -> crate::plugin::HostSettings {
        use crate::plugin::hosted::{Deadlines, HostLimits, HostProgram};
        use std::time::Duration;
        let ms = |b: u64| Duration::from_millis(b);
        crate::plugin::HostSettings {
            program: self.program.as_ref().map(|p| HostProgram {
                program: p.clone(),
                args: Vec::new(),
            }),
            limits: HostLimits {
                memory_bytes: self.memory_limit_mib.get() << 20,
                cpu_seconds: self.cpu_limit_seconds.get(),
                ..HostLimits::default()
            },
            deadlines: Deadlines {
                load: ms(self.load_deadline_ms.get()),
                identity: ms(self.identity_deadline_ms.get()),
                package: ms(self.package_deadline_ms.get()),
                start: ms(self.start_deadline_ms.get()),
                session: ms(self.session_deadline_ms.get()),
            },
            quarantine_after: self.quarantine_after.get() as u32,
            ..crate::plugin::HostSettings::default()
        }
    }
}

/// Which implementation stands behind a CAN interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanBackend {
    /// A Linux SocketCAN interface.
    Socketcan,
    /// The simulated bus.
    Sim,
}

/// One CAN interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanInterfaceConfig {
    /// The interface name (`can0`), 1 to 15 characters (the kernel's limit).
    pub name: String,
    /// The backend.
    pub backend: CanBackend,
    /// A bit rate the daemon sets on a SocketCAN interface at start (through netlink),
    /// when the interface runs at another. Unset: the interface is left as the system
    /// configured it (on a GX device, Venus OS does).
    #[serde(default)]
    pub bitrate: Option<u32>,
}

/// The `[[can]]` interfaces: at least one, names unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanInterfaces(pub Vec<CanInterfaceConfig>);

impl Default for CanInterfaces {
    fn default() -> CanInterfaces {
        CanInterfaces(vec![CanInterfaceConfig {
            name: "can0".into(),
            backend: CanBackend::Socketcan,
            bitrate: None,
        }])
    }
}

impl<'de> Deserialize<'de> for CanInterfaces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CanInterfaces, D::Error> {
        use serde::de::Error;
        let list = Vec::<CanInterfaceConfig>::deserialize(d)?;
        if list.is_empty() {
            return Err(D::Error::custom("at least one [[can]] interface is needed"));
        }
        for (i, c) in list.iter().enumerate() {
            if c.name.is_empty()
                || c.name.len() > 15
                || !c.name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
            {
                return Err(D::Error::custom(format!(
                    "CAN interface name {:?} must be 1 to 15 printable characters without '/'",
                    c.name
                )));
            }
            match (c.bitrate, c.backend) {
                (Some(rate), _)
                    if !bmsfw_protocols::bit_timing::STANDARD_BITRATES.contains(&rate) =>
                {
                    return Err(D::Error::custom(format!(
                        "CAN interface {:?}: bitrate {rate} is not a standard CAN bit rate ({:?})",
                        c.name,
                        bmsfw_protocols::bit_timing::STANDARD_BITRATES
                    )));
                }
                (Some(_), CanBackend::Sim) => {
                    return Err(D::Error::custom(format!(
                        "CAN interface {:?}: bitrate applies to SocketCAN interfaces; a \
                         simulated bus runs at its site file's bit rate",
                        c.name
                    )));
                }
                _ => {}
            }
            if list[..i].iter().any(|o| o.name == c.name) {
                return Err(D::Error::custom(format!(
                    "CAN interface {:?} is listed twice",
                    c.name
                )));
            }
        }
        Ok(CanInterfaces(list))
    }
}

/// The minimum state of charge, in percent: [`SOC_FLOOR_PERCENT`] to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocMinimum(u8);

impl SocMinimum {
    /// The percentage.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for SocMinimum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SocMinimum, D::Error> {
        let v = i64::deserialize(d)?;
        match u8::try_from(v) {
            Ok(p) if (SOC_FLOOR_PERCENT..=100).contains(&p) => Ok(SocMinimum(p)),
            _ => Err(serde::de::Error::custom(format!(
                "soc_min_percent must be between {SOC_FLOOR_PERCENT} and 100 (updates never \
                 start below {SOC_FLOOR_PERCENT} %), got {v}"
            ))),
        }
    }
}

/// The bus bit rate, which must be [`BMS_CAN_BITRATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredBitrate(u32);

impl RequiredBitrate {
    /// Bits per second.
    pub fn bits_per_second(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for RequiredBitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RequiredBitrate, D::Error> {
        let v = i64::deserialize(d)?;
        if v != i64::from(BMS_CAN_BITRATE) {
            return Err(serde::de::Error::custom(format!(
                "BMS-Can runs at {BMS_CAN_BITRATE} bit/s only; bitrate must be {BMS_CAN_BITRATE}, got {v}"
            )));
        }
        Ok(RequiredBitrate(BMS_CAN_BITRATE))
    }
}

/// A share of the bus, 1 to 100 percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(u8);

impl Percent {
    /// The percentage.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Percent, D::Error> {
        let v = i64::deserialize(d)?;
        match u8::try_from(v) {
            Ok(p) if (1..=100).contains(&p) => Ok(Percent(p)),
            _ => Err(serde::de::Error::custom(format!(
                "a percentage between 1 and 100 is needed, got {v}"
            ))),
        }
    }
}

/// The battery temperature range in which an update may run, in °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureRange {
    /// Lowest temperature.
    pub min: f64,
    /// Highest temperature.
    pub max: f64,
}

impl<'de> Deserialize<'de> for TemperatureRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TemperatureRange, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            min: f64,
            max: f64,
        }
        let r = Raw::deserialize(d)?;
        let plausible = |t: f64| (-40.0..=85.0).contains(&t);
        if !plausible(r.min) || !plausible(r.max) || r.min >= r.max {
            return Err(serde::de::Error::custom(format!(
                "temperature range needs -40 <= min < max <= 85 °C, got min {} max {}",
                r.min, r.max
            )));
        }
        Ok(TemperatureRange {
            min: r.min,
            max: r.max,
        })
    }
}

/// The `[gates]` section: thresholds of the safety gates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatesConfig {
    /// Lowest state of charge at which an update starts and continues.
    pub soc_min_percent: SocMinimum,
    /// Battery temperature range of normal operation.
    pub temperature_celsius: TemperatureRange,
    /// The bus bit rate an update requires (fixed).
    pub bitrate: RequiredBitrate,
    /// Largest share of the bus the transfer may use together with the telemetry.
    pub bus_load_budget_percent: Percent,
    /// Lowest GX firmware version that may run updates.
    pub min_gx_firmware: DottedVersion,
}

impl Default for GatesConfig {
    fn default() -> GatesConfig {
        GatesConfig {
            soc_min_percent: SocMinimum(SOC_FLOOR_PERCENT),
            temperature_celsius: TemperatureRange {
                min: 5.0,
                max: 40.0,
            },
            bitrate: RequiredBitrate(BMS_CAN_BITRATE),
            bus_load_budget_percent: Percent(80),
            min_gx_firmware: DottedVersion::from(vec![3, 60]),
        }
    }
}

/// The `[staging]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagingConfig {
    /// Where uploaded packages are kept.
    pub dir: PathBuf,
    /// Largest package accepted, in bytes.
    pub max_package_bytes: u64,
    /// Free space that must remain on the staging file system after a package is
    /// stored, in bytes.
    pub min_free_bytes: u64,
}

impl Default for StagingConfig {
    fn default() -> StagingConfig {
        StagingConfig {
            dir: PathBuf::from("/data/bmsfw/staging"),
            max_package_bytes: 16 * 1024 * 1024,
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The MQTT broker, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl<'de> Deserialize<'de> for BrokerAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BrokerAddress, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = s.rsplit_once(':').and_then(|(host, port)| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ok_host = !host.is_empty() && !host.contains(char::is_whitespace);
            Some((
                host.to_owned(),
                port.parse::<u16>().ok().filter(|p| *p != 0)?,
            ))
            .filter(|_| ok_host)
        });
        match parsed {
            Some((host, port)) => Ok(BrokerAddress { host, port }),
            None => Err(serde::de::Error::custom(format!(
                "broker must be host:port (port 1-65535), got {s:?}"
            ))),
        }
    }
}

/// How long a keepalive from VRM keeps the GX publishing, in seconds: 1 to 3600.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSeconds(u64);

impl KeepaliveSeconds {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for KeepaliveSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeepaliveSeconds, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(s) if (1..=3600).contains(&s) => Ok(KeepaliveSeconds(s)),
            _ => Err(serde::de::Error::custom(format!(
                "keepalive_seconds must be between 1 and 3600, got {v}"
            ))),
        }
    }
}

/// The MQTT keep-alive of the VRM link's connection, in seconds: 1 to 600.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerKeepaliveSeconds(u64);

impl BrokerKeepaliveSeconds {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for BrokerKeepaliveSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BrokerKeepaliveSeconds, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(s) if (1..=600).contains(&s) => Ok(BrokerKeepaliveSeconds(s)),
            _ => Err(serde::de::Error::custom(format!(
                "broker_keepalive_seconds must be between 1 and 600, got {v}"
            ))),
        }
    }
}

/// The bound of an upload to the GX, in seconds: 1 to 86400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadTimeoutSeconds(u64);

impl UploadTimeoutSeconds {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for UploadTimeoutSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UploadTimeoutSeconds, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(s) if (1..=86_400).contains(&s) => Ok(UploadTimeoutSeconds(s)),
            _ => Err(serde::de::Error::custom(format!(
                "upload_timeout_seconds must be between 1 and 86400, got {v}"
            ))),
        }
    }
}

/// `[mqtt] broker`: a URL (`mqtts://`, `mqtt://`) or the older `host:port` (plain).
fn vrm_broker<'de, D: Deserializer<'de>>(d: D) -> Result<bmsfw_vrm_wire::BrokerAddr, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains("://") {
        return s.parse().map_err(serde::de::Error::custom);
    }
    let plain = BrokerAddress::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&s))?;
    Ok(bmsfw_vrm_wire::BrokerAddr::new(plain.host, plain.port))
}

impl MqttConfig {
    /// The security settings of the VRM link.
    pub fn security(&self) -> crate::vrm::tls::SecuritySettings {
        crate::vrm::tls::SecuritySettings {
            ca: self.ca.clone(),
            credentials: self.credentials.clone(),
            insecure: self.insecure,
        }
    }
}

/// The `[mqtt]` section: the VRM link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The broker the VRM link connects to: `mqtts://host[:port]` (TLS),
    /// `mqtt://host[:port]`, or `host:port` (plain).
    #[serde(deserialize_with = "vrm_broker")]
    pub broker: bmsfw_vrm_wire::BrokerAddr,
    /// The CA certificate (PEM) the broker's certificate must chain to: required with
    /// `mqtts://`.
    pub ca: Option<PathBuf>,
    /// The GX's credentials file (user name = portal id, password), written by
    /// `bmsfw portal provision`; readable by its owner only.
    pub credentials: Option<PathBuf>,
    /// Allow plain `mqtt://` to a broker that is not on loopback. Logged at error level at
    /// every start: anyone on the path can read the link and act as the portal.
    pub insecure: bool,
    /// `/Settings/Network/VrmPortal` at start-up: `off`, `read-only` or `full`. Only
    /// `full` lets VRM start updates.
    pub vrm_portal: crate::vrm::VrmPortalMode,
    /// How long a keepalive from VRM keeps the GX publishing values.
    pub keepalive_seconds: KeepaliveSeconds,
    /// The MQTT keep-alive with the broker: when the broker hears nothing from the GX for
    /// 1.5 times this, it publishes the GX's last will and the portal shows it offline.
    pub broker_keepalive_seconds: BrokerKeepaliveSeconds,
    /// How long an upload may take from the update request until the whole firmware file
    /// is on the GX; beyond, the update fails with 718 and the bus is free again.
    pub upload_timeout_seconds: UploadTimeoutSeconds,
}

impl Default for MqttConfig {
    fn default() -> MqttConfig {
        MqttConfig {
            broker: bmsfw_vrm_wire::BrokerAddr::new("127.0.0.1", 1883),
            ca: None,
            credentials: None,
            insecure: false,
            vrm_portal: crate::vrm::VrmPortalMode::ReadOnly,
            keepalive_seconds: KeepaliveSeconds(60),
            broker_keepalive_seconds: BrokerKeepaliveSeconds(10),
            upload_timeout_seconds: UploadTimeoutSeconds(3600),
        }
    }
}

/// Where the site's state comes from (`[site] source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteSource {
    /// Live values from Venus OS's local MQTT broker (on a GX device).
    Venus,
    /// This file and the command line: `[mqtt] vrm_portal`, `--gx-firmware` or
    /// [`VENUS_VERSION_FILE`]; the grid is not monitored.
    Config,
}

/// Where Venus OS keeps its firmware version: its presence marks a GX device.
pub const VENUS_VERSION_FILE: &str = "/opt/victronenergy/version";

impl SiteSource {
    /// The default: `venus` on a GX device (Venus OS's version file exists), else `config`.
    pub fn detect() -> SiteSource {
        if Path::new(VENUS_VERSION_FILE).exists() {
            SiteSource::Venus
        } else {
            SiteSource::Config
        }
    }
}

/// Seconds between 1 and 50 (below the 60 s after which Venus OS's broker stops
/// publishing without a keepalive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSeconds(u64);

impl RefreshSeconds {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for RefreshSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RefreshSeconds, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(s) if (1..=50).contains(&s) => Ok(RefreshSeconds(s)),
            _ => Err(serde::de::Error::custom(format!(
                "refresh_seconds must be between 1 and 50 (Venus OS stops publishing 60 s \
                 after the last keepalive), got {v}"
            ))),
        }
    }
}

/// Seconds between 2 and 600.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSeconds(u64);

impl StaleSeconds {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for StaleSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StaleSeconds, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(s) if (2..=600).contains(&s) => Ok(StaleSeconds(s)),
            _ => Err(serde::de::Error::custom(format!(
                "stale_after_seconds must be between 2 and 600, got {v}"
            ))),
        }
    }
}

/// The `[site]` section: where VRM portal access, the grid and the GX firmware come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSiteConfig")]
pub struct SiteConfig {
    /// `venus` or `config`; absent: [`SiteSource::detect`].
    pub source: Option<SiteSource>,
    /// Venus OS's local MQTT broker (the `venus` source).
    pub broker: BrokerAddress,
    /// How often the `venus` source sends its keepalive and re-reads every value.
    pub refresh_seconds: RefreshSeconds,
    /// A value not received again within this is stale: its gate refuses. At least twice
    /// `refresh_seconds`.
    pub stale_after_seconds: StaleSeconds,
    /// Whether the daemon publishes its own status (`N/<portal_id>/bmsfw/0/...`) on the
    /// Venus broker.
    pub publish_status: bool,
}

/// `[site]` as written, before the check that ties its two durations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiteConfig {
    source: Option<SiteSource>,
    broker: Option<BrokerAddress>,
    refresh_seconds: Option<RefreshSeconds>,
    stale_after_seconds: Option<StaleSeconds>,
    publish_status: Option<bool>,
}

impl TryFrom<RawSiteConfig> for SiteConfig {
    type Error = String;

    fn try_from(raw: RawSiteConfig) -> Result<SiteConfig, String> {
        let d = SiteConfig::default();
        let c = SiteConfig {
            source: raw.source,
            broker: raw.broker.unwrap_or(d.broker),
            refresh_seconds: raw.refresh_seconds.unwrap_or(d.refresh_seconds),
            stale_after_seconds: raw.stale_after_seconds.unwrap_or(d.stale_after_seconds),
            publish_status: raw.publish_status.unwrap_or(d.publish_status),
        };
        if c.stale_after_seconds.0 < 2 * c.refresh_seconds.0 {
            return Err(format!(
                "stale_after_seconds ({}) must be at least twice refresh_seconds ({}): a value \
                 is re-read every refresh_seconds",
                c.stale_after_seconds.0, c.refresh_seconds.0
            ));
        }
        Ok(c)
    }
}

impl SiteConfig {
    /// The source in force: the configured one, else the detected one.
    pub fn source(&self) -> SiteSource {
        self.source.unwrap_or_else(SiteSource::detect)
    }
}

impl Default for SiteConfig {
    fn default() -> SiteConfig {
        SiteConfig {
            source: None,
            broker: BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
            },
            refresh_seconds: RefreshSeconds(10),
            stale_after_seconds: StaleSeconds(30),
            publish_status: true,
        }
    }
}

#[cfg(test)]
mod tests;
