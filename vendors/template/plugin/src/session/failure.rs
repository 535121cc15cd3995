//! What the BMS's refusals mean for the installer (`PROTOCOL.md`, "Error codes"): the
//! check routine's negative response codes are Acme's own; everything else maps as for
//! every UDS bootloader ([`flash_failure`]).

use crate::protocol::{NRC_HEADER, NRC_IMAGE_CRC, NRC_PRODUCT};
use bmsfw_plugin_api::{ErrorCode, Failure};
use bmsfw_protocols::uds::{FlashError, Nrc, flash_failure};

/// A failed flash sequence.
pub(super) fn flash(error: &FlashError) -> Failure {
    flash_failure(error, "Acme", check_refused)
}

/// What Acme's check routine means by refusing with `nrc`; `None` for a code Acme
/// does not define (the installation failed, the battery keeps its firmware).
fn check_refused(nrc: Nrc) -> Option<Failure> {
    match nrc.to_byte() {
        NRC_IMAGE_CRC | NRC_HEADER => Some(Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            "Verification failed: the battery found the received firmware damaged and \
             kept its firmware; obtain a new copy of the file from Acme and retry",
        )),
        NRC_PRODUCT => Some(Failure::new(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            "the battery refused the firmware: it is for another Acme model",
        )),
        _ => None,
    }
}
