//! The boundary between the VRM link and the GX daemon's engine.
//!
//! The link speaks MQTT with the portal; everything it does to the batteries and the jobs
//! goes through [`GxEngine`], which the daemon's engine implements. The operations are
//! exactly what the portal offers an installer: the device list with live state and update
//! eligibility, an update request carrying the installer's acknowledgements and options,
//! the upload of the package in chunks (resumable after a disconnect), a subscription to
//! battery and job changes, and each battery's event log and each job's diagnostics.
//!
//! Refusals carry a stable code of the catalogue ([`crate::errors`]) and a message; the
//! link forwards both to the portal unchanged.

use crate::diagnostics::DiagnosticsBundle;
use crate::events::EventRecord;
use crate::job::{BatteryIdentity, JobId, JobRecord, Percent, VersionInfo};
use crate::staging::{ChunkOutcome, Sha256Digest, UploadAnnouncement};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use tokio::sync::broadcast;

/// How serious an alarm condition is, as the GX publishes `/Alarms/*` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmLevel {
    /// 0: the condition is absent.
    Ok,
    /// 1: warning.
    Warning,
    /// 2: alarm.
    Alarm,
}

impl AlarmLevel {
    /// The number published on `/Alarms/<name>`.
    pub const fn as_number(self) -> u8 {
        match self {
            AlarmLevel::Ok => 0,
            AlarmLevel::Warning => 1,
            AlarmLevel::Alarm => 2,
        }
    }
}

/// One alarm condition of a battery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmView {
    /// The GX's path name of the condition, e.g. `HighTemperature` (`/Alarms/HighTemperature`).
    pub name: String,
    /// Its level now.
    pub level: AlarmLevel,
}

/// Whether the battery talks on BMS-Can right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Every required BMS-Can frame is fresh.
    Communicating,
    /// Required frames are stale: powered off, cable out, or restarting.
    Silent,
}

/// Whether the battery can be updated remotely (the manual's section 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Eligibility {
    /// An approved plugin claims the battery and its firmware takes updates over CAN.
    Eligible {
        /// The vendor id of that plugin.
        vendor: String,
    },
    /// Not remotely updatable; the portal shows why.
    NotEligible {
        /// A catalogue code (e.g. 707: no approved plugin).
        code: u32,
        /// The reason in the installer's words.
        reason: String,
    },
}

/// A battery on one of the GX's buses, with its live state: what the link publishes on
/// `N/<portalId>/battery/<instance>/...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatteryView {
    /// The device instance the GX gives the battery; stable while it stays on its bus.
    pub instance: u32,
    /// The CAN interface it is on (e.g. `can0`).
    pub bus: String,
    /// Manufacturer, model and serial number.
    pub identity: BatteryIdentity,
    /// The firmware it reports, raw bytes and as its plugin decodes them.
    pub firmware: Option<VersionInfo>,
    /// State of charge in percent.
    pub soc_percent: Option<f32>,
    /// Pack voltage in volts.
    pub voltage_v: Option<f32>,
    /// Pack current in amperes (positive while charging).
    pub current_a: Option<f32>,
    /// Battery temperature in degrees Celsius.
    pub temperature_c: Option<f32>,
    /// Every alarm condition the battery reports, active or not.
    pub alarms: Vec<AlarmView>,
    /// Whether it communicates now.
    pub presence: Presence,
    /// Whether a remote update is possible.
    pub eligibility: Eligibility,
}

/// One warning of the manual (section 12) the installer must confirm before Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acknowledgement {
    /// The site is physically reachable in case on-site recovery is necessary.
    SiteReachable,
    /// The system has adequate backup capacity should the batteries disconnect, stop
    /// charging or reduce output during the update.
    BackupCapacity,
    /// The update runs in a planned maintenance window, not during critical operation or a
    /// backup-power event.
    MaintenanceWindow,
}

