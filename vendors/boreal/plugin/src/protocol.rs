//! The numbers of `PROTOCOL.md`, as the plugin uses them.

use bmsfw_plugin_api::{CanId, CanIdRange, DeclaredTimeouts};
use bmsfw_protocols::canopen::{NodeId, ObjectAddress, SdoChannel};
use std::time::Duration;

/// The plugin's vendor id, as the allowlist names it.
pub const VENDOR_ID: &str = "com.boreal-batteries.taiga";
/// The plugin's name for people.
pub const PLUGIN_NAME: &str = "Boreal Taiga LFP bank";

/// The manufacturer name a Boreal bank sends in 0x35E.
pub const MANUFACTURER: &str = "BOREAL";

/// Product codes (0x35F bytes 0-1, 0x1018:02) of the Taiga family and their names.
pub const PRODUCTS: [(u16, &str); 2] = [(0xB205, "Taiga 5"), (0xB210, "Taiga 10")];

/// The name of a Boreal product code.
pub fn product_name(code: u16) -> Option<&'static str> {
    PRODUCTS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The CANopen vendor-id of Boreal nodes (0x1018:01).
pub const CANOPEN_VENDOR_ID: u32 = 0x00B0_4EA1;

/// Lowest node-id of a Boreal node (rotary switch position 0).
pub const FIRST_NODE: u8 = 1;
/// Highest node-id of a Boreal node (rotary switch position F).
pub const LAST_NODE: u8 = 16;

/// A CAN identifier known to be 11-bit (checked when compiling).
const fn std_id(raw: u16) -> CanId {
    match CanId::standard(raw) {
        Some(id) => id,
        None => panic!("not an 11-bit identifier"),
    }
}

/// SDO requests to nodes 1 to 16: 0x601 to 0x610.
pub const SDO_REQUESTS: (CanId, CanId) = (
    std_id(SdoChannel::REQUEST_BASE + FIRST_NODE as u16),
    std_id(SdoChannel::REQUEST_BASE + LAST_NODE as u16),
);
/// SDO responses of nodes 1 to 16: 0x581 to 0x590.
pub const SDO_RESPONSES: (CanId, CanId) = (
    std_id(SdoChannel::RESPONSE_BASE + FIRST_NODE as u16),
    std_id(SdoChannel::RESPONSE_BASE + LAST_NODE as u16),
);
/// COB-ID base of the heartbeat (NMT error control) of a node.
pub const HEARTBEAT_BASE: u16 = 0x700;
/// Heartbeats of nodes 1 to 16: 0x701 to 0x710.
pub const HEARTBEATS: (CanId, CanId) = (
    std_id(HEARTBEAT_BASE + FIRST_NODE as u16),
    std_id(HEARTBEAT_BASE + LAST_NODE as u16),
);
/// The BMS-Can frame with product code, bank firmware, speaker and node count.
pub const PRODUCT_INFO_ID: CanId = std_id(0x35F);

/// An inclusive range of two identifiers of one format.
pub fn range((first, last): (CanId, CanId)) -> CanIdRange {
    match CanIdRange::new(first, last) {
        Some(r) => r,
        None => CanIdRange::single(first),
    }
}

/// Heartbeat state: the node just booted (its boot-up message).
pub const NMT_BOOT_UP: u8 = 0x00;

/// The identity record: vendor-id.
pub const OBJ_VENDOR_ID: ObjectAddress = ObjectAddress::new(0x1018, 1);
/// The identity record: product code.
pub const OBJ_PRODUCT_CODE: ObjectAddress = ObjectAddress::new(0x1018, 2);
/// Manufacturer software version (VISIBLE_STRING `2.15`).
pub const OBJ_SOFTWARE_VERSION: ObjectAddress = ObjectAddress::new(0x100A, 0);
/// Bootloader version, 2 bytes BCD, major then minor (`01 20` is 1.20).
pub const OBJ_BOOTLOADER_VERSION: ObjectAddress = ObjectAddress::new(0x2F10, 1);
/// Bootloader capabilities (UNSIGNED8 bit field).
pub const OBJ_BOOTLOADER_CAPS: ObjectAddress = ObjectAddress::new(0x2F10, 2);
/// Boot state (UNSIGNED8): see `BOOT_*`.
pub const OBJ_BOOT_STATE: ObjectAddress = ObjectAddress::new(0x2F10, 3);

/// Capability bit: the bootloader takes a CiA 302-3 program download over CAN.
pub const CAP_PROGRAM_DOWNLOAD: u8 = 0x01;
/// Capability bit: SDO block transfer.
pub const CAP_BLOCK_TRANSFER: u8 = 0x02;
/// Capability bit: two firmware slots (the running firmware stays while the other is
/// written).
pub const CAP_DUAL_SLOT: u8 = 0x04;

