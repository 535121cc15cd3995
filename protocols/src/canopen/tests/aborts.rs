//! Abort codes, timeouts, and each side's answers to a peer that breaks the protocol.

use super::*;
use crate::canopen::frame::{BlockSegment, ClientRequest, Continuation, ServerResponse};

fn deliver(_: Dir, _: &CanFrame, _: usize) -> Fate {
    Fate::Deliver
}

#[test]
fn every_abort_code_reaches_the_client_decoded() {
    let mut codes = AbortCode::NAMED.to_vec();
    codes.push(AbortCode::Other(0x0BAD_F00D));
    for code in codes {
        let mut device = Device::new();
        device.refuse_begin = Some(code);
        let img = image(20);
        let run = download_with(
            client_config(),
            SdoServerConfig::default(),
            device,
            SCRATCH,
            &img,
            DownloadMethod::Segmented,
            deliver,
        );
        assert_eq!(
            run.outcome(),
            &SdoEvent::Failed {
                object: SCRATCH,
                error: SdoError::ServerAbort(code)
            },
            "{code}"
        );
        let wire = run.sim.sent(Dir::ToClient)[0];
        assert_eq!(wire[..4], [0x80, 0x00, 0x20, 0x00]);
        assert_eq!(
            u32::from_le_bytes(wire[4..].try_into().unwrap()),
            code.to_u32()
        );
        if let SdoEvent::Failed { error, .. } = run.outcome() {
            assert_eq!(error.abort_code(), code);
            assert!(error.to_string().contains(code.description()));
        }
    }
}

#[test]
fn the_standard_codes_have_their_values() {
    let table = [
        (AbortCode::ToggleNotAlternated, 0x0503_0000),
        (AbortCode::Timeout, 0x0504_0000),
        (AbortCode::InvalidCommand, 0x0504_0001),
        (AbortCode::InvalidBlockSize, 0x0504_0002),
        (AbortCode::InvalidSequenceNumber, 0x0504_0003),
        (AbortCode::CrcError, 0x0504_0004),
        (AbortCode::OutOfMemory, 0x0504_0005),
        (AbortCode::ReadOnly, 0x0601_0002),
        (AbortCode::ObjectDoesNotExist, 0x0602_0000),
        (AbortCode::LengthMismatch, 0x0607_0010),
        (AbortCode::GeneralError, 0x0800_0000),
        (AbortCode::DataCannotBeStored, 0x0800_0020),
        (AbortCode::LocalControl, 0x0800_0021),
        (AbortCode::DeviceState, 0x0800_0022),
    ];
    for (code, value) in table {
        assert_eq!(code.to_u32(), value, "{code:?}");
        assert_eq!(AbortCode::from_u32(value), code);
    }
}

