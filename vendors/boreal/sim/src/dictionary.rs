//! A node's object dictionary: what its SDO server (the one of `bmsfw-protocols`) reads
//! and writes, with the time each step of the program download takes.

use crate::flash::{Flash, boot_state_byte};
use crate::package::ImageHeader;
use crate::protocol::{
    BorealTiming, CANOPEN_VENDOR_ID, OBJ_BOOT_STATE, OBJ_BOOTLOADER_CAPS, OBJ_BOOTLOADER_VERSION,
    OBJ_PRODUCT_CODE, OBJ_REVISION, OBJ_SERIAL, OBJ_SOFTWARE_VERSION, OBJ_VENDOR_ID, PROGRAM,
    SLOT_SIZE, flash_codes,
};
use bmsfw_plugin_api::Timestamp;
use bmsfw_protocols::canopen::{
    AbortCode, FlashStatus, FlashStatusCode, ObjectAddress, ObjectDictionary, ProgramControl,
    objects,
};
use bmsfw_protocols::checksum::crc32;
use std::time::Duration;

/// A fault a test injects into a node; each fires once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The flash cell at this offset of the image does not take its value: the check
    /// finds the CRC-32 trailer wrong and the node refuses the image ("Verification
    /// failed").
    FlipBitOnWrite {
        /// Offset in the image.
        offset: u64,
    },
    /// The next activated firmware crashes before it confirms itself: the bootloader
    /// rolls back to the previous one.
    FailNextBoot,
}

/// The faults waiting to fire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    pub(crate) flip_at: Option<u64>,
    pub(crate) fail_next_boot: bool,
}

/// Where the program download of the inactive slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramState {
    /// Nothing asked since the node started.
    Idle,
    /// Stopped (0x1F51 = 0): ready for a clear.
    Stopped,
    /// Cleared (0x1F51 = 3): ready for a download.
    Cleared,
    /// A download is under way.
    Receiving,
    /// A download completed and was checked (the outcome is the flash status).
    Written,
}

/// Whether the node was told to start its new program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartRequest {
    /// No.
    None,
    /// Yes: it restarts once its confirmation is out.
    Requested,
}

/// What a node is, beyond its flash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Product code.
    pub product: u16,
    /// Bootloader version, BCD.
    pub bootloader: [u8; 2],
    /// Bootloader capabilities (0x2F10:02).
    pub caps: u8,
    /// Hardware revision.
    pub revision: u32,
    /// Serial number.
    pub serial: u32,
}

/// The object dictionary of one node.
#[derive(Debug)]
pub struct NodeDictionary {
    pub(crate) flash: Flash,
    pub(crate) identity: NodeIdentity,
    pub(crate) timing: BorealTiming,
    pub(crate) faults: Faults,
    program: ProgramState,
    busy_until: Timestamp,
    flash_code: u8,
    /// The last check's header, when it passed.
    checked: Option<ImageHeader>,
    /// A 0x1F51 value written, applied when the write completes.
    control: Option<u8>,
    pub(crate) start: StartRequest,
}

/// `2.15` of BCD `02 15`.
pub fn version_text(v: [u8; 2]) -> String {
    let part = |b: u8| u32::from(b >> 4) * 10 + u32::from(b & 0x0F);
    format!("{}.{:02}", part(v[0]), part(v[1]))
}

impl NodeDictionary {
    /// A dictionary over `flash`.
    pub fn new(flash: Flash, identity: NodeIdentity, timing: BorealTiming) -> NodeDictionary {
        NodeDictionary {
            flash,
            identity,
            timing,
            faults: Faults::default(),
            program: ProgramState::Idle,
            busy_until: Timestamp::ZERO,
            flash_code: flash_codes::OK,
            checked: None,
            control: None,
            start: StartRequest::None,
        }
    }

    /// The flash.
    pub fn flash(&self) -> &Flash {
        &self.flash
    }

    /// Where the program download stands.
    pub fn program(&self) -> ProgramState {
        self.program
    }

    /// Forgets what RAM held: the download, the check, a start not yet carried out.
    pub(crate) fn lose_ram(&mut self) {
        self.program = ProgramState::Idle;
        self.busy_until = Timestamp::ZERO;
        self.flash_code = flash_codes::OK;
        self.checked = None;
        self.control = None;
        self.start = StartRequest::None;
    }

    fn status(&self, now: Timestamp) -> FlashStatus {
        FlashStatus::new(
            now < self.busy_until,
            FlashStatusCode::from_value(self.flash_code),
        )
    }

    fn command(&mut self, now: Timestamp, value: u8) -> Result<(), AbortCode> {
        let busy = now < self.busy_until;
        match ProgramControl::from_byte(value) {
            Some(ProgramControl::Stop) if !busy => self.program = ProgramState::Stopped,
            Some(ProgramControl::Clear) if !busy && self.program != ProgramState::Idle => {
                self.flash.erase_inactive();
                self.checked = None;
                self.busy_until = now + self.timing.clear;
                self.flash_code = flash_codes::NO_VALID_PROGRAM;
                self.program = ProgramState::Cleared;
            }
            Some(ProgramControl::Start) if !busy && self.program == ProgramState::Written => {
                let header = self.checked.ok_or(AbortCode::DeviceState)?;
                self.flash.activate(header);
                self.start = StartRequest::Requested;
            }
            Some(_) => return Err(AbortCode::DeviceState),
            None => return Err(AbortCode::InvalidValue),
        }
        Ok(())
    }
}

