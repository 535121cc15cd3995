//! UDS requests: typed, parsed from untrusted bytes, and encoded.

use super::Nrc;
use super::service;

/// Most data identifiers one `ReadDataByIdentifier` request may name.
pub const MAX_IDENTIFIERS: usize = 32;

/// Whether the server sends a positive response (bit 7 of a sub-function byte,
/// "suppressPosRspMsgIndicationBit"). Negative responses are always sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PositiveResponse {
    /// Bit 7 clear: answer.
    Required,
    /// Bit 7 set: stay silent on success.
    Suppressed,
}

impl PositiveResponse {
    fn split(byte: u8) -> (u8, PositiveResponse) {
        let mode = if byte & 0x80 != 0 {
            PositiveResponse::Suppressed
        } else {
            PositiveResponse::Required
        };
        (byte & 0x7F, mode)
    }

    fn bit(self) -> u8 {
        match self {
            PositiveResponse::Required => 0,
            PositiveResponse::Suppressed => 0x80,
        }
    }
}

/// What a `RoutineControl` request asks of the routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutineControlType {
    /// 0x01: start the routine.
    Start,
    /// 0x02: stop the routine.
    Stop,
    /// 0x03: request the routine's results.
    RequestResults,
}

impl RoutineControlType {
    fn from_byte(b: u8) -> Option<RoutineControlType> {
        match b {
            1 => Some(RoutineControlType::Start),
            2 => Some(RoutineControlType::Stop),
            3 => Some(RoutineControlType::RequestResults),
            _ => None,
        }
    }

    /// The sub-function byte (without the suppress bit).
    pub fn to_byte(self) -> u8 {
        match self {
            RoutineControlType::Start => 1,
            RoutineControlType::Stop => 2,
            RoutineControlType::RequestResults => 3,
        }
    }
}

/// A request of the services used to flash a battery management system, borrowing its
/// variable-length parts from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdsRequest<'a> {
    /// 0x10: switch to a diagnostic session (1 default, 2 programming, 3 extended).
    DiagnosticSessionControl {
        /// The session requested.
        session: u8,
        /// Whether to answer on success.
        response: PositiveResponse,
    },
    /// 0x11: reset the server (1 hard, 2 key off/on, 3 soft).
    EcuReset {
        /// The reset type.
        reset_type: u8,
        /// Whether to answer on success.
        response: PositiveResponse,
    },
    /// 0x27 with an odd sub-function: ask for a seed of security level `level`.
    RequestSeed {
        /// The (odd) level.
        level: u8,
        /// Optional security-access data record.
        record: &'a [u8],
        /// Whether to answer on success.
        response: PositiveResponse,
    },
    /// 0x27 with an even sub-function: the key for the seed of level `level`.
    SendKey {
        /// The (odd) level the key unlocks; the sub-function byte is `level + 1`.
        level: u8,
        /// The key.
        key: &'a [u8],
        /// Whether to answer on success.
        response: PositiveResponse,
    },
    /// 0x31: start, stop or query a routine (erase 0xFF00, check dependencies 0xFF01).
    RoutineControl {
        /// What to do.
        control: RoutineControlType,
        /// The routine's identifier.
        routine: u16,
        /// Routine-specific option bytes.
        option: &'a [u8],
        /// Whether to answer on success.
        response: PositiveResponse,
    },
    /// 0x34: announce a download of `size` bytes to `address`.
    RequestDownload {
        /// dataFormatIdentifier: compression (high nibble) and encryption (low nibble).
        data_format: u8,
        /// Bytes of the address field, 1 to 8.
        address_len: u8,
        /// Bytes of the size field, 1 to 8.
        size_len: u8,
        /// The memory address.
        address: u64,
        /// The number of bytes to come.
        size: u64,
    },
    /// 0x36: one block of the download.
    TransferData {
        /// The block sequence counter: 1 for the first block, wrapping 0xFF -> 0x00.
        counter: u8,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// 0x37: the download is complete.
    RequestTransferExit {
        /// Optional transfer-request parameters.
        parameters: &'a [u8],
    },
    /// 0x3E: keep the session alive.
    TesterPresent {
        /// Whether to answer.
        response: PositiveResponse,
    },
    /// 0x22: read the values of up to [`MAX_IDENTIFIERS`] data identifiers.
    ReadDataByIdentifier {
        /// The identifiers, in request order.
        identifiers: Vec<u16>,
    },
}

