//! The SDO frames byte by byte, as CiA 301 lays them out: the exact 8 bytes each request
//! and response encodes to, what each command byte parses as (reserved bits ignored),
//! and which frames are refused with which error and abort code.

use super::*;
use crate::canopen::frame::{
    BlockSegment, ClientRequest, Continuation, ExpeditedData, InitiatePayload, SegmentData,
    ServerResponse, Toggle,
};

/// 0x1F51:02, on the wire `51 1F 02`: index and sub-index all differ, so a swap shows.
const OBJECT: ObjectAddress = ObjectAddress::new(0x1F51, 0x02);

/// An 8-byte frame: command byte `b0` then `rest`.
fn frame8(b0: u8, rest: [u8; 7]) -> [u8; 8] {
    let mut d = [b0; 8];
    d[1..].copy_from_slice(&rest);
    d
}

fn expedited(data: &[u8]) -> InitiatePayload {
    InitiatePayload::Expedited(ExpeditedData::new(data).unwrap())
}

fn segment(data: &[u8]) -> SegmentData {
    SegmentData::new(data).unwrap()
}

// Encoding: the exact bytes on the wire.

#[test]
fn an_expedited_initiate_says_how_many_of_its_four_bytes_are_data() {
    // `001x nnes` for the request, `010x nnes` for the upload answer: n = 4 - length.
    let data = [0xAA, 0xBB, 0xCC, 0xDD];
    for (len, request, response) in [
        (1, 0x2F, 0x4F),
        (2, 0x2B, 0x4B),
        (3, 0x27, 0x47),
        (4, 0x23, 0x43),
    ] {
        let mut tail = [0x51, 0x1F, 0x02, 0, 0, 0, 0];
        tail[3..3 + len].copy_from_slice(&data[..len]);
        let payload = expedited(&data[..len]);
        assert_eq!(
            ClientRequest::InitiateDownload {
                object: OBJECT,
                payload
            }
            .encode(),
            frame8(request, tail),
            "{len} bytes"
        );
        assert_eq!(
            ServerResponse::InitiateUpload {
                object: OBJECT,
                payload
            }
            .encode(),
            frame8(response, tail),
            "{len} bytes"
        );
    }
}

#[test]
fn an_empty_value_goes_out_as_a_segmented_initiate_of_size_zero() {
    let payload = InitiatePayload::Expedited(ExpeditedData::new(&[]).unwrap());
    let tail = [0x51, 0x1F, 0x02, 0, 0, 0, 0];
    assert_eq!(
        ClientRequest::InitiateDownload {
            object: OBJECT,
            payload
        }
        .encode(),
        frame8(0x21, tail)
    );
    assert_eq!(
        ServerResponse::InitiateUpload {
            object: OBJECT,
            payload
        }
        .encode(),
        frame8(0x41, tail)
    );
}

#[test]
fn a_segmented_initiate_carries_the_size_little_endian_only_when_known() {
    let sized = InitiatePayload::Segmented {
        size: Some(0x0A0B_0C0D),
    };
    let unsized_ = InitiatePayload::Segmented { size: None };
    let with_size = [0x51, 0x1F, 0x02, 0x0D, 0x0C, 0x0B, 0x0A];
    let without = [0x51, 0x1F, 0x02, 0, 0, 0, 0];
    for (payload, request, response, tail) in [
        (sized, 0x21, 0x41, with_size),
        (unsized_, 0x20, 0x40, without),
    ] {
        assert_eq!(
            ClientRequest::InitiateDownload {
                object: OBJECT,
                payload
            }
            .encode(),
            frame8(request, tail)
        );
        assert_eq!(
            ServerResponse::InitiateUpload {
                object: OBJECT,
                payload
            }
            .encode(),
            frame8(response, tail)
        );
    }
}

