//! The numbers of the Coral protocol as the master implements them (`PROTOCOL.md`).
//!
//! The plugin has its own copy, written from the same document: the two cross-check each
//! other in the end-to-end tests.

use bmsfw_plugin_api::CanId;
use std::time::Duration;

/// The vendor string of site descriptions (`vendor = "coral"`).
pub const VENDOR: &str = "coral";
/// The manufacturer name the master sends in 0x35E.
pub const MANUFACTURER: &str = "CORAL";
/// Product codes (0x35F bytes 0-1) of the ReefStack family.
pub const PRODUCTS: [(u16, &str); 2] = [(0xC0A1, "ReefStack 48"), (0xC0A2, "ReefStack 48 XL")];

const fn extended(id: u32) -> CanId {
    match CanId::extended(id) {
        Some(id) => id,
        None => panic!("not a 29-bit identifier"),
    }
}

/// Commands, GX to master.
pub const COMMAND_ID: CanId = extended(0x1B00_C0A1);
/// Replies, master to GX.
pub const REPLY_ID: CanId = extended(0x1B00_C0A2);
/// The identifier of data frame 0.
pub const DATA_BASE: u32 = 0x1C00_0000;
/// Mask of the sequence number in a data identifier.
pub const SEQUENCE_MASK: u32 = 0xF_FFFF;

/// The protocol revision the master speaks.
pub const PROTOCOL_REVISION: u8 = 1;
/// The transfer window the master announces, in frames.
pub const WINDOW: u16 = 1024;
/// Frames in a flash page.
pub const PAGE_FRAMES: u32 = 32;
/// Written frames between two unsolicited acknowledgements.
pub const ACK_EVERY: u32 = 128;
/// Gaps reported after an asked acknowledgement, at most.
pub const MAX_REPORTED_GAPS: usize = 8;
/// The staging area: the largest bundle.
pub const STAGING_SIZE: u64 = 8 * 1024 * 1024;
/// Bytes of an erase sector.
pub const ERASE_SECTOR: u64 = 64 * 1024;
/// The most modules behind one master.
pub const MAX_MODULES: usize = 16;
/// Interval of busy frames while erasing or checking.
pub const BUSY_INTERVAL: Duration = Duration::from_millis(500);

/// Master states (MODULES entry 0).
pub mod master {
    /// No update under way.
    pub const IDLE: u8 = 0x00;
    /// Receiving a transfer.
    pub const RECEIVING: u8 = 0x01;
    /// Checking the bundle.
    pub const CHECKING: u8 = 0x02;
    /// The bundle passed its check.
    pub const READY: u8 = 0x03;
    /// Copying its own image.
    pub const INSTALLING: u8 = 0x04;
    /// Updating the modules.
    pub const UPDATING_MODULES: u8 = 0x05;
    /// Its new image waits for RESTART.
    pub const READY_TO_RESTART: u8 = 0x06;
    /// The update failed.
    pub const FAILED: u8 = 0x07;
}

/// Module states (MODULES entries 1 to N), the numbers of the plugin contract's states.
pub mod module {
    /// Not updated yet.
    pub const PENDING: u8 = 0;
    /// Receiving its image.
    pub const UPDATING: u8 = 1;
    /// Runs its new image.
    pub const DONE: u8 = 2;
    /// Its update failed.
    pub const FAILED: u8 = 3;
    /// Left alone.
    pub const SKIPPED: u8 = 4;
}

/// Error codes (`PROTOCOL.md` section 9).
pub mod code {
    /// Unknown command or wrong length.
    pub const UNKNOWN_COMMAND: u8 = 0x10;
    /// Out of sequence.
    pub const OUT_OF_SEQUENCE: u8 = 0x11;
    /// BEGIN length 0 or too large.
    pub const BAD_LENGTH: u8 = 0x12;
    /// BEGIN while installing an earlier bundle.
    pub const BUSY_INSTALLING: u8 = 0x13;
    /// INSTALL mask names a module the pack does not have.
    pub const NO_SUCH_MODULE: u8 = 0x14;
    /// Bundle layout invalid.
    pub const LAYOUT: u8 = 0x20;
    /// Signature invalid or unknown key.
    pub const SIGNATURE: u8 = 0x21;
    /// An image does not match its SHA-256.
    pub const IMAGE_HASH: u8 = 0x22;
    /// Another product.
    pub const PRODUCT: u8 = 0x23;
    /// No image for a module's hardware revision.
    pub const MODULE_REVISION: u8 = 0x24;
    /// Master image for another hardware revision.
    pub const MASTER_REVISION: u8 = 0x25;
    /// Module: no answer on the internal bus.
    pub const MODULE_SILENT: u8 = 0x30;
    /// Module: refused its image.
    pub const MODULE_REFUSED: u8 = 0x31;
    /// Module: flash write failed.
    pub const MODULE_FLASH: u8 = 0x32;
    /// Module: did not restart into the new version.
    pub const MODULE_NO_RESTART: u8 = 0x33;
    /// Master: a module failed.
    pub const MODULE_FAILED: u8 = 0x40;
    /// Master: writing its own image failed.
    pub const MASTER_FLASH: u8 = 0x41;
}