/// Boot state: the active slot runs.
pub const BOOT_RUNNING: u8 = 0;
/// Boot state: a checked image waits for the restart.
pub const BOOT_ACTIVATION_PENDING: u8 = 1;
/// Boot state: the new image did not start; the previous one runs.
pub const BOOT_ROLLED_BACK: u8 = 2;

/// 0x1F57 error codes the bootloader reports after a download (manufacturer-specific
/// range 64..127 included).
pub mod flash_codes {
    /// The image's CRC-32 trailer does not match its content.
    pub const CRC: u8 = 3;
    /// The image's descriptor is missing or of an unknown version.
    pub const FORMAT: u8 = 2;
    /// The image is for another product.
    pub const WRONG_PRODUCT: u8 = 0x40;
    /// The image needs a newer bootloader.
    pub const BOOTLOADER_TOO_OLD: u8 = 0x41;
    /// The image's length disagrees with its descriptor, or exceeds the slot.
    pub const LENGTH: u8 = 0x42;
}

/// Lowest bootloader that takes updates over CAN, BCD `[major, minor]` (1.20).
pub const MIN_BOOTLOADER: [u8; 2] = [0x01, 0x20];

/// First address of the application (the slot's start).
pub const APP_START: u32 = 0x0801_0000;
/// Largest image: one slot, 960 KiB.
pub const MAX_IMAGE_LEN: u32 = 960 * 1024;
/// Where the image descriptor sits, from the start of the image.
pub const DESCRIPTOR_OFFSET: u32 = 0x200;
/// Bytes of the descriptor.
pub const DESCRIPTOR_LEN: u32 = 16;
/// Magic of the descriptor.
pub const DESCRIPTOR_MAGIC: [u8; 4] = *b"BRLF";
/// Descriptor version this plugin reads.
pub const DESCRIPTOR_VERSION: u8 = 1;
/// Bytes of the CRC-32 trailer at the end of the image.
pub const TRAILER_LEN: u32 = 4;
/// The byte gaps between records are filled with (erased flash).
pub const FILL: u8 = 0xFF;
/// Largest package file read.
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// Heartbeat period of a Boreal node.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(1000);
/// How long the plugin listens for heartbeats to find the bank's nodes (more than two
/// heartbeat periods).
pub const DISCOVERY_WINDOW: Duration = Duration::from_millis(2500);
/// The GX's wait for an SDO answer.
pub const SDO_TIMEOUT: Duration = Duration::from_millis(1000);
/// Attempts of a read before the node counts as silent.
pub const READ_ATTEMPTS: u8 = 3;
/// The flash status is read again after this while it reports busy.
pub const FLASH_POLL: Duration = Duration::from_millis(100);
/// Longest time the flash status may stay busy (a clear, a check).
pub const FLASH_BUSY_LIMIT: Duration = Duration::from_secs(10);
/// Interval of the boot-state polls while a node restarts.
pub const RESTART_POLL: Duration = Duration::from_millis(500);
/// A boot-state poll waits this long for its answer (the next one follows anyway).
pub const RESTART_POLL_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest silence of a node after its start command.
pub const RESTART_MAX: Duration = Duration::from_millis(10_000);
/// Longest wait, after the last node answers, for a 0x35F that agrees with the nodes.
pub const CROSS_CHECK_WINDOW: Duration = Duration::from_millis(3_500);

/// The declared limits: between two nodes the transfer stalls for a node's check,
/// restart (2 s) and the next node's clear (1.2 s); the watchdog allows four times
/// `transfer_response_ms`.
pub const TIMEOUTS: DeclaredTimeouts = DeclaredTimeouts {
    transfer_response_ms: 3_000,
    install_response_ms: 1_000,
    verify_response_ms: 3_000,
    restart_silence_max_ms: 10_000,
    install_max_ms: 5_000,
};

/// Vendor code: the bootloader cannot take this update over CAN.
pub const CODE_BOOTLOADER_TOO_OLD: u32 = 901;

/// The SDO channel of node `id`.
pub fn channel(node: NodeId) -> SdoChannel {
    SdoChannel::for_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_ranges_cover_nodes_1_to_16() {
        assert_eq!(SDO_REQUESTS.0.raw(), 0x601);
        assert_eq!(SDO_REQUESTS.1.raw(), 0x610);
        assert_eq!(SDO_RESPONSES.0.raw(), 0x581);
        assert_eq!(SDO_RESPONSES.1.raw(), 0x590);
        assert_eq!(HEARTBEATS.0.raw(), 0x701);
        assert_eq!(HEARTBEATS.1.raw(), 0x710);
        let node = NodeId::new(16).unwrap();
        assert!(range(SDO_REQUESTS).contains(channel(node).request));
        assert!(range(SDO_RESPONSES).contains(channel(node).response));
        assert!(!range(SDO_REQUESTS).contains(CanId::standard(0x611).unwrap()));
    }
}
