//! What a node's refusals and silences mean for the installer (`PROTOCOL.md`, "Error
//! codes").

use super::read::ReadOutcome;
use crate::protocol::{CODE_BOOTLOADER_TOO_OLD, flash_codes};
use bmsfw_plugin_api::{ErrorCode, Failure};
use bmsfw_protocols::canopen::{NodeId, ProgramError, ProgramPhase, SdoError};

/// The step of the program download, in the installer's words.
fn step(phase: ProgramPhase) -> &'static str {
    match phase {
        ProgramPhase::Idle | ProgramPhase::Stop => "preparing the download",
        ProgramPhase::Clear => "clearing the inactive firmware slot",
        ProgramPhase::Download => "transferring the firmware",
        ProgramPhase::Flash => "checking the received firmware",
        ProgramPhase::Verify => "reading back the received firmware's CRC-32",
        ProgramPhase::Start => "activating the new firmware",
        ProgramPhase::Done | ProgramPhase::Failed => "the update",
    }
}

/// A failed program download of `node`.
pub(super) fn program(node: NodeId, error: &ProgramError) -> Failure {
    let verification = |what: &str| {
        Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: {node} found {what} and kept its firmware; obtain a new \
                 copy of the file from Boreal and retry"
            ),
        )
    };
    match *error {
        ProgramError::Flash {
            phase: ProgramPhase::Flash,
            status,
        } => match status.code().value() {
            flash_codes::CRC => verification("the received image's CRC-32 wrong"),
            flash_codes::FORMAT => verification("no valid image descriptor"),
            flash_codes::LENGTH => verification("the received image's length wrong"),
            flash_codes::WRONG_PRODUCT => Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!("{node} refused the firmware: it is for another Taiga model"),
            ),
            flash_codes::BOOTLOADER_TOO_OLD => Failure::new(
                ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                format!(
                    "{node}'s bootloader is older than the firmware requires; update it with \
                     the Boreal service tool"
                ),
            ),
            _ => Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "{node} could not store the firmware (flash status {status}); it keeps \
                     its previous firmware"
                ),
            ),
        },
        ProgramError::Flash { phase, status } => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!("{node} failed {} (flash status {status})", step(phase)),
        ),
        ProgramError::Sdo {
            phase, ref error, ..
        } => sdo(node, step(phase), error),
        ProgramError::Busy { phase, limit } => Failure::new(
            ErrorCode::TIMEOUT,
            format!(
                "{node} stayed busy for more than {} s while {}",
                limit.as_secs(),
                step(phase)
            ),
        ),
        ProgramError::ValueLength { object, len } => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("{node} answered {len} bytes for {object}, not 1 to 4"),
        ),
        ProgramError::SoftwareId { expected, found } => Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: {node} reports the CRC-32 {found:08X} for the image it \
                 received, the GX sent {expected:08X}; it keeps its previous firmware"
            ),
        ),
        ProgramError::Aborted => Failure::new(ErrorCode::ABORTED, "the download was stopped"),
    }
}

/// A failed SDO transfer with `node` while `doing`.
pub(super) fn sdo(node: NodeId, doing: &str, error: &SdoError) -> Failure {
    match *error {
        SdoError::ServerAbort(code) => Failure::new(
            ErrorCode::REJECTED_BY_BMS,
            format!(
                "{node} refused {doing} with abort code 0x{:08X} ({})",
                code.to_u32(),
                code.description()
            ),
        ),
        SdoError::Timeout { awaiting, .. } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("no answer from {node} while {doing} (awaiting {awaiting:?})"),
        ),
        SdoError::Protocol(ref v) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("{node} broke the SDO protocol while {doing}: {v}"),
        ),
        SdoError::TooLarge { size, max } => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("{node} answered {size} bytes while {doing}, at most {max} expected"),
        ),
        SdoError::Cancelled(_) => Failure::new(
            ErrorCode::ABORTED,
            format!("the transfer with {node} was stopped while {doing}"),
        ),
    }
}

/// A read that did not give a value.
pub(super) fn read(node: NodeId, doing: &str, outcome: &ReadOutcome) -> Failure {
    match outcome {
        ReadOutcome::Silent { attempts } => Failure::new(
            ErrorCode::TIMEOUT,
            format!("no answer from {node} while {doing} ({attempts} attempts)"),
        ),
        ReadOutcome::Refused(code) => sdo(node, doing, &SdoError::ServerAbort(*code)),
        ReadOutcome::Broken(error) => sdo(node, doing, error),
        ReadOutcome::Value(v) => Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("unexpected answer {v:02X?} from {node} while {doing}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_protocols::canopen::{
        AbortCode, Awaiting, FlashStatus, FlashStatusCode, ObjectAddress,
    };
    use std::time::Duration;

    fn node() -> NodeId {
        NodeId::new(3).unwrap()
    }

    fn after_download(code: u8) -> Failure {
        program(
            node(),
            &ProgramError::Flash {
                phase: ProgramPhase::Flash,
                status: FlashStatus::new(false, FlashStatusCode::from_value(code)),
            },
        )
    }

    #[test]
    fn flash_codes_map_to_the_agreed_codes_and_name_the_node() {
        for code in [flash_codes::CRC, flash_codes::FORMAT, flash_codes::LENGTH] {
            let f = after_download(code);
            assert_eq!(f.code, ErrorCode::VERIFICATION_FAILED);
            assert!(f.message.starts_with("Verification failed: node 3"), "{f}");
        }
        assert_eq!(
            after_download(flash_codes::WRONG_PRODUCT).code,
            ErrorCode::PACKAGE_WRONG_PRODUCT
        );
        assert_eq!(
            after_download(flash_codes::BOOTLOADER_TOO_OLD).code,
            ErrorCode(901)
        );
        assert_eq!(after_download(5).code, ErrorCode::INSTALL_FAILED);
        let f = program(
            node(),
            &ProgramError::Sdo {
                phase: ProgramPhase::Download,
                object: ObjectAddress::new(0x1F50, 1),
                error: SdoError::Timeout {
                    awaiting: Awaiting::BlockAck,
                    timeout: Duration::from_secs(1),
                },
            },
        );
        assert_eq!(f.code, ErrorCode::TIMEOUT);
        assert!(
            f.message.contains("node 3") && f.message.contains("transferring"),
            "{f}"
        );
        let f = program(
            node(),
            &ProgramError::SoftwareId {
                expected: 1,
                found: 2,
            },
        );
        assert_eq!(f.code, ErrorCode::VERIFICATION_FAILED);
    }

    #[test]
    fn every_code_is_one_a_plugin_may_report() {
        for code in 0..=127u8 {
            assert!(after_download(code).code.is_plugin_code());
        }
        let outcomes = [
            ReadOutcome::Silent { attempts: 3 },
            ReadOutcome::Refused(AbortCode::ObjectDoesNotExist),
            ReadOutcome::Broken(SdoError::Cancelled(AbortCode::GeneralError)),
            ReadOutcome::Value(vec![1]),
        ];
        for o in outcomes {
            let f = read(node(), "reading", &o);
            assert!(f.code.is_plugin_code(), "{f}");
            assert!(f.message.contains("node 3"), "{f}");
        }
    }
}
