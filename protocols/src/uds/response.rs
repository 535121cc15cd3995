//! UDS responses: parsed by clients, built by servers.

use super::Nrc;

/// The byte that opens every negative response.
pub const NEGATIVE_RESPONSE: u8 = 0x7F;
/// What a positive response adds to the request's service identifier.
pub const POSITIVE_OFFSET: u8 = 0x40;

/// A response, borrowing its data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdsResponse<'a> {
    /// The request succeeded.
    Positive {
        /// The service of the request (the response's byte 0 minus 0x40).
        service: u8,
        /// The bytes after byte 0.
        data: &'a [u8],
    },
    /// The request was refused, or its answer is pending ([`Nrc::ResponsePending`]).
    Negative {
        /// The service of the request.
        service: u8,
        /// Why.
        nrc: Nrc,
    },
}

/// Why bytes are not a UDS response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// No bytes at all.
    #[error("empty response")]
    Empty,
    /// Byte 0 is below 0x40, which is a request, not a response.
    #[error("byte 0: 0x{0:02X} is not a response service identifier")]
    NotAResponse(u8),
    /// A negative response is not exactly 3 bytes.
    #[error("negative response of {0} bytes, expected 3")]
    BadNegativeLength(usize),
    /// A positive response is too short for the fields of its service.
    #[error(
        "positive response to service 0x{service:02X} ends at byte {len}, {needed} bytes needed"
    )]
    Truncated {
        /// The service.
        service: u8,
        /// Bytes needed.
        needed: usize,
        /// Bytes present: the offset where data ran out.
        len: usize,
    },
    /// A length-format byte announces a field width outside 1 to 8 bytes.
    #[error("byte {offset}: length format 0x{value:02X} is out of range")]
    FieldWidth {
        /// Offset of the byte in the whole response.
        offset: usize,
        /// The byte.
        value: u8,
    },
}

impl<'a> UdsResponse<'a> {
    /// Parses a response. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<UdsResponse<'a>, ResponseError> {
        let Some(&b0) = bytes.first() else {
            return Err(ResponseError::Empty);
        };
        if b0 == NEGATIVE_RESPONSE {
            if bytes.len() != 3 {
                return Err(ResponseError::BadNegativeLength(bytes.len()));
            }
            return Ok(UdsResponse::Negative {
                service: bytes[1],
                nrc: Nrc::from_byte(bytes[2]),
            });
        }
        if b0 < POSITIVE_OFFSET {
            return Err(ResponseError::NotAResponse(b0));
        }
        Ok(UdsResponse::Positive {
            service: b0 - POSITIVE_OFFSET,
            data: &bytes[1..],
        })
    }

    /// The service of the request this response answers.
    pub fn service(&self) -> u8 {
        match *self {
            UdsResponse::Positive { service, .. } | UdsResponse::Negative { service, .. } => {
                service
            }
        }
    }
}

/// A positive response to `service` carrying `data`.
pub fn positive(service: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(service.wrapping_add(POSITIVE_OFFSET));
    out.extend_from_slice(data);
    out
}

/// A negative response to `service`.
pub fn negative(service: u8, nrc: Nrc) -> Vec<u8> {
    vec![NEGATIVE_RESPONSE, service, nrc.to_byte()]
}

/// The positive response to `RequestDownload`, announcing the largest `TransferData`
/// request the server takes (service byte and counter included), in the narrowest of 2, 4
/// or 8 bytes.
pub fn request_download_positive(max_block_len: u64) -> Vec<u8> {
    let width: usize = if max_block_len <= 0xFFFF {
        2
    } else if max_block_len <= 0xFFFF_FFFF {
        4
    } else {
        8
    };
    let mut out = vec![
        super::service::REQUEST_DOWNLOAD + POSITIVE_OFFSET,
        (width as u8) << 4,
    ];
    out.extend_from_slice(&max_block_len.to_be_bytes()[8 - width..]);
    out
}

