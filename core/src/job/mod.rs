//! Update jobs: their states, the one transition table, and the record the journal keeps.

pub mod event;
pub mod identity;
pub mod modules;
pub mod percent;
pub mod record;
pub mod state;
pub mod store;
pub mod transition;

pub use event::{JobEvent, JobEventKind, JobFailure};
pub use identity::{BatteryIdentity, VersionInfo};
pub use modules::{MAX_MODULES, ModuleProgress, ModuleState};
pub use percent::Percent;
pub use record::{CheckpointError, JobId, JobRecord, MAX_CHECKPOINT};
pub use state::JobState;
pub use store::{JobStore, JobStoreError, StartupReport, StateDir};
pub use transition::{InvalidTransition, TRANSITIONS, transition};
