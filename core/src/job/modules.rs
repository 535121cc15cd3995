//! Per-module progress of packs whose BMS updates the modules behind it one by one (the
//! manual: "the BMS will incrementally update when there are multiple batteries connected
//! together via the same BMS").

use crate::job::identity::VersionInfo;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most modules a job keeps (a plugin reporting more is cut to these).
pub const MAX_MODULES: usize = 64;

/// Where one module is in the update: the one list shared with the wire format.
pub use bmsfw_vrm_wire::ModuleState;

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
