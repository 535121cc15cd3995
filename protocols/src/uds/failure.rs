//! What a battery's refusals and silences during a UDS update mean for the installer: the
//! plugin [`Failure`]s, with their error codes, of a [`FlashClient`](super::FlashClient)
//! that failed and of a [`Requester`](super::Requester) that got no positive answer.
//!
//! Only the check routine's refusals are the vendor's own: its negative response codes
//! say which part of the image the bootloader found wrong, so [`flash_failure`] asks the
//! plugin about them and words everything else the same way for every vendor.

use super::{FlashError, FlashPhase, Nrc, RequesterEvent};
use bmsfw_plugin_api::{ErrorCode, Failure};

/// The step of the flash sequence in `phase`, in the installer's words ("unlocking the
/// bootloader"), to follow "while" or "the battery refused".
pub fn flash_step(phase: FlashPhase) -> &'static str {
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

/// The failure of a flash sequence that ended with `error`.
///
/// A refusal of the check routine goes to `check_refused` first: it returns the vendor's
/// meaning of that negative response code (`VERIFICATION_FAILED` for a damaged image,
/// `PACKAGE_WRONG_PRODUCT` for another model's firmware, ...), or `None` for a code the
/// vendor gives no meaning, which reports `INSTALL_FAILED` (the battery keeps its
/// previous firmware). Everything else maps the same for every vendor:
///
/// | error | code |
/// |---|---|
/// | another refusal | `REJECTED_BY_BMS`, naming the step ([`flash_step`]) and the code |
/// | no answer, or endless response-pending | `TIMEOUT` |
/// | an answer that makes no sense, a block length without room for data | `PROTOCOL_ERROR` |
/// | the key function failed | `TRANSFER_FAILED` |
/// | the check routine answered "incorrect" | `VERIFICATION_FAILED` |
/// | the client was aborted | `ABORTED` |
///
/// `vendor` names who hands out new copies of a firmware file ("Aurora"), for the
/// message of a damaged download.
pub fn flash_failure(
    error: &FlashError,
    vendor: &str,
    check_refused: impl FnOnce(Nrc) -> Option<Failure>,
) -> Failure {
    match *error {
        FlashError::Rejected {
            phase: FlashPhase::Check,
            nrc,
            ..
        } => check_refused(nrc).unwrap_or_else(|| {
            Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "the battery could not activate the firmware ({nrc}); it keeps its \
                     previous firmware"
                ),
            )
        }),
        FlashError::Rejected { phase, nrc, .. } => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!("the battery refused {} with {nrc}", flash_step(phase)),
        ),
        FlashError::NoResponse { phase, attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!(
                "no answer from the battery while {} ({attempts} attempts)",
                flash_step(phase)
            ),
        ),
        FlashError::TooManyPending { phase, .. } => Failure::new(
            ErrorCode::TIMEOUT,
            format!(
                "the battery kept asking to wait while {}",
                flash_step(phase)
            ),
        ),
        FlashError::UnexpectedResponse {
            phase,
            ref response,
        } => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!(
                "unexpected answer {response:02X?} while {}",
                flash_step(phase)
            ),
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
                 obtain a new copy of the file from {vendor} and retry"
            ),
        ),
        FlashError::Aborted => Failure::new(ErrorCode::ABORTED, "the download was stopped"),
    }
}