#[test]
fn a_segment_says_its_toggle_its_unused_bytes_and_whether_it_is_last() {
    // `000t nnnc`, then 7 - n data bytes, zero-padded.
    let data = [1, 2, 3, 4, 5, 6, 7];
    for (toggle, len, continuation, b0) in [
        (Toggle::Zero, 7, Continuation::More, 0x00),
        (Toggle::One, 7, Continuation::More, 0x10),
        (Toggle::Zero, 7, Continuation::Last, 0x01),
        (Toggle::Zero, 3, Continuation::Last, 0x09),
        (Toggle::One, 1, Continuation::More, 0x1C),
        (Toggle::One, 6, Continuation::Last, 0x13),
        (Toggle::Zero, 0, Continuation::Last, 0x0F),
    ] {
        let mut tail = [0u8; 7];
        tail[..len].copy_from_slice(&data[..len]);
        let data = segment(&data[..len]);
        assert_eq!(
            ClientRequest::DownloadSegment {
                toggle,
                data,
                continuation
            }
            .encode(),
            frame8(b0, tail),
            "{toggle:?}, {len} bytes, {continuation:?}"
        );
        assert_eq!(
            ServerResponse::UploadSegment {
                toggle,
                data,
                continuation
            }
            .encode(),
            frame8(b0, tail),
            "{toggle:?}, {len} bytes, {continuation:?}"
        );
    }
}

#[test]
fn the_frames_without_data_are_their_command_byte_and_the_object_if_any() {
    let object = [0x51, 0x1F, 0x02, 0, 0, 0, 0];
    let none = [0u8; 7];
    assert_eq!(
        ClientRequest::InitiateUpload { object: OBJECT }.encode(),
        frame8(0x40, object)
    );
    assert_eq!(
        ServerResponse::InitiateDownload { object: OBJECT }.encode(),
        frame8(0x60, object)
    );
    assert_eq!(
        ClientRequest::UploadSegment {
            toggle: Toggle::Zero
        }
        .encode(),
        frame8(0x60, none)
    );
    assert_eq!(
        ClientRequest::UploadSegment {
            toggle: Toggle::One
        }
        .encode(),
        frame8(0x70, none)
    );
    assert_eq!(
        ServerResponse::DownloadSegment {
            toggle: Toggle::Zero
        }
        .encode(),
        frame8(0x20, none)
    );
    assert_eq!(
        ServerResponse::DownloadSegment {
            toggle: Toggle::One
        }
        .encode(),
        frame8(0x30, none)
    );
    assert_eq!(
        ServerResponse::EndBlockDownload.encode(),
        frame8(0xA1, none)
    );
}

#[test]
fn an_abort_carries_the_object_and_the_code_little_endian() {
    for (code, bytes) in [
        (AbortCode::InvalidBlockSize, [0x02, 0x00, 0x04, 0x05]),
        (AbortCode::Other(0xDEAD_BEEF), [0xEF, 0xBE, 0xAD, 0xDE]),
    ] {
        let tail = [0x51, 0x1F, 0x02, bytes[0], bytes[1], bytes[2], bytes[3]];
        assert_eq!(
            ClientRequest::Abort {
                object: OBJECT,
                code
            }
            .encode(),
            frame8(0x80, tail)
        );
        assert_eq!(
            ServerResponse::Abort {
                object: OBJECT,
                code
            }
            .encode(),
            frame8(0x80, tail)
        );
    }
}

#[test]
fn a_block_download_request_says_crc_support_and_the_size_when_known() {
    // `110x xcs0`.
    for (crc, size, b0, size_bytes) in [
        (CrcSupport::NotSupported, None, 0xC0, [0, 0, 0, 0]),
        (CrcSupport::Supported, None, 0xC4, [0, 0, 0, 0]),
        (
            CrcSupport::NotSupported,
            Some(0x0102_0304),
            0xC2,
            [4, 3, 2, 1],
        ),
        (CrcSupport::Supported, Some(0x0102_0304), 0xC6, [4, 3, 2, 1]),
    ] {
        let s = size_bytes;
        assert_eq!(
            ClientRequest::InitiateBlockDownload {
                object: OBJECT,
                crc,
                size
            }
            .encode(),
            frame8(b0, [0x51, 0x1F, 0x02, s[0], s[1], s[2], s[3]]),
            "{crc:?}, {size:?}"
        );
    }
}