#[test]
fn a_silent_server_times_out_after_the_configured_time() {
    for timeout in [Duration::from_millis(250), Duration::from_millis(1000)] {
        let config = SdoClientConfig {
            timeout,
            ..client_config()
        };
        let img = image(50);
        let run = download_with(
            config,
            SdoServerConfig::default(),
            Device::new(),
            SCRATCH,
            &img,
            DownloadMethod::Block,
            |dir, _, _| {
                if dir == Dir::ToClient {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            },
        );
        assert_eq!(
            run.outcome(),
            &SdoEvent::Failed {
                object: SCRATCH,
                error: SdoError::Timeout {
                    awaiting: client::Awaiting::InitiateResponse,
                    timeout
                }
            }
        );
        // The deadline runs from when the initiate request was handed out; the abort
        // then takes one frame time on the bus.
        assert_eq!(run.sim.elapsed(), timeout + FRAME_TIME);
        assert_eq!(
            *run.sim.sent(Dir::ToServer).last().unwrap(),
            [0x80, 0x00, 0x20, 0x00, 0x00, 0x00, 0x04, 0x05]
        );
    }
}

#[test]
fn a_server_whose_client_went_silent_aborts_with_a_timeout() {
    let server_config = SdoServerConfig {
        timeout: Duration::from_millis(300),
        ..SdoServerConfig::default()
    };
    let config = SdoClientConfig {
        timeout: Duration::from_secs(5),
        ..client_config()
    };
    let img = image(100);
    let run = download_with(
        config,
        server_config,
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Segmented,
        |dir, _, n| {
            if dir == Dir::ToServer && n >= 3 {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::ServerAbort(AbortCode::Timeout)
        }
    );
    assert_eq!(run.device().aborted, vec![(SCRATCH, AbortCode::Timeout)]);
    assert!(run.device().ended.is_empty());
    assert!(run.sim.elapsed() >= Duration::from_millis(300));
    assert!(run.sim.elapsed() < Duration::from_millis(400));
}

#[test]
fn a_silent_client_in_a_sub_block_is_acknowledged_then_timed_out() {
    // The client stops after 10 segments: the server acknowledges them after the
    // sub-block timeout, then gives up after its transfer timeout.
    let ch = channel();
    let mut server = server(SdoServerConfig::default(), Device::new());
    let mut now = Timestamp::from_micros(1_000);
    let init = ClientRequest::InitiateBlockDownload {
        object: SCRATCH,
        crc: CrcSupport::Supported,
        size: Some(1000),
    };
    server.handle_frame(now, &frame(ch.request, &init.encode()));
    assert_eq!(server.poll_transmit(now).unwrap().data()[0], 0xA4);
    for sequence in 1..=10 {
        let seg = BlockSegment {
            sequence,
            continuation: Continuation::More,
            data: [sequence; 7],
        };
        server.handle_frame(now, &frame(ch.request, &seg.encode()));
        assert_eq!(server.poll_transmit(now), None);
    }
    let at = server.poll_timeout().unwrap();
    assert_eq!(at, now + Duration::from_millis(100));
    now = at;
    server.handle_timeout(now);
    assert_eq!(
        server.poll_transmit(now).unwrap().data(),
        &[0xA2, 10, 127, 0, 0, 0, 0, 0]
    );
    let at = server.poll_timeout().unwrap();
    assert_eq!(at, now + Duration::from_millis(1000));
    server.handle_timeout(at);
    assert_eq!(
        server.poll_transmit(at).unwrap().data(),
        &[0x80, 0x00, 0x20, 0x00, 0x00, 0x00, 0x04, 0x05]
    );
    assert_eq!(
        server.dictionary().aborted,
        vec![(SCRATCH, AbortCode::Timeout)]
    );
    assert_eq!(
        server.dictionary().offsets(SCRATCH),
        (0..10u64).map(|k| k * 7).collect::<Vec<_>>()
    );
}

/// A client with a transfer started and its first frame taken.
fn client_after(start: impl FnOnce(&mut SdoClient, Timestamp)) -> (SdoClient, SdoChannel) {
    let ch = channel();
    let mut c = SdoClient::new(client_config());
    let now = Timestamp::ZERO;
    start(&mut c, now);
    (c, ch)
}

fn respond(c: &mut SdoClient, ch: SdoChannel, r: ServerResponse) {
    c.handle_frame(Timestamp::ZERO, &frame(ch.response, &r.encode()));
}

fn last_event(c: &mut SdoClient) -> Option<SdoEvent> {
    let mut last = None;
    while let Some(e) = c.poll_event() {
        last = Some(e);
    }
    last
}

fn drain(c: &mut SdoClient) -> Vec<[u8; 8]> {
    let mut out = Vec::new();
    while let Some(f) = c.poll_transmit(Timestamp::ZERO) {
        out.push(f.data().try_into().unwrap());
        assert!(out.len() <= 200, "the client never stops sending");
    }
    out
}

fn protocol_failure(violation: Violation) -> Option<SdoEvent> {
    Some(SdoEvent::Failed {
        object: SCRATCH,
        error: SdoError::Protocol(violation),
    })
}

#[test]
fn the_client_aborts_a_segment_with_the_wrong_toggle() {
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 20, DownloadMethod::Segmented)
            .unwrap();
    });
    drain(&mut c);
    respond(
        &mut c,
        ch,
        ServerResponse::InitiateDownload { object: SCRATCH },
    );
    assert_eq!(
        last_event(&mut c),
        Some(SdoEvent::NeedData { offset: 0, len: 20 })
    );
    c.provide_data(Timestamp::ZERO, &image(20)).unwrap();
    assert_eq!(drain(&mut c)[0][0], 0x00, "toggle 0, 7 bytes, more");
    respond(
        &mut c,
        ch,
        ServerResponse::DownloadSegment {
            toggle: frame::Toggle::One,
        },
    );
    assert_eq!(last_event(&mut c), protocol_failure(Violation::Toggle));
    assert_eq!(
        drain(&mut c),
        vec![[0x80, 0x00, 0x20, 0x00, 0x00, 0x00, 0x03, 0x05]]
    );
    assert!(c.is_idle());
}

