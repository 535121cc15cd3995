//! The numbers of `PROTOCOL.md`, as the plugin uses them.

use bmsfw_plugin_api::{CanId, DeclaredTimeouts};
use std::time::Duration;

/// The plugin's vendor id, as the allowlist names it.
pub const VENDOR_ID: &str = "com.coral-cells.reefstack";
/// The plugin's name for people.
pub const PLUGIN_NAME: &str = "Coral ReefStack";

/// The manufacturer name Coral masters send in 0x35E.
pub const MANUFACTURER: &str = "CORAL";

/// Product codes (0x35F bytes 0-1) of the ReefStack family and their names.
pub const PRODUCTS: [(u16, &str); 2] = [(0xC0A1, "ReefStack 48"), (0xC0A2, "ReefStack 48 XL")];

/// The name of a Coral product code.
pub fn product_name(code: u16) -> Option<&'static str> {
    PRODUCTS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

const fn extended(id: u32) -> CanId {
    match CanId::extended(id) {
        Some(id) => id,
        None => panic!("not a 29-bit identifier"),
    }
}

/// Commands, GX to master.
pub const COMMAND_ID: CanId = extended(0x1B00_C0A1);
/// Replies and acknowledgements, master to GX.
pub const REPLY_ID: CanId = extended(0x1B00_C0A2);
/// Data frame 0; frame `s` is sent on `DATA_BASE + s`.
pub const DATA_BASE: u32 = 0x1C00_0000;
/// The highest sequence number a data identifier carries.
pub const MAX_SEQUENCE: u32 = 0xF_FFFF;
/// The first data identifier.
pub const DATA_FIRST: CanId = extended(DATA_BASE);
/// The last data identifier.
pub const DATA_LAST: CanId = extended(DATA_BASE + MAX_SEQUENCE);

/// The data identifier of frame `seq` (`seq` at most [`MAX_SEQUENCE`]).
pub fn data_id(seq: u32) -> Option<CanId> {
    if seq > MAX_SEQUENCE {
        return None;
    }
    CanId::extended(DATA_BASE + seq)
}

/// Payload bytes of a data frame.
pub const FRAME_PAYLOAD: u64 = 8;
/// The largest bundle: 2^20 frames of 8 bytes.
pub const MAX_BUNDLE_LEN: u64 = (MAX_SEQUENCE as u64 + 1) * FRAME_PAYLOAD;
/// The largest master image.
pub const MAX_MASTER_IMAGE: u64 = 2 * 1024 * 1024;
/// The largest module image.
pub const MAX_MODULE_IMAGE: u64 = 512 * 1024;
/// The most modules behind one master.
pub const MAX_MODULES: u8 = 16;
/// The most images in a bundle: the master's and one per module hardware revision.
pub const MAX_IMAGES: u8 = 17;

/// The protocol revision this plugin speaks.
pub const PROTOCOL_REVISION: u8 = 1;
/// Lowest master firmware (major, minor) with the update service on CAN.
pub const MIN_UPDATABLE_FIRMWARE: [u8; 2] = [1, 0x04];

/// Command opcodes (byte 0 of a command).
pub mod op {
    /// Product, firmware and number of modules.
    pub const HELLO: u8 = 0x01;
    /// One entry per module, the master first.
    pub const MODULES: u8 = 0x02;
    /// Erase and start a transfer.
    pub const BEGIN: u8 = 0x03;
    /// Resume a transfer by its token.
    pub const RESUME: u8 = 0x04;
    /// Every frame is written: check the bundle.
    pub const END: u8 = 0x05;
    /// Install the master's image and update the modules.
    pub const INSTALL: u8 = 0x06;
    /// Restart into the new image.
    pub const RESTART: u8 = 0x07;
    /// Drop the transfer or stop the update.
    pub const ABORT: u8 = 0x08;
    /// Ask for an acknowledgement now.
    pub const ACK_REQUEST: u8 = 0x09;
}

/// Reply kinds (byte 0 of a reply).
pub mod reply {
    /// Answer to HELLO.
    pub const HELLO: u8 = 0x81;
    /// One module entry.
    pub const MODULE: u8 = 0x82;
    /// Answer to BEGIN.
    pub const BEGIN: u8 = 0x83;
    /// Answer to RESUME.
    pub const RESUME: u8 = 0x84;
    /// Answer to END.
    pub const END: u8 = 0x85;
    /// Answer to INSTALL.
    pub const INSTALL: u8 = 0x86;
    /// Answer to RESTART.
    pub const RESTART: u8 = 0x87;
    /// Answer to ABORT.
    pub const ABORT: u8 = 0x88;
    /// Unsolicited acknowledgement.
    pub const ACK: u8 = 0xA0;
    /// Missing frames.
    pub const NACK: u8 = 0xA1;
    /// Acknowledgement answering ACK-REQUEST.
    pub const ACK_ASKED: u8 = 0xA2;
    /// Still working on a command.
    pub const BUSY: u8 = 0xB0;
    /// A command refused.
    pub const REFUSED: u8 = 0xEE;
}