impl Acknowledgement {
    /// Every acknowledgement an update needs.
    pub const ALL: [Acknowledgement; 3] = [
        Acknowledgement::SiteReachable,
        Acknowledgement::BackupCapacity,
        Acknowledgement::MaintenanceWindow,
    ];

    /// The statement the installer confirms.
    pub const fn statement(self) -> &'static str {
        match self {
            Acknowledgement::SiteReachable => {
                "The site is physically accessible in case on-site recovery is necessary."
            }
            Acknowledgement::BackupCapacity => {
                "The system has adequate backup capacity: the batteries may temporarily \
                 disconnect, stop charging or reduce output during the update."
            }
            Acknowledgement::MaintenanceWindow => {
                "This is a planned maintenance window, not a time of critical system operation \
                 or a backup power event."
            }
        }
    }
}

impl fmt::Display for Acknowledgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acknowledgement::SiteReachable => "site reachable",
            Acknowledgement::BackupCapacity => "backup capacity",
            Acknowledgement::MaintenanceWindow => "maintenance window",
        })
    }
}

/// The acknowledgements the installer gave with a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Acknowledgements(pub BTreeSet<Acknowledgement>);

impl Acknowledgements {
    /// Every acknowledgement given.
    pub fn all() -> Acknowledgements {
        Acknowledgements(Acknowledgement::ALL.into_iter().collect())
    }

    /// Those of [`Acknowledgement::ALL`] not given, in order.
    pub fn missing(&self) -> Vec<Acknowledgement> {
        Acknowledgement::ALL
            .into_iter()
            .filter(|a| !self.0.contains(a))
            .collect()
    }
}

/// Which target versions the installer accepts ("newer is not always better": a downgrade
/// or a reinstall of the same version is an explicit choice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// Only a version newer than the installed one.
    #[default]
    NewerOnly,
    /// Also the same version again, or an older one.
    AllowReinstallOrDowngrade,
}

/// Which nodes or modules of a battery an update installs: every one, or those the
/// installer chose (node ids of a bank of BMS nodes, module numbers of a pack, as the
/// battery's plugin numbers them).
///
/// The list of [`UpdateTargets::Only`] is checked where it enters the GX (the VRM link's
/// command, a request record read back): not empty, at most
/// [`bmsfw_vrm_wire::limits::MAX_UPDATE_TARGETS`], each number once, 1 to 255. Whether
/// the battery has those nodes or modules is the plugin's to say: it refuses any other
/// before it changes anything, naming the ones the battery has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateTargets {
    /// Every node or module (the plugin may leave those already current alone).
    #[default]
    All,
    /// These, ascending, each once; the others are not touched.
    Only(#[serde(deserialize_with = "checked_targets")] Vec<u16>),
}

fn checked_targets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let list = bmsfw_vrm_wire::TargetList::deserialize(d)?;
    Ok(list.ids().to_vec())
}

impl UpdateTargets {
    /// The selection of the VRM link's `targets` (`None`: every one).
    pub fn from_wire(targets: Option<&bmsfw_vrm_wire::TargetList>) -> UpdateTargets {
        match targets {
            Some(list) => UpdateTargets::Only(list.ids().to_vec()),
            None => UpdateTargets::All,
        }
    }

    /// The numbers chosen; empty for [`UpdateTargets::All`] (the plugin contract's
    /// `SessionOptions::modules`).
    pub fn ids(&self) -> &[u16] {
        match self {
            UpdateTargets::All => &[],
            UpdateTargets::Only(ids) => ids,
        }
    }
}

/// `all`, or `only 2, 3`.
impl fmt::Display for UpdateTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateTargets::All => f.write_str("all"),
            UpdateTargets::Only(ids) => {
                let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
                write!(f, "only {}", ids.join(", "))
            }
        }
    }
}

/// The installer's options of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOptions {
    /// Which target versions are accepted.
    pub version_policy: VersionPolicy,
    /// Which nodes or modules to update (records written before the choice existed read
    /// as every one).
    #[serde(default)]
    pub targets: UpdateTargets,
}

