//! What the BMS's refusals and silences mean for the installer (`PROTOCOL.md`, "Error
//! codes").

use crate::protocol::{
    CODE_BOOTLOADER_TOO_OLD, NRC_HEADER, NRC_IMAGE_CRC, NRC_IMAGE_SHA, NRC_PRODUCT,
};
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
    let verification = |what: &str| {
        Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: the battery found {what} of the received firmware wrong \
                 and kept its firmware; obtain a new copy of the file from Aurora and retry"
            ),
        )
    };
    match *error {
        FlashError::Rejected {
            phase: FlashPhase::Check,
            nrc,
            ..
        } => match nrc.to_byte() {
            NRC_IMAGE_CRC => verification("the CRC-32"),
            NRC_IMAGE_SHA => verification("the SHA-256"),
            NRC_HEADER => verification("the header or the length"),
            NRC_PRODUCT => Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                "the battery refused the firmware: it is for another PowerCore model",
            ),
            0x22 => Failure::new(
                ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                "the battery's bootloader is older than the firmware requires",
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
        FlashError::UnexpectedResponse {
            phase,
            ref response,
        } => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("unexpected answer {response:02X?} while {}", step(phase)),
        ),
        FlashError::BlockLengthTooSmall(len) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("the battery announced blocks of {len} bytes, too small to carry data"),
        ),
        FlashError::Key(ref e) => Failure::new(
            ErrorCode::TRANSFER_FAILED,
            format!("computing the security key failed: {e}"),
        ),
        FlashError::CheckFailed { ref status } => Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: the battery's check reported status {status:02X?}; \
                 obtain a new copy of the file from Aurora and retry"
            ),
        ),
        FlashError::Aborted => Failure::new(ErrorCode::ABORTED, "the download was stopped"),
    }
}

/// The probe got no usable answer.
pub(super) fn probe(event: RequesterEvent) -> Failure {
    silence_or_refusal(event, "reading the bootloader version")
}

/// The boot-state read after the restart was refused.
pub(super) fn restart(event: RequesterEvent) -> Failure {
    match event {
        RequesterEvent::Negative(nrc) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("the restarted battery answers the boot-state read with {nrc}"),
        ),
        other => silence_or_refusal(other, "waiting for the restart"),
    }
}

/// The read of the running version failed.
pub(super) fn verify(event: RequesterEvent) -> Failure {
    silence_or_refusal(event, "reading the running version")
}

fn silence_or_refusal(event: RequesterEvent, doing: &str) -> Failure {
    match event {
        RequesterEvent::NoResponse { attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("no answer from the battery on 0x7EA while {doing} ({attempts} attempts)"),
        ),
        RequesterEvent::TooManyPending { .. } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("the battery kept asking to wait while {doing}"),
        ),
        RequesterEvent::Negative(nrc) => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!("the battery refused {doing} with {nrc}"),
        ),
        RequesterEvent::Positive(data) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("unexpected answer {data:02X?} while {doing}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_protocols::uds::Nrc;

    fn check_refused(byte: u8) -> Failure {
        flash(&FlashError::Rejected {
            phase: FlashPhase::Check,
            service: 0x31,
            nrc: Nrc::from_byte(byte),
        })
    }

    #[test]
    fn check_refusals_map_to_the_agreed_codes() {
        for byte in [0xF0, 0xF1, 0xF2] {
            let f = check_refused(byte);
            assert_eq!(f.code, ErrorCode::VERIFICATION_FAILED);
            assert!(f.message.starts_with("Verification failed"), "{f}");
        }
        assert!(check_refused(0xF0).message.contains("CRC-32"));
        assert!(check_refused(0xF1).message.contains("SHA-256"));
        assert_eq!(check_refused(0xF3).code, ErrorCode::PACKAGE_WRONG_PRODUCT);
        assert_eq!(check_refused(0x72).code, ErrorCode::INSTALL_FAILED);
        assert_eq!(check_refused(0x22).code, ErrorCode(901));
        let f = flash(&FlashError::Rejected {
            phase: FlashPhase::Security,
            service: 0x27,
            nrc: Nrc::InvalidKey,
        });
        assert_eq!(f.code, ErrorCode::REJECTED_BY_BMS);
        assert!(
            f.message.contains("unlocking") && f.message.contains("0x35"),
            "{f}"
        );
        let f = flash(&FlashError::NoResponse {
            phase: FlashPhase::Transfer,
            attempts: 11,
        });
        assert_eq!(f.code, ErrorCode::TIMEOUT);
        assert!(
            f.message.contains("transferring") && f.message.contains("11"),
            "{f}"
        );
        assert_eq!(
            flash(&FlashError::CheckFailed { status: vec![1] }).code,
            ErrorCode::VERIFICATION_FAILED
        );
        assert_eq!(
            flash(&FlashError::UnexpectedResponse {
                phase: FlashPhase::Download,
                response: vec![0x74]
            })
            .code,
            ErrorCode::PROTOCOL_ERROR
        );
        assert_eq!(flash(&FlashError::Aborted).code, ErrorCode::ABORTED);
    }

    #[test]
    fn every_code_is_one_a_plugin_may_report() {
        let events = [
            RequesterEvent::NoResponse { attempts: 4 },
            RequesterEvent::TooManyPending { max: 120 },
            RequesterEvent::Negative(Nrc::GeneralReject),
            RequesterEvent::Positive(vec![1]),
        ];
        for e in events {
            for f in [probe(e.clone()), restart(e.clone()), verify(e)] {
                assert!(f.code.is_plugin_code(), "{f}");
            }
        }
        for byte in 0..=255 {
            assert!(check_refused(byte).code.is_plugin_code());
        }
    }
}