#[test]
fn the_client_aborts_an_acknowledgement_of_segments_never_sent() {
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Block)
            .unwrap();
    });
    assert_eq!(drain(&mut c)[0][0], 0xC6);
    respond(
        &mut c,
        ch,
        ServerResponse::InitiateBlockDownload {
            object: SCRATCH,
            crc: CrcSupport::Supported,
            block_size: 4,
        },
    );
    assert_eq!(
        last_event(&mut c),
        Some(SdoEvent::NeedData { offset: 0, len: 28 })
    );
    c.provide_data(Timestamp::ZERO, &image(28)).unwrap();
    assert_eq!(drain(&mut c).len(), 4);
    respond(
        &mut c,
        ch,
        ServerResponse::BlockAck {
            ackseq: 5,
            block_size: 4,
        },
    );
    assert_eq!(
        last_event(&mut c),
        protocol_failure(Violation::AckSequence { ackseq: 5, sent: 4 })
    );
    assert_eq!(
        drain(&mut c),
        vec![[0x80, 0x00, 0x20, 0x00, 0x03, 0x00, 0x04, 0x05]]
    );
}

#[test]
fn the_client_aborts_an_invalid_block_size() {
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Block)
            .unwrap();
    });
    drain(&mut c);
    // 0xA4 with block size 0 does not parse; the client answers with 0x05040002.
    c.handle_frame(
        Timestamp::ZERO,
        &frame(ch.response, &[0xA4, 0x00, 0x20, 0x00, 0, 0, 0, 0]),
    );
    assert_eq!(
        last_event(&mut c),
        protocol_failure(Violation::Malformed(SdoFrameError::BlockSize {
            byte: 4,
            value: 0
        }))
    );
    assert_eq!(
        drain(&mut c),
        vec![[0x80, 0x00, 0x20, 0x00, 0x02, 0x00, 0x04, 0x05]]
    );
}

#[test]
fn the_client_aborts_a_response_for_another_object_or_of_another_kind() {
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Segmented)
            .unwrap();
    });
    drain(&mut c);
    let other = ObjectAddress::new(0x2000, 1);
    respond(
        &mut c,
        ch,
        ServerResponse::InitiateDownload { object: other },
    );
    assert_eq!(
        last_event(&mut c),
        protocol_failure(Violation::WrongObject(other))
    );
    assert_eq!(drain(&mut c)[0][4..], [0x01, 0x00, 0x04, 0x05]);

    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Segmented)
            .unwrap();
    });
    drain(&mut c);
    respond(&mut c, ch, ServerResponse::EndBlockDownload);
    assert_eq!(
        last_event(&mut c),
        protocol_failure(Violation::Unexpected(0xA1))
    );
}

#[test]
fn the_client_ignores_short_frames_and_other_identifiers() {
    let (mut c, ch) = client_after(|c, now| {
        c.upload(now, SOFTWARE_ID, 4).unwrap();
    });
    drain(&mut c);
    let full = ServerResponse::InitiateUpload {
        object: SOFTWARE_ID,
        payload: frame::InitiatePayload::Expedited(
            frame::ExpeditedData::new(&[1, 2, 3, 4]).unwrap(),
        ),
    }
    .encode();
    for len in 0..8 {
        c.handle_frame(Timestamp::ZERO, &frame(ch.response, &full[..len]));
    }
    c.handle_frame(Timestamp::ZERO, &frame(ch.request, &full));
    c.handle_frame(
        Timestamp::ZERO,
        &frame(bmsfw_plugin_api::CanId::standard(0x586).unwrap(), &full),
    );
    assert_eq!(c.poll_event(), None);
    assert!(drain(&mut c).is_empty());
    c.handle_frame(Timestamp::ZERO, &frame(ch.response, &full));
    assert_eq!(
        c.poll_event(),
        Some(SdoEvent::Uploaded {
            object: SOFTWARE_ID,
            data: vec![1, 2, 3, 4]
        })
    );
}

