//! The numbers of `PROTOCOL.md`, as the plugin uses them.

use bmsfw_plugin_api::{CanId, DeclaredTimeouts};
use std::time::Duration;

/// The plugin's vendor id, as the allowlist names it.
pub const VENDOR_ID: &str = "com.aurora-energy.powercore";
/// The plugin's name for people.
pub const PLUGIN_NAME: &str = "Aurora PowerCore LFP";

/// The manufacturer name Aurora batteries send in 0x35E.
pub const MANUFACTURER: &str = "AURORA";

/// Product codes (0x35F bytes 0-1) of the PowerCore family and their names.
pub const PRODUCTS: [(u16, &str); 3] = [
    (0xA510, "PowerCore 5"),
    (0xA520, "PowerCore 10"),
    (0xA530, "PowerCore 15"),
];

/// The name of an Aurora product code.
pub fn product_name(code: u16) -> Option<&'static str> {
    PRODUCTS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Requests, GX to BMS (checked when compiling).
pub const REQUEST_ID: CanId = match CanId::standard(0x7E2) {
    Some(id) => id,
    None => panic!("0x7E2 is an 11-bit identifier"),
};
/// Responses, BMS to GX (checked when compiling).
pub const RESPONSE_ID: CanId = match CanId::standard(0x7EA) {
    Some(id) => id,
    None => panic!("0x7EA is an 11-bit identifier"),
};

/// ISO-TP padding byte.
pub const PADDING: u8 = 0xCC;

/// Bootloader version, `[major, minor]`.
pub const DID_BOOTLOADER_VERSION: u16 = 0xF180;
/// Product code, big-endian.
pub const DID_PRODUCT_CODE: u16 = 0xF187;
/// Running application version, `[major, minor]`.
pub const DID_APPLICATION_VERSION: u16 = 0xF195;
/// Boot state, `[active slot, state]`.
pub const DID_BOOT_STATE: u16 = 0xF1A0;

/// Boot state: the active slot runs.
pub const BOOT_RUNNING: u8 = 0x00;
/// Boot state: a verified image waits for the reset.
pub const BOOT_ACTIVATION_PENDING: u8 = 0x01;
/// Boot state: the new image did not start; the previous one runs.
pub const BOOT_ROLLED_BACK: u8 = 0x02;

/// Check refused: CRC-32 of the received image.
pub const NRC_IMAGE_CRC: u8 = 0xF0;
/// Check refused: SHA-256 of the received image.
pub const NRC_IMAGE_SHA: u8 = 0xF1;
/// Check refused: header or length of the received package.
pub const NRC_HEADER: u8 = 0xF2;
/// Check refused: the package is for another product.
pub const NRC_PRODUCT: u8 = 0xF3;

/// Lowest bootloader that takes updates over CAN.
pub const MIN_BOOTLOADER: [u8; 2] = [2, 0];
/// Lowest application firmware that answers UDS on CAN (and so can be updated remotely).
pub const MIN_UPDATABLE_FIRMWARE: [u8; 2] = [2, 0];

/// The largest package: one 4 MiB slot.
pub const SLOT_SIZE: u64 = 4 * 1024 * 1024;
/// maxNumberOfBlockLength the BMS announces, and the most the plugin sends per block.
pub const MAX_BLOCK_LENGTH: u32 = 4096 + 2;
/// Shortest block the plugin shrinks to on a lossy bus.
pub const MIN_BLOCK_DATA: usize = 128;

/// The GX's wait for an answer (P2 server 50 ms, plus transmit queues and the bus-load
/// cap).
pub const P2_CLIENT: Duration = Duration::from_millis(150);
/// The GX's wait after a response-pending answer (P2* server 5000 ms, plus margin).
pub const P2_STAR_CLIENT: Duration = Duration::from_millis(6000);
/// Interval of the boot-state polls while the battery restarts.
pub const RESTART_POLL: Duration = Duration::from_millis(500);
/// Longest silence of the battery after the reset.
pub const RESTART_SILENCE_MAX: Duration = Duration::from_millis(15_000);
/// Repeats of `11 01` when the battery answers "activation pending" after the reset.
pub const MAX_RESET_REPEATS: u8 = 3;

/// The declared limits: the erase of a full 4 MiB slot (64 blocks of 150 ms) bounds the
/// wait while transferring; checking a full slot takes about 2.1 s; restarting 3 s, 6 s
/// when the bootloader rolls back.
pub const TIMEOUTS: DeclaredTimeouts = DeclaredTimeouts {
    transfer_response_ms: 12_000,
    install_response_ms: 6_000,
    verify_response_ms: 1_000,
    restart_silence_max_ms: 15_000,
    install_max_ms: 10_000,
};

/// Vendor code: the bootloader cannot take this update over CAN.
pub const CODE_BOOTLOADER_TOO_OLD: u32 = 901;