/// Reads maxNumberOfBlockLength from the data of a positive `RequestDownload` response
/// (the bytes after `74`).
pub fn parse_max_block_length(data: &[u8]) -> Result<u64, ResponseError> {
    let service = super::service::REQUEST_DOWNLOAD;
    let Some(&lfid) = data.first() else {
        return Err(ResponseError::Truncated {
            service,
            needed: 2,
            len: 1,
        });
    };
    let width = usize::from(lfid >> 4);
    if !(1..=8).contains(&width) {
        return Err(ResponseError::FieldWidth {
            offset: 1,
            value: lfid,
        });
    }
    if data.len() < 1 + width {
        return Err(ResponseError::Truncated {
            service,
            needed: 2 + width,
            len: 1 + data.len(),
        });
    }
    Ok(data[1..=width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn responses_parse() {
        assert_eq!(
            UdsResponse::parse(&[0x7F, 0x36, 0x73]),
            Ok(UdsResponse::Negative {
                service: 0x36,
                nrc: Nrc::WrongBlockSequenceCounter
            })
        );
        assert_eq!(
            UdsResponse::parse(&[0x76, 0x05]),
            Ok(UdsResponse::Positive {
                service: 0x36,
                data: &[0x05]
            })
        );
        assert_eq!(
            UdsResponse::parse(&[0x7F, 0x36]),
            Err(ResponseError::BadNegativeLength(2))
        );
        assert_eq!(
            UdsResponse::parse(&[0x36, 0x05]),
            Err(ResponseError::NotAResponse(0x36))
        );
        assert_eq!(UdsResponse::parse(&[]), Err(ResponseError::Empty));
        // 0x40 is the lowest response identifier, 0x3F the highest request one.
        assert_eq!(
            UdsResponse::parse(&[0x40]),
            Ok(UdsResponse::Positive {
                service: 0x00,
                data: &[]
            })
        );
        assert_eq!(
            UdsResponse::parse(&[0x3F, 0x00]),
            Err(ResponseError::NotAResponse(0x3F))
        );
        assert_eq!(UdsResponse::parse(&[0x71, 0x01]).unwrap().service(), 0x31);
        assert_eq!(
            UdsResponse::parse(&[0x7F, 0x34, 0x70]).unwrap().service(),
            0x34
        );
        assert_eq!(negative(0x31, Nrc::ResponsePending), vec![0x7F, 0x31, 0x78]);
        assert_eq!(positive(0x10, &[0x02]), vec![0x50, 0x02]);
    }

    #[test]
    fn max_block_length_in_every_width() {
        assert_eq!(
            request_download_positive(0x0FFF),
            vec![0x74, 0x20, 0x0F, 0xFF]
        );
        assert_eq!(
            request_download_positive(0x1_0000),
            vec![0x74, 0x40, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(parse_max_block_length(&[0x10, 0x82]), Ok(0x82));
        assert_eq!(
            parse_max_block_length(&[0x30, 0x01, 0x02, 0x03]),
            Ok(0x01_0203)
        );
        assert_eq!(
            parse_max_block_length(&[0x00, 0x82]),
            Err(ResponseError::FieldWidth {
                offset: 1,
                value: 0x00
            })
        );
        assert_eq!(
            parse_max_block_length(&[0x40, 0x01, 0x02]),
            Err(ResponseError::Truncated {
                service: 0x34,
                needed: 6,
                len: 4
            })
        );
        assert!(parse_max_block_length(&[]).is_err());
        // Each width up to the largest value it holds; one more takes the next width.
        for (len, width) in [
            (0xFFFF, 2),
            (0x1_0000, 4),
            (0xFFFF_FFFF, 4),
            (0x1_0000_0000, 8),
        ] {
            let bytes = request_download_positive(len);
            assert_eq!(bytes.len(), 2 + width, "{len:#X}");
            assert_eq!(bytes[1], (width as u8) << 4);
            assert_eq!(parse_max_block_length(&bytes[1..]), Ok(len));
        }
    }

    proptest! {
        #[test]
        fn max_block_length_round_trips(len in any::<u64>()) {
            let bytes = request_download_positive(len);
            match UdsResponse::parse(&bytes) {
                Ok(UdsResponse::Positive { service: 0x34, data }) => {
                    prop_assert_eq!(parse_max_block_length(data), Ok(len));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(UdsResponse::Positive { data, .. }) = UdsResponse::parse(&bytes) {
                if let Ok(v) = parse_max_block_length(data) {
                    let width = usize::from(data[0] >> 4);
                    prop_assert!(width <= 8 && data.len() > width);
                    prop_assert!(width == 8 || v < 1u64 << (8 * width));
                }
            }
        }
    }
}
