//! What the engine learns from a plugin, in the engine's own types.
//!
//! Everything a plugin returns is converted here and checked against the contract: a
//! plugin is third-party code, so its strings are bounded, its enumerations must hold
//! known values, and its numbers must be coherent. A violation becomes a
//! [`ErrorCode::PLUGIN_FAULT`] failure.

use super::allowlist::VendorId;
use crate::staging::digest::Sha256Digest;
use bmsfw_plugin_api as api;
use bmsfw_plugin_api::{
    CanId, CanIdRange, ContractVersion, DeclaredTimeouts, ErrorCode, LocationKind, MatchKind,
    ModuleState, Phase, SignatureStatus,
};
use std::fmt;
use std::time::Duration;

/// Longest name, version or file type a plugin may report, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest message kept from a plugin (longer ones are cut), in bytes.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Most entries of any list a plugin returns (ranges, file types, modules, targets).
pub const MAX_LIST_LEN: usize = 256;
/// Most numbers in a comparable version.
pub const MAX_VERSION_PARTS: usize = 16;
/// Longest raw version a plugin may echo, in bytes.
pub const MAX_RAW_VERSION_LEN: usize = 64;
/// Longest declared timeout: one day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A failure reported by a plugin (or made of its fault), in the engine's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PluginFailure {
    /// The code; a plugin code (750..=799, 900..=999).
    pub code: ErrorCode,
    /// The message, bounded to [`MAX_MESSAGE_LEN`].
    pub message: String,
}

impl PluginFailure {
    /// A [`ErrorCode::PLUGIN_FAULT`] failure for a broken contract.
    pub fn contract(what: impl fmt::Display) -> PluginFailure {
        PluginFailure {
            code: ErrorCode::PLUGIN_FAULT,
            message: bounded(&format!("plugin broke the contract: {what}")),
        }
    }

    /// Converts a plugin's failure; a code outside the plugin ranges is a fault.
    pub fn from_abi(f: api::Failure) -> PluginFailure {
        if f.code.is_plugin_code() {
            PluginFailure {
                code: f.code,
                message: bounded(&f.message),
            }
        } else {
            PluginFailure::contract(format_args!(
                "reported error code {} outside the plugin ranges 750-799 and 900-999 ({})",
                f.code.get(),
                bounded(&f.message)
            ))
        }
    }
}

/// `s` with control characters replaced and cut to [`MAX_MESSAGE_LEN`] bytes.
pub fn bounded(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE_LEN));
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_MESSAGE_LEN {
            out.push('…');
            break;
        }
        out.push(if c.is_control() && c != '\n' { '?' } else { c });
    }
    out
}

/// A short text (name, file type) checked against [`MAX_NAME_LEN`] and control
/// characters.
fn short_text(what: &str, s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes without control characters, got {:?}",
            bounded(s)
        ));
    }
    Ok(s.to_owned())
}

fn list_len<T>(what: &str, list: &[T]) -> Result<(), String> {
    if list.len() > MAX_LIST_LEN {
        return Err(format!(
            "{what} has {} entries, at most {MAX_LIST_LEN} are allowed",
            list.len()
        ));
    }
    Ok(())
}

/// A plugin's identity, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The vendor id.
    pub vendor_id: VendorId,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// The contract version it was built against.
    pub contract: ContractVersion,
    /// Identifiers its sessions may send.
    pub sends: Vec<CanIdRange>,
    /// Identifiers its sessions receive.
    pub receives: Vec<CanIdRange>,
    /// Package extensions it reads, lowercase, without the dot.
    pub file_types: Vec<String>,
    /// Its declared timeouts, each between 1 ms and [`MAX_TIMEOUT`].
    pub timeouts: DeclaredTimeouts,
}

