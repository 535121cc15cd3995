//! One line of the event log.

use crate::job::{BatteryIdentity, JobId, JobState, ModuleState, VersionInfo};
use crate::staging::Sha256Digest;
use crate::unix_time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The installer initiated an update.
    Initiated {
        /// The installer's file name.
        file_name: String,
        /// Package size in bytes.
        size: u64,
        /// Announced SHA-256.
        sha256: Sha256Digest,
        /// The battery's firmware before the update.
        version_before: Option<VersionInfo>,
        /// The nodes or modules the installer chose; empty: every one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<u16>,
    },
    /// The job changed state.
    StateChanged {
        /// Previous state.
        from: JobState,
        /// New state.
        to: JobState,
    },
    /// Progress crossed a milestone (a multiple of 10 %).
    Progress {
        /// Uploading or Transferring.
        state: JobState,
        /// The milestone reached.
        percent: u8,
    },
    /// The package's plugin decoded the version it installs.
    TargetVersion {
        /// The target version.
        version: VersionInfo,
    },
    /// The update completed.
    Completed {
        /// Firmware before.
        version_before: Option<VersionInfo>,
        /// Firmware after, as the battery reports it.
        version_after: VersionInfo,
    },
    /// The update failed.
    Failed {
        /// Stable code.
        code: u32,
        /// The code's stable name.
        name: String,
        /// Complete message.
        message: String,
    },
    /// A module behind the BMS changed state (packs updated module by module).
    Module {
        /// The module's number behind the BMS.
        index: u16,
        /// Its new state.
        state: ModuleState,
        /// The firmware it runs, when known.
        version: Option<VersionInfo>,
    },
    /// A command from VRM was refused before it started anything (job 0: no job was
    /// created); for example an update without a valid signature of the portal.
    CommandRefused {
        /// The command's name (`update`, `cancel`).
        command: String,
        /// The command's id.
        commandid: String,
        /// Stable code.
        code: u32,
        /// The code's stable name.
        name: String,
        /// Complete message.
        message: String,
    },
    /// The GX restarted and the job carries on.
    Resumed {
        /// The state it resumes in.
        state: JobState,
        /// How (e.g. waiting for the first missing chunk).
        detail: String,
    },
}

impl EventKind {
    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            EventKind::Initiated {
                file_name, targets, ..
            } if !targets.is_empty() => {
                let ids: Vec<String> = targets.iter().map(u16::to_string).collect();
                format!(
                    "update initiated ({file_name}) of node/module {} only",
                    ids.join(", ")
                )
            }
            EventKind::Initiated { file_name, .. } => format!("update initiated ({file_name})"),
            EventKind::StateChanged { to, .. } => format!("state: {}", to.label()),
            EventKind::Progress { state, percent } => format!("{} {percent} %", state.label()),
            EventKind::TargetVersion { .. } => "target version".to_owned(),
            EventKind::Completed { .. } => "update completed".to_owned(),
            EventKind::Failed { message, .. } => format!("failed: {message}"),
            EventKind::Module { index, state, .. } => format!("module {index}: {state}"),
            EventKind::Resumed { state, detail } => {
                format!("resumed {} after GX restart: {detail}", state.label())
            }
            EventKind::CommandRefused {
                command, message, ..
            } => format!("{command} command refused: {message}"),
        }
    }

    /// The versions this event names, as "before -> after" text (empty when none).
    pub fn versions(&self) -> String {
        let show = |v: &Option<VersionInfo>| v.as_ref().map_or("?".to_owned(), |v| v.to_string());
        match self {
            EventKind::Initiated { version_before, .. } => show(version_before),
            EventKind::TargetVersion { version } => format!("-> {version}"),
            EventKind::Completed {
                version_before,
                version_after,
            } => format!("{} -> {version_after}", show(version_before)),
            EventKind::Module {
                version: Some(v), ..
            } => v.to_string(),
            _ => String::new(),
        }
    }

    /// The error code this event carries.
    pub fn code(&self) -> Option<u32> {
        match self {
            EventKind::Failed { code, .. } | EventKind::CommandRefused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One event of one job, with when and which battery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When it happened.
    pub at: UnixMillis,
    /// The job.
    pub job: JobId,
    /// The battery (repeated on every line so history survives rotation).
    pub battery: BatteryIdentity,
    /// What happened.
    pub event: EventKind,
}

impl fmt::Display for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} job {} {}: {}",
            self.at,
            self.job,
            self.battery.serial,
            self.event.label()
        )
    }
}
