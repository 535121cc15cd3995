//! The bmsfw engine that runs on the GX device.

pub mod gx_frames;
pub mod telemetry;
