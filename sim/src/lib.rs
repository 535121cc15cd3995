//! The simulated world bmsfw is tested and demonstrated in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod battery;
pub mod bridge;
pub mod bus;
pub mod flash;
pub mod model_library;
pub mod node;
pub mod registry;
pub mod site;
pub mod uds_download;
pub mod venus;