impl PluginInfo {
    /// Checks an identity as the plugin returned it.
    pub fn from_abi(id: api::PluginIdentity) -> Result<PluginInfo, String> {
        let vendor_id = VendorId::new(&id.vendor_id)?;
        let name = short_text("the name", &id.name)?;
        let version = semver::Version::parse(&id.plugin_version).map_err(|e| {
            format!(
                "plugin version {:?} is not a semantic version: {e}",
                bounded(&id.plugin_version)
            )
        })?;
        for (what, ranges) in [("sends", &id.sends), ("receives", &id.receives)] {
            list_len(what, ranges)?;
            if let Some(bad) = ranges.iter().find(|r| !r.is_valid()) {
                return Err(format!(
                    "{what} holds the malformed range {bad} (mixed formats or first above last)"
                ));
            }
        }
        list_len("file_types", &id.file_types)?;
        let mut file_types = Vec::with_capacity(id.file_types.len());
        for t in id.file_types.iter() {
            let t = short_text("a file type", t)?;
            if !t
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(format!(
                    "file type {t:?} must be a lowercase extension without the dot"
                ));
            }
            file_types.push(t);
        }
        let t = id.timeouts;
        for (what, d) in [
            ("transfer_response_ms", t.transfer_response()),
            ("install_response_ms", t.install_response()),
            ("verify_response_ms", t.verify_response()),
            ("restart_silence_max_ms", t.restart_silence_max()),
            ("install_max_ms", t.install_max()),
        ] {
            if d.is_zero() || d > MAX_TIMEOUT {
                return Err(format!(
                    "timeout {what} is {} ms, it must be between 1 ms and {} ms",
                    d.as_millis(),
                    MAX_TIMEOUT.as_millis()
                ));
            }
        }
        Ok(PluginInfo {
            vendor_id,
            name,
            version,
            contract: id.contract,
            sends: id.sends.into_vec(),
            receives: id.receives.into_vec(),
            file_types,
            timeouts: t,
        })
    }

    /// Whether a session may send `id`.
    pub fn may_send(&self, id: CanId) -> bool {
        self.sends.iter().any(|r| r.contains(id))
    }

    /// Whether sessions receive `id`.
    pub fn wants(&self, id: CanId) -> bool {
        self.receives.iter().any(|r| r.contains(id))
    }
}

/// A plugin's answer whether a battery is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatteryMatch {
    /// Another vendor's battery.
    NotMine,
    /// The plugin's, but not updatable over CAN.
    MineNotUpdatable {
        /// Why, for the installer.
        reason: String,
    },
    /// The plugin's, updatable.
    Updatable,
}

impl BatteryMatch {
    /// Checks a plugin's answer.
    pub fn from_abi(m: api::DeviceMatch) -> Result<BatteryMatch, PluginFailure> {
        match m.kind {
            MatchKind::NOT_MINE => Ok(BatteryMatch::NotMine),
            MatchKind::UPDATABLE => Ok(BatteryMatch::Updatable),
            MatchKind::MINE_NOT_UPDATABLE => Ok(BatteryMatch::MineNotUpdatable {
                reason: bounded(&m.reason),
            }),
            MatchKind(other) => Err(PluginFailure::contract(format_args!(
                "unknown battery match kind {other}"
            ))),
        }
    }
}

/// A firmware version as a plugin decoded it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecodedVersion {
    /// The raw bytes.
    pub raw: Vec<u8>,
    /// The vendor's rendering.
    pub display: String,
    /// The comparable numbers.
    pub comparable: Vec<u32>,
}

impl DecodedVersion {
    /// Checks a plugin's version.
    pub fn from_abi(v: api::FirmwareVersion) -> Result<DecodedVersion, PluginFailure> {
        if v.raw.len() > MAX_RAW_VERSION_LEN
            || v.comparable.is_empty()
            || v.comparable.len() > MAX_VERSION_PARTS
        {
            return Err(PluginFailure::contract(format_args!(
                "a version has 1 to {MAX_VERSION_PARTS} comparable numbers and at most \
                 {MAX_RAW_VERSION_LEN} raw bytes; got {} and {}",
                v.comparable.len(),
                v.raw.len()
            )));
        }
        let display = short_text("a version's display string", &v.display)
            .map_err(PluginFailure::contract)?;
        Ok(DecodedVersion {
            raw: v.raw.into_vec(),
            display,
            comparable: v.comparable.into_vec(),
        })
    }
}

/// How one version of a plugin compares with another, as far as both are known.
///
/// A plugin may know a version more precisely in one place than in another: Coral's
/// packages and protocol carry major, minor and build, its 0x35F only major and minor.
/// Versions are compared number by number over the numbers both carry; when those agree
/// and one carries more, the order is not known from them alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionOrder {
    /// Lower.
    Older,
    /// The same numbers, all of them.
    Same,
    /// Higher.
    Newer,
    /// The same as far as the less precise one shows (e.g. v1.10 against v1.10 build 02).
    SameAsFarAsShown,
}

impl DecodedVersion {
    /// How `self` compares with `other` (a version of the same plugin).
    pub fn order_against(&self, other: &DecodedVersion) -> VersionOrder {
        let shared = self.comparable.len().min(other.comparable.len());
        match self.comparable[..shared].cmp(&other.comparable[..shared]) {
            std::cmp::Ordering::Less => VersionOrder::Older,
            std::cmp::Ordering::Greater => VersionOrder::Newer,
            std::cmp::Ordering::Equal if self.comparable.len() == other.comparable.len() => {
                VersionOrder::Same
            }
            std::cmp::Ordering::Equal => VersionOrder::SameAsFarAsShown,
        }
    }

    /// Whether `shown` (e.g. 0x35F) says the battery runs `self`, as far as it shows.
    pub fn shown_by(&self, shown: &DecodedVersion) -> bool {
        matches!(
            self.order_against(shown),
            VersionOrder::Same | VersionOrder::SameAsFarAsShown
        )
    }

