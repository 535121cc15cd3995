//! Sans-IO building blocks that vendor plugins reuse.
//!
//! Nothing here owns a socket, a thread, a timer or a file: state machines take frames
//! and the time, and hand back frames to send and their next deadline.
//!
//! - [`bms_can`]: the BMS-Can codec: every broadcast frame a battery sends and the GX's
//!   keep-alive, as typed values with their decoders and encoders.
//! - [`bit_timing`]: exact bit timing of classic CAN frames (stuff bits included).
//! - [`version`]: decoders for the ways firmware versions are packed into bytes.
//! - [`checksum`]: CRC-32, CRC-16 and SHA-256, one-shot and streamed.
//! - [`package`]: the hostile-file steps of a binary package reader (header, extent,
//!   streamed digests).
//! - [`signature`]: Ed25519 verification of signed manifests.
//! - [`isotp`]: ISO 15765-2 transport (segmentation, flow control, timers).
//! - [`canopen`]: CANopen SDO transfers (block download with resends and CRC, segmented
//!   and expedited transfers), client and server, and the CiA 302-3 program download.
//! - [`uds`]: ISO 14229 diagnostic services: a flashing client, request parsing and a
//!   flashing server for simulated battery management systems.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bit_timing;
pub mod bms_can;
pub mod canopen;
pub mod checksum;
pub mod isotp;
pub mod package;
pub mod signature;
#[cfg(test)]
mod test_support;
pub mod uds;
pub mod version;
