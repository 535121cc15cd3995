//! The numbers of `vendors/template/PROTOCOL.md`, as the plugin uses them.
//!
//! The simulated BMS (`vendors/template/sim`) has its own copy, written from the same
//! document: the two cross-check each other in the end-to-end test.

use bmsfw_plugin_api::{CanId, DeclaredTimeouts};
use std::time::Duration;

/// The plugin's vendor id, as the allowlist names it.
pub const VENDOR_ID: &str = "com.example.acme";
/// The plugin's name for people.
pub const PLUGIN_NAME: &str = "Acme LFP (bmsfw template)";

/// The manufacturer name Acme batteries send in 0x35E.
pub const MANUFACTURER: &str = "ACME";

/// Product codes (0x35F bytes 0-1) and their names.
pub const PRODUCTS: [(u16, &str); 2] = [(0xAC05, "Acme 5"), (0xAC10, "Acme 10")];

/// The name of an Acme product code.
pub fn product_name(code: u16) -> Option<&'static str> {
    PRODUCTS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Requests, GX to BMS (checked when compiling).
pub const REQUEST_ID: CanId = match CanId::standard(0x7E5) {
    Some(id) => id,
    None => panic!("0x7E5 is an 11-bit identifier"),
};
/// Responses, BMS to GX (checked when compiling).
pub const RESPONSE_ID: CanId = match CanId::standard(0x7ED) {
    Some(id) => id,
    None => panic!("0x7ED is an 11-bit identifier"),
};

/// ISO-TP padding byte.
pub const PADDING: u8 = 0xAA;

/// Data identifier: running application version, `[major, minor]`.
pub const DID_APPLICATION_VERSION: u16 = 0xF195;

/// Security-access level of programming (`27 01` / `27 02`).
pub const SECURITY_LEVEL: u8 = 0x01;
/// The erase routine (`31 01 FF00 <package length, 4 bytes big-endian>`).
pub const ERASE_ROUTINE: u16 = 0xFF00;
/// The check-and-activate routine (`31 01 FF01`).
pub const CHECK_ROUTINE: u16 = 0xFF01;

/// Check refused: the image's CRC-32 does not match the header.
pub const NRC_IMAGE_CRC: u8 = 0xF0;
/// Check refused: the header is damaged or the length is wrong.
pub const NRC_HEADER: u8 = 0xF1;
/// Check refused: the package is for another product.
pub const NRC_PRODUCT: u8 = 0xF2;

/// The largest package: one 1 MiB slot.
pub const SLOT_SIZE: u64 = 1024 * 1024;
/// The most the plugin sends per `36` block: 1024 data bytes, plus the service and the
/// block counter.
pub const MAX_BLOCK_LENGTH: u32 = 1024 + 2;

/// The GX's wait for an answer (P2 server 50 ms, plus transmit queues and the bus-load
/// cap).
pub const P2_CLIENT: Duration = Duration::from_millis(150);
/// The GX's wait after a response-pending answer (P2* server 2000 ms, plus margin).
pub const P2_STAR_CLIENT: Duration = Duration::from_millis(2500);
/// Interval of the tester-present polls while the battery restarts.
pub const RESTART_POLL: Duration = Duration::from_millis(500);
/// Longest silence of the battery after the reset.
pub const RESTART_SILENCE_MAX: Duration = Duration::from_millis(10_000);

/// The declared limits the engine's watchdogs apply: an answer within P2* while
/// transferring and installing, 10 s of silence while restarting (the BMS takes 2 s).
pub const TIMEOUTS: DeclaredTimeouts = DeclaredTimeouts {
    transfer_response_ms: 3_000,
    install_response_ms: 3_000,
    verify_response_ms: 1_000,
    restart_silence_max_ms: 10_000,
    install_max_ms: 10_000,
};