    /// The more precise of `self` and `other` when they agree as far as shown (the one
    /// with more numbers), else `self`.
    pub fn most_precise(&self, other: &DecodedVersion) -> DecodedVersion {
        if self.order_against(other) == VersionOrder::SameAsFarAsShown
            && other.comparable.len() > self.comparable.len()
        {
            other.clone()
        } else {
            self.clone()
        }
    }
}

/// A product a package targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageTarget {
    /// Manufacturer string.
    pub manufacturer: String,
    /// Product code, when named.
    pub product_code: Option<u16>,
}

/// A package's signature status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// No signature.
    Unsigned,
    /// Verifies.
    Valid,
    /// Does not verify.
    Invalid,
}

/// One module image of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleImageInfo {
    /// Module index behind the BMS.
    pub index: u16,
    /// Module kind.
    pub kind: String,
    /// Image version.
    pub version: DecodedVersion,
    /// Image size in bytes.
    pub size: u64,
}

/// What a plugin found in a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSummary {
    /// Targeted products.
    pub targets: Vec<PackageTarget>,
    /// The version it installs.
    pub version: DecodedVersion,
    /// Size of the transferred image.
    pub image_size: u64,
    /// SHA-256 of the transferred image, as the plugin computed it.
    pub image_sha256: Sha256Digest,
    /// Signature status.
    pub signature: Signature,
    /// Per-module images.
    pub modules: Vec<ModuleImageInfo>,
}

impl PackageSummary {
    /// Checks a plugin's package report against the package's size.
    pub fn from_abi(
        p: api::PackageInfo,
        package_len: u64,
    ) -> Result<PackageSummary, PluginFailure> {
        list_len("targets", &p.targets).map_err(PluginFailure::contract)?;
        list_len("modules", &p.modules).map_err(PluginFailure::contract)?;
        if p.image_size > package_len {
            return Err(PluginFailure::contract(format_args!(
                "image size {} is larger than the {package_len}-byte package",
                p.image_size
            )));
        }
        let signature = match p.signature {
            SignatureStatus::UNSIGNED => Signature::Unsigned,
            SignatureStatus::VALID => Signature::Valid,
            SignatureStatus::INVALID => Signature::Invalid,
            SignatureStatus(other) => {
                return Err(PluginFailure::contract(format_args!(
                    "unknown signature status {other}"
                )));
            }
        };
        let targets = p
            .targets
            .into_iter()
            .map(|t| {
                Ok(PackageTarget {
                    manufacturer: short_text("a target manufacturer", &t.manufacturer)
                        .map_err(PluginFailure::contract)?,
                    product_code: t.product_code.into_option(),
                })
            })
            .collect::<Result<Vec<_>, PluginFailure>>()?;
        let modules = p
            .modules
            .into_iter()
            .map(|m| {
                Ok(ModuleImageInfo {
                    index: m.index,
                    kind: short_text("a module kind", &m.kind).map_err(PluginFailure::contract)?,
                    version: DecodedVersion::from_abi(m.version)?,
                    size: m.size,
                })
            })
            .collect::<Result<Vec<_>, PluginFailure>>()?;
        Ok(PackageSummary {
            targets,
            version: DecodedVersion::from_abi(p.version)?,
            image_size: p.image_size,
            image_sha256: Sha256Digest(p.image_sha256),
            signature,
            modules,
        })
    }
}

/// Where in a package a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackagePlace {
    /// Not given.
    Unknown,
    /// A byte offset.
    ByteOffset(u64),
    /// A 1-based line.
    Line(u64),
}

impl fmt::Display for PackagePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackagePlace::Unknown => f.write_str("unknown place"),
            PackagePlace::ByteOffset(o) => write!(f, "byte {o}"),
            PackagePlace::Line(l) => write!(f, "line {l}"),
        }
    }
}

/// Why a plugin refused a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} at {place}: {message}")]
pub struct PackageRejection {
    /// The code.
    pub code: ErrorCode,
    /// The plugin's explanation.
    pub message: String,
    /// Where.
    pub place: PackagePlace,
}

impl PackageRejection {
    /// Converts a plugin's package error; a foreign code or location kind is a fault.
    pub fn from_abi(e: api::PackageError) -> PackageRejection {
        let place = match e.location.kind {
            LocationKind::BYTE_OFFSET => Some(PackagePlace::ByteOffset(e.location.value)),
            LocationKind::LINE => Some(PackagePlace::Line(e.location.value)),
            LocationKind::NONE => Some(PackagePlace::Unknown),
            LocationKind(_) => None,
        };
        match place {
            Some(place) if e.code.is_plugin_code() => PackageRejection {
                code: e.code,
                message: bounded(&e.message),
                place,
            },
            _ => PackageRejection::from(PluginFailure::contract(format_args!(
                "package error with code {} and location kind {} ({})",
                e.code.get(),
                e.location.kind.0,
                bounded(&e.message)
            ))),
        }
    }
}