#[test]
fn the_end_of_a_block_download_says_the_unused_bytes_and_the_crc() {
    // `110n nn01`, CRC-16 little-endian; an unused count above 7 is masked to 3 bits.
    for (unused, b0) in [(0, 0xC1), (1, 0xC5), (3, 0xCD), (7, 0xDD), (9, 0xC5)] {
        assert_eq!(
            ClientRequest::EndBlockDownload {
                unused,
                crc: 0x1234
            }
            .encode(),
            frame8(b0, [0x34, 0x12, 0, 0, 0, 0, 0]),
            "{unused} unused"
        );
    }
}

#[test]
fn a_block_download_answer_says_crc_support_and_the_block_size() {
    // `101x xc00`, block size in byte 4.
    for (crc, block_size, b0) in [
        (CrcSupport::Supported, 127, 0xA4),
        (CrcSupport::NotSupported, 1, 0xA0),
    ] {
        assert_eq!(
            ServerResponse::InitiateBlockDownload {
                object: OBJECT,
                crc,
                block_size
            }
            .encode(),
            frame8(b0, [0x51, 0x1F, 0x02, block_size, 0, 0, 0])
        );
    }
}

#[test]
fn a_block_acknowledgement_carries_the_sequence_then_the_next_block_size() {
    assert_eq!(
        ServerResponse::BlockAck {
            ackseq: 5,
            block_size: 127
        }
        .encode(),
        frame8(0xA2, [5, 127, 0, 0, 0, 0, 0])
    );
}

#[test]
fn a_block_segment_is_its_sequence_number_with_bit_7_set_on_the_last() {
    let data = [1, 2, 3, 4, 5, 6, 7];
    for (sequence, continuation, b0) in [
        (1, Continuation::More, 0x01),
        (127, Continuation::More, 0x7F),
        (1, Continuation::Last, 0x81),
        (127, Continuation::Last, 0xFF),
        // Out of range: masked to 7 bits.
        (0x85, Continuation::More, 0x05),
    ] {
        assert_eq!(
            BlockSegment {
                sequence,
                continuation,
                data
            }
            .encode(),
            frame8(b0, data),
            "{sequence}, {continuation:?}"
        );
    }
}

// Parsing: what each command byte reads as.

#[test]
fn an_expedited_initiate_reads_as_many_bytes_as_its_size_bits_leave() {
    let tail = [0x51, 0x1F, 0x02, 0xAA, 0xBB, 0xCC, 0xDD];
    let data = [0xAA, 0xBB, 0xCC, 0xDD];
    for n in 0u8..4 {
        let payload = expedited(&data[..4 - usize::from(n)]);
        // Bit 4 is reserved: read the same set or clear.
        for reserved in [0, 0x10] {
            assert_eq!(
                ClientRequest::parse(&frame8(0x23 | reserved | (n << 2), tail)),
                Ok(ClientRequest::InitiateDownload {
                    object: OBJECT,
                    payload
                }),
                "n = {n}"
            );
            assert_eq!(
                ServerResponse::parse(&frame8(0x43 | reserved | (n << 2), tail)),
                Ok(ServerResponse::InitiateUpload {
                    object: OBJECT,
                    payload
                }),
                "n = {n}"
            );
        }
    }
}

#[test]
fn an_expedited_initiate_without_a_size_reads_as_four_bytes() {
    let tail = [0x51, 0x1F, 0x02, 0xAA, 0xBB, 0xCC, 0xDD];
    let payload = expedited(&[0xAA, 0xBB, 0xCC, 0xDD]);
    // The n bits count only with s = 1.
    for b0 in [0x22, 0x2E] {
        assert_eq!(
            ClientRequest::parse(&frame8(b0, tail)),
            Ok(ClientRequest::InitiateDownload {
                object: OBJECT,
                payload
            }),
            "0x{b0:02X}"
        );
        assert_eq!(
            ServerResponse::parse(&frame8(b0 + 0x20, tail)),
            Ok(ServerResponse::InitiateUpload {
                object: OBJECT,
                payload
            }),
            "0x{:02X}",
            b0 + 0x20
        );
    }
}

