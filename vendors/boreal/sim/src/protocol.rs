//! The numbers of the Boreal protocol as the bank implements them (`PROTOCOL.md`).
//!
//! The plugin has its own copy, written from the same document: the two cross-check each
//! other in the end-to-end tests.

use bmsfw_protocols::canopen::ObjectAddress;
use std::time::Duration;

/// The vendor string of site descriptions (`vendor = "boreal"`).
pub const VENDOR: &str = "boreal";

/// The manufacturer name the speaker sends in 0x35E.
pub const MANUFACTURER: &str = "BOREAL";

/// Product codes of the Taiga family.
pub const PRODUCTS: [(u16, &str); 2] = [(0xB205, "Taiga 5"), (0xB210, "Taiga 10")];

/// The CANopen vendor-id of Boreal nodes (0x1018:01).
pub const CANOPEN_VENDOR_ID: u32 = 0x00B0_4EA1;

/// Highest node-id (rotary switch position F).
pub const MAX_NODE: u8 = 16;

/// COB-ID base of heartbeats.
pub const HEARTBEAT_BASE: u16 = 0x700;
/// Heartbeat state: boot-up.
pub const NMT_BOOT_UP: u8 = 0x00;
/// Heartbeat state: operational.
pub const NMT_OPERATIONAL: u8 = 0x05;

/// 0x1018:01 vendor-id.
pub const OBJ_VENDOR_ID: ObjectAddress = ObjectAddress::new(0x1018, 1);
/// 0x1018:02 product code.
pub const OBJ_PRODUCT_CODE: ObjectAddress = ObjectAddress::new(0x1018, 2);
/// 0x1018:03 hardware revision.
pub const OBJ_REVISION: ObjectAddress = ObjectAddress::new(0x1018, 3);
/// 0x1018:04 serial number.
pub const OBJ_SERIAL: ObjectAddress = ObjectAddress::new(0x1018, 4);
/// 0x100A software version text.
pub const OBJ_SOFTWARE_VERSION: ObjectAddress = ObjectAddress::new(0x100A, 0);
/// 0x2F10:01 bootloader version, BCD.
pub const OBJ_BOOTLOADER_VERSION: ObjectAddress = ObjectAddress::new(0x2F10, 1);
/// 0x2F10:02 bootloader capabilities.
pub const OBJ_BOOTLOADER_CAPS: ObjectAddress = ObjectAddress::new(0x2F10, 2);
/// 0x2F10:03 boot state.
pub const OBJ_BOOT_STATE: ObjectAddress = ObjectAddress::new(0x2F10, 3);
/// The program number: sub-index of 0x1F50, 0x1F51, 0x1F56, 0x1F57.
pub const PROGRAM: u8 = 1;

/// Capabilities of a current bootloader: program download, block transfer, two slots.
pub const CAPS_CURRENT: u8 = 0x07;

/// Boot state: running.
pub const BOOT_RUNNING: u8 = 0;
/// Boot state: a checked image waits for the restart.
pub const BOOT_ACTIVATION_PENDING: u8 = 1;
/// Boot state: the new image did not start; the previous one runs.
pub const BOOT_ROLLED_BACK: u8 = 2;

/// Flash status codes after a download (0x1F57 bits 1-7).
pub mod flash_codes {
    /// No error.
    pub const OK: u8 = 0;
    /// No valid program: the slot was cleared.
    pub const NO_VALID_PROGRAM: u8 = 1;
    /// No descriptor, or one of an unknown version.
    pub const FORMAT: u8 = 2;
    /// The CRC-32 trailer does not match.
    pub const CRC: u8 = 3;
    /// Another product's image.
    pub const WRONG_PRODUCT: u8 = 0x40;
    /// The image needs a newer bootloader.
    pub const BOOTLOADER_TOO_OLD: u8 = 0x41;
    /// The length disagrees with the descriptor or exceeds the slot.
    pub const LENGTH: u8 = 0x42;
}

/// First address of the application area.
pub const APP_START: u32 = 0x0801_0000;
/// One slot: the largest image.
pub const SLOT_SIZE: u32 = 960 * 1024;
/// Offset of the descriptor in the image.
pub const DESCRIPTOR_OFFSET: usize = 0x200;
/// Bytes of the descriptor.
pub const DESCRIPTOR_LEN: usize = 16;
/// Magic of the descriptor.
pub const DESCRIPTOR_MAGIC: [u8; 4] = *b"BRLF";
/// Bytes of the CRC-32 trailer.
pub const TRAILER_LEN: usize = 4;
/// Gaps read as erased flash.
pub const FILL: u8 = 0xFF;

/// How long a node takes for its work (the times of `PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorealTiming {
    /// Clearing the inactive slot.
    pub clear: Duration,
    /// Writing one KiB.
    pub write_per_kib: Duration,
    /// Checking one KiB of the received image.
    pub check_per_kib: Duration,
    /// Fixed part of the check.
    pub check_fixed: Duration,
    /// From the start command's confirmation to the boot-up heartbeat.
    pub restart: Duration,
    /// Further silence when the new firmware does not start.
    pub rollback: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
}

impl Default for BorealTiming {
    fn default() -> BorealTiming {
        BorealTiming {
            clear: Duration::from_millis(1200),
            write_per_kib: Duration::from_micros(500),
            check_per_kib: Duration::from_micros(250),
            check_fixed: Duration::from_millis(30),
            restart: Duration::from_millis(2000),
            rollback: Duration::from_millis(2000),
            heartbeat: Duration::from_millis(1000),
        }
    }
}

impl BorealTiming {
    /// Writing `len` bytes.
    pub fn write(&self, len: usize) -> Duration {
        per_kib(self.write_per_kib, len as u64)
    }

    /// Checking an image of `len` bytes.
    pub fn check(&self, len: usize) -> Duration {
        self.check_fixed + per_kib(self.check_per_kib, len as u64)
    }
}

/// `per` for each KiB of `len` bytes, in proportion.
fn per_kib(per: Duration, len: u64) -> Duration {
    let nanos = per.as_nanos().saturating_mul(u128::from(len)) / 1024;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_scale_with_the_sizes_of_protocol_md() {
        let t = BorealTiming::default();
        assert_eq!(t.write(1024), Duration::from_micros(500));
        assert_eq!(t.write(889), Duration::from_nanos(434_082));
        assert_eq!(t.check(SLOT_SIZE as usize), Duration::from_millis(30 + 240));
    }
}
