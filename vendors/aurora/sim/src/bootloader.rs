//! The BMS's side of the flash sequence: what the UDS server of `bmsfw-protocols` asks
//! of the flash, with the time each step takes.

use crate::flash::{Flash, boot_state_byte};
use crate::key::key_for;
use crate::package::{Header, VerifyError};
use crate::protocol::{
    AuroraTiming, DID_APPLICATION_VERSION, DID_BOOT_STATE, DID_BOOTLOADER_VERSION,
    DID_PRODUCT_CODE, MAX_BLOCK_LENGTH, NRC_HEADER, NRC_IMAGE_CRC, NRC_IMAGE_SHA, NRC_PRODUCT,
    SEED_LEN, SLOT_SIZE,
};
use bmsfw_plugin_api::Timestamp;
use bmsfw_protocols::uds::{CheckOutcome, FlashBackend, Nrc};
use bmsfw_sim::uds_download::Download;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// A fault a test injects into the BMS; each fires once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The flash cell at this offset of the package does not take its value: the check
    /// finds the CRC wrong and the BMS refuses the image ("Verification failed").
    FlipBitOnWrite {
        /// Offset in the package (header included).
        offset: u64,
    },
    /// Writing the boot record fails: the check answers NRC 0x72.
    FailActivation,
    /// The next activated firmware crashes before it confirms itself: the bootloader
    /// rolls back to the previous one.
    FailNextBoot,
}

/// The faults waiting to fire, but the flash cell's (kept with the download).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    pub(crate) fail_activation: bool,
    pub(crate) fail_next_boot: bool,
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
    pub(crate) faults: Faults,
    pub(crate) product_code: u16,
    pub(crate) version: [u8; 2],
    pub(crate) timing: AuroraTiming,
    secret: Vec<u8>,
    rng: Xoshiro256PlusPlus,
    /// The time of the call being served; set by the model before every call.
    pub(crate) now: Timestamp,
    /// RAM: the length announced to the erase routine; the flash cell armed to fail.
    download: Download,
    /// RAM: a verified package whose boot record is being written, done at the instant.
    activation: Option<(Timestamp, Header)>,
    /// RAM: a reset was asked for.
    pub(crate) reset: ResetRequest,
}

impl Bootloader {
    pub(crate) fn new(
        flash: Flash,
        product_code: u16,
        version: [u8; 2],
        timing: AuroraTiming,
        secret: Vec<u8>,
        seed: u64,
    ) -> Bootloader {
        Bootloader {
            flash,
            faults: Faults::default(),
            product_code,
            version,
            timing,
            secret,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            now: Timestamp::ZERO,
            download: Download::new(),
            activation: None,
            reset: ResetRequest::None,
        }
    }

    /// Arms a fault; it fires once.
    pub(crate) fn arm(&mut self, fault: Fault) {
        match fault {
            Fault::FlipBitOnWrite { offset } => self.download.flip_bit_on_write(offset),
            Fault::FailActivation => self.faults.fail_activation = true,
            Fault::FailNextBoot => self.faults.fail_next_boot = true,
        }
    }

    /// Loses what the bootloader holds in RAM (power cut, restart): an activation whose
    /// boot record was not written yet never happens.
    pub(crate) fn lose_ram(&mut self) {
        self.download.forget();
        self.activation = None;
        self.reset = ResetRequest::None;
    }

    /// Completes an activation whose time has come.
    pub(crate) fn advance(&mut self, now: Timestamp) {
        self.now = now;
        if let Some((at, header)) = self.activation {
            if now >= at {
                self.activation = None;
                self.flash.activate(header);
                tracing::debug!(version = ?header.version, "boot record written");
            }
        }
    }

    /// When an activation completes.
    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        self.activation.map(|(at, _)| at)
    }
}

impl FlashBackend for Bootloader {
    fn seed(&mut self, _level: u8) -> Vec<u8> {
        let mut seed = vec![0u8; SEED_LEN];
        while seed.iter().all(|&b| b == 0) {
            self.rng.fill_bytes(&mut seed);
        }
        seed
    }

    fn key_is_valid(&mut self, _level: u8, seed: &[u8], key: &[u8]) -> bool {
        key == key_for(&self.secret, self.product_code, seed)
    }

    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        let len = self
            .download
            .announce(option, crate::package::HEADER_LEN as u64, SLOT_SIZE)?;
        self.activation = None;
        self.flash.erase_inactive();
        Ok(self.timing.erase(len))
    }

    fn request_download(&mut self, address: u64, size: u64, data_format: u8) -> Result<u64, Nrc> {
        self.download.accept(address, size, data_format)?;
        Ok(MAX_BLOCK_LENGTH)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        self.download.write(&mut self.flash, offset, data)?;
        Ok(self.timing.write(data.len()))
    }

    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }

    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        if !option.is_empty() {
            return Err(Nrc::IncorrectMessageLengthOrInvalidFormat);
        }
        let received = self.flash.slot(self.flash.inactive()).data().len() as u64;
        let verify_time = self.timing.verify(received);
        let refused = |nrc| Ok((verify_time, CheckOutcome::Rejected(nrc)));
        let header = match self.flash.check_inactive() {
            Ok(header) => header,
            Err(VerifyError::Crc { .. }) => return refused(NRC_IMAGE_CRC),
            Err(VerifyError::Sha) => return refused(NRC_IMAGE_SHA),
            Err(
                VerifyError::Short { .. }
                | VerifyError::Header { .. }
                | VerifyError::HeaderCrc
                | VerifyError::Length { .. },
            ) => return refused(NRC_HEADER),
        };
        if header.product_code != self.product_code {
            return refused(NRC_PRODUCT);
        }
        if header.min_bootloader > self.version {
            return refused(Nrc::ConditionsNotCorrect);
        }
        let total = verify_time + self.timing.activation;
        if std::mem::take(&mut self.faults.fail_activation) {
            return Ok((
                total,
                CheckOutcome::Rejected(Nrc::GeneralProgrammingFailure),
            ));
        }
        self.activation = Some((self.now + total, header));
        Ok((total, CheckOutcome::Correct))
    }

    fn reset(&mut self, _reset_type: u8) {
        self.reset = ResetRequest::Requested;
    }

    fn read_data(&mut self, identifier: u16) -> Option<Vec<u8>> {
        match identifier {
            DID_BOOTLOADER_VERSION => Some(self.version.to_vec()),
            DID_PRODUCT_CODE => Some(self.product_code.to_be_bytes().to_vec()),
            DID_APPLICATION_VERSION => Some(self.flash.running().version.to_vec()),
            DID_BOOT_STATE => Some(vec![
                self.flash.active().number(),
                boot_state_byte(self.flash.boot_state()),
            ]),
            _ => None,
        }
    }
}