#[test]
fn the_caller_can_abort_a_transfer() {
    let (mut c, _) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Block)
            .unwrap();
    });
    drain(&mut c);
    c.abort(Timestamp::ZERO, AbortCode::LocalControl);
    assert_eq!(
        last_event(&mut c),
        Some(SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::Cancelled(AbortCode::LocalControl)
        })
    );
    assert_eq!(
        drain(&mut c),
        vec![[0x80, 0x00, 0x20, 0x00, 0x21, 0x00, 0x00, 0x08]]
    );
    assert!(c.is_idle());
    c.abort(Timestamp::ZERO, AbortCode::LocalControl);
    assert!(drain(&mut c).is_empty(), "an idle client sends nothing");
}

/// A server fed frames one by one; returns what it sent after each.
struct Bench {
    server: SdoServer<Device>,
    ch: SdoChannel,
    now: Timestamp,
}

impl Bench {
    fn new(config: SdoServerConfig) -> Bench {
        Bench {
            server: server(config, Device::new()),
            ch: channel(),
            now: Timestamp::from_micros(10),
        }
    }

    fn send(&mut self, data: &[u8]) -> Vec<[u8; 8]> {
        self.server
            .handle_frame(self.now, &frame(self.ch.request, data));
        let mut out = Vec::new();
        while let Some(f) = self.server.poll_transmit(self.now) {
            out.push(f.data().try_into().unwrap());
            assert!(out.len() <= 200, "the server never stops sending");
        }
        out
    }

    fn request(&mut self, r: ClientRequest) -> Vec<[u8; 8]> {
        self.send(&r.encode())
    }

    fn segment(&mut self, sequence: u8, continuation: Continuation) -> Vec<[u8; 8]> {
        self.send(
            &BlockSegment {
                sequence,
                continuation,
                data: [sequence; 7],
            }
            .encode(),
        )
    }

    fn begin_block(&mut self, size: u32) {
        let out = self.request(ClientRequest::InitiateBlockDownload {
            object: SCRATCH,
            crc: CrcSupport::NotSupported,
            size: Some(size),
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0], 0xA4);
    }
}

fn abort_of(object: ObjectAddress, code: AbortCode) -> Vec<[u8; 8]> {
    vec![ServerResponse::Abort { object, code }.encode()]
}

#[test]
fn the_server_aborts_a_sequence_number_beyond_the_block_or_zero() {
    let mut b = Bench::new(SdoServerConfig {
        block_size: 4,
        ..SdoServerConfig::default()
    });
    b.begin_block(100);
    assert!(b.segment(1, Continuation::More).is_empty());
    assert_eq!(
        b.segment(5, Continuation::More),
        abort_of(SCRATCH, AbortCode::InvalidSequenceNumber)
    );
    assert_eq!(
        b.server.dictionary().aborted,
        vec![(SCRATCH, AbortCode::InvalidSequenceNumber)]
    );

    let mut b = Bench::new(SdoServerConfig::default());
    b.begin_block(100);
    assert_eq!(
        b.send(&[0x00, 1, 2, 3, 4, 5, 6, 7]),
        abort_of(SCRATCH, AbortCode::InvalidSequenceNumber)
    );
}

#[test]
fn the_server_ignores_repeated_segments() {
    let mut b = Bench::new(SdoServerConfig {
        block_size: 3,
        ..SdoServerConfig::default()
    });
    b.begin_block(21);
    assert!(b.segment(1, Continuation::More).is_empty());
    assert!(b.segment(1, Continuation::More).is_empty());
    assert!(b.segment(2, Continuation::More).is_empty());
    assert!(b.segment(1, Continuation::More).is_empty());
    assert_eq!(
        b.segment(3, Continuation::Last),
        vec![
            ServerResponse::BlockAck {
                ackseq: 3,
                block_size: 3
            }
            .encode()
        ]
    );
    assert_eq!(b.server.dictionary().offsets(SCRATCH), vec![0, 7]);
    assert_eq!(
        b.request(ClientRequest::EndBlockDownload { unused: 0, crc: 0 }),
        vec![[0xA1, 0, 0, 0, 0, 0, 0, 0]]
    );
    assert_eq!(
        b.server.dictionary().scratch,
        [[1u8; 7], [2; 7], [3; 7]].concat()
    );
}