impl ObjectDictionary for NodeDictionary {
    fn read(&mut self, now: Timestamp, object: ObjectAddress) -> Result<Vec<u8>, AbortCode> {
        let id = &self.identity;
        let value = match object {
            OBJ_VENDOR_ID => CANOPEN_VENDOR_ID.to_le_bytes().to_vec(),
            OBJ_PRODUCT_CODE => u32::from(id.product).to_le_bytes().to_vec(),
            OBJ_REVISION => id.revision.to_le_bytes().to_vec(),
            OBJ_SERIAL => id.serial.to_le_bytes().to_vec(),
            OBJ_SOFTWARE_VERSION => version_text(self.flash.running().version).into_bytes(),
            OBJ_BOOTLOADER_VERSION => id.bootloader.to_vec(),
            OBJ_BOOTLOADER_CAPS => vec![id.caps],
            OBJ_BOOT_STATE => vec![boot_state_byte(self.flash.boot_state())],
            o if o == ObjectAddress::new(objects::FLASH_STATUS, PROGRAM) => {
                self.status(now).raw().to_le_bytes().to_vec()
            }
            o if o == ObjectAddress::new(objects::PROGRAM_SOFTWARE_ID, PROGRAM) => {
                crc32(self.flash.inactive_data()).to_le_bytes().to_vec()
            }
            o if o == ObjectAddress::new(objects::PROGRAM_CONTROL, PROGRAM) => {
                vec![u8::from(self.program != ProgramState::Idle)]
            }
            o if o == ObjectAddress::new(objects::PROGRAM_DATA, PROGRAM) => {
                return Err(AbortCode::WriteOnly);
            }
            _ => return Err(AbortCode::ObjectDoesNotExist),
        };
        Ok(value)
    }

    fn begin_write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        size: Option<u32>,
    ) -> Result<(), AbortCode> {
        if object == ObjectAddress::new(objects::PROGRAM_CONTROL, PROGRAM) {
            return Ok(());
        }
        if object == ObjectAddress::new(objects::PROGRAM_DATA, PROGRAM) {
            if self.program != ProgramState::Cleared || now < self.busy_until {
                return Err(AbortCode::DeviceState);
            }
            if size.is_some_and(|s| s > SLOT_SIZE) {
                return Err(AbortCode::OutOfMemory);
            }
            self.program = ProgramState::Receiving;
            return Ok(());
        }
        match self.read(now, object) {
            Ok(_) => Err(AbortCode::ReadOnly),
            Err(e) => Err(e),
        }
    }

    fn write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        offset: u64,
        data: &[u8],
    ) -> Result<Duration, AbortCode> {
        if object.index == objects::PROGRAM_CONTROL {
            if offset != 0 || data.len() != 1 {
                return Err(AbortCode::InvalidValue);
            }
            self.control = Some(data[0]);
            return Ok(Duration::ZERO);
        }
        self.flash.write(offset, data).map_err(|e| {
            tracing::debug!(%e, "boreal node: write refused");
            AbortCode::OutOfMemory
        })?;
        if let Some(at) = self.faults.flip_at {
            if (offset..offset + data.len() as u64).contains(&at) {
                self.faults.flip_at = None;
                self.flash.flip_bit(at);
            }
        }
        Ok(self.timing.write(data.len()))
    }

    fn end_write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        len: u64,
    ) -> Result<Duration, AbortCode> {
        if object.index == objects::PROGRAM_CONTROL {
            let value = self.control.take().ok_or(AbortCode::InvalidValue)?;
            self.command(now, value)?;
            return Ok(Duration::ZERO);
        }
        self.program = ProgramState::Written;
        let outcome = self.flash.check_inactive();
        self.checked = outcome.ok();
        self.flash_code = outcome.err().unwrap_or(flash_codes::OK);
        self.busy_until = now + self.timing.check(len as usize);
        tracing::debug!(len, code = self.flash_code, "boreal node: image received");
        Ok(Duration::ZERO)
    }

    fn abort_write(&mut self, _now: Timestamp, object: ObjectAddress, code: AbortCode) {
        self.control = None;
        if object.index == objects::PROGRAM_DATA {
            // A partial image: the slot must be cleared again before the next download.
            tracing::debug!(?code, "boreal node: download aborted");
            self.program = ProgramState::Stopped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_has_a_two_digit_minor() {
        assert_eq!(version_text([0x02, 0x15]), "2.15");
        assert_eq!(version_text([0x02, 0x05]), "2.05");
        assert_eq!(version_text([0x10, 0x00]), "10.00");
    }
}