impl From<PluginFailure> for PackageRejection {
    fn from(f: PluginFailure) -> PackageRejection {
        PackageRejection {
            code: f.code,
            message: f.message,
            place: PackagePlace::Unknown,
        }
    }
}

/// A session's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionPhase {
    /// Transferring to battery.
    Transferring,
    /// Installing.
    Installing,
    /// Restarting.
    Restarting,
    /// Verifying.
    Verifying,
    /// Completed.
    Done,
    /// Failed.
    Failed,
}

impl SessionPhase {
    fn from_abi(p: Phase) -> Option<SessionPhase> {
        Some(match p {
            Phase::TRANSFERRING => SessionPhase::Transferring,
            Phase::INSTALLING => SessionPhase::Installing,
            Phase::RESTARTING => SessionPhase::Restarting,
            Phase::VERIFYING => SessionPhase::Verifying,
            Phase::DONE => SessionPhase::Done,
            Phase::FAILED => SessionPhase::Failed,
            _ => return None,
        })
    }

    /// Whether the phase is final.
    pub fn is_final(self) -> bool {
        matches!(self, SessionPhase::Done | SessionPhase::Failed)
    }
}

/// A module's update state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleUpdateState {
    /// Not started.
    Pending,
    /// Receiving its image.
    Updating,
    /// Updated.
    Done,
    /// Failed.
    Failed,
    /// Left alone.
    Skipped,
}

/// Progress of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleStatus {
    /// Index behind the BMS.
    pub index: u16,
    /// State.
    pub state: ModuleUpdateState,
    /// Version, when known.
    pub version: Option<DecodedVersion>,
}

/// A session's status, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// Phase.
    pub phase: SessionPhase,
    /// Acknowledged image bytes.
    pub bytes_done: u64,
    /// Total image bytes.
    pub bytes_total: u64,
    /// Per-module progress.
    pub modules: Vec<ModuleStatus>,
    /// Why it failed (`Some` exactly when `phase` is `Failed`).
    pub failure: Option<PluginFailure>,
}

impl SessionReport {
    /// A failed report.
    pub fn failed(failure: PluginFailure, bytes_done: u64, bytes_total: u64) -> SessionReport {
        SessionReport {
            phase: SessionPhase::Failed,
            bytes_done,
            bytes_total,
            modules: Vec::new(),
            failure: Some(failure),
        }
    }

    /// Checks a session's status.
    pub fn from_abi(s: api::SessionStatus) -> Result<SessionReport, PluginFailure> {
        let phase = SessionPhase::from_abi(s.phase).ok_or_else(|| {
            PluginFailure::contract(format_args!("unknown session phase {}", s.phase.0))
        })?;
        if s.bytes_done > s.bytes_total {
            return Err(PluginFailure::contract(format_args!(
                "{} bytes done of {} in total",
                s.bytes_done, s.bytes_total
            )));
        }
        list_len("modules", &s.modules).map_err(PluginFailure::contract)?;
        let modules = s
            .modules
            .into_iter()
            .map(|m| {
                let state = match m.state {
                    ModuleState::PENDING => ModuleUpdateState::Pending,
                    ModuleState::UPDATING => ModuleUpdateState::Updating,
                    ModuleState::DONE => ModuleUpdateState::Done,
                    ModuleState::FAILED => ModuleUpdateState::Failed,
                    ModuleState::SKIPPED => ModuleUpdateState::Skipped,
                    ModuleState(other) => {
                        return Err(PluginFailure::contract(format_args!(
                            "unknown module state {other}"
                        )));
                    }
                };
                let version = m
                    .version
                    .into_option()
                    .map(DecodedVersion::from_abi)
                    .transpose()?;
                Ok(ModuleStatus {
                    index: m.index,
                    state,
                    version,
                })
            })
            .collect::<Result<Vec<_>, PluginFailure>>()?;
        let failure = match (phase, s.outcome.into_option()) {
            (SessionPhase::Failed, Some(f)) => Some(PluginFailure::from_abi(f)),
            (SessionPhase::Failed, None) => {
                return Err(PluginFailure::contract(
                    "a failed session must report its failure",
                ));
            }
            (_, Some(_)) => {
                return Err(PluginFailure::contract(
                    "only a failed session may report a failure",
                ));
            }
            (_, None) => None,
        };
        Ok(SessionReport {
            phase,
            bytes_done: s.bytes_done,
            bytes_total: s.bytes_total,
            modules,
            failure,
        })
    }
}

#[cfg(test)]
mod tests;