#[test]
fn the_server_aborts_a_block_download_of_another_length_than_announced() {
    let mut b = Bench::new(SdoServerConfig::default());
    b.begin_block(10);
    assert!(b.segment(1, Continuation::More).is_empty());
    assert_eq!(b.segment(2, Continuation::Last).len(), 1);
    assert_eq!(
        b.request(ClientRequest::EndBlockDownload { unused: 0, crc: 0 }),
        abort_of(SCRATCH, AbortCode::LengthMismatch)
    );

    let mut b = Bench::new(SdoServerConfig::default());
    b.begin_block(10);
    assert!(b.segment(1, Continuation::More).is_empty());
    assert_eq!(
        b.segment(2, Continuation::More),
        abort_of(SCRATCH, AbortCode::LengthTooHigh),
        "a second full segment overruns 10 bytes"
    );
}

#[test]
fn the_server_aborts_segmented_downloads_that_break_the_rules() {
    let init = ClientRequest::InitiateDownload {
        object: SCRATCH,
        payload: frame::InitiatePayload::Segmented { size: Some(10) },
    };
    let seg = |toggle, len: usize, continuation| ClientRequest::DownloadSegment {
        toggle,
        data: frame::SegmentData::new(&[7; 7][..len]).unwrap(),
        continuation,
    };
    let mut b = Bench::new(SdoServerConfig::default());
    assert_eq!(b.request(init)[0][0], 0x60);
    assert_eq!(
        b.request(seg(frame::Toggle::One, 7, Continuation::More)),
        abort_of(SCRATCH, AbortCode::ToggleNotAlternated)
    );

    let mut b = Bench::new(SdoServerConfig::default());
    b.request(init);
    assert_eq!(
        b.request(seg(frame::Toggle::Zero, 7, Continuation::More)),
        vec![[0x20, 0, 0, 0, 0, 0, 0, 0]]
    );
    assert_eq!(
        b.request(seg(frame::Toggle::One, 7, Continuation::Last)),
        abort_of(SCRATCH, AbortCode::LengthTooHigh)
    );

    let mut b = Bench::new(SdoServerConfig::default());
    b.request(init);
    assert_eq!(
        b.request(seg(frame::Toggle::Zero, 2, Continuation::Last)),
        abort_of(SCRATCH, AbortCode::LengthTooLow)
    );
    assert_eq!(
        b.server.dictionary().aborted,
        vec![(SCRATCH, AbortCode::LengthTooLow)]
    );
}

#[test]
fn the_server_aborts_requests_out_of_sequence_and_unknown_commands() {
    let mut b = Bench::new(SdoServerConfig::default());
    let stray = ClientRequest::UploadSegment {
        toggle: frame::Toggle::Zero,
    };
    assert_eq!(
        b.request(stray),
        abort_of(ObjectAddress::new(0, 0), AbortCode::InvalidCommand)
    );
    assert_eq!(
        b.send(&[0xE0, 0x00, 0x20, 0x00, 0, 0, 0, 0]),
        abort_of(SCRATCH, AbortCode::InvalidCommand)
    );
    assert_eq!(
        b.send(&[0xA4, 0x56, 0x1F, 0x01, 0x7F, 0, 0, 0]),
        abort_of(SOFTWARE_ID, AbortCode::InvalidCommand),
        "block upload is not supported"
    );
    // A new initiate in the middle of a transfer ends it.
    b.begin_block(100);
    assert_eq!(
        b.send(&[0xC6, 0x00, 0x20, 0x00, 1, 0, 0, 0]).len(),
        0,
        "inside a sub-block every frame but an abort is a segment"
    );
    let mut b = Bench::new(SdoServerConfig::default());
    b.request(ClientRequest::InitiateDownload {
        object: SCRATCH,
        payload: frame::InitiatePayload::Segmented { size: None },
    });
    assert_eq!(
        b.request(ClientRequest::InitiateUpload {
            object: SOFTWARE_ID
        }),
        abort_of(SCRATCH, AbortCode::InvalidCommand)
    );
    assert_eq!(
        b.server.dictionary().aborted,
        vec![(SCRATCH, AbortCode::InvalidCommand)]
    );
    assert_eq!(b.server.state(), ServerState::Idle);
}

