//! The GX side of the VRM link: the portal reaches the GX over MQTT.
//!
//! - [`engine`]: the boundary between the link and the daemon's engine ([`GxEngine`]);
//! - [`access`]: the `/Settings/Network/VrmPortal` setting the link and the gates enforce.

pub mod access;
pub mod engine;

pub use access::{InvalidVrmPortalMode, VrmAccess, VrmPortalMode};
pub use engine::{
    Acknowledgement, Acknowledgements, AlarmLevel, AlarmView, BatteryView, ChunkReceipt,
    Eligibility, EngineRefusal, EngineUpdate, GxEngine, Presence, StagedReceipt, UpdateOptions,
    UpdateRequest, UploadStatus, VersionPolicy,
};
