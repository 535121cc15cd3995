//! The numbers of the Aurora protocol as the BMS implements them (`PROTOCOL.md`).
//!
//! The plugin has its own copy, written from the same document: the two cross-check
//! each other in the end-to-end tests.

use bmsfw_plugin_api::CanId;
use bmsfw_protocols::uds::Nrc;
use std::time::Duration;

/// The vendor string of site descriptions (`vendor = "aurora"`).
pub const VENDOR: &str = "aurora";

/// The manufacturer name the BMS sends in 0x35E.
pub const MANUFACTURER: &str = "AURORA";

/// Product codes (0x35F bytes 0-1) of the PowerCore family.
pub const PRODUCTS: [(u16, &str); 3] = [
    (0xA510, "PowerCore 5"),
    (0xA520, "PowerCore 10"),
    (0xA530, "PowerCore 15"),
];

/// 11-bit identifier of requests, GX to BMS.
pub const REQUEST_ID: u16 = 0x7E2;
/// 11-bit identifier of responses, BMS to GX.
pub const RESPONSE_ID: u16 = 0x7EA;

/// [`REQUEST_ID`] as a [`CanId`] (checked when compiling).
pub const REQUEST_CAN_ID: CanId = match CanId::standard(REQUEST_ID) {
    Some(id) => id,
    None => panic!("the request identifier is not an 11-bit identifier"),
};
/// [`RESPONSE_ID`] as a [`CanId`] (checked when compiling).
pub const RESPONSE_CAN_ID: CanId = match CanId::standard(RESPONSE_ID) {
    Some(id) => id,
    None => panic!("the response identifier is not an 11-bit identifier"),
};

/// The byte ISO-TP frames are padded with.
pub const PADDING: u8 = 0xCC;

/// Data identifier: bootloader version, `[major, minor]`.
pub const DID_BOOTLOADER_VERSION: u16 = 0xF180;
/// Data identifier: product code, 2 bytes big-endian.
pub const DID_PRODUCT_CODE: u16 = 0xF187;
/// Data identifier: version of the running application, `[major, minor]`.
pub const DID_APPLICATION_VERSION: u16 = 0xF195;
/// Data identifier: boot state, `[active slot, state]`.
pub const DID_BOOT_STATE: u16 = 0xF1A0;

/// Boot state: the active slot runs.
pub const BOOT_RUNNING: u8 = 0x00;
/// Boot state: a verified image is activated and waits for the reset.
pub const BOOT_ACTIVATION_PENDING: u8 = 0x01;
/// Boot state: the last activated image did not start; the previous one runs again.
pub const BOOT_ROLLED_BACK: u8 = 0x02;

/// Security-access level of programming (`27 01` / `27 02`).
pub const SECURITY_LEVEL: u8 = 0x01;
/// Bytes of a seed and of a key.
pub const SEED_LEN: usize = 8;

/// The erase routine (`31 01 FF00 <length>`).
pub const ERASE_ROUTINE: u16 = 0xFF00;
/// The check-and-activate routine (`31 01 FF01`).
pub const CHECK_ROUTINE: u16 = 0xFF01;

/// Check refused: the image's CRC-32 does not match the header.
pub const NRC_IMAGE_CRC: Nrc = Nrc::Other(0xF0);
/// Check refused: the image's SHA-256 does not match the header.
pub const NRC_IMAGE_SHA: Nrc = Nrc::Other(0xF1);
/// Check refused: the header is not a valid version-1 header or the length is wrong.
pub const NRC_HEADER: Nrc = Nrc::Other(0xF2);
/// Check refused: the package is for another product.
pub const NRC_PRODUCT: Nrc = Nrc::Other(0xF3);

/// Size of one firmware slot: the largest package.
pub const SLOT_SIZE: u64 = 4 * 1024 * 1024;
/// Bytes of a 64 KiB erase block.
pub const ERASE_BLOCK: u64 = 64 * 1024;
/// maxNumberOfBlockLength announced to `34`: 4096 data bytes per `36`.
pub const MAX_BLOCK_LENGTH: u64 = 4096 + 2;

/// Lowest bootloader version that takes updates over CAN.
pub const MIN_BOOTLOADER: [u8; 2] = [2, 0];

/// How long the BMS takes for its work (the times of `PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuroraTiming {
    /// Erasing one 64 KiB block of the inactive slot.
    pub erase_per_block: Duration,
    /// Writing one KiB (a block's response follows its write).
    pub write_per_kib: Duration,
    /// Reading back and checking one KiB of the package (CRC-32 and SHA-256).
    pub verify_per_kib: Duration,
    /// Writing the boot record that activates a verified image.
    pub activation: Duration,
    /// From the reset to the first telemetry frame of the new firmware.
    pub restart: Duration,
    /// Further silence when the new firmware does not start and the old one is booted.
    pub rollback: Duration,
    /// Silence after which a programming session falls back to the default session.
    pub s3: Duration,
}

impl Default for AuroraTiming {
    fn default() -> AuroraTiming {
        AuroraTiming {
            erase_per_block: Duration::from_millis(150),
            write_per_kib: Duration::from_micros(500),
            verify_per_kib: Duration::from_micros(500),
            activation: Duration::from_millis(50),
            restart: Duration::from_millis(3000),
            rollback: Duration::from_millis(3000),
            s3: Duration::from_millis(5000),
        }
    }
}

impl AuroraTiming {
    /// Erasing the blocks that hold `len` bytes (at least one).
    pub fn erase(&self, len: u64) -> Duration {
        let blocks = len.div_ceil(ERASE_BLOCK).max(1);
        self.erase_per_block * u32::try_from(blocks).unwrap_or(u32::MAX)
    }

    /// Writing `len` bytes.
    pub fn write(&self, len: usize) -> Duration {
        per_kib(self.write_per_kib, len as u64)
    }

    /// Checking a package of `len` bytes.
    pub fn verify(&self, len: u64) -> Duration {
        per_kib(self.verify_per_kib, len)
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
        let t = AuroraTiming::default();
        assert_eq!(t.erase(1), Duration::from_millis(150));
        assert_eq!(t.erase(1024 * 1024), Duration::from_millis(2400));
        assert_eq!(t.erase(SLOT_SIZE), Duration::from_millis(9600));
        assert_eq!(t.write(4096), Duration::from_millis(2));
        assert_eq!(t.verify(1024 * 1024), Duration::from_millis(512));
        assert_eq!(REQUEST_CAN_ID.raw(), 0x7E2);
        assert_eq!(RESPONSE_CAN_ID.raw(), 0x7EA);
    }
}
