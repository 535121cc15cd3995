//! UDS (ISO 14229) services for flashing over ISO-TP.
//!
//! - [`FlashClient`]: the client side of the flash sequence, as a sans-IO state machine.
//! - [`UdsRequest`] and [`UdsResponse`]: requests and responses parsed from untrusted
//!   bytes (bounded, never panicking, errors naming the byte offset) and encoded.
//! - [`FlashServer`]: a server implementing the same sequence over a [`FlashBackend`],
//!   for simulated battery management systems.
//! - [`Requester`]: one request at a time with its response, for what surrounds a flash
//!   download (reading identification data before, polling a restarting server after).
//! - The steps a plugin's update session takes around them: [`flash_failure`] and
//!   [`request_failure`] (what a refusal or a silence means, as a plugin
//!   [`Failure`](bmsfw_plugin_api::Failure) with its error code), [`RestartPoll`] (waiting
//!   for the battery after its reset), [`provide_block`], [`leave_programming`] and
//!   [`read_two_bytes`].

mod client;
mod failure;
mod nrc;
mod request;
mod requester;
mod response;
mod restart;
mod server;
mod transfer;
mod update;

#[cfg(test)]
mod tests;

pub use client::{
    FlashClient, FlashConfig, FlashConfigError, FlashError, FlashEvent, FlashPhase, KeyError,
    ProvideDataError, ResetOutcome, SecurityKey,
};
pub use failure::{flash_failure, flash_step, request_failure};
pub use nrc::Nrc;
pub use request::{
    MAX_IDENTIFIERS, PositiveResponse, RequestError, RoutineControlType, UdsRequest, transfer_data,
};
pub use requester::{
    ReadDataError, Requester, RequesterConfig, RequesterError, RequesterEvent, parse_read_data,
    read_data_request,
};
pub use response::{
    NEGATIVE_RESPONSE, POSITIVE_OFFSET, ResponseError, UdsResponse, negative,
    parse_max_block_length, positive, request_download_positive,
};
pub use restart::RestartPoll;
pub use server::{
    CheckOutcome, FlashBackend, FlashServer, Security, ServerConfig, Session, TransferState,
};
pub use transfer::{BlockSizing, TransferAck, TransferAckRecord};
pub use update::{leave_programming, provide_block, read_two_bytes};

/// Service identifiers of the requests handled here.
pub mod service {
    /// DiagnosticSessionControl.
    pub const DIAGNOSTIC_SESSION_CONTROL: u8 = 0x10;
    /// ECUReset.
    pub const ECU_RESET: u8 = 0x11;
    /// ReadDataByIdentifier.
    pub const READ_DATA_BY_IDENTIFIER: u8 = 0x22;
    /// SecurityAccess.
    pub const SECURITY_ACCESS: u8 = 0x27;
    /// RoutineControl.
    pub const ROUTINE_CONTROL: u8 = 0x31;
    /// RequestDownload.
    pub const REQUEST_DOWNLOAD: u8 = 0x34;
    /// TransferData.
    pub const TRANSFER_DATA: u8 = 0x36;
    /// RequestTransferExit.
    pub const REQUEST_TRANSFER_EXIT: u8 = 0x37;
    /// TesterPresent.
    pub const TESTER_PRESENT: u8 = 0x3E;
}