#[test]
fn a_segmented_initiate_reads_the_size_only_when_indicated() {
    let tail = [0x51, 0x1F, 0x02, 0x0D, 0x0C, 0x0B, 0x0A];
    for (request, response, size) in [(0x21, 0x41, Some(0x0A0B_0C0D)), (0x20, 0x40, None)] {
        let payload = InitiatePayload::Segmented { size };
        assert_eq!(
            ClientRequest::parse(&frame8(request, tail)),
            Ok(ClientRequest::InitiateDownload {
                object: OBJECT,
                payload
            })
        );
        assert_eq!(
            ServerResponse::parse(&frame8(response, tail)),
            Ok(ServerResponse::InitiateUpload {
                object: OBJECT,
                payload
            })
        );
    }
}

#[test]
fn a_segment_reads_seven_bytes_less_its_unused_count() {
    let tail = [1, 2, 3, 4, 5, 6, 7];
    for unused in 0u8..=7 {
        let data = segment(&tail[..7 - usize::from(unused)]);
        for (toggle, t) in [(Toggle::Zero, 0), (Toggle::One, 0x10)] {
            for (continuation, c) in [(Continuation::More, 0), (Continuation::Last, 1)] {
                let b0 = t | (unused << 1) | c;
                assert_eq!(
                    ClientRequest::parse(&frame8(b0, tail)),
                    Ok(ClientRequest::DownloadSegment {
                        toggle,
                        data,
                        continuation
                    }),
                    "0x{b0:02X}"
                );
                assert_eq!(
                    ServerResponse::parse(&frame8(b0, tail)),
                    Ok(ServerResponse::UploadSegment {
                        toggle,
                        data,
                        continuation
                    }),
                    "0x{b0:02X}"
                );
            }
        }
    }
}

#[test]
fn segment_requests_and_confirmations_read_the_toggle_and_ignore_the_rest() {
    let junk = [0xFF; 7];
    for (b0, toggle) in [
        (0x60, Toggle::Zero),
        (0x70, Toggle::One),
        (0x6F, Toggle::Zero),
        (0x7F, Toggle::One),
    ] {
        assert_eq!(
            ClientRequest::parse(&frame8(b0, junk)),
            Ok(ClientRequest::UploadSegment { toggle }),
            "0x{b0:02X}"
        );
        assert_eq!(
            ServerResponse::parse(&frame8(b0 - 0x40, junk)),
            Ok(ServerResponse::DownloadSegment { toggle }),
            "0x{:02X}",
            b0 - 0x40
        );
    }
}

#[test]
fn an_upload_request_and_a_download_answer_read_the_object_and_nothing_else() {
    let tail = [0x51, 0x1F, 0x02, 0xFF, 0xFF, 0xFF, 0xFF];
    for reserved in [0, 0x1F] {
        assert_eq!(
            ClientRequest::parse(&frame8(0x40 | reserved, tail)),
            Ok(ClientRequest::InitiateUpload { object: OBJECT })
        );
        assert_eq!(
            ServerResponse::parse(&frame8(0x60 | reserved, tail)),
            Ok(ServerResponse::InitiateDownload { object: OBJECT })
        );
    }
}