/// How long the master and its modules take (`PROTOCOL.md` section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoralTiming {
    /// Erasing one 64 KiB sector of the staging area.
    pub erase_per_sector: Duration,
    /// Writing one 256-byte page.
    pub page_write: Duration,
    /// Checking one KiB of the bundle.
    pub check_per_kib: Duration,
    /// Verifying the signature.
    pub signature: Duration,
    /// Copying one KiB of the master's image.
    pub install_per_kib: Duration,
    /// Erasing 16 KiB of a module.
    pub module_erase_per_16k: Duration,
    /// The internal bus's payload rate, bytes per second.
    pub internal_bus_bytes_per_s: u32,
    /// A module's check and restart.
    pub module_restart: Duration,
    /// The master's restart.
    pub restart: Duration,
}

impl Default for CoralTiming {
    fn default() -> CoralTiming {
        CoralTiming {
            erase_per_sector: Duration::from_millis(40),
            page_write: Duration::from_millis(1),
            check_per_kib: Duration::from_micros(250),
            signature: Duration::from_millis(30),
            install_per_kib: Duration::from_micros(500),
            module_erase_per_16k: Duration::from_millis(50),
            internal_bus_bytes_per_s: 16_000,
            module_restart: Duration::from_millis(1500),
            restart: Duration::from_millis(3000),
        }
    }
}

/// `per` for each KiB of `len` bytes, in proportion.
fn per_kib(per: Duration, len: u64) -> Duration {
    let nanos = per.as_nanos().saturating_mul(u128::from(len)) / 1024;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl CoralTiming {
    /// Erasing the sectors that hold `len` bytes (at least one).
    pub fn erase(&self, len: u64) -> Duration {
        let sectors = len.div_ceil(ERASE_SECTOR).max(1);
        self.erase_per_sector * u32::try_from(sectors).unwrap_or(u32::MAX)
    }

    /// Checking a bundle of `len` bytes.
    pub fn check(&self, len: u64) -> Duration {
        per_kib(self.check_per_kib, len) + self.signature
    }

    /// The master copying its image of `len` bytes.
    pub fn install(&self, len: u64) -> Duration {
        per_kib(self.install_per_kib, len)
    }

    /// Updating one module with an image of `len` bytes: erase, transfer over the internal
    /// bus, check and restart.
    pub fn module(&self, len: u64) -> Duration {
        let erase =
            self.module_erase_per_16k * u32::try_from(len.div_ceil(16 * 1024)).unwrap_or(u32::MAX);
        let rate = u64::from(self.internal_bus_bytes_per_s.max(1));
        let transfer = Duration::from_micros(len.saturating_mul(1_000_000) / rate);
        erase + transfer + self.module_restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_scale_as_protocol_md_says() {
        let t = CoralTiming::default();
        assert_eq!(t.erase(1), Duration::from_millis(40));
        assert_eq!(t.erase(STAGING_SIZE), Duration::from_millis(5120));
        assert_eq!(t.check(1024 * 1024), Duration::from_millis(256 + 30));
        assert_eq!(t.install(1024 * 1024), Duration::from_millis(512));
        // 64 KiB: 4 x 50 ms erase, 4.096 s on the internal bus, 1.5 s check and restart.
        assert_eq!(
            t.module(64 * 1024),
            Duration::from_millis(200 + 4096 + 1500)
        );
        assert_eq!(COMMAND_ID.raw(), 0x1B00_C0A1);
        assert!(REPLY_ID.raw() < DATA_BASE);
    }
}
