//! The bmsfw engine that runs on the GX device.
//!
//! - [`job`]: update jobs, their states and the one transition table;
//! - [`staging`]: stage 1, a package arriving in chunks and staged on disk;
//! - [`journal`]: one durable record per job, recovery after a GX restart;
//! - [`events`]: the event log and the update history per battery;
//! - [`errors`]: the catalogue of stable error codes;
//! - [`diagnostics`]: the support bundle of a job;
//! - [`vrm`]: the VRM link's side on the GX and its boundary with the engine.

pub mod diagnostics;
pub mod errors;
pub mod events;
pub mod job;
pub mod journal;
pub mod staging;
pub mod unix_time;
pub mod vrm;

pub use unix_time::UnixMillis;