/// The failure of a single request around the download (a probe, a restart poll, the
/// version read) that got `event` instead of a positive answer; `doing` says what the
/// request was for ("reading the running version"), to follow "while".
///
/// | event | code |
/// |---|---|
/// | no answer, or endless response-pending | `TIMEOUT` |
/// | a refusal | `REJECTED_BY_BMS`, naming the code |
/// | a positive answer (the caller found it unusable) | `PROTOCOL_ERROR`, with its bytes |
pub fn request_failure(event: RequesterEvent, doing: &str) -> Failure {
    match event {
        RequesterEvent::NoResponse { attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("no answer from the battery while {doing} ({attempts} attempts)"),
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
    use crate::uds::KeyError;

    fn rejected(phase: FlashPhase, byte: u8) -> FlashError {
        FlashError::Rejected {
            phase,
            service: 0x31,
            nrc: Nrc::from_byte(byte),
        }
    }

    #[test]
    fn the_vendor_words_its_check_refusals_and_unknown_ones_fail_the_install() {
        let vendor = |nrc: Nrc| {
            (nrc.to_byte() == 0xF0)
                .then(|| Failure::new(ErrorCode::VERIFICATION_FAILED, "Verification failed"))
        };
        let f = flash_failure(&rejected(FlashPhase::Check, 0xF0), "Acme", vendor);
        assert_eq!(f.code, ErrorCode::VERIFICATION_FAILED);
        let f = flash_failure(&rejected(FlashPhase::Check, 0x72), "Acme", vendor);
        assert_eq!(f.code, ErrorCode::INSTALL_FAILED);
        assert!(f.message.contains("keeps its previous firmware"), "{f}");
        // The same code outside the check is a plain refusal, never the vendor's.
        let f = flash_failure(&rejected(FlashPhase::Erase, 0xF0), "Acme", vendor);
        assert_eq!(f.code, ErrorCode::REJECTED_BY_BMS);
        assert!(f.message.contains("erasing"), "{f}");
    }

    #[test]
    fn every_other_error_has_its_code_and_names_the_step() {
        let none = |_: Nrc| None;
        let f = flash_failure(
            &FlashError::Rejected {
                phase: FlashPhase::Security,
                service: 0x27,
                nrc: Nrc::InvalidKey,
            },
            "Acme",
            none,
        );
        assert_eq!(f.code, ErrorCode::REJECTED_BY_BMS);
        assert!(
            f.message.contains("unlocking") && f.message.contains("0x35"),
            "{f}"
        );
        let f = flash_failure(
            &FlashError::NoResponse {
                phase: FlashPhase::Transfer,
                attempts: 11,
            },
            "Acme",
            none,
        );
        assert_eq!(f.code, ErrorCode::TIMEOUT);
        assert!(
            f.message.contains("transferring") && f.message.contains("11"),
            "{f}"
        );
        let cases = [
            (
                FlashError::TooManyPending {
                    phase: FlashPhase::Check,
                    max: 120,
                },
                ErrorCode::TIMEOUT,
            ),
            (
                FlashError::UnexpectedResponse {
                    phase: FlashPhase::Download,
                    response: vec![0x74],
                },
                ErrorCode::PROTOCOL_ERROR,
            ),
            (
                FlashError::BlockLengthTooSmall(2),
                ErrorCode::PROTOCOL_ERROR,
            ),
            (
                FlashError::Key(KeyError("no key for level 3".into())),
                ErrorCode::TRANSFER_FAILED,
            ),
            (
                FlashError::CheckFailed { status: vec![1] },
                ErrorCode::VERIFICATION_FAILED,
            ),
            (FlashError::Aborted, ErrorCode::ABORTED),
        ];
        for (error, code) in cases {
            let f = flash_failure(&error, "Acme", none);
            assert_eq!(f.code, code, "{error}: {f}");
            assert!(f.code.is_plugin_code(), "{f}");
        }
        let f = flash_failure(&FlashError::CheckFailed { status: vec![1] }, "Acme", none);
        assert!(
            f.message.starts_with("Verification failed") && f.message.contains("Acme"),
            "{f}"
        );
    }

    #[test]
    fn a_request_without_a_positive_answer_says_what_it_was_for() {
        let cases = [
            (
                RequesterEvent::NoResponse { attempts: 4 },
                ErrorCode::TIMEOUT,
            ),
            (
                RequesterEvent::TooManyPending { max: 120 },
                ErrorCode::TIMEOUT,
            ),
            (
                RequesterEvent::Negative(Nrc::GeneralReject),
                ErrorCode::REJECTED_BY_BMS,
            ),
            (RequesterEvent::Positive(vec![1]), ErrorCode::PROTOCOL_ERROR),
        ];
        for (event, code) in cases {
            let f = request_failure(event, "reading the running version");
            assert_eq!(f.code, code, "{f}");
            assert!(f.message.contains("reading the running version"), "{f}");
        }
    }
}
