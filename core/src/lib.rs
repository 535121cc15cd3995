//! The bmsfw engine that runs on the GX device.

pub mod config;
pub mod dotted_version;
pub mod plugin;
pub mod toml_file;