#[test]
fn the_server_ends_a_transfer_the_client_aborts_without_answering() {
    let mut b = Bench::new(SdoServerConfig::default());
    b.begin_block(100);
    b.segment(1, Continuation::More);
    let abort = ClientRequest::Abort {
        object: SCRATCH,
        code: AbortCode::LocalControl,
    };
    assert!(b.request(abort).is_empty());
    assert_eq!(
        b.server.dictionary().aborted,
        vec![(SCRATCH, AbortCode::LocalControl)]
    );
    assert_eq!(b.server.state(), ServerState::Idle);
    let events: Vec<ServerEvent> = std::iter::from_fn(|| b.server.poll_event()).collect();
    assert_eq!(
        events,
        vec![ServerEvent::Aborted {
            object: SCRATCH,
            code: AbortCode::LocalControl,
            by: AbortedBy::Client
        }]
    );
    // An abort with nothing under way is ignored.
    assert!(b.request(abort).is_empty());
    assert_eq!(b.server.poll_event(), None);
}

#[test]
fn the_server_ignores_short_frames_and_other_identifiers() {
    let mut b = Bench::new(SdoServerConfig::default());
    let init = ClientRequest::InitiateBlockDownload {
        object: SCRATCH,
        crc: CrcSupport::Supported,
        size: Some(10),
    }
    .encode();
    for len in 0..8 {
        assert!(b.send(&init[..len]).is_empty(), "{len} bytes");
    }
    b.server.handle_frame(
        b.now,
        &frame(bmsfw_plugin_api::CanId::standard(0x606).unwrap(), &init),
    );
    b.server.handle_frame(b.now, &frame(b.ch.response, &init));
    assert_eq!(b.server.poll_transmit(b.now), None);
    assert_eq!(b.server.state(), ServerState::Idle);
    assert_eq!(b.send(&init).len(), 1);
}

#[test]
fn an_empty_acknowledgement_while_data_is_asked_for_resizes_the_sub_block() {
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Block)
            .unwrap();
    });
    drain(&mut c);
    respond(
        &mut c,
        ch,
        ServerResponse::InitiateBlockDownload {
            object: SCRATCH,
            crc: CrcSupport::Supported,
            block_size: 2,
        },
    );
    assert_eq!(
        last_event(&mut c),
        Some(SdoEvent::NeedData { offset: 0, len: 14 })
    );
    // The server's sub-block timer ran out on stale frames and it now asks for 5.
    respond(
        &mut c,
        ch,
        ServerResponse::BlockAck {
            ackseq: 0,
            block_size: 5,
        },
    );
    assert_eq!(c.poll_event(), None);
    let img = image(100);
    c.provide_data(Timestamp::ZERO, &img[..14]).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(SdoEvent::NeedData {
            offset: 14,
            len: 21
        })
    );
    assert!(
        drain(&mut c).is_empty(),
        "nothing goes out before its bytes are in"
    );
    c.provide_data(Timestamp::ZERO, &img[14..35]).unwrap();
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 5);
    for (k, f) in sent.iter().enumerate() {
        assert_eq!(f[0], k as u8 + 1);
        assert_eq!(f[1..], img[k * 7..k * 7 + 7]);
    }
    // An acknowledgement of segments while none were sent is a violation.
    let (mut c, ch) = client_after(|c, now| {
        c.download(now, SCRATCH, 100, DownloadMethod::Block)
            .unwrap();
    });
    drain(&mut c);
    respond(
        &mut c,
        ch,
        ServerResponse::InitiateBlockDownload {
            object: SCRATCH,
            crc: CrcSupport::Supported,
            block_size: 2,
        },
    );
    respond(
        &mut c,
        ch,
        ServerResponse::BlockAck {
            ackseq: 1,
            block_size: 5,
        },
    );
    assert_eq!(
        last_event(&mut c),
        protocol_failure(Violation::AckSequence { ackseq: 1, sent: 0 })
    );
}

#[test]
fn a_restarted_server_forgets_its_transfer_and_serves_anew() {
    let mut server = server(SdoServerConfig::default(), Device::new());
    let now = Timestamp::ZERO;
    let request = |data: &[u8; 8]| frame(channel().request, data);
    // A block download of 100 bytes to the scratch object begins.
    let initiate = ClientRequest::InitiateBlockDownload {
        object: SCRATCH,
        crc: CrcSupport::Supported,
        size: Some(100),
    }
    .encode();
    server.handle_frame(now, &request(&initiate));
    assert!(matches!(server.state(), ServerState::Downloading { .. }));
    server.restart();
    assert_eq!(server.state(), ServerState::Idle);
    assert_eq!(
        server.poll_transmit(now),
        None,
        "the queued answer went with the RAM"
    );
    assert_eq!(server.poll_timeout(), None);
    // The client's next segment meets a server with no transfer: an abort.
    let segment = BlockSegment {
        sequence: 1,
        continuation: Continuation::More,
        data: [0; 7],
    }
    .encode();
    server.handle_frame(now, &request(&segment));
    let answer = server.poll_transmit(now).unwrap();
    assert_eq!(answer.data()[0], 0x80);
    assert!(server.dictionary().scratch.is_empty());
    // A new read is served.
    let read = ClientRequest::InitiateUpload {
        object: SOFTWARE_VERSION,
    }
    .encode();
    server.handle_frame(now, &request(&read));
    let answer = server.poll_transmit(now).unwrap();
    assert_eq!(answer.data()[0] & 0xE0, 0x40, "{answer}");
}

