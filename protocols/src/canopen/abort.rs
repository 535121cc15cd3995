//! SDO abort codes (CiA 301, table "SDO abort codes").

use std::fmt;

macro_rules! abort_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// Why an SDO transfer was aborted: the 32-bit code of an abort transfer frame
        /// (command byte 0x80), decoded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AbortCode {
            $($(#[$doc])* $name,)*
            /// A code without a name here (reserved or manufacturer-specific).
            Other(u32),
        }

        impl AbortCode {
            /// Every named code, in the order of the standard's table.
            pub const NAMED: &'static [AbortCode] = &[$(AbortCode::$name,)*];

            /// The code for `value`.
            pub const fn from_u32(value: u32) -> AbortCode {
                match value {
                    $($code => AbortCode::$name,)*
                    other => AbortCode::Other(other),
                }
            }

            /// The value on the wire (bytes 4 to 7 of the abort frame, little-endian).
            pub const fn to_u32(self) -> u32 {
                match self {
                    $(AbortCode::$name => $code,)*
                    AbortCode::Other(value) => value,
                }
            }

            /// The standard's description of the code.
            pub const fn description(self) -> &'static str {
                match self {
                    $(AbortCode::$name => $text,)*
                    AbortCode::Other(_) => "unnamed abort code",
                }
            }
        }
    };
}

abort_codes! {
    /// 0x05030000: a segment carried the same toggle bit as the one before.
    ToggleNotAlternated = 0x0503_0000, "toggle bit not alternated";
    /// 0x05040000: the peer did not answer in time.
    Timeout = 0x0504_0000, "SDO protocol timed out";
    /// 0x05040001: the command specifier is not valid or not expected here (also the
    /// answer of a server without block transfer to a block request).
    InvalidCommand = 0x0504_0001, "client/server command specifier not valid or unknown";
    /// 0x05040002: a block size outside 1 to 127.
    InvalidBlockSize = 0x0504_0002, "invalid block size (block mode only)";
    /// 0x05040003: a sequence number outside the block, or an acknowledgement of segments
    /// never sent.
    InvalidSequenceNumber = 0x0504_0003, "invalid sequence number (block mode only)";
    /// 0x05040004: the CRC of the transfer does not match.
    CrcError = 0x0504_0004, "CRC error (block mode only)";
    /// 0x05040005: the receiver has no room for the data.
    OutOfMemory = 0x0504_0005, "out of memory";
    /// 0x06010000: the object cannot be accessed this way.
    UnsupportedAccess = 0x0601_0000, "unsupported access to an object";
    /// 0x06010001: the object is write-only.
    WriteOnly = 0x0601_0001, "attempt to read a write only object";
    /// 0x06010002: the object is read-only.
    ReadOnly = 0x0601_0002, "attempt to write a read only object";
    /// 0x06020000: no object at this index.
    ObjectDoesNotExist = 0x0602_0000, "object does not exist in the object dictionary";
    /// 0x06040041: the object cannot be mapped into a PDO.
    CannotMapToPdo = 0x0604_0041, "object cannot be mapped to the PDO";
    /// 0x06040042: the mapping would exceed the PDO's length.
    PdoLengthExceeded = 0x0604_0042, "the number and length of the objects to be mapped would exceed PDO length";
    /// 0x06040043: parameters are incompatible.
    ParameterIncompatibility = 0x0604_0043, "general parameter incompatibility reason";
    /// 0x06040047: the device is internally incompatible with the request.
    InternalIncompatibility = 0x0604_0047, "general internal incompatibility in the device";
    /// 0x06060000: a hardware error prevented the access.
    HardwareError = 0x0606_0000, "access failed due to a hardware error";
    /// 0x06070010: the length of the data does not match the object.
    LengthMismatch = 0x0607_0010, "data type does not match, length of service parameter does not match";
    /// 0x06070012: more data than the object takes.
    LengthTooHigh = 0x0607_0012, "data type does not match, length of service parameter too high";
    /// 0x06070013: less data than the object takes.
    LengthTooLow = 0x0607_0013, "data type does not match, length of service parameter too low";
    /// 0x06090011: no such sub-index.
    SubIndexDoesNotExist = 0x0609_0011, "sub-index does not exist";
    /// 0x06090030: the value is not valid for the object.
    InvalidValue = 0x0609_0030, "invalid value for parameter (download only)";
    /// 0x06090031: the value is above the object's maximum.
    ValueTooHigh = 0x0609_0031, "value of parameter written too high (download only)";
    /// 0x06090032: the value is below the object's minimum.
    ValueTooLow = 0x0609_0032, "value of parameter written too low (download only)";
    /// 0x06090036: the maximum given is below the minimum.
    MaxBelowMin = 0x0609_0036, "maximum value is less than minimum value";
    /// 0x060A0023: no SDO connection is free.
    ResourceNotAvailable = 0x060A_0023, "resource not available: SDO connection";
    /// 0x08000000: the server refuses without a more specific reason.
    GeneralError = 0x0800_0000, "general error";
    /// 0x08000020: the data cannot be transferred or stored.
    DataCannotBeStored = 0x0800_0020, "data cannot be transferred or stored to the application";
    /// 0x08000021: the data cannot be stored because of local control.
    LocalControl = 0x0800_0021, "data cannot be transferred or stored to the application because of local control";
    /// 0x08000022: the data cannot be stored in the device's present state.
    DeviceState = 0x0800_0022, "data cannot be transferred or stored to the application because of the present device state";
    /// 0x08000023: the object dictionary is not available.
    NoObjectDictionary = 0x0800_0023, "object dictionary dynamic generation fails or no object dictionary is present";
    /// 0x08000024: the object holds no data.
    NoDataAvailable = 0x0800_0024, "no data available";
}

impl fmt::Display for AbortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "abort code 0x{:08X} ({})",
            self.to_u32(),
            self.description()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for &code in AbortCode::NAMED {
            assert!(seen.insert(code.to_u32()), "{code} listed twice");
            assert_eq!(AbortCode::from_u32(code.to_u32()), code);
            assert!(!matches!(code, AbortCode::Other(_)));
        }
        assert_eq!(seen.len(), 31);
    }

    #[test]
    fn unnamed_values_survive() {
        for value in [0, 1, 0x0504_0006, 0x0800_0025, 0xFFFF_FFFF] {
            assert_eq!(AbortCode::from_u32(value), AbortCode::Other(value));
            assert_eq!(AbortCode::from_u32(value).to_u32(), value);
        }
    }

    #[test]
    fn display_names_value_and_meaning() {
        assert_eq!(
            AbortCode::CrcError.to_string(),
            "abort code 0x05040004 (CRC error (block mode only))"
        );
        assert_eq!(
            AbortCode::Other(0x1234_5678).to_string(),
            "abort code 0x12345678 (unnamed abort code)"
        );
    }
}
