//! The GX side of the VRM link: the portal reaches the GX over MQTT.
//!
//! - [`engine`]: the boundary between the link and the daemon's engine ([`GxEngine`]);
//! - [`access`]: the `/Settings/Network/VrmPortal` setting the link and the gates enforce;
//! - [`link`]: the link itself ([`spawn_link`]), with its [`outbox`] of ordered replies
//!   (durable while the link is down), its [`commands`] registry and its [`transport`],
//!   secured as [`tls`] says (TLS, credentials);
//! - [`values`] and [`replies`]: what it publishes, in the wire format of `bmsfw-vrm-wire`.
//! - [`authority`]: the portal's signature every update and cancel command must carry.
//!
//! The daemon's engine ([`crate::engine::Engine`]) implements [`GxEngine`].

pub mod access;
pub mod authority;
pub mod commands;
pub mod deadlines;
pub mod engine;
pub mod link;
pub mod outbox;
pub mod replies;
pub mod tls;
pub mod transport;
pub mod values;

pub use access::{InvalidVrmPortalMode, VrmAccess, VrmPortalMode};
pub use engine::{
    Acknowledgement, Acknowledgements, AlarmLevel, AlarmView, BatteryView, ChunkReceipt,
    Eligibility, EngineRefusal, EngineUpdate, GxEngine, PreflightRequest, Presence, StagedReceipt,
    UpdateOptions, UpdateRequest, UpdateTargets, UploadStatus, VersionPolicy,
};
pub use link::{LinkConfig, LinkConnection, LinkError, LinkHandle, LinkStatus, spawn_link};
