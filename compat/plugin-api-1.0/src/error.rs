//! Error codes and failures as they cross the plugin boundary.

use abi_stable::{StableAbi, std_types::RString};
use std::fmt;

/// A stable numeric error code, shown to installers next to its message.
///
/// An integer newtype rather than an enum, so that a plugin built against a newer contract
/// can report a code an older engine does not know without breaking the ABI. Plugins
/// report the named codes below (750..=799) or a vendor-specific code in
/// [`ErrorCode::VENDOR_FIRST`]`..=`[`ErrorCode::VENDOR_LAST`]; the engine's own codes
/// (700..=749) are reserved to the engine.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// The BMS did not answer in time.
    pub const TIMEOUT: ErrorCode = ErrorCode(750);
    /// The BMS sent an unexpected or malformed reply.
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(751);
    /// The BMS answered with a negative response.
    pub const REJECTED_BY_BMS: ErrorCode = ErrorCode(752);
    /// The session was aborted on the engine's request.
    pub const ABORTED: ErrorCode = ErrorCode(753);
    /// The plugin panicked or broke the contract. Set by the export glue and the engine;
    /// a plugin does not report it itself.
    pub const PLUGIN_FAULT: ErrorCode = ErrorCode(754);
    /// Any other failure of the transfer.
    pub const TRANSFER_FAILED: ErrorCode = ErrorCode(755);
    /// The package file is malformed.
    pub const PACKAGE_INVALID: ErrorCode = ErrorCode(760);
    /// The package is for another product than the target battery.
    pub const PACKAGE_WRONG_PRODUCT: ErrorCode = ErrorCode(761);
    /// The package's signature does not verify.
    pub const SIGNATURE_INVALID: ErrorCode = ErrorCode(762);
    /// The BMS reported that the signature or checksum of the received image failed
    /// (the manual's "Verification failed").
    pub const VERIFICATION_FAILED: ErrorCode = ErrorCode(780);
    /// The BMS could not install the image.
    pub const INSTALL_FAILED: ErrorCode = ErrorCode(781);
    /// The battery did not come back after its restart.
    pub const RESTART_FAILED: ErrorCode = ErrorCode(782);
    /// After the restart the battery reports another version than the package's.
    pub const VERSION_MISMATCH: ErrorCode = ErrorCode(783);
    /// A module behind the BMS failed to update.
    pub const MODULE_UPDATE_FAILED: ErrorCode = ErrorCode(784);
    /// The first vendor-specific code; the plugin's message explains it.
    pub const VENDOR_FIRST: ErrorCode = ErrorCode(900);
    /// The last vendor-specific code.
    pub const VENDOR_LAST: ErrorCode = ErrorCode(999);

    /// The code's number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether the code is one a plugin may report: a named plugin code (750..=799) or a
    /// vendor-specific one (900..=999).
    pub const fn is_plugin_code(self) -> bool {
        matches!(self.0, 750..=799 | 900..=999)
    }

    /// Whether the code is in the vendor-specific range.
    pub const fn is_vendor_specific(self) -> bool {
        self.0 >= Self::VENDOR_FIRST.0 && self.0 <= Self::VENDOR_LAST.0
    }

    /// The constant's name for a named code, `None` for any other.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::TIMEOUT => "TIMEOUT",
            Self::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Self::REJECTED_BY_BMS => "REJECTED_BY_BMS",
            Self::ABORTED => "ABORTED",
            Self::PLUGIN_FAULT => "PLUGIN_FAULT",
            Self::TRANSFER_FAILED => "TRANSFER_FAILED",
            Self::PACKAGE_INVALID => "PACKAGE_INVALID",
            Self::PACKAGE_WRONG_PRODUCT => "PACKAGE_WRONG_PRODUCT",
            Self::SIGNATURE_INVALID => "SIGNATURE_INVALID",
            Self::VERIFICATION_FAILED => "VERIFICATION_FAILED",
            Self::INSTALL_FAILED => "INSTALL_FAILED",
            Self::RESTART_FAILED => "RESTART_FAILED",
            Self::VERSION_MISMATCH => "VERSION_MISMATCH",
            Self::MODULE_UPDATE_FAILED => "MODULE_UPDATE_FAILED",
            _ => return None,
        })
    }
}

/// Prints the number, then the name when the code has one: `754 PLUGIN_FAULT`.
impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} {name}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A failure: a stable code and a message for the installer.
///
/// Returned by plugin entry points that can fail, reported by a failed session, and
/// handed to a session as the reason of an abort.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, in words an installer or the vendor's support can act on.
    pub message: RString,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: RString::from(message.into()),
        }
    }
}

/// Prints `code: message`.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_agreed_numbers_and_ranges() {
        assert_eq!(ErrorCode::PLUGIN_FAULT.get(), 754);
        assert_eq!(ErrorCode::VERIFICATION_FAILED.get(), 780);
        assert_eq!(ErrorCode::MODULE_UPDATE_FAILED.get(), 784);
        assert!(ErrorCode::TIMEOUT.is_plugin_code());
        assert!(ErrorCode(950).is_plugin_code());
        assert!(ErrorCode(950).is_vendor_specific());
        assert!(!ErrorCode(720).is_plugin_code());
        assert!(!ErrorCode(800).is_plugin_code());
        assert!(!ErrorCode(1000).is_plugin_code());
        assert_eq!(ErrorCode::PLUGIN_FAULT.to_string(), "754 PLUGIN_FAULT");
        assert_eq!(ErrorCode(901).to_string(), "901");
        let f = Failure::new(ErrorCode::TIMEOUT, "no answer to 0x36");
        assert_eq!(f.to_string(), "750 TIMEOUT: no answer to 0x36");
    }
}