#[test]
fn an_abort_reads_the_object_and_the_code() {
    for (code, bytes) in [
        (AbortCode::InvalidSequenceNumber, [0x03, 0x00, 0x04, 0x05]),
        (AbortCode::Other(0xDEAD_BEEF), [0xEF, 0xBE, 0xAD, 0xDE]),
    ] {
        let tail = [0x51, 0x1F, 0x02, bytes[0], bytes[1], bytes[2], bytes[3]];
        assert_eq!(
            ClientRequest::parse(&frame8(0x80, tail)),
            Ok(ClientRequest::Abort {
                object: OBJECT,
                code
            })
        );
        assert_eq!(
            ServerResponse::parse(&frame8(0x80, tail)),
            Ok(ServerResponse::Abort {
                object: OBJECT,
                code
            })
        );
    }
}

#[test]
fn a_block_download_request_reads_crc_support_and_the_size_when_indicated() {
    let tail = [0x51, 0x1F, 0x02, 4, 3, 2, 1];
    for (b0, crc, size) in [
        (0xC0, CrcSupport::NotSupported, None),
        (0xC4, CrcSupport::Supported, None),
        (0xC2, CrcSupport::NotSupported, Some(0x0102_0304)),
        (0xC6, CrcSupport::Supported, Some(0x0102_0304)),
        // Bits 3 and 4 are reserved.
        (0xD8, CrcSupport::NotSupported, None),
        (0xDE, CrcSupport::Supported, Some(0x0102_0304)),
    ] {
        assert_eq!(
            ClientRequest::parse(&frame8(b0, tail)),
            Ok(ClientRequest::InitiateBlockDownload {
                object: OBJECT,
                crc,
                size
            }),
            "0x{b0:02X}"
        );
    }
}

