//! What the BMS's refusals and silences mean for the installer (`PROTOCOL.md`, "Error
//! codes").

use crate::protocol::{NRC_HEADER, NRC_IMAGE_CRC, NRC_PRODUCT};
use bmsfw_plugin_api::{ErrorCode, Failure};
use bmsfw_protocols::uds::{FlashError, FlashPhase, RequesterEvent};

/// The step of the flash sequence, in the installer's words.
fn step(phase: FlashPhase) -> &'static str {
    match phase {
        FlashPhase::Idle | FlashPhase::Session => "entering the programming session",
        FlashPhase::Security => "unlocking the bootloader",
        FlashPhase::Erase => "erasing the inactive firmware slot",
        FlashPhase::Download => "announcing the download",
        FlashPhase::Transfer => "transferring the firmware",
        FlashPhase::Exit => "ending the transfer",
        FlashPhase::Check => "checking and activating the firmware",
        FlashPhase::Reset => "restarting the battery",
        FlashPhase::Done | FlashPhase::Failed => "the update",
    }
}

/// A failed flash sequence.
pub(super) fn flash(error: &FlashError) -> Failure {
    match *error {
        FlashError::Rejected {
            phase: FlashPhase::Check,
            nrc,
            ..
        } => match nrc.to_byte() {
            NRC_IMAGE_CRC | NRC_HEADER => Failure::new(
                ErrorCode::VERIFICATION_FAILED,
                "Verification failed: the battery found the received firmware damaged and \
                 kept its firmware; obtain a new copy of the file from Acme and retry",
            ),
            NRC_PRODUCT => Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                "the battery refused the firmware: it is for another Acme model",
            ),
            _ => Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "the battery could not activate the firmware ({nrc}); it keeps its \
                     previous firmware"
                ),
            ),
        },
        FlashError::Rejected { phase, nrc, .. } => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!("the battery refused {} with {nrc}", step(phase)),
        ),
        FlashError::NoResponse { phase, attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!(
                "no answer from the battery while {} ({attempts} attempts)",
                step(phase)
            ),
        ),
        FlashError::TooManyPending { phase, .. } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("the battery kept asking to wait while {}", step(phase)),
        ),
        FlashError::CheckFailed { .. } => Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            "Verification failed: the battery reported the received firmware incorrect",
        ),
        FlashError::Aborted => Failure::new(ErrorCode::ABORTED, "the download was aborted"),
        ref other => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("the battery broke the protocol: {other}"),
        ),
    }
}

/// A single request around the download that did not get a positive answer.
pub(super) fn answer(when: &str, event: RequesterEvent) -> Failure {
    match event {
        RequesterEvent::Positive(_) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("unexpected answer from the battery {when}"),
        ),
        RequesterEvent::Negative(nrc) => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!("the battery refused the request {when} with {nrc}"),
        ),
        RequesterEvent::NoResponse { attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("no answer from the battery {when} ({attempts} attempts)"),
        ),
        RequesterEvent::TooManyPending { .. } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("the battery kept asking to wait {when}"),
        ),
    }
}