/// An installer's request to update one battery with one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    /// The battery's serial number.
    pub battery_serial: String,
    /// The package as the portal announces it (name, size, chunk size, SHA-256).
    pub package: UploadAnnouncement,
    /// The warnings the installer confirmed.
    pub acknowledgements: Acknowledgements,
    /// The installer's options.
    pub options: UpdateOptions,
}

/// A pre-flight check of a file for one battery, before any update: the file is uploaded
/// into staging and inspected by the battery's plugin (see [`GxEngine::begin_preflight`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightRequest {
    /// The battery's serial number.
    pub battery_serial: String,
    /// The file as the portal announces it (name, size, chunk size, SHA-256).
    pub package: UploadAnnouncement,
}

/// Where the upload of a job's package stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStatus {
    /// The job.
    pub job: JobId,
    /// The first chunk not yet on the GX's disk (`None`: every chunk is here).
    pub first_missing: Option<u32>,
    /// Bytes on the GX's disk.
    pub received_bytes: u64,
    /// Upload progress.
    pub percent: Percent,
}

/// The answer to one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkReceipt {
    /// Stored, or a duplicate that was already there.
    pub outcome: ChunkOutcome,
    /// The upload after this chunk.
    pub status: UploadStatus,
}

/// A package that passed stage 1: on disk, digest verified, accepted by its plugin. Stage 2
/// takes over from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedReceipt {
    /// The job.
    pub job: JobId,
    /// The verified SHA-256.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// The firmware version the package installs, as its plugin decoded it.
    pub target: VersionInfo,
}

/// Why the engine refused an operation: a catalogue code and the complete message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct EngineRefusal {
    /// The stable code.
    pub code: u32,
    /// What was refused and why, naming the measured value and the limit where there is one.
    pub message: String,
}

impl EngineRefusal {
    /// A refusal with `code`.
    pub fn new(code: u32, message: impl Into<String>) -> EngineRefusal {
        EngineRefusal {
            code,
            message: message.into(),
        }
    }
}

/// A change the link reports to the portal.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineUpdate {
    /// A battery appeared, or its live state or eligibility changed (boxed, as a job's
    /// record: the channel holds many updates, most of them small).
    Battery(Box<BatteryView>),
    /// A battery left the device list.
    BatteryGone {
        /// Its device instance.
        instance: u32,
    },
    /// A job changed; its record after the change.
    Job(Box<JobRecord>),
}

/// Capacity the link expects of the update channel; a receiver that falls further behind
/// gets [`broadcast::error::RecvError::Lagged`] and reads a full snapshot instead.
pub const UPDATE_CHANNEL_CAPACITY: usize = 256;

/// What the VRM link needs of the GX daemon's engine.
///
/// Methods may block on disk I/O (a chunk is fsynced before it is acknowledged);
/// implementations do such work off the async threads (`spawn_blocking`). Every refusal
/// changes nothing unless documented otherwise.
#[async_trait]
pub trait GxEngine: Send + Sync {
    /// The batteries on the GX's buses, with their live state and update eligibility, in
    /// instance order.
    async fn batteries(&self) -> Vec<BatteryView>;

    /// Every job the engine keeps (running and recently ended), in id order.
    async fn jobs(&self) -> Vec<JobRecord>;

    /// Requests an update of `request.battery_serial` with `request.package`: checks the
    /// acknowledgements, the options and the gates that apply at request time, creates the
    /// job (Uploading to GX device, 0 %) and begins the upload into staging. A package the
    /// GX still has from an earlier job (an immediate retry) comes back complete.
    async fn request_update(&self, request: UpdateRequest) -> Result<UploadStatus, EngineRefusal>;

    /// Where the upload of `job` stands, reopening it after a GX restart: the link asks the
    /// portal for [`UploadStatus::first_missing`] after every reconnect instead of starting
    /// over. Refused for a job that is not uploading.
    async fn resume_upload(&self, job: JobId) -> Result<UploadStatus, EngineRefusal>;

