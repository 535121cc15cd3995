//! The stage-2 driver: runs one plugin session against the bus, enforcing the plugin's
//! declared identifiers, the bus-load budget, the per-phase watchdogs, the gates and the
//! confirmation of the new version.
//!
//! Everything here is sans-IO; the engine's bus task ([`crate::engine`]) owns the
//! interface and hands the driver frames and time.

pub mod stage2;
pub mod watchdog;

/// The bus-load budget, a crate of its own (its tests run in seconds).
pub use bmsfw_budget as budget;
pub use budget::{BudgetConfig, BusBudget, WORST_FRAME_BITS};
pub use stage2::{DriverEvent, NewerCheck, Stage2, Stage2Config, StageOutcome, Step};
pub use watchdog::{Watchdog, WatchdogLimits, Watched, wire_time};
