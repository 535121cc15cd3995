//! The numbers of `PROTOCOL.md` as the BMS implements them. The plugin has its own copy,
//! written from the same document.

use bmsfw_plugin_api::CanId;
use bmsfw_protocols::uds::Nrc;
use std::time::Duration;

/// The manufacturer name the BMS sends in 0x35E.
pub const MANUFACTURER: &str = "ACME";

/// 11-bit identifier of requests, GX to BMS.
pub const REQUEST_ID: u16 = 0x7E5;
/// 11-bit identifier of responses, BMS to GX.
pub const RESPONSE_ID: u16 = 0x7ED;

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
pub const PADDING: u8 = 0xAA;

/// Data identifier: version of the running application, `[major, minor]`.
pub const DID_APPLICATION_VERSION: u16 = 0xF195;

/// Bytes of a seed and of a key.
pub const SEED_LEN: usize = 4;
/// Level 1's secret (the plugin's `key::SECRET`).
pub const SECRET: &[u8; 32] = b"acme template secret: change me!";

/// The erase routine (`31 01 FF00 <length>`).
pub const ERASE_ROUTINE: u16 = 0xFF00;
/// The check-and-activate routine (`31 01 FF01`).
pub const CHECK_ROUTINE: u16 = 0xFF01;

/// Check refused: the image's CRC-32 does not match the header.
pub const NRC_IMAGE_CRC: Nrc = Nrc::Other(0xF0);
/// Check refused: the header is damaged or the length is wrong.
pub const NRC_HEADER: Nrc = Nrc::Other(0xF1);
/// Check refused: the package is for another product.
pub const NRC_PRODUCT: Nrc = Nrc::Other(0xF2);

/// Size of one firmware slot: the largest package.
pub const SLOT_SIZE: u64 = 1024 * 1024;
/// maxNumberOfBlockLength announced to `34`: 1024 data bytes per `36`.
pub const MAX_BLOCK_LENGTH: u64 = 1024 + 2;

/// How long the BMS takes for its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateTiming {
    /// Erasing the inactive slot, whatever its size.
    pub erase: Duration,
    /// Writing one 1 KiB block.
    pub write_per_block: Duration,
    /// Checking the received package and writing the boot record.
    pub check: Duration,
    /// From the reset to the first telemetry frame (and answer) of the new firmware.
    pub restart: Duration,
}

impl Default for TemplateTiming {
    fn default() -> TemplateTiming {
        TemplateTiming {
            erase: Duration::from_millis(200),
            write_per_block: Duration::from_millis(1),
            check: Duration::from_millis(100),
            restart: Duration::from_millis(2000),
        }
    }
}