    /// Stores chunk `index` of `job`'s package (duplicates are acknowledged without being
    /// written again). A refused chunk leaves the upload as it was; the job goes on.
    async fn accept_chunk(
        &self,
        job: JobId,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal>;

    /// Ends stage 1 of `job` once every chunk is here: compares the SHA-256, lets the
    /// battery's plugin inspect the package and stages it; stage 2 then starts on its own.
    /// A digest mismatch or a refusal by the plugin deletes the package and fails the job
    /// with that code (the refusal says so); missing chunks (708) leave the job uploading.
    async fn finish_upload(&self, job: JobId) -> Result<StagedReceipt, EngineRefusal>;

    /// Cancels `job` before stage 2: while its package is uploading (or complete and not
    /// yet handed to stage 2) the job fails with `reason`'s code and message, its bus is
    /// free again, and the partial upload stays for a retry of the same file. Once stage 2
    /// (the transfer to the battery) has begun the cancel is refused (716) and the update
    /// runs to its end under its own safety rules: the battery never keeps a partial
    /// image. An ended or unknown job is refused (714). Returns the failed job.
    async fn cancel_update(
        &self,
        job: JobId,
        reason: EngineRefusal,
    ) -> Result<JobRecord, EngineRefusal> {
        let _ = (job, reason);
        Err(EngineRefusal::new(
            crate::errors::codes::COMMAND_INVALID,
            "this GX device cannot cancel updates",
        ))
    }

    /// Battery and job changes, from now on (capacity [`UPDATE_CHANNEL_CAPACITY`] or more).
    fn subscribe(&self) -> broadcast::Receiver<EngineUpdate>;

    /// Starts or resumes the pre-flight upload of `request.package` for
    /// `request.battery_serial`: no job, no acknowledgements, no gates; the status's `job`
    /// is [`JobId`] 0. A file already staged comes back complete. An engine without
    /// pre-flight checks refuses (712), and the portal then checks the file at Update.
    async fn begin_preflight(
        &self,
        request: PreflightRequest,
    ) -> Result<UploadStatus, EngineRefusal> {
        let _ = request;
        Err(no_preflight())
    }

    /// Stores chunk `index` of the pre-flight upload of the file with digest `sha256`.
    async fn preflight_chunk(
        &self,
        sha256: Sha256Digest,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        let _ = (sha256, index, bytes);
        Err(no_preflight())
    }

    /// Where the pre-flight upload of the file with digest `sha256` stands.
    async fn preflight_status(&self, sha256: Sha256Digest) -> Result<UploadStatus, EngineRefusal> {
        let _ = sha256;
        Err(no_preflight())
    }

    /// Ends the pre-flight of the file with digest `sha256` for `battery_serial` once every
    /// chunk is here: compares the SHA-256, lets the battery's plugin inspect the file
    /// (and, when it refuses it as unreadable, the other plugins, to tell the installer
    /// whose file it is), compares product and version with the battery. A file that
    /// passes stays staged for the update; a refused one is deleted. A refusal of the file
    /// is a report with [`bmsfw_vrm_wire::PreflightVerdict::Refused`]; an error is a check
    /// that could not run (no such battery, a damaged upload, missing chunks).
    async fn finish_preflight(
        &self,
        battery_serial: String,
        sha256: Sha256Digest,
    ) -> Result<bmsfw_vrm_wire::PreflightReport, EngineRefusal> {
        let _ = (battery_serial, sha256);
        Err(no_preflight())
    }

    /// The event log of the battery with serial number `serial`, oldest first.
    async fn history(&self, serial: &str) -> Result<Vec<EventRecord>, EngineRefusal>;

    /// Records in the event log of the battery `refused.battery_serial` a command from VRM
    /// that was refused before it started anything (see [`crate::vrm::authority`]). The
    /// default only logs it to the daemon's log.
    async fn record_refusal(&self, refused: crate::vrm::authority::RefusedCommand) {
        tracing::warn!(battery = %refused.battery_serial, commandid = %refused.commandid, code = refused.refusal.code, message = %refused.refusal.message, "command from VRM refused");
    }

    /// The diagnostics bundle of `job` (the manual's section 10.2).
    async fn diagnostics(&self, job: JobId) -> Result<DiagnosticsBundle, EngineRefusal>;
}

/// Whether `record` may still be cancelled ([`GxEngine::cancel_update`]): only in stage 1,
/// while it is uploading. Once stage 2 has begun, 716; an ended job, 714.
pub fn check_cancellable(record: &JobRecord) -> Result<(), EngineRefusal> {
    use crate::errors::codes;
    use crate::job::JobState;
    match record.state() {
        JobState::Uploading => Ok(()),
        state if state.is_terminal() => Err(EngineRefusal::new(
            codes::UPDATE_NOT_FOUND,
            format!(
                "update {} has already ended: {}",
                record.id(),
                state.label()
            ),
        )),
        state => Err(EngineRefusal::new(
            codes::UPDATE_ALREADY_RUNNING,
            format!(
                "update {} is {}: the transfer to the battery has begun and is not cancelled; \
                 it runs to its end under its safety rules, the battery keeping its old \
                 firmware or the complete, verified new one",
                record.id(),
                state.label()
            ),
        )),
    }
}

fn no_preflight() -> EngineRefusal {
    EngineRefusal::new(
        crate::errors::codes::COMMAND_INVALID,
        "this GX device does not check firmware files before an update",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_acknowledgements_in_order() {
        let mut acks = Acknowledgements::default();
        assert_eq!(acks.missing(), Acknowledgement::ALL.to_vec());
        acks.0.insert(Acknowledgement::BackupCapacity);
        assert_eq!(
            acks.missing(),
            vec![
                Acknowledgement::SiteReachable,
                Acknowledgement::MaintenanceWindow
            ]
        );
        assert!(Acknowledgements::all().missing().is_empty());
        let json = serde_json::to_string(&Acknowledgements::all()).unwrap();
        assert_eq!(
            json,
            r#"["site_reachable","backup_capacity","maintenance_window"]"#
        );
    }

    #[test]
    fn targets_read_back_checked_and_old_records_mean_every_one() {
        let only = UpdateOptions {
            version_policy: VersionPolicy::NewerOnly,
            targets: UpdateTargets::Only(vec![2, 5]),
        };
        let json = serde_json::to_string(&only).unwrap();
        assert_eq!(
            json,
            r#"{"version_policy":"newer_only","targets":{"only":[2,5]}}"#
        );
        assert_eq!(serde_json::from_str::<UpdateOptions>(&json).unwrap(), only);
        let old: UpdateOptions =
            serde_json::from_str(r#"{"version_policy":"newer_only"}"#).unwrap();
        assert_eq!(old.targets, UpdateTargets::All);
        assert!(old.targets.ids().is_empty());
        for hostile in [
            r#"{"version_policy":"newer_only","targets":{"only":[]}}"#,
            r#"{"version_policy":"newer_only","targets":{"only":[3,3]}}"#,
            r#"{"version_policy":"newer_only","targets":{"only":[0]}}"#,
        ] {
            assert!(
                serde_json::from_str::<UpdateOptions>(hostile).is_err(),
                "{hostile}"
            );
        }
        assert_eq!(only.targets.to_string(), "only 2, 5");
        assert_eq!(UpdateTargets::All.to_string(), "all");
    }

    #[test]
    fn alarm_levels_publish_the_gx_numbers() {
        assert_eq!(AlarmLevel::Ok.as_number(), 0);
        assert_eq!(AlarmLevel::Warning.as_number(), 1);
        assert_eq!(AlarmLevel::Alarm.as_number(), 2);
    }
}