/// Why bytes are not a request this module understands. Every variant names the byte
/// offset it concerns and maps to the negative response a server sends for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No bytes at all.
    #[error("empty request")]
    Empty,
    /// Byte 0 names a service not handled here.
    #[error("byte 0: service 0x{sid:02X} is not supported")]
    UnknownService {
        /// The service identifier.
        sid: u8,
    },
    /// The request ends before a field it needs.
    #[error("service 0x{sid:02X}: {needed} bytes needed, the request ends at byte {len}")]
    Truncated {
        /// The service identifier.
        sid: u8,
        /// The length the request needs at least.
        needed: usize,
        /// The request's length: the offset where data ran out.
        len: usize,
    },
    /// The request has bytes after its last field.
    #[error("service 0x{sid:02X}: unexpected bytes from offset {offset}")]
    TrailingBytes {
        /// The service identifier.
        sid: u8,
        /// Offset of the first unexpected byte.
        offset: usize,
    },
    /// A sub-function byte holds an unsupported value.
    #[error("service 0x{sid:02X}: byte {offset}: sub-function 0x{value:02X} is not supported")]
    SubFunction {
        /// The service identifier.
        sid: u8,
        /// Offset of the byte.
        offset: usize,
        /// The value (without the suppress bit).
        value: u8,
    },
    /// A length-format byte announces a field width outside 1 to 8 bytes.
    #[error("service 0x{sid:02X}: byte {offset}: field width format 0x{value:02X} is out of range")]
    FieldWidth {
        /// The service identifier.
        sid: u8,
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        value: u8,
    },
    /// More data identifiers than [`MAX_IDENTIFIERS`], or an odd number of bytes for them.
    #[error("service 0x{sid:02X}: byte {offset}: identifier list is malformed or too long")]
    Identifiers {
        /// The service identifier.
        sid: u8,
        /// Offset of the first byte of the list.
        offset: usize,
    },
}

impl RequestError {
    /// The negative response code a server answers this error with.
    pub fn nrc(&self) -> Nrc {
        match self {
            RequestError::Empty
            | RequestError::Truncated { .. }
            | RequestError::TrailingBytes { .. }
            | RequestError::Identifiers { .. } => Nrc::IncorrectMessageLengthOrInvalidFormat,
            RequestError::UnknownService { .. } => Nrc::ServiceNotSupported,
            RequestError::SubFunction { .. } => Nrc::SubFunctionNotSupported,
            RequestError::FieldWidth { .. } => Nrc::RequestOutOfRange,
        }
    }

    /// The service the request was for, when byte 0 was there.
    pub fn service(&self) -> Option<u8> {
        match *self {
            RequestError::Empty => None,
            RequestError::UnknownService { sid }
            | RequestError::Truncated { sid, .. }
            | RequestError::TrailingBytes { sid, .. }
            | RequestError::SubFunction { sid, .. }
            | RequestError::FieldWidth { sid, .. }
            | RequestError::Identifiers { sid, .. } => Some(sid),
        }
    }
}

/// A cursor over the request that reports where data ran out.
struct Reader<'a> {
    sid: u8,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn need(&self, len: usize) -> Result<(), RequestError> {
        if self.bytes.len() < len {
            Err(RequestError::Truncated {
                sid: self.sid,
                needed: len,
                len: self.bytes.len(),
            })
        } else {
            Ok(())
        }
    }

    fn exact(&self, len: usize) -> Result<(), RequestError> {
        self.need(len)?;
        if self.bytes.len() > len {
            return Err(RequestError::TrailingBytes {
                sid: self.sid,
                offset: len,
            });
        }
        Ok(())
    }

    fn sub_function(&self) -> Result<(u8, PositiveResponse), RequestError> {
        self.need(2)?;
        Ok(PositiveResponse::split(self.bytes[1]))
    }

    fn unsupported(&self, value: u8) -> RequestError {
        RequestError::SubFunction {
            sid: self.sid,
            offset: 1,
            value,
        }
    }

    /// A big-endian field of `width` bytes at `offset`; the caller checked the length.
    fn be(&self, offset: usize, width: usize) -> u64 {
        self.bytes[offset..offset + width]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }
}

