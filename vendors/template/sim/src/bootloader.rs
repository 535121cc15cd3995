//! The BMS's side of the flash sequence: what the UDS server of `bmsfw-protocols` asks
//! of the flash, with the time each step takes.

use crate::package::{HEADER_LEN, Header, VerifyError, verify};
use crate::protocol::{
    DID_APPLICATION_VERSION, MAX_BLOCK_LENGTH, NRC_HEADER, NRC_IMAGE_CRC, NRC_PRODUCT, SECRET,
    SEED_LEN, SLOT_SIZE, TemplateTiming,
};
use bmsfw_protocols::checksum::{hmac_sha256, sha256};
use bmsfw_protocols::uds::{CheckOutcome, FlashBackend, Nrc};
use bmsfw_sim::flash::{DualSlotFlash, ImageCheck};
use bmsfw_sim::uds_download::Download;
use std::time::Duration;

/// The BMS's check of a package in a slot ([`verify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackageCheck;

impl ImageCheck for PackageCheck {
    type Header = Header;
    type Error = VerifyError;
    fn check(&self, package: &[u8]) -> Result<Header, VerifyError> {
        verify(package)
    }
}

/// The two slots and the boot record of the BMS.
pub type Flash = DualSlotFlash<PackageCheck>;

/// A fault a test injects into the BMS; each fires once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The flash cell at this offset of the package does not take its value: the check
    /// refuses the image ("Verification failed").
    FlipBitOnWrite {
        /// Offset in the package (header included).
        offset: u64,
    },
    /// The next activated firmware crashes before it confirms itself: the bootloader
    /// rolls back to the previous one.
    FailNextBoot,
}

/// Whether the application asked for a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetRequest {
    None,
    Requested,
}

/// The bootloader: the flash (kept through power cuts), the faults armed, and what it
/// holds in RAM during a download.
#[derive(Debug)]
pub(crate) struct Bootloader {
    pub(crate) flash: Flash,
    pub(crate) product_code: u16,
    pub(crate) timing: TemplateTiming,
    pub(crate) fail_next_boot: bool,
    seeds: u64,
    /// RAM: the length announced to the erase routine; the flash cell armed to fail.
    pub(crate) download: Download,
    /// RAM: a reset was asked for.
    pub(crate) reset: ResetRequest,
}

impl Bootloader {
    pub(crate) fn new(flash: Flash, product_code: u16, timing: TemplateTiming) -> Bootloader {
        Bootloader {
            flash,
            product_code,
            timing,
            fail_next_boot: false,
            seeds: 0,
            download: Download::new(),
            reset: ResetRequest::None,
        }
    }

    /// Loses what the bootloader holds in RAM (power cut, restart).
    pub(crate) fn lose_ram(&mut self) {
        self.download.forget();
        self.reset = ResetRequest::None;
    }
}

impl FlashBackend for Bootloader {
    fn seed(&mut self, _level: u8) -> Vec<u8> {
        // A new seed every time, never all zeroes (that would mean "already unlocked").
        loop {
            self.seeds += 1;
            let seed = sha256(&self.seeds.to_le_bytes())[..SEED_LEN].to_vec();
            if seed.iter().any(|&b| b != 0) {
                return seed;
            }
        }
    }

    fn key_is_valid(&mut self, _level: u8, seed: &[u8], key: &[u8]) -> bool {
        key == &hmac_sha256(SECRET, seed)[..SEED_LEN]
    }

    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        self.download
            .announce(option, HEADER_LEN as u64, SLOT_SIZE)?;
        self.flash.erase_inactive();
        Ok(self.timing.erase)
    }

    fn request_download(&mut self, address: u64, size: u64, data_format: u8) -> Result<u64, Nrc> {
        self.download.accept(address, size, data_format)?;
        Ok(MAX_BLOCK_LENGTH)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        self.download.write(&mut self.flash, offset, data)?;
        Ok(self.timing.write_per_block)
    }

    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }

    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        if !option.is_empty() {
            return Err(Nrc::IncorrectMessageLengthOrInvalidFormat);
        }
        let refused = |nrc| Ok((self.timing.check, CheckOutcome::Rejected(nrc)));
        let header = match self.flash.check_inactive() {
            Ok(header) => header,
            Err(VerifyError::Crc) => return refused(NRC_IMAGE_CRC),
            Err(VerifyError::Header | VerifyError::Length { .. }) => return refused(NRC_HEADER),
        };
        if header.product_code != self.product_code {
            return refused(NRC_PRODUCT);
        }
        self.flash.activate(header);
        Ok((self.timing.check, CheckOutcome::Correct))
    }

    fn reset(&mut self, _reset_type: u8) {
        self.reset = ResetRequest::Requested;
    }

    fn read_data(&mut self, identifier: u16) -> Option<Vec<u8>> {
        (identifier == DID_APPLICATION_VERSION).then(|| self.flash.running().version.to_vec())
    }
}
