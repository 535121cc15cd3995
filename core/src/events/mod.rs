//! The event log and update history per battery.
//!
//! One JSON object per line (`events.jsonl`), appended and fsynced for every event: when an
//! update was initiated, every state change, progress milestones, versions before and after
//! (raw bytes and decoded), error codes with messages. A crash during an append leaves at
//! most a torn last line, which the reader skips and the writer cuts off on open. The log is
//! bounded by rotation ([`EventLogConfig`]).

pub mod log;
pub mod read;
pub mod record;

pub use log::{EventLog, EventLogConfig, EventLogError, MAX_LINE};
pub use read::{History, SkippedLine};
pub use record::{EventKind, EventRecord};
