//! Per-module progress of packs whose BMS updates the modules behind it one by one (the
//! manual: "the BMS will incrementally update when there are multiple batteries connected
//! together via the same BMS").

use crate::job::identity::VersionInfo;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most modules a job keeps (a plugin reporting more is cut to these).
pub const MAX_MODULES: usize = 64;

/// Where one module is in the update.
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

    /// The state's name on the wire and in logs: `pending`, `updating`, `done`, `failed`,
    /// `skipped`.
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Pending => "pending",
            ModuleState::Updating => "updating",
            ModuleState::Done => "done",
            ModuleState::Failed => "failed",
            ModuleState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One module of the pack as the job last heard of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleProgress {
    /// The module's number behind the BMS, as its plugin counts them.
    pub index: u16,
    /// Where it is.
    pub state: ModuleState,
    /// The firmware it runs, when known.
    pub version: Option<VersionInfo>,
}

impl fmt::Display for ModuleProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module {} {}", self.index, self.state)?;
        if let Some(v) = &self.version {
            write!(f, ", runs {}", v.display)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_stable_names_and_serde_forms() {
        for s in ModuleState::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<ModuleState>(&json).unwrap(), s);
        }
        let m = ModuleProgress {
            index: 3,
            state: ModuleState::Failed,
            version: Some(VersionInfo {
                raw: vec![2, 3, 1],
                display: "v2.03 (build 01)".into(),
            }),
        };
        assert_eq!(m.to_string(), "module 3 failed, runs v2.03 (build 01)");
    }
}
