//! The bmsfw engine that runs on the GX device.
//!
//! - [`errors`]: the catalogue of stable error codes.

pub mod errors;