impl<'a> UdsRequest<'a> {
    /// Parses a request. Never panics; every error names the offending offset.
    pub fn parse(bytes: &'a [u8]) -> Result<UdsRequest<'a>, RequestError> {
        let Some(&sid) = bytes.first() else {
            return Err(RequestError::Empty);
        };
        let r = Reader { sid, bytes };
        match sid {
            service::DIAGNOSTIC_SESSION_CONTROL => {
                let (session, response) = r.sub_function()?;
                r.exact(2)?;
                if session == 0 {
                    return Err(r.unsupported(session));
                }
                Ok(UdsRequest::DiagnosticSessionControl { session, response })
            }
            service::ECU_RESET => {
                let (reset_type, response) = r.sub_function()?;
                r.exact(2)?;
                if reset_type == 0 {
                    return Err(r.unsupported(reset_type));
                }
                Ok(UdsRequest::EcuReset {
                    reset_type,
                    response,
                })
            }
            service::SECURITY_ACCESS => {
                let (sub, response) = r.sub_function()?;
                if sub == 0 || sub == 0x7F {
                    return Err(r.unsupported(sub));
                }
                if sub % 2 == 1 {
                    Ok(UdsRequest::RequestSeed {
                        level: sub,
                        record: &bytes[2..],
                        response,
                    })
                } else {
                    r.need(3)?;
                    Ok(UdsRequest::SendKey {
                        level: sub - 1,
                        key: &bytes[2..],
                        response,
                    })
                }
            }
            service::ROUTINE_CONTROL => {
                let (sub, response) = r.sub_function()?;
                let control = RoutineControlType::from_byte(sub).ok_or(r.unsupported(sub))?;
                r.need(4)?;
                Ok(UdsRequest::RoutineControl {
                    control,
                    routine: u16::from_be_bytes([bytes[2], bytes[3]]),
                    option: &bytes[4..],
                    response,
                })
            }
            service::REQUEST_DOWNLOAD => {
                r.need(3)?;
                let alfid = bytes[2];
                let size_len = alfid >> 4;
                let address_len = alfid & 0x0F;
                if !(1..=8).contains(&size_len) || !(1..=8).contains(&address_len) {
                    return Err(RequestError::FieldWidth {
                        sid,
                        offset: 2,
                        value: alfid,
                    });
                }
                let (a, s) = (usize::from(address_len), usize::from(size_len));
                r.exact(3 + a + s)?;
                Ok(UdsRequest::RequestDownload {
                    data_format: bytes[1],
                    address_len,
                    size_len,
                    address: r.be(3, a),
                    size: r.be(3 + a, s),
                })
            }
            service::TRANSFER_DATA => {
                r.need(2)?;
                Ok(UdsRequest::TransferData {
                    counter: bytes[1],
                    data: &bytes[2..],
                })
            }
            service::REQUEST_TRANSFER_EXIT => Ok(UdsRequest::RequestTransferExit {
                parameters: &bytes[1..],
            }),
            service::TESTER_PRESENT => {
                let (sub, response) = r.sub_function()?;
                r.exact(2)?;
                if sub != 0 {
                    return Err(r.unsupported(sub));
                }
                Ok(UdsRequest::TesterPresent { response })
            }
            service::READ_DATA_BY_IDENTIFIER => {
                r.need(3)?;
                let list = &bytes[1..];
                if list.len() % 2 != 0 || list.len() / 2 > MAX_IDENTIFIERS {
                    return Err(RequestError::Identifiers { sid, offset: 1 });
                }
                Ok(UdsRequest::ReadDataByIdentifier {
                    identifiers: list
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                })
            }
            _ => Err(RequestError::UnknownService { sid }),
        }
    }

    /// The service identifier of the request.
    pub fn service(&self) -> u8 {
        match self {
            UdsRequest::DiagnosticSessionControl { .. } => service::DIAGNOSTIC_SESSION_CONTROL,
            UdsRequest::EcuReset { .. } => service::ECU_RESET,
            UdsRequest::RequestSeed { .. } | UdsRequest::SendKey { .. } => service::SECURITY_ACCESS,
            UdsRequest::RoutineControl { .. } => service::ROUTINE_CONTROL,
            UdsRequest::RequestDownload { .. } => service::REQUEST_DOWNLOAD,
            UdsRequest::TransferData { .. } => service::TRANSFER_DATA,
            UdsRequest::RequestTransferExit { .. } => service::REQUEST_TRANSFER_EXIT,
            UdsRequest::TesterPresent { .. } => service::TESTER_PRESENT,
            UdsRequest::ReadDataByIdentifier { .. } => service::READ_DATA_BY_IDENTIFIER,
        }
    }

    /// Encodes the request. Address and size fields are written with their declared
    /// widths, keeping the low bytes of values too large for them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sid = self.service();
        match self {
            UdsRequest::DiagnosticSessionControl { session, response } => {
                vec![sid, (session & 0x7F) | response.bit()]
            }
            UdsRequest::EcuReset {
                reset_type,
                response,
            } => vec![sid, (reset_type & 0x7F) | response.bit()],
            UdsRequest::RequestSeed {
                level,
                record,
                response,
            } => [&[sid, (level & 0x7F) | response.bit()], *record].concat(),
            UdsRequest::SendKey {
                level,
                key,
                response,
            } => [
                &[sid, (level.wrapping_add(1) & 0x7F) | response.bit()],
                *key,
            ]
            .concat(),
            UdsRequest::RoutineControl {
                control,
                routine,
                option,
                response,
            } => {
                let r = routine.to_be_bytes();
                [
                    &[sid, control.to_byte() | response.bit(), r[0], r[1]],
                    *option,
                ]
                .concat()
            }
            UdsRequest::RequestDownload {
                data_format,
                address_len,
                size_len,
                address,
                size,
            } => {
                let mut out = vec![sid, *data_format, (size_len << 4) | (address_len & 0x0F)];
                let a = usize::from(*address_len).min(8);
                let s = usize::from(*size_len).min(8);
                out.extend_from_slice(&address.to_be_bytes()[8 - a..]);
                out.extend_from_slice(&size.to_be_bytes()[8 - s..]);
                out
            }
            UdsRequest::TransferData { counter, data } => transfer_data(*counter, data),
            UdsRequest::RequestTransferExit { parameters } => [&[sid], *parameters].concat(),
            UdsRequest::TesterPresent { response } => vec![sid, response.bit()],
            UdsRequest::ReadDataByIdentifier { identifiers } => {
                let mut out = vec![sid];
                for id in identifiers {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
        }
    }
}

/// Builds a `TransferData` request with one allocation of exactly the right size.
pub fn transfer_data(counter: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + data.len());
    out.push(service::TRANSFER_DATA);
    out.push(counter);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flashing_requests_parse() {
        assert_eq!(
            UdsRequest::parse(&[0x10, 0x02]),
            Ok(UdsRequest::DiagnosticSessionControl {
                session: 2,
                response: PositiveResponse::Required
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x3E, 0x80]),
            Ok(UdsRequest::TesterPresent {
                response: PositiveResponse::Suppressed
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x27, 0x02, 0xAB, 0xCD]),
            Ok(UdsRequest::SendKey {
                level: 1,
                key: &[0xAB, 0xCD],
                response: PositiveResponse::Required
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x31, 0x01, 0xFF, 0x00, 0x44]),
            Ok(UdsRequest::RoutineControl {
                control: RoutineControlType::Start,
                routine: 0xFF00,
                option: &[0x44],
                response: PositiveResponse::Required
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x34, 0x00, 0x24, 0x00, 0x01, 0x02, 0x03, 0x00, 0x10]),
            Ok(UdsRequest::RequestDownload {
                data_format: 0,
                address_len: 4,
                size_len: 2,
                address: 0x0001_0203,
                size: 0x10,
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x36, 0xFF, 1, 2]),
            Ok(UdsRequest::TransferData {
                counter: 0xFF,
                data: &[1, 2]
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x22, 0xF1, 0x95, 0xF1, 0x89]),
            Ok(UdsRequest::ReadDataByIdentifier {
                identifiers: vec![0xF195, 0xF189]
            })
        );
    }

    #[test]
    fn malformed_requests_name_the_offset_and_the_nrc() {
        let cases: [(&[u8], RequestError, Nrc); 9] = [
            (
                &[],
                RequestError::Empty,
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
            (
                &[0x99],
                RequestError::UnknownService { sid: 0x99 },
                Nrc::ServiceNotSupported,
            ),
            (
                &[0x10],
                RequestError::Truncated {
                    sid: 0x10,
                    needed: 2,
                    len: 1,
                },
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
            (
                &[0x10, 0x02, 0x00],
                RequestError::TrailingBytes {
                    sid: 0x10,
                    offset: 2,
                },
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
            (
                &[0x31, 0x05, 0xFF, 0x00],
                RequestError::SubFunction {
                    sid: 0x31,
                    offset: 1,
                    value: 5,
                },
                Nrc::SubFunctionNotSupported,
            ),
            (
                &[0x34, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RequestError::FieldWidth {
                    sid: 0x34,
                    offset: 2,
                    value: 0x09,
                },
                Nrc::RequestOutOfRange,
            ),
            (
                &[0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 0],
                RequestError::Truncated {
                    sid: 0x34,
                    needed: 11,
                    len: 9,
                },
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
            (
                &[0x27, 0x02],
                RequestError::Truncated {
                    sid: 0x27,
                    needed: 3,
                    len: 2,
                },
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
            (
                &[0x22, 0xF1, 0x95, 0xF1],
                RequestError::Identifiers {
                    sid: 0x22,
                    offset: 1,
                },
                Nrc::IncorrectMessageLengthOrInvalidFormat,
            ),
        ];
        for (bytes, err, nrc) in cases {
            assert_eq!(UdsRequest::parse(bytes), Err(err), "{bytes:02X?}");
            assert_eq!(err.nrc(), nrc);
        }
    }

    #[test]
    fn every_request_round_trips_with_and_without_its_answer() {
        use PositiveResponse::{Required, Suppressed};
        let cases: Vec<(&[u8], UdsRequest<'_>)> = vec![
            (
                &[0x10, 0x03],
                UdsRequest::DiagnosticSessionControl {
                    session: 3,
                    response: Required,
                },
            ),
            (
                &[0x10, 0x81],
                UdsRequest::DiagnosticSessionControl {
                    session: 1,
                    response: Suppressed,
                },
            ),
            (
                &[0x11, 0x01],
                UdsRequest::EcuReset {
                    reset_type: 1,
                    response: Required,
                },
            ),
            (
                &[0x11, 0x83],
                UdsRequest::EcuReset {
                    reset_type: 3,
                    response: Suppressed,
                },
            ),
            (
                &[0x27, 0x03, 0xAA],
                UdsRequest::RequestSeed {
                    level: 3,
                    record: &[0xAA],
                    response: Required,
                },
            ),
            (
                &[0x27, 0x81],
                UdsRequest::RequestSeed {
                    level: 1,
                    record: &[],
                    response: Suppressed,
                },
            ),
            (
                &[0x27, 0x84, 0x01, 0x02],
                UdsRequest::SendKey {
                    level: 3,
                    key: &[0x01, 0x02],
                    response: Suppressed,
                },
            ),
            (
                &[0x27, 0x7E, 0x01],
                UdsRequest::SendKey {
                    level: 0x7D,
                    key: &[0x01],
                    response: Required,
                },
            ),
            (
                &[0x31, 0x02, 0xFF, 0x00],
                UdsRequest::RoutineControl {
                    control: RoutineControlType::Stop,
                    routine: 0xFF00,
                    option: &[],
                    response: Required,
                },
            ),
            (
                &[0x31, 0x83, 0x12, 0x34, 0x01],
                UdsRequest::RoutineControl {
                    control: RoutineControlType::RequestResults,
                    routine: 0x1234,
                    option: &[0x01],
                    response: Suppressed,
                },
            ),
            (
                &[0x34, 0x11, 0x18, 1, 2, 3, 4, 5, 6, 7, 8, 0x20],
                UdsRequest::RequestDownload {
                    data_format: 0x11,
                    address_len: 8,
                    size_len: 1,
                    address: 0x0102_0304_0506_0708,
                    size: 0x20,
                },
            ),
            (
                &[0x34, 0x00, 0x81, 0x42, 1, 2, 3, 4, 5, 6, 7, 8],
                UdsRequest::RequestDownload {
                    data_format: 0,
                    address_len: 1,
                    size_len: 8,
                    address: 0x42,
                    size: 0x0102_0304_0506_0708,
                },
            ),
            (
                &[0x36, 0x00],
                UdsRequest::TransferData {
                    counter: 0,
                    data: &[],
                },
            ),
            (&[0x37], UdsRequest::RequestTransferExit { parameters: &[] }),
            (
                &[0x37, 0xAB, 0xCD],
                UdsRequest::RequestTransferExit {
                    parameters: &[0xAB, 0xCD],
                },
            ),
            (
                &[0x3E, 0x00],
                UdsRequest::TesterPresent { response: Required },
            ),
            (
                &[0x22, 0xF1, 0x95],
                UdsRequest::ReadDataByIdentifier {
                    identifiers: vec![0xF195],
                },
            ),
        ];
        for (bytes, request) in cases {
            assert_eq!(
                UdsRequest::parse(bytes),
                Ok(request.clone()),
                "{bytes:02X?}"
            );
            assert_eq!(request.to_bytes(), bytes, "{request:?}");
            assert_eq!(request.service(), bytes[0]);
        }
        // Encoding keeps the low bytes of a value too large for its declared width.
        let wide = UdsRequest::RequestDownload {
            data_format: 0,
            address_len: 2,
            size_len: 4,
            address: 0x0001_2345,
            size: 0x0000_0001_0000_0010,
        };
        assert_eq!(
            wide.to_bytes(),
            vec![0x34, 0x00, 0x42, 0x23, 0x45, 0x00, 0x00, 0x00, 0x10]
        );
    }

    #[test]
    fn sub_functions_and_field_widths_outside_the_standard_are_refused() {
        let sub = |sid, value| RequestError::SubFunction {
            sid,
            offset: 1,
            value,
        };
        for (bytes, err) in [
            (&[0x27, 0x00][..], sub(0x27, 0)),
            (&[0x27, 0x80], sub(0x27, 0)),
            (&[0x27, 0x7F], sub(0x27, 0x7F)),
            (&[0x27, 0xFF], sub(0x27, 0x7F)),
            (&[0x11, 0x00], sub(0x11, 0)),
            (&[0x11, 0x80], sub(0x11, 0)),
            (&[0x10, 0x80], sub(0x10, 0)),
            (&[0x3E, 0x01], sub(0x3E, 1)),
            (&[0x31, 0x00, 0xFF, 0x00], sub(0x31, 0)),
            (&[0x31, 0x04, 0xFF, 0x00], sub(0x31, 4)),
        ] {
            assert_eq!(UdsRequest::parse(bytes), Err(err), "{bytes:02X?}");
        }
        // Either width alone out of 1..=8 refuses the download.
        for alfid in [0x01u8, 0x10, 0x19, 0x91, 0x00, 0x99] {
            let mut bytes = vec![0x34, 0x00, alfid];
            bytes.extend([0; 18]);
            assert_eq!(
                UdsRequest::parse(&bytes),
                Err(RequestError::FieldWidth {
                    sid: 0x34,
                    offset: 2,
                    value: alfid
                }),
                "{alfid:02X}"
            );
        }
        assert_eq!(
            UdsRequest::parse(&[0x34, 0x00]),
            Err(RequestError::Truncated {
                sid: 0x34,
                needed: 3,
                len: 2
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x34, 0x00, 0x11, 0x00, 0x10, 0x00]),
            Err(RequestError::TrailingBytes {
                sid: 0x34,
                offset: 5
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x31, 0x01, 0xFF]),
            Err(RequestError::Truncated {
                sid: 0x31,
                needed: 4,
                len: 3
            })
        );
        assert_eq!(
            UdsRequest::parse(&[0x36]),
            Err(RequestError::Truncated {
                sid: 0x36,
                needed: 2,
                len: 1
            })
        );
    }

    #[test]
    fn a_read_names_at_most_32_identifiers() {
        let list = |n: u16| -> Vec<u8> {
            let ids: Vec<u16> = (0..n).map(|i| 0xF100 + i).collect();
            let mut bytes = vec![0x22];
            for id in &ids {
                bytes.extend(id.to_be_bytes());
            }
            bytes
        };
        let most = list(32);
        assert_eq!(
            UdsRequest::parse(&most),
            Ok(UdsRequest::ReadDataByIdentifier {
                identifiers: (0..32).map(|i| 0xF100 + i).collect()
            })
        );
        for bytes in [
            list(33),
            list(64),
            list(1)[..2].to_vec(),
            most[..most.len() - 1].to_vec(),
        ] {
            assert_eq!(
                UdsRequest::parse(&bytes).map(|r| r.service()),
                Err(if bytes.len() < 3 {
                    RequestError::Truncated {
                        sid: 0x22,
                        needed: 3,
                        len: 2,
                    }
                } else {
                    RequestError::Identifiers {
                        sid: 0x22,
                        offset: 1,
                    }
                }),
                "{} bytes",
                bytes.len()
            );
        }
    }

    #[test]
    fn a_malformed_request_names_its_service_when_it_has_one() {
        assert_eq!(RequestError::Empty.service(), None);
        for bytes in [&[0x99][..], &[0x10], &[0x10, 0x02, 0], &[0x31, 0x05, 0, 0]] {
            let err = UdsRequest::parse(bytes).unwrap_err();
            assert_eq!(err.service(), Some(bytes[0]), "{err}");
        }
        let err = UdsRequest::parse(&[0x34, 0x00, 0x00]).unwrap_err();
        assert_eq!(err.service(), Some(0x34));
        assert_eq!(err.nrc(), Nrc::RequestOutOfRange);
        let err = UdsRequest::parse(&[0x22, 0xF1, 0x95, 0x00]).unwrap_err();
        assert_eq!(err.service(), Some(0x22));
    }

    fn any_request() -> impl Strategy<Value = Vec<u8>> {
        let sids = prop::sample::select(vec![
            0x10u8, 0x11, 0x22, 0x27, 0x31, 0x34, 0x36, 0x37, 0x3E, 0x99,
        ]);
        (sids, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(sid, rest)| {
            let mut v = vec![sid];
            v.extend(rest);
            v
        })
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_reencodes_exactly(bytes in any_request()) {
            if let Ok(req) = UdsRequest::parse(&bytes) {
                prop_assert_eq!(req.to_bytes(), bytes);
            }
        }

        #[test]
        fn a_truncated_request_is_never_misread(bytes in any_request(), cut in any::<prop::sample::Index>()) {
            // Cutting a valid fixed-layout request short must give an error, never another
            // valid request with fields read past the end.
            if let Ok(req) = UdsRequest::parse(&bytes) {
                let short = &bytes[..cut.index(bytes.len())];
                if let Ok(other) = UdsRequest::parse(short) {
                    // Only requests with a variable-length tail may still parse; their
                    // fixed fields must read the same.
                    prop_assert_eq!(other.service(), req.service());
                    prop_assert_eq!(other.to_bytes(), short.to_vec());
                    let variable_tail = matches!(
                        req,
                        UdsRequest::RequestSeed { .. }
                            | UdsRequest::SendKey { .. }
                            | UdsRequest::RoutineControl { .. }
                            | UdsRequest::TransferData { .. }
                            | UdsRequest::RequestTransferExit { .. }
                            | UdsRequest::ReadDataByIdentifier { .. }
                    );
                    prop_assert!(variable_tail, "{:?} parsed from {:02X?}", other, short);
                }
            }
        }
    }
}
