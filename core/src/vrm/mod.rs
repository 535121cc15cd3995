//! The GX side of the VRM link: the portal reaches the GX over MQTT.
//!
//! - [`engine`]: the boundary between the link and the daemon's engine ([`GxEngine`]);
//! - [`access`]: the `/Settings/Network/VrmPortal` setting the link and the gates enforce;
//! - [`link`]: the link itself ([`spawn_link`]), with its [`outbox`] of ordered replies
//!   (durable while the link is down), its [`commands`] registry and its [`transport`];
//! - [`values`] and [`replies`]: what it publishes, in the wire format of `bmsfw-vrm-wire`;
//! - [`stage_one`]: a [`GxEngine`] made of the staging area, the job store and the event
//!   log, handing staged packages to whichever stage-2 driver listens.

pub mod access;
pub mod commands;
pub mod engine;
pub mod link;
pub mod outbox;
pub mod replies;
pub mod stage_one;
pub mod transport;
pub mod values;

pub use access::{InvalidVrmPortalMode, VrmAccess, VrmPortalMode};
pub use engine::{
    Acknowledgement, Acknowledgements, AlarmLevel, AlarmView, BatteryView, ChunkReceipt,
    Eligibility, EngineRefusal, EngineUpdate, GxEngine, Presence, StagedReceipt, UpdateOptions,
    UpdateRequest, UpdateTargets, UploadStatus, VersionPolicy,
};
pub use link::{LinkConfig, LinkConnection, LinkError, LinkHandle, LinkStatus, spawn_link};
pub use stage_one::{SharedInspector, StageOneEngine, StageOneError, StagedJob};