#[test]
fn an_upload_the_client_aborts_is_not_reported_to_the_dictionary_as_a_write() {
    let mut b = Bench::new(SdoServerConfig::default());
    let answer = b.request(ClientRequest::InitiateUpload {
        object: SOFTWARE_VERSION,
    });
    assert_eq!(answer[0][0], 0x41, "segmented, size indicated");
    assert!(
        b.request(ClientRequest::Abort {
            object: SOFTWARE_VERSION,
            code: AbortCode::LocalControl,
        })
        .is_empty()
    );
    assert_eq!(b.server.state(), ServerState::Idle);
    assert_eq!(b.server.dictionary().aborted, vec![]);
    assert_eq!(
        b.server.poll_event(),
        Some(ServerEvent::Aborted {
            object: SOFTWARE_VERSION,
            code: AbortCode::LocalControl,
            by: AbortedBy::Client
        })
    );
}

#[test]
fn the_server_timeout_runs_from_its_last_response_not_an_earlier_one() {
    // A client that sends two segments without waiting for the first confirmation, to
    // a device that takes 2 s per write: the second confirmation leaves 2 s after the
    // first, and only then does the server's 1 s wait for the client begin.
    let mut b = Bench::new(SdoServerConfig::default());
    b.server.dictionary_mut().write_time = Duration::from_secs(2);
    let t0 = b.now;
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(
        b.request(ClientRequest::InitiateDownload {
            object: SCRATCH,
            payload: frame::InitiatePayload::Segmented { size: Some(21) },
        })[0][0],
        0x60
    );
    for (toggle, fill) in [(frame::Toggle::Zero, 1u8), (frame::Toggle::One, 2)] {
        let segment = ClientRequest::DownloadSegment {
            toggle,
            data: frame::SegmentData::new(&[fill; 7]).unwrap(),
            continuation: Continuation::More,
        };
        assert!(b.request(segment).is_empty(), "the device is writing");
    }
    assert_eq!(b.server.poll_timeout(), Some(at(2)));
    assert_eq!(b.server.poll_transmit(at(2)).unwrap().data()[0], 0x20);
    assert_eq!(b.server.poll_timeout(), Some(at(4)));
    b.server.handle_timeout(at(3));
    assert_eq!(b.server.poll_event(), None);
    assert_eq!(b.server.poll_transmit(at(4)).unwrap().data()[0], 0x30);
    assert_eq!(b.server.poll_timeout(), Some(at(5)));
    b.server.handle_timeout(at(5));
    assert_eq!(
        b.server.poll_transmit(at(5)).map(|f| f.data().to_vec()),
        Some(abort_of(SCRATCH, AbortCode::Timeout)[0].to_vec())
    );
}

#[test]
fn a_block_download_whose_data_ends_before_an_empty_last_segment_is_taken() {
    // 14 bytes announced, carried by two full segments; the segment flagged last
    // carries none (7 unused bytes), as another client may send it.
    let mut b = Bench::new(SdoServerConfig::default());
    b.begin_block(14);
    assert!(b.segment(1, Continuation::More).is_empty());
    assert!(b.segment(2, Continuation::More).is_empty());
    assert_eq!(
        b.segment(3, Continuation::Last),
        vec![
            ServerResponse::BlockAck {
                ackseq: 3,
                block_size: 127
            }
            .encode()
        ]
    );
    assert_eq!(
        b.request(ClientRequest::EndBlockDownload { unused: 7, crc: 0 }),
        vec![ServerResponse::EndBlockDownload.encode()]
    );
    let mut want = vec![1u8; 7];
    want.extend([2u8; 7]);
    assert_eq!(b.server.dictionary().scratch, want);
}
