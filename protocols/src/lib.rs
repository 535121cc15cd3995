//! Sans-IO building blocks that vendor plugins reuse.
//!
//! Nothing here owns a socket, a thread, a timer or a file: state machines take frames
//! and the time, and hand back frames to send and their next deadline.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bit_timing;