#[test]
fn the_end_of_a_block_download_reads_the_unused_bytes_and_the_crc() {
    let tail = [0x34, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    for unused in 0u8..=7 {
        // Bit 1 is reserved.
        for reserved in [0, 0x02] {
            let b0 = 0xC1 | (unused << 2) | reserved;
            assert_eq!(
                ClientRequest::parse(&frame8(b0, tail)),
                Ok(ClientRequest::EndBlockDownload {
                    unused,
                    crc: 0x1234
                }),
                "0x{b0:02X}"
            );
        }
    }
}

#[test]
fn a_block_download_answer_reads_crc_support_and_the_block_size() {
    for (b0, crc, block_size) in [
        (0xA4, CrcSupport::Supported, 127),
        (0xA0, CrcSupport::NotSupported, 1),
        // Bits 3 and 4 are reserved.
        (0xBC, CrcSupport::Supported, 64),
        (0xB8, CrcSupport::NotSupported, 64),
    ] {
        assert_eq!(
            ServerResponse::parse(&frame8(
                b0,
                [0x51, 0x1F, 0x02, block_size, 0xFF, 0xFF, 0xFF]
            )),
            Ok(ServerResponse::InitiateBlockDownload {
                object: OBJECT,
                crc,
                block_size
            }),
            "0x{b0:02X}"
        );
    }
}

#[test]
fn a_block_download_answer_with_a_block_size_outside_1_to_127_is_refused_at_byte_4() {
    for value in [0, 128, 255] {
        let error = SdoFrameError::BlockSize { byte: 4, value };
        assert_eq!(
            ServerResponse::parse(&frame8(0xA4, [0x51, 0x1F, 0x02, value, 1, 1, 1])),
            Err(error)
        );
        assert_eq!(error.abort_code(), AbortCode::InvalidBlockSize);
    }
}

#[test]
fn a_block_acknowledgement_reads_the_sequence_then_the_next_block_size() {
    // Bits 2 to 4 are reserved.
    for b0 in [0xA2, 0xBE] {
        for (ackseq, block_size) in [(0, 1), (127, 127), (5, 64)] {
            assert_eq!(
                ServerResponse::parse(&frame8(
                    b0,
                    [ackseq, block_size, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
                )),
                Ok(ServerResponse::BlockAck { ackseq, block_size }),
                "0x{b0:02X}, {ackseq}, {block_size}"
            );
        }
    }
}

#[test]
fn a_block_acknowledgement_of_a_sequence_above_127_is_refused() {
    for ackseq in [128, 255] {
        assert_eq!(
            ServerResponse::parse(&frame8(0xA2, [ackseq, 10, 0, 0, 0, 0, 0])),
            Err(SdoFrameError::AckSequence(ackseq))
        );
    }
    // The sequence is checked before the block size.
    assert_eq!(
        ServerResponse::parse(&frame8(0xA2, [200, 0, 0, 0, 0, 0, 0])),
        Err(SdoFrameError::AckSequence(200))
    );
    assert_eq!(
        SdoFrameError::AckSequence(128).abort_code(),
        AbortCode::InvalidSequenceNumber
    );
}

#[test]
fn a_block_acknowledgement_with_a_block_size_outside_1_to_127_is_refused_at_byte_2() {
    for value in [0, 128, 255] {
        assert_eq!(
            ServerResponse::parse(&frame8(0xA2, [5, value, 0, 0, 0, 0, 0])),
            Err(SdoFrameError::BlockSize { byte: 2, value })
        );
    }
}

#[test]
fn the_end_of_a_block_download_answer_reads_whatever_its_other_bits() {
    for b0 in [0xA1, 0xBD] {
        assert_eq!(
            ServerResponse::parse(&frame8(b0, [0xFF; 7])),
            Ok(ServerResponse::EndBlockDownload),
            "0x{b0:02X}"
        );
    }
}

/// Each first byte of `b0s`, followed by seven bytes of 1, is refused by `parse` with
/// `error(b0)`, and the abort that answers it carries `abort`.
fn refused_by_first_byte<T: std::fmt::Debug + PartialEq>(
    parse: fn(&[u8]) -> Result<T, SdoFrameError>,
    b0s: &[u8],
    error: fn(u8) -> SdoFrameError,
    abort: AbortCode,
) {
    for &b0 in b0s {
        assert_eq!(parse(&frame8(b0, [1; 7])), Err(error(b0)), "0x{b0:02X}");
        assert_eq!(error(b0).abort_code(), abort, "0x{b0:02X}");
    }
}

#[test]
fn block_download_answer_subcommand_3_is_refused() {
    refused_by_first_byte(
        ServerResponse::parse,
        &[0xA3, 0xBF],
        SdoFrameError::UnknownSubcommand,
        AbortCode::InvalidCommand,
    );
}

#[test]
fn block_upload_is_refused_on_both_sides() {
    // Client command specifier 5, server command specifier 6.
    refused_by_first_byte(
        ClientRequest::parse,
        &[0xA0, 0xA4, 0xBF],
        SdoFrameError::BlockUpload,
        AbortCode::InvalidCommand,
    );
    refused_by_first_byte(
        ServerResponse::parse,
        &[0xC0, 0xC1, 0xDF],
        SdoFrameError::BlockUpload,
        AbortCode::InvalidCommand,
    );
}

#[test]
fn command_specifier_7_is_refused_on_both_sides() {
    let b0s = [0xE0, 0xE1, 0xFF];
    refused_by_first_byte(
        ClientRequest::parse,
        &b0s,
        SdoFrameError::UnknownCommand,
        AbortCode::InvalidCommand,
    );
    refused_by_first_byte(
        ServerResponse::parse,
        &b0s,
        SdoFrameError::UnknownCommand,
        AbortCode::InvalidCommand,
    );
}

#[test]
fn a_frame_of_7_or_9_bytes_is_refused_with_its_length() {
    for len in [0, 7, 9] {
        let data = vec![0x40; len];
        assert_eq!(ClientRequest::parse(&data), Err(SdoFrameError::Length(len)));
        assert_eq!(
            ServerResponse::parse(&data),
            Err(SdoFrameError::Length(len))
        );
        assert_eq!(BlockSegment::parse(&data), Err(SdoFrameError::Length(len)));
    }
    assert_eq!(
        SdoFrameError::Length(7).abort_code(),
        AbortCode::InvalidCommand
    );
}

#[test]
fn a_block_segment_reads_its_sequence_and_whether_it_is_last() {
    let data = [1, 2, 3, 4, 5, 6, 7];
    for (b0, sequence, continuation) in [
        (0x01, 1, Continuation::More),
        (0x7F, 127, Continuation::More),
        (0x81, 1, Continuation::Last),
        (0xFF, 127, Continuation::Last),
        (0x85, 5, Continuation::Last),
    ] {
        assert_eq!(
            BlockSegment::parse(&frame8(b0, data)),
            Ok(BlockSegment {
                sequence,
                continuation,
                data
            }),
            "0x{b0:02X}"
        );
    }
}

#[test]
fn a_block_segment_numbered_0_is_refused() {
    refused_by_first_byte(
        BlockSegment::parse,
        &[0x00, 0x80],
        SdoFrameError::SequenceZero,
        AbortCode::InvalidSequenceNumber,
    );
}

#[test]
fn a_frame_error_names_the_byte_and_the_value() {
    for (error, text) in [
        (
            SdoFrameError::Length(7),
            "an SDO frame carries 8 data bytes, this one has 7",
        ),
        (
            SdoFrameError::UnknownCommand(0xE0),
            "byte 0 = 0xE0: command specifier 7 does not exist",
        ),
        (
            SdoFrameError::BlockUpload(0xA4),
            "byte 0 = 0xA4: block upload is not supported",
        ),
        (
            SdoFrameError::UnknownSubcommand(0xA3),
            "byte 0 = 0xA3: block download response subcommand 3 does not exist",
        ),
        (
            SdoFrameError::BlockSize { byte: 2, value: 0 },
            "byte 2: block size 0 is not within 1 to 127",
        ),
        (
            SdoFrameError::AckSequence(128),
            "byte 1: acknowledged sequence number 128 is above 127",
        ),
        (
            SdoFrameError::SequenceZero(0x80),
            "byte 0 = 0x80: block segment sequence number 0 does not exist",
        ),
    ] {
        assert_eq!(error.to_string(), text);
    }
}

// The typed parts.

#[test]
fn frame_data_holds_up_to_its_capacity_and_no_more() {
    let four = ExpeditedData::new(&[1, 2, 3, 4]).unwrap();
    assert_eq!(
        (four.as_slice(), four.len(), four.is_empty()),
        (&[1, 2, 3, 4][..], 4, false)
    );
    assert_eq!(ExpeditedData::new(&[1, 2, 3, 4, 5]), None);
    let seven = SegmentData::new(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    assert_eq!(
        (seven.as_slice(), seven.len()),
        (&[1, 2, 3, 4, 5, 6, 7][..], 7)
    );
    assert_eq!(SegmentData::new(&[0; 8]), None);
    let one = SegmentData::new(&[9]).unwrap();
    assert_eq!(
        (one.as_slice(), one.len(), one.is_empty()),
        (&[9][..], 1, false)
    );
    let empty = SegmentData::new(&[]).unwrap();
    assert_eq!(
        (empty.as_slice(), empty.len(), empty.is_empty()),
        (&[][..], 0, true)
    );
}

#[test]
fn frame_data_prints_as_its_bytes_in_hex() {
    assert_eq!(
        format!("{:?}", ExpeditedData::new(&[0x0A, 0xFF]).unwrap()),
        "[0A, FF]"
    );
    assert_eq!(format!("{:?}", SegmentData::new(&[]).unwrap()), "[]");
}

#[test]
fn a_toggle_flips_both_ways() {
    assert_eq!(Toggle::Zero.flipped(), Toggle::One);
    assert_eq!(Toggle::One.flipped(), Toggle::Zero);
}

#[test]
fn a_block_transfer_uses_the_crc_only_when_both_sides_support_it() {
    use CrcSupport::{NotSupported, Supported};
    assert_eq!(Supported.and(Supported), Supported);
    assert_eq!(Supported.and(NotSupported), NotSupported);
    assert_eq!(NotSupported.and(Supported), NotSupported);
    assert_eq!(NotSupported.and(NotSupported), NotSupported);
}
