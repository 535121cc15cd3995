//! The states of an update job, as the installer sees them.
//!
//! One list serves the engine, the job journal, the VRM link's wire format and the
//! portal: it is defined with the wire format, which every side already shares.

pub use bmsfw_vrm_wire::JobState;
