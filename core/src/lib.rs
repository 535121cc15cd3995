//! The bmsfw engine that runs on the GX device.
//!
//! - [`telemetry`]: decoding the BMS-Can frames a battery broadcasts, per-bus monitor;
//! - [`gx_frames`]: the frames the GX itself sends (keep-alive, identification);
//! - [`job`]: update jobs, their states and the one transition table;
//! - [`staging`]: stage 1, a package arriving in chunks and staged on disk;
//! - [`journal`]: one durable record per job, recovery after a GX restart;
//! - [`events`]: the event log and the update history per battery;
//! - [`errors`]: the catalogue of stable error codes;
//! - [`diagnostics`]: the support bundle of a job;
//! - [`plugin`]: the allowlist, the plugin loader and the engine's interface to a plugin;
//! - [`config`]: the `gx.toml` configuration;
//! - [`gates`]: the safety gates;
//! - [`driver`]: the stage-2 driver of one plugin session;
//! - [`engine`]: the GX engine tying buses, plugins, stages and jobs together;
//! - [`vrm`]: the VRM link's side on the GX and its boundary with the engine;
//! - [`venus`]: the `venus` site source, live values from Venus OS's local MQTT broker.

// The unit tests that moved in from tests/ (so that mutation testing, which runs unit
// tests only, runs them) name the crate as integration tests do.
#[cfg(test)]
extern crate self as bmsfw_core;

pub mod config;
pub mod conformance;
pub mod crash;
pub mod diagnostics;
pub mod dotted_version;
pub mod driver;
pub mod engine;
pub mod errors;
pub mod events;
pub mod gates;
pub mod gx_frames;
pub mod job;
pub mod journal;
pub mod plugin;
pub mod staging;
pub mod telemetry;
pub mod toml_file;
pub mod unix_time;
pub mod venus;
pub mod vrm;

pub use unix_time::UnixMillis;