/// Master states (entry 0 of MODULES).
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
    /// The update failed (the entry's error says why).
    pub const FAILED: u8 = 0x07;
}

/// Error codes of the master (`PROTOCOL.md` section 9).
pub mod code {
    /// Unknown command or wrong length.
    pub const UNKNOWN_COMMAND: u8 = 0x10;
    /// A command out of sequence.
    pub const OUT_OF_SEQUENCE: u8 = 0x11;
    /// BEGIN length 0 or too large.
    pub const BAD_LENGTH: u8 = 0x12;
    /// BEGIN while an earlier bundle is being installed.
    pub const BUSY_INSTALLING: u8 = 0x13;
    /// INSTALL names a module the pack does not have.
    pub const NO_SUCH_MODULE: u8 = 0x14;
    /// Bundle layout invalid.
    pub const LAYOUT: u8 = 0x20;
    /// Signature does not verify, or unknown key.
    pub const SIGNATURE: u8 = 0x21;
    /// An image does not match its SHA-256.
    pub const IMAGE_HASH: u8 = 0x22;
    /// Bundle for another product.
    pub const PRODUCT: u8 = 0x23;
    /// No image for a module's hardware revision.
    pub const MODULE_REVISION: u8 = 0x24;
    /// The master image is for another hardware revision.
    pub const MASTER_REVISION: u8 = 0x25;
    /// Module: no answer on the internal bus.
    pub const MODULE_SILENT: u8 = 0x30;
    /// Module: it refused its image.
    pub const MODULE_REFUSED: u8 = 0x31;
    /// Module: writing its flash failed.
    pub const MODULE_FLASH: u8 = 0x32;
    /// Module: it did not restart into the new version.
    pub const MODULE_NO_RESTART: u8 = 0x33;
    /// Master: a module failed, its own image is discarded.
    pub const MODULE_FAILED: u8 = 0x40;
    /// Master: writing its own image failed.
    pub const MASTER_FLASH: u8 = 0x41;
}

/// The window the plugin keeps at most, whatever the master announces.
pub const MAX_WINDOW: u32 = 4096;

/// The GX's wait for a command's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);
/// The wait after a busy frame.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Attempts of a command before the session fails.
pub const ATTEMPTS: u8 = 3;
/// First ACK-REQUEST after this long without an acknowledgement.
pub const ACK_SILENCE: Duration = Duration::from_millis(100);
/// The longest interval between ACK-REQUESTs.
pub const ACK_SILENCE_MAX: Duration = Duration::from_millis(1600);
/// The transfer gives up after this long without any answer.
pub const TRANSFER_SILENCE_MAX: Duration = Duration::from_secs(20);
/// A frame re-sent less than this long ago is not re-sent again for the same report.
pub const RESEND_GUARD: Duration = Duration::from_millis(50);
/// Interval of the module polls while installing.
pub const INSTALL_POLL: Duration = Duration::from_millis(500);
/// Module polls in a row without an answer before the session fails.
pub const MAX_MISSED_POLLS: u8 = 6;
/// Interval of the HELLO polls while the master restarts.
pub const RESTART_POLL: Duration = Duration::from_millis(500);
/// Longest silence of the master after RESTART.
pub const RESTART_SILENCE_MAX: Duration = Duration::from_millis(15_000);

/// The declared limits (`PROTOCOL.md` section 12).
pub const TIMEOUTS: DeclaredTimeouts = DeclaredTimeouts {
    transfer_response_ms: 6_000,
    install_response_ms: 2_000,
    verify_response_ms: 1_000,
    restart_silence_max_ms: 15_000,
    install_max_ms: 900_000,
};

/// Vendor code: the master speaks another protocol revision.
pub const CODE_NOT_UPDATABLE: u32 = 901;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_sit_above_bms_can_and_acks_beat_data() {
        assert_eq!(COMMAND_ID.raw() >> 18, 0x6C0);
        assert_eq!(DATA_BASE >> 18, 0x700);
        assert!(REPLY_ID.raw() < DATA_FIRST.raw());
        assert_eq!(data_id(0), Some(DATA_FIRST));
        assert_eq!(data_id(MAX_SEQUENCE), Some(DATA_LAST));
        assert_eq!(data_id(MAX_SEQUENCE + 1), None);
        assert_eq!(MAX_BUNDLE_LEN, 8 * 1024 * 1024);
    }
}
