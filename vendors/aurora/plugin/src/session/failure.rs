//! What the BMS's refusals and silences mean for the installer (`PROTOCOL.md`, "Error
//! codes").

use crate::protocol::{
    CODE_BOOTLOADER_TOO_OLD, NRC_HEADER, NRC_IMAGE_CRC, NRC_IMAGE_SHA, NRC_PRODUCT,
};
use bmsfw_plugin_api::{ErrorCode, Failure};
use bmsfw_protocols::uds::{FlashError, Nrc, RequesterEvent, flash_failure, request_failure};

/// A failed flash sequence: Aurora's check refusals ([`check_refused`]), the rest as for
/// every UDS bootloader.
pub(super) fn flash(error: &FlashError) -> Failure {
    flash_failure(error, "Aurora", check_refused)
}

/// What Aurora's check routine means by refusing with `nrc`; `None` for a code Aurora
/// does not define (the installation failed, the battery keeps its firmware).
fn check_refused(nrc: Nrc) -> Option<Failure> {
    let verification = |what: &str| {
        Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: the battery found {what} of the received firmware wrong \
                 and kept its firmware; obtain a new copy of the file from Aurora and retry"
            ),
        )
    };
    Some(match nrc.to_byte() {
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
        _ => return None,
    })
}

/// The probe got no usable answer.
pub(super) fn probe(event: RequesterEvent) -> Failure {
    request_failure(event, "reading the bootloader version")
}

/// The boot-state read after the restart was refused.
pub(super) fn restart(event: RequesterEvent) -> Failure {
    match event {
        RequesterEvent::Negative(nrc) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("the restarted battery answers the boot-state read with {nrc}"),
        ),
        other => request_failure(other, "waiting for the restart"),
    }
}

/// The read of the running version failed.
pub(super) fn verify(event: RequesterEvent) -> Failure {
    request_failure(event, "reading the running version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_protocols::uds::FlashPhase;

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
        // The same code outside the check is a plain refusal.
        let f = flash(&FlashError::Rejected {
            phase: FlashPhase::Erase,
            service: 0x31,
            nrc: Nrc::from_byte(0xF0),
        });
        assert_eq!(f.code, ErrorCode::REJECTED_BY_BMS);
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
