//! Job states, firmware versions and event-log lines as they travel to the portal.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The state of an update as the installer sees it (the manual's section 6.1, step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Uploading to GX device (percent).
    Uploading,
    /// Transferring to battery (percent).
    Transferring,
    /// Installing.
    Installing,
    /// Restarting.
    Restarting,
    /// Verifying.
    Verifying,
    /// Completed.
    Completed,
    /// Failed, with a code.
    Failed,
}

impl JobState {
    /// Every state, in the installer's order.
    pub const ALL: [JobState; 7] = [
        JobState::Uploading,
        JobState::Transferring,
        JobState::Installing,
        JobState::Restarting,
        JobState::Verifying,
        JobState::Completed,
        JobState::Failed,
    ];

    /// The text the portal shows.
    pub const fn label(self) -> &'static str {
        match self {
            JobState::Uploading => "Uploading to GX device",
            JobState::Transferring => "Transferring to battery",
            JobState::Installing => "Installing",
            JobState::Restarting => "Restarting",
            JobState::Verifying => "Verifying",
            JobState::Completed => "Completed",
            JobState::Failed => "Failed",
        }
    }

    /// The name on the wire (`uploading`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            JobState::Uploading => "uploading",
            JobState::Transferring => "transferring",
            JobState::Installing => "installing",
            JobState::Restarting => "restarting",
            JobState::Verifying => "verifying",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    /// The state named `name` on the wire.
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the update has ended (Completed or Failed).
    pub const fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }

    /// Whether the installer sees a percentage in this state.
    pub const fn shows_percent(self) -> bool {
        matches!(self, JobState::Uploading | JobState::Transferring)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where one module behind a battery's BMS is in an update (packs whose BMS updates its
/// modules one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Not updated yet.
    Pending,
    /// Receiving or applying its image.
    Updating,
    /// Runs its new firmware.
    Done,
    /// Its update failed.
    Failed,
    /// Left alone (already current, or not selected).
    Skipped,
}

impl ModuleState {
    /// Every state.
    pub const ALL: [ModuleState; 5] = [
        ModuleState::Pending,
        ModuleState::Updating,
        ModuleState::Done,
        ModuleState::Failed,
        ModuleState::Skipped,
    ];

    /// The name on the wire (`pending`, `updating`, `done`, `failed`, `skipped`).
    pub const fn name(self) -> &'static str {
        match self {
            ModuleState::Pending => "pending",
            ModuleState::Updating => "updating",
            ModuleState::Done => "done",
            ModuleState::Failed => "failed",
            ModuleState::Skipped => "skipped",
        }
    }

    /// The text the portal shows.
    pub const fn label(self) -> &'static str {
        match self {
            ModuleState::Pending => "Waiting",
            ModuleState::Updating => "Updating",
            ModuleState::Done => "Updated",
            ModuleState::Failed => "Failed",
            ModuleState::Skipped => "Skipped",
        }
    }

    /// The state named `name` on the wire.
    pub fn from_name(name: &str) -> Option<ModuleState> {
        ModuleState::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A firmware version: the raw bytes the battery reports (hex) and its vendor's rendering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireVersion {
    /// Raw bytes as lowercase hex.
    pub raw: String,
    /// The vendor's rendering, e.g. `v4.15`.
    pub display: String,
}

impl fmt::Display for WireVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.display, self.raw.to_uppercase())
    }
}

/// One line of a battery's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The job.
    pub job: u64,
    /// What happened, as a short text (`state: Transferring to battery`, ...).
    pub label: String,
    /// The event's kind (`initiated`, `state_changed`, `progress`, `target_version`,
    /// `module`, `completed`, `failed`, `resumed`).
    pub kind: String,
    /// The versions it names, `before -> after` (empty when none).
    #[serde(default)]
    pub versions: String,
    /// Firmware before the update, for `initiated` and `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_before: Option<WireVersion>,
    /// Firmware after the update, for `completed`; the target for `target_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_after: Option<WireVersion>,
    /// The error code, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    /// The state entered, for `state_changed` (none for a state this end does not know).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub state: Option<JobState>,
}

/// Reads an optional enumeration value; one this end does not know (sent by a newer GX),
/// or of another type, reads as `None` instead of failing the whole message.
pub(crate) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        for s in JobState::ALL {
            assert_eq!(JobState::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
        }
        assert_eq!(JobState::Uploading.label(), "Uploading to GX device");
        assert_eq!(JobState::from_name("bogus"), None);
        for s in ModuleState::ALL {
            assert_eq!(ModuleState::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
        }
        assert_eq!(ModuleState::from_name("Done"), None);
        let v = WireVersion {
            raw: "040f".into(),
            display: "v4.15".into(),
        };
        assert_eq!(v.to_string(), "v4.15 [040F]");
    }
}
