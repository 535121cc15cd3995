//! The MQTT wire format between the VRM portal and a GX device.
//!
//! Both ends use this crate, so the portal never depends on the GX's engine. It follows the
//! GX conventions: a GX publishes its values as `{"value": ...}` on
//! `N/<portalId>/<service>/<instance>/<path>` ([`topic`], [`envelope`], [`paths`]), keeps
//! publishing while VRM sends `R/<portalId>/keepalive`, takes writes on `W/...`, and runs
//! remote actions as RPC: `{"opCommand": [name, {commandid, ...}]}` on `P/<portalId>/in`
//! ([`command`]) answered by `{"opResponse": {commandid, msgnr, finished, feedback}}` on
//! `P/<portalId>/out` ([`response`]). Firmware travels as numbered base64 chunks
//! ([`chunk`]). Whether a GX is connected is a retained value backed by its MQTT last will
//! ([`presence`]).
//!
//! Every parser here treats its input as hostile: sizes are bounded ([`limits`]), nothing
//! panics, and a [`WireError`] names the topic segment or field that was wrong.

#![warn(missing_docs)]

pub mod broker;
pub mod chunk;
pub mod command;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fields;
pub mod limits;
pub mod paths;
pub mod portal_id;
pub mod preflight;
pub mod presence;
pub mod response;
pub mod signature;
pub mod targets;
pub mod topic;

pub use broker::BrokerAddr;
pub use chunk::ChunkData;
pub use command::{
    Acknowledgement, CancelCommand, ChunkCommand, Command, CommandId, CommandParseError,
    DiagnosticsQuery, EventLogQuery, RpcCommand, StatusQuery, UpdateCommand, VersionPolicy,
};
pub use envelope::WriteRequest;
pub use envelope::{KeepaliveOptions, Notification};
pub use error::WireError;
pub use event::{JobState, ModuleState, WireEvent, WireVersion};
pub use fields::{FileName, Serial, Sha256Hex};
pub use paths::{BatteryPath, SystemPath};
pub use portal_id::PortalId;
pub use preflight::{Integrity, PreflightCommand, PreflightReport, PreflightVerdict, VersionOrder};
pub use presence::PresenceMessage;
pub use response::{Feedback, RpcResponse, Status};
pub use signature::{CommandSignature, Nonce, PortalKey, SignatureError};
pub use targets::TargetList;
pub use topic::DevicePath;
pub use topic::Topic;
