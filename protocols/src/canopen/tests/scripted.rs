//! The client alone, fed its server's responses by hand: what it puts on the bus, when
//! it gives up, and what it reports.

use super::*;
use crate::canopen::frame::{BlockSegment, ClientRequest, Continuation, ServerResponse, Toggle};

/// Most frames a test takes from the client at once: a sub-block is at most 127
/// segments, so a client that keeps handing out frames fails the test instead of
/// hanging it.
const MAX_FRAMES: usize = 200;

/// The client's scripted clock starts here.
const T0: Timestamp = Timestamp::from_micros(1_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything the client hands out at `now`.
fn transmit(c: &mut SdoClient, now: Timestamp) -> Vec<[u8; 8]> {
    let mut out = Vec::new();
    while let Some(f) = c.poll_transmit(now) {
        out.push(f.data().try_into().expect("SDO frames are 8 bytes"));
        assert!(out.len() <= MAX_FRAMES, "the client never stops sending");
    }
    out
}

/// Every event the client has.
fn events(c: &mut SdoClient) -> Vec<SdoEvent> {
    std::iter::from_fn(|| c.poll_event())
        .take(MAX_FRAMES)
        .collect()
}

fn respond(c: &mut SdoClient, now: Timestamp, r: ServerResponse) {
    c.handle_frame(now, &frame(channel().response, &r.encode()));
}

/// Answers every data request with the bytes of `img`; returns the other events.
/// The server acknowledges `ackseq` segments of the sub-block and asks for sub-blocks of
/// `block_size`, at `T0`.
fn block_ack(c: &mut SdoClient, ackseq: u8, block_size: u8) {
    respond(c, T0, ServerResponse::BlockAck { ackseq, block_size });
}

fn serve(c: &mut SdoClient, now: Timestamp, img: &[u8]) -> Vec<SdoEvent> {
    let mut other = Vec::new();
    for e in events(c) {
        match e {
            SdoEvent::NeedData { offset, len } => {
                let o = offset as usize;
                c.provide_data(now, &img[o..o + len]).unwrap();
            }
            e => other.push(e),
        }
    }
    other
}

/// The sequence number and last flag of each block segment.
fn segments(frames: &[[u8; 8]]) -> Vec<(u8, bool)> {
    frames
        .iter()
        .map(|f| {
            let s = BlockSegment::parse(f).unwrap();
            (s.sequence, s.continuation == Continuation::Last)
        })
        .collect()
}

/// A client whose block download of `img` to SCRATCH the server took with
/// `block_size`, its first sub-block's bytes provided.
fn block_download(img: &[u8], block_size: u8) -> SdoClient {
    let mut c = SdoClient::new(client_config());
    c.download(T0, SCRATCH, img.len() as u32, DownloadMethod::Block)
        .unwrap();
    assert_eq!(transmit(&mut c, T0).len(), 1, "the initiate request");
    respond(
        &mut c,
        T0,
        ServerResponse::InitiateBlockDownload {
            object: SCRATCH,
            crc: CrcSupport::Supported,
            block_size,
        },
    );
    assert_eq!(serve(&mut c, T0, img), vec![]);
    c
}

#[test]
fn the_last_sub_block_carries_only_the_segments_left() {
    // 100 bytes are 15 segments: sub-blocks of 4, 4, 4 and the 3 left, the third of
    // which alone is flagged last; nothing follows it before the acknowledgement.
    let img = image(100);
    let mut c = block_download(&img, 4);
    for _ in 0..3 {
        assert_eq!(
            segments(&transmit(&mut c, T0)),
            vec![(1, false), (2, false), (3, false), (4, false)]
        );
        block_ack(&mut c, 4, 4);
        serve(&mut c, T0, &img);
    }
    assert_eq!(
        segments(&transmit(&mut c, T0)),
        vec![(1, false), (2, false), (3, true)]
    );
    block_ack(&mut c, 3, 4);
    assert_eq!(
        transmit(&mut c, T0)
            .iter()
            .map(|f| ClientRequest::parse(f))
            .collect::<Vec<_>>(),
        vec![Ok(ClientRequest::EndBlockDownload {
            unused: 5,
            crc: crate::checksum::crc16_xmodem(&img)
        })]
    );
}

#[test]
fn the_response_timeout_fires_at_its_deadline_and_not_before() {
    let mut c = SdoClient::new(client_config());
    c.upload(T0, SOFTWARE_ID, 4).unwrap();
    assert_eq!(
        c.poll_timeout(),
        None,
        "no deadline before the request is out"
    );
    assert_eq!(transmit(&mut c, T0).len(), 1);
    let deadline = T0 + ms(1000);
    assert_eq!(c.poll_timeout(), Some(deadline));
    // A caller may call handle_timeout at any time: early calls change nothing.
    for early in [
        T0,
        T0 + ms(500),
        Timestamp::from_micros(deadline.as_micros() - 1),
    ] {
        c.handle_timeout(early);
        assert_eq!(events(&mut c), vec![]);
        assert!(transmit(&mut c, early).is_empty());
        assert_eq!(c.poll_timeout(), Some(deadline));
    }
    c.handle_timeout(deadline);
    assert_eq!(
        events(&mut c),
        vec![SdoEvent::Failed {
            object: SOFTWARE_ID,
            error: SdoError::Timeout {
                awaiting: Awaiting::InitiateResponse,
                timeout: ms(1000)
            }
        }]
    );
    assert_eq!(
        transmit(&mut c, deadline),
        vec![
            ClientRequest::Abort {
                object: SOFTWARE_ID,
                code: AbortCode::Timeout
            }
            .encode()
        ]
    );
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_response_timeout_counts_from_the_request_not_from_an_earlier_abort() {
    // The caller aborts a transfer and starts the next before the abort frame left: the
    // new request's timeout starts when that request is handed out, however long the
    // abort frame ahead of it waited for the bus.
    let mut c = SdoClient::new(client_config());
    c.upload(T0, SOFTWARE_ID, 4).unwrap();
    assert_eq!(transmit(&mut c, T0).len(), 1);
    c.abort(T0, AbortCode::LocalControl);
    c.upload(T0, SOFTWARE_VERSION, 64).unwrap();
    assert_eq!(
        c.poll_transmit(T0).map(|f| f.data()[0]),
        Some(0x80),
        "the abort goes first"
    );
    assert_eq!(c.poll_timeout(), None, "the upload request is not out yet");
    c.handle_timeout(T0 + ms(1500));
    let later = T0 + ms(2000);
    assert_eq!(
        transmit(&mut c, later),
        vec![
            ClientRequest::InitiateUpload {
                object: SOFTWARE_VERSION
            }
            .encode()
        ]
    );
    assert_eq!(c.poll_timeout(), Some(later + ms(1000)));
    assert_eq!(
        events(&mut c),
        vec![SdoEvent::Failed {
            object: SOFTWARE_ID,
            error: SdoError::Cancelled(AbortCode::LocalControl)
        }]
    );
}

#[test]
fn a_failure_withdraws_the_data_requests_not_taken_and_keeps_the_rest() {
    // A block download whose first sub-block was acknowledged: the progress and the
    // request for the next sub-block's bytes are queued when the caller aborts.
    let img = image(100);
    let mut c = block_download(&img, 4);
    assert_eq!(transmit(&mut c, T0).len(), 4);
    block_ack(&mut c, 4, 4);
    c.abort(T0, AbortCode::LocalControl);
    assert_eq!(
        events(&mut c),
        vec![
            SdoEvent::Progress {
                acknowledged: 28,
                total: 100
            },
            SdoEvent::Failed {
                object: SCRATCH,
                error: SdoError::Cancelled(AbortCode::LocalControl)
            }
        ]
    );
    assert_eq!(
        c.provide_data(T0, &img[28..56]),
        Err(ProvideDataError::NotExpected)
    );
}

#[test]
fn an_initiate_answer_of_the_other_kind_of_download_is_refused() {
    // A block request answered as a segmented one, and a segmented request answered
    // as a block one: neither is what the client asked, so it aborts.
    for (method, answer, byte0) in [
        (
            DownloadMethod::Block,
            ServerResponse::InitiateDownload { object: SCRATCH },
            0x60,
        ),
        (
            DownloadMethod::Segmented,
            ServerResponse::InitiateBlockDownload {
                object: SCRATCH,
                crc: CrcSupport::Supported,
                block_size: 4,
            },
            0xA4,
        ),
    ] {
        let mut c = SdoClient::new(client_config());
        c.download(T0, SCRATCH, 100, method).unwrap();
        assert_eq!(transmit(&mut c, T0).len(), 1);
        respond(&mut c, T0, answer);
        assert_eq!(
            events(&mut c),
            vec![SdoEvent::Failed {
                object: SCRATCH,
                error: SdoError::Protocol(Violation::Unexpected(byte0))
            }],
            "{method:?}"
        );
        assert_eq!(
            transmit(&mut c, T0),
            vec![
                ClientRequest::Abort {
                    object: SCRATCH,
                    code: AbortCode::InvalidCommand
                }
                .encode()
            ],
            "{method:?}"
        );
        assert!(c.is_idle());
    }
}

#[test]
fn an_acknowledgement_counts_only_segments_sent_since_the_last_progress() {
    // Four segments went out from offset 0 and were acknowledged; from offset 28 only
    // two went out (the server asked for sub-blocks of 2), so an acknowledgement of a
    // third is of a segment never sent from there.
    let img = image(100);
    let mut c = block_download(&img, 4);
    assert_eq!(transmit(&mut c, T0).len(), 4);
    block_ack(&mut c, 4, 2);
    serve(&mut c, T0, &img);
    assert_eq!(
        segments(&transmit(&mut c, T0)),
        vec![(1, false), (2, false)]
    );
    block_ack(&mut c, 3, 2);
    assert_eq!(
        events(&mut c).last(),
        Some(&SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::Protocol(Violation::AckSequence { ackseq: 3, sent: 2 })
        })
    );
    assert_eq!(
        transmit(&mut c, T0),
        vec![
            ClientRequest::Abort {
                object: SCRATCH,
                code: AbortCode::InvalidSequenceNumber
            }
            .encode()
        ]
    );
}

#[test]
fn an_empty_download_whose_segment_is_not_acknowledged_sends_it_again() {
    // An empty block download still carries one empty segment; a server that
    // acknowledges none of it gets it again, and the end frame only after it.
    let mut c = block_download(&[], 4);
    assert_eq!(segments(&transmit(&mut c, T0)), vec![(1, true)]);
    block_ack(&mut c, 0, 4);
    assert_eq!(segments(&transmit(&mut c, T0)), vec![(1, true)]);
    block_ack(&mut c, 1, 4);
    assert_eq!(
        transmit(&mut c, T0),
        vec![
            ClientRequest::EndBlockDownload {
                unused: 7,
                crc: crate::checksum::crc16_xmodem(&[])
            }
            .encode()
        ]
    );
    respond(&mut c, T0, ServerResponse::EndBlockDownload);
    assert_eq!(
        events(&mut c),
        vec![SdoEvent::Downloaded {
            object: SCRATCH,
            len: 0,
            mode: TransferMode::Block {
                crc: CrcSupport::Supported
            }
        }]
    );
}

/// A client whose segmented upload of SOFTWARE_VERSION, accepting `max_len` bytes, the
/// server began with `size` indicated; the first segment request taken.
fn segmented_upload(max_len: usize, size: Option<u32>) -> SdoClient {
    let mut c = SdoClient::new(client_config());
    c.upload(T0, SOFTWARE_VERSION, max_len).unwrap();
    assert_eq!(transmit(&mut c, T0).len(), 1, "the initiate request");
    respond(
        &mut c,
        T0,
        ServerResponse::InitiateUpload {
            object: SOFTWARE_VERSION,
            payload: frame::InitiatePayload::Segmented { size },
        },
    );
    c
}

/// Feeds the upload segments `sizes` (bytes of `b'a' + k` each), the last one flagged
/// last, each after its segment request; returns the events.
fn upload_segments(c: &mut SdoClient, sizes: &[usize]) -> Vec<SdoEvent> {
    let mut toggle = Toggle::Zero;
    for (k, &n) in sizes.iter().enumerate() {
        assert_eq!(
            transmit(c, T0),
            vec![ClientRequest::UploadSegment { toggle }.encode()],
            "segment request {k}"
        );
        let data = frame::SegmentData::new(&vec![b'a' + k as u8; n]).unwrap();
        let continuation = if k + 1 == sizes.len() {
            Continuation::Last
        } else {
            Continuation::More
        };
        respond(
            c,
            T0,
            ServerResponse::UploadSegment {
                toggle,
                data,
                continuation,
            },
        );
        toggle = toggle.flipped();
    }
    events(c)
}

fn uploaded(len_of_each: &[usize]) -> SdoEvent {
    let data = len_of_each
        .iter()
        .enumerate()
        .flat_map(|(k, &n)| vec![b'a' + k as u8; n])
        .collect();
    SdoEvent::Uploaded {
        object: SOFTWARE_VERSION,
        data,
    }
}

fn upload_failure(error: SdoError) -> SdoEvent {
    SdoEvent::Failed {
        object: SOFTWARE_VERSION,
        error,
    }
}

#[test]
fn an_upload_of_exactly_the_allowed_length_is_taken_one_byte_more_is_not() {
    // Indicated in the initiate answer.
    let mut c = segmented_upload(14, Some(14));
    assert_eq!(upload_segments(&mut c, &[7, 7]), vec![uploaded(&[7, 7])]);
    let mut c = segmented_upload(14, Some(15));
    assert_eq!(
        events(&mut c),
        vec![upload_failure(SdoError::TooLarge { size: 15, max: 14 })]
    );
    // Not indicated: counted as the segments come.
    let mut c = segmented_upload(14, None);
    assert_eq!(upload_segments(&mut c, &[7, 7]), vec![uploaded(&[7, 7])]);
    let mut c = segmented_upload(10, None);
    assert_eq!(
        upload_segments(&mut c, &[7, 7]),
        vec![upload_failure(SdoError::TooLarge { size: 14, max: 10 })]
    );
    assert_eq!(
        transmit(&mut c, T0),
        vec![
            ClientRequest::Abort {
                object: SOFTWARE_VERSION,
                code: AbortCode::OutOfMemory
            }
            .encode()
        ]
    );
}

#[test]
fn an_upload_shorter_or_longer_than_indicated_is_aborted() {
    let mismatch = |received| {
        upload_failure(SdoError::Protocol(Violation::LengthMismatch {
            indicated: 10,
            received,
        }))
    };
    let mut c = segmented_upload(64, Some(10));
    assert_eq!(upload_segments(&mut c, &[7, 3]), vec![uploaded(&[7, 3])]);
    let mut c = segmented_upload(64, Some(10));
    assert_eq!(upload_segments(&mut c, &[7, 2]), vec![mismatch(9)]);
    let mut c = segmented_upload(64, Some(10));
    assert_eq!(upload_segments(&mut c, &[7, 4]), vec![mismatch(11)]);
    assert_eq!(
        transmit(&mut c, T0),
        vec![
            ClientRequest::Abort {
                object: SOFTWARE_VERSION,
                code: AbortCode::LengthMismatch
            }
            .encode()
        ]
    );
}
