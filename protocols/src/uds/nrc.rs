//! Negative response codes (ISO 14229-1 annex A).

use std::fmt;

macro_rules! nrcs {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// A negative response code: why a server refused a request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Nrc {
            $($(#[$doc])* $name,)*
            /// A code without a name here (reserved or manufacturer-specific).
            Other(u8),
        }

        impl Nrc {
            /// The code for `byte`.
            pub const fn from_byte(byte: u8) -> Nrc {
                match byte {
                    $($code => Nrc::$name,)*
                    other => Nrc::Other(other),
                }
            }

            /// The byte on the wire.
            pub const fn to_byte(self) -> u8 {
                match self {
                    $(Nrc::$name => $code,)*
                    Nrc::Other(b) => b,
                }
            }

            /// The standard's name for the code.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Nrc::$name => $text,)*
                    Nrc::Other(_) => "unnamed negative response code",
                }
            }
        }
    };
}

nrcs! {
    /// 0x10: the server refuses without a more specific reason.
    GeneralReject = 0x10, "general reject";
    /// 0x11: the service is not supported.
    ServiceNotSupported = 0x11, "service not supported";
    /// 0x12: the sub-function is not supported.
    SubFunctionNotSupported = 0x12, "sub-function not supported";
    /// 0x13: the request has the wrong length or format.
    IncorrectMessageLengthOrInvalidFormat = 0x13, "incorrect message length or invalid format";
    /// 0x14: the response would be too long for the transport.
    ResponseTooLong = 0x14, "response too long";
    /// 0x21: the server is busy; repeat the request later.
    BusyRepeatRequest = 0x21, "busy, repeat request";
    /// 0x22: a precondition of the server does not hold (for example charging).
    ConditionsNotCorrect = 0x22, "conditions not correct";
    /// 0x24: the request came out of sequence.
    RequestSequenceError = 0x24, "request sequence error";
    /// 0x31: a parameter is out of range.
    RequestOutOfRange = 0x31, "request out of range";
    /// 0x33: the server is locked; security access is needed first.
    SecurityAccessDenied = 0x33, "security access denied";
    /// 0x35: the key does not match the seed.
    InvalidKey = 0x35, "invalid key";
    /// 0x36: too many wrong keys.
    ExceededNumberOfAttempts = 0x36, "exceeded number of attempts";
    /// 0x37: the delay after failed attempts has not expired.
    RequiredTimeDelayNotExpired = 0x37, "required time delay not expired";
    /// 0x70: the download or upload cannot be accepted.
    UploadDownloadNotAccepted = 0x70, "upload/download not accepted";
    /// 0x71: the transfer was suspended (for example more data than announced).
    TransferDataSuspended = 0x71, "transfer data suspended";
    /// 0x72: erasing or writing memory failed.
    GeneralProgrammingFailure = 0x72, "general programming failure";
    /// 0x73: the block sequence counter is not the expected one.
    WrongBlockSequenceCounter = 0x73, "wrong block sequence counter";
    /// 0x78: the request was understood; the final response follows later.
    ResponsePending = 0x78, "request correctly received, response pending";
    /// 0x7E: the sub-function is not supported in the active session.
    SubFunctionNotSupportedInActiveSession = 0x7E, "sub-function not supported in active session";
    /// 0x7F: the service is not supported in the active session.
    ServiceNotSupportedInActiveSession = 0x7F, "service not supported in active session";
}

impl fmt::Display for Nrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NRC 0x{:02X} ({})", self.to_byte(), self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0u8..=0xFF {
            assert_eq!(Nrc::from_byte(b).to_byte(), b);
        }
        assert_eq!(Nrc::from_byte(0x73), Nrc::WrongBlockSequenceCounter);
        assert_eq!(Nrc::from_byte(0x24), Nrc::RequestSequenceError);
        assert_eq!(Nrc::from_byte(0x72), Nrc::GeneralProgrammingFailure);
        assert_eq!(Nrc::from_byte(0x78), Nrc::ResponsePending);
        assert_eq!(Nrc::from_byte(0x35), Nrc::InvalidKey);
        assert_eq!(Nrc::from_byte(0x22), Nrc::ConditionsNotCorrect);
        assert_eq!(Nrc::from_byte(0x31), Nrc::RequestOutOfRange);
        assert_eq!(Nrc::from_byte(0x99), Nrc::Other(0x99));
        assert_eq!(
            Nrc::WrongBlockSequenceCounter.to_string(),
            "NRC 0x73 (wrong block sequence counter)"
        );
    }
}
