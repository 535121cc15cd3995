//! The bmsfw engine that runs on the GX device.
