//! Size limits of every message, shared by both ends.

/// Largest chunk of firmware in one `uploadchunk` command, in bytes (before base64).
pub const MAX_CHUNK_DATA: usize = 32 * 1024;

/// Default chunk size the portal uses, in bytes.
pub const DEFAULT_CHUNK_SIZE: u32 = 16 * 1024;

/// Largest message accepted on `P/<portalId>/in` (a chunk of [`MAX_CHUNK_DATA`] in base64
/// plus its fields fits).
pub const MAX_COMMAND_MESSAGE: usize = 64 * 1024;

/// Largest message accepted on `P/<portalId>/out` (an event log or a diagnostics bundle).
pub const MAX_RESPONSE_MESSAGE: usize = 1024 * 1024;

/// Largest `{"value": ...}` message on `N/`, `R/` or `W/` topics.
pub const MAX_VALUE_MESSAGE: usize = 16 * 1024;

/// Longest topic accepted.
pub const MAX_TOPIC: usize = 256;

/// Longest command id.
pub const MAX_COMMAND_ID: usize = 64;

/// Longest battery serial number.
pub const MAX_SERIAL: usize = 64;

/// Longest file name (the GX refuses longer ones too).
pub const MAX_FILE_NAME: usize = 255;

/// Longest error message carried in a reply.
pub const MAX_ERROR_MESSAGE: usize = 4096;

/// Most events one `geteventlog` reply carries.
pub const MAX_EVENTS: u16 = 500;

/// Events a `geteventlog` reply carries when the command does not say.
pub const DEFAULT_EVENTS: u16 = 100;

/// Largest package the wire format can describe (the GX applies its own, lower limit).
pub const MAX_PACKAGE_SIZE: u64 = 1 << 32;

/// Largest MQTT packet either end needs to send or receive.
pub const MAX_PACKET: usize = MAX_RESPONSE_MESSAGE + 1024;

/// Highest module number a battery publishes under `FirmwareUpdate/Modules/<n>/` (packs
/// whose BMS updates its modules one by one).
pub const MAX_MODULE_INDEX: u16 = 255;

/// Most nodes or modules one `update` command may name in `targets` (more than any
/// battery the GX updates has: a hostile list is refused, not truncated).
pub const MAX_UPDATE_TARGETS: usize = 32;
