//! Random and truncated frames: parsers and both state machines never panic, never
//! misread a short frame, and keep their promises.

use super::*;
use crate::canopen::frame::{
    BlockSegment, ClientRequest, Continuation, ExpeditedData, InitiatePayload, SegmentData,
    ServerResponse, Toggle,
};
use proptest::prelude::*;

fn object() -> impl Strategy<Value = ObjectAddress> {
    (any::<u16>(), any::<u8>()).prop_map(|(i, s)| ObjectAddress::new(i, s))
}

fn code() -> impl Strategy<Value = AbortCode> {
    prop_oneof![
        any::<u32>().prop_map(AbortCode::from_u32),
        prop::sample::select(AbortCode::NAMED),
    ]
}

fn toggle() -> impl Strategy<Value = Toggle> {
    prop_oneof![Just(Toggle::Zero), Just(Toggle::One)]
}

fn continuation() -> impl Strategy<Value = Continuation> {
    prop_oneof![Just(Continuation::More), Just(Continuation::Last)]
}

fn crc() -> impl Strategy<Value = CrcSupport> {
    prop_oneof![Just(CrcSupport::Supported), Just(CrcSupport::NotSupported)]
}

fn segment_data() -> impl Strategy<Value = SegmentData> {
    prop::collection::vec(any::<u8>(), 0..=7).prop_map(|v| SegmentData::new(&v).unwrap())
}

fn payload() -> impl Strategy<Value = InitiatePayload> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..=4)
            .prop_map(|v| InitiatePayload::Expedited(ExpeditedData::new(&v).unwrap())),
        prop::option::of(any::<u32>()).prop_map(|size| InitiatePayload::Segmented { size }),
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (object(), payload())
            .prop_map(|(object, payload)| ClientRequest::InitiateDownload { object, payload }),
        (toggle(), segment_data(), continuation()).prop_map(|(toggle, data, continuation)| {
            ClientRequest::DownloadSegment {
                toggle,
                data,
                continuation,
            }
        }),
        object().prop_map(|object| ClientRequest::InitiateUpload { object }),
        toggle().prop_map(|toggle| ClientRequest::UploadSegment { toggle }),
        (object(), crc(), prop::option::of(any::<u32>())).prop_map(|(object, crc, size)| {
            ClientRequest::InitiateBlockDownload { object, crc, size }
        }),
        (0u8..=7, any::<u16>())
            .prop_map(|(unused, crc)| ClientRequest::EndBlockDownload { unused, crc }),
        (object(), code()).prop_map(|(object, code)| ClientRequest::Abort { object, code }),
    ]
}

fn server_response() -> impl Strategy<Value = ServerResponse> {
    prop_oneof![
        (toggle(), segment_data(), continuation()).prop_map(|(toggle, data, continuation)| {
            ServerResponse::UploadSegment {
                toggle,
                data,
                continuation,
            }
        }),
        toggle().prop_map(|toggle| ServerResponse::DownloadSegment { toggle }),
        (object(), payload())
            .prop_map(|(object, payload)| ServerResponse::InitiateUpload { object, payload }),
        object().prop_map(|object| ServerResponse::InitiateDownload { object }),
        (object(), crc(), 1u8..=127).prop_map(|(object, crc, block_size)| {
            ServerResponse::InitiateBlockDownload {
                object,
                crc,
                block_size,
            }
        }),
        (0u8..=127, 1u8..=127)
            .prop_map(|(ackseq, block_size)| ServerResponse::BlockAck { ackseq, block_size }),
        Just(ServerResponse::EndBlockDownload),
        (object(), code()).prop_map(|(object, code)| ServerResponse::Abort { object, code }),
    ]
}

fn block_segment() -> impl Strategy<Value = BlockSegment> {
    (1u8..=127, continuation(), any::<[u8; 7]>()).prop_map(|(sequence, continuation, data)| {
        BlockSegment {
            sequence,
            continuation,
            data,
        }
    })
}

/// Plausible and random client frames.
fn client_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        client_request().prop_map(|r| r.encode().to_vec()),
        block_segment().prop_map(|s| s.encode().to_vec()),
        prop::collection::vec(any::<u8>(), 0..=8),
    ]
}

/// Plausible and random server frames.
fn server_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        server_response().prop_map(|r| r.encode().to_vec()),
        prop::collection::vec(any::<u8>(), 0..=8),
    ]
}

const T0: Timestamp = Timestamp::from_micros(1_000);

/// Most frames either side hands out at once (a sub-block is at most 127 segments): a
/// side that never stops fails the test instead of hanging it.
const MAX_FRAMES: usize = 200;

fn transmitted_server(server: &mut SdoServer<Device>, now: Timestamp) -> Vec<CanFrame> {
    let out: Vec<CanFrame> = std::iter::from_fn(|| server.poll_transmit(now))
        .take(MAX_FRAMES + 1)
        .collect();
    assert!(out.len() <= MAX_FRAMES, "the server never stops sending");
    out
}

fn transmitted_client(client: &mut SdoClient, now: Timestamp) -> Vec<CanFrame> {
    let out: Vec<CanFrame> = std::iter::from_fn(|| client.poll_transmit(now))
        .take(MAX_FRAMES + 1)
        .collect();
    assert!(out.len() <= MAX_FRAMES, "the client never stops sending");
    out
}

/// A server in one of several states: idle, inside a sub-block, in a segmented download,
/// in a segmented upload, awaiting a block download's end.
fn server_in(state: u8) -> SdoServer<Device> {
    let ch = channel();
    let mut s = server(
        SdoServerConfig {
            block_size: 4,
            ..SdoServerConfig::default()
        },
        Device::new(),
    );
    let feed = |s: &mut SdoServer<Device>, data: [u8; 8]| {
        s.handle_frame(T0, &frame(ch.request, &data));
        transmitted_server(s, T0);
    };
    let seg = |sequence, continuation| {
        BlockSegment {
            sequence,
            continuation,
            data: [sequence; 7],
        }
        .encode()
    };
    match state % 5 {
        1 => {
            feed(
                &mut s,
                ClientRequest::InitiateBlockDownload {
                    object: SCRATCH,
                    crc: CrcSupport::Supported,
                    size: Some(100),
                }
                .encode(),
            );
            feed(&mut s, seg(1, Continuation::More));
            feed(&mut s, seg(2, Continuation::More));
        }
        2 => {
            feed(
                &mut s,
                ClientRequest::InitiateDownload {
                    object: SCRATCH,
                    payload: InitiatePayload::Segmented { size: Some(30) },
                }
                .encode(),
            );
            feed(
                &mut s,
                ClientRequest::DownloadSegment {
                    toggle: Toggle::Zero,
                    data: SegmentData::new(&[1; 7]).unwrap(),
                    continuation: Continuation::More,
                }
                .encode(),
            );
        }
        3 => feed(
            &mut s,
            ClientRequest::InitiateUpload {
                object: SOFTWARE_VERSION,
            }
            .encode(),
        ),
        4 => {
            feed(
                &mut s,
                ClientRequest::InitiateBlockDownload {
                    object: SCRATCH,
                    crc: CrcSupport::Supported,
                    size: Some(10),
                }
                .encode(),
            );
            feed(&mut s, seg(1, Continuation::More));
            feed(&mut s, seg(2, Continuation::Last));
        }
        _ => {}
    }
    while s.poll_event().is_some() {}
    s
}

/// A client in one of several states: awaiting a block initiate answer, inside a
/// sub-block, awaiting a segment confirmation, awaiting an upload segment.
fn client_in(state: u8) -> SdoClient {
    let ch = channel();
    let mut c = SdoClient::new(client_config());
    let respond = |c: &mut SdoClient, r: ServerResponse| {
        c.handle_frame(T0, &frame(ch.response, &r.encode()));
    };
    let answer = |c: &mut SdoClient| {
        for _ in 0..MAX_FRAMES {
            match c.poll_event() {
                Some(SdoEvent::NeedData { len, .. }) => {
                    c.provide_data(T0, &vec![0x55; len]).unwrap();
                }
                Some(_) => {}
                None => return,
            }
        }
        panic!("the client never stops asking for data");
    };
    match state % 4 {
        0 => {
            c.download(T0, SCRATCH, 100, DownloadMethod::Block).unwrap();
            transmitted_client(&mut c, T0);
        }
        1 => {
            c.download(T0, SCRATCH, 100, DownloadMethod::Block).unwrap();
            transmitted_client(&mut c, T0);
            respond(
                &mut c,
                ServerResponse::InitiateBlockDownload {
                    object: SCRATCH,
                    crc: CrcSupport::Supported,
                    block_size: 4,
                },
            );
            answer(&mut c);
            c.poll_transmit(T0);
            c.poll_transmit(T0);
        }
        2 => {
            c.download(T0, SCRATCH, 30, DownloadMethod::Segmented)
                .unwrap();
            transmitted_client(&mut c, T0);
            respond(&mut c, ServerResponse::InitiateDownload { object: SCRATCH });
            answer(&mut c);
            transmitted_client(&mut c, T0);
        }
        _ => {
            c.upload(T0, SOFTWARE_VERSION, 64).unwrap();
            transmitted_client(&mut c, T0);
            respond(
                &mut c,
                ServerResponse::InitiateUpload {
                    object: SOFTWARE_VERSION,
                    payload: InitiatePayload::Segmented { size: Some(20) },
                },
            );
            transmitted_client(&mut c, T0);
        }
    }
    c
}

fn terminal(e: &SdoEvent) -> bool {
    matches!(
        e,
        SdoEvent::Downloaded { .. } | SdoEvent::Uploaded { .. } | SdoEvent::Failed { .. }
    )
}

proptest! {
    #[test]
    fn parsers_never_panic_and_want_exactly_eight_bytes(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let c = ClientRequest::parse(&bytes);
        let s = ServerResponse::parse(&bytes);
        let b = BlockSegment::parse(&bytes);
        if bytes.len() != 8 {
            prop_assert_eq!(c, Err(SdoFrameError::Length(bytes.len())));
            prop_assert_eq!(s, Err(SdoFrameError::Length(bytes.len())));
            prop_assert_eq!(b, Err(SdoFrameError::Length(bytes.len())));
        } else {
            // Whatever parses encodes back to a frame that parses the same.
            if let Ok(r) = c {
                prop_assert_eq!(ClientRequest::parse(&r.encode()), Ok(r));
            }
            if let Ok(r) = s {
                prop_assert_eq!(ServerResponse::parse(&r.encode()), Ok(r));
            }
            if let Err(e) = c.and(s) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn client_requests_round_trip(r in client_request()) {
        prop_assert_eq!(ClientRequest::parse(&r.encode()), Ok(r));
    }

    #[test]
    fn server_responses_round_trip(r in server_response()) {
        prop_assert_eq!(ServerResponse::parse(&r.encode()), Ok(r));
    }

    #[test]
    fn block_segments_round_trip(s in block_segment()) {
        prop_assert_eq!(BlockSegment::parse(&s.encode()), Ok(s));
    }

    #[test]
    fn a_short_frame_never_parses(
        request in client_request(),
        response in server_response(),
        segment in block_segment(),
        len in 0usize..8,
    ) {
        prop_assert_eq!(ClientRequest::parse(&request.encode()[..len]), Err(SdoFrameError::Length(len)));
        prop_assert_eq!(ServerResponse::parse(&response.encode()[..len]), Err(SdoFrameError::Length(len)));
        prop_assert_eq!(BlockSegment::parse(&segment.encode()[..len]), Err(SdoFrameError::Length(len)));
    }

    #[test]
    fn a_server_fed_random_frames_never_panics_and_writes_in_order(
        state in 0u8..5,
        frames in prop::collection::vec((any::<bool>(), client_frame(), 0u64..300_000), 0..60),
    ) {
        let ch = channel();
        let mut s = server_in(state);
        let mut now = T0;
        for (ours, data, wait) in frames {
            now = now + Duration::from_micros(wait);
            s.handle_timeout(now);
            let id = if ours { ch.request } else { ch.response };
            s.handle_frame(now, &frame(id, &data));
            for f in transmitted_server(&mut s, now) {
                prop_assert_eq!(f.id(), ch.response);
                prop_assert_eq!(f.len(), 8);
                prop_assert!(ServerResponse::parse(f.data()).is_ok(), "{}", f);
            }
            while s.poll_event().is_some() {}
        }
        prop_assert_eq!(s.dictionary().misordered, 0);
    }

    #[test]
    fn a_client_fed_random_frames_never_panics_and_ends_once(
        state in 0u8..4,
        frames in prop::collection::vec((server_frame(), 0u64..300_000), 0..60),
    ) {
        let ch = channel();
        let mut c = client_in(state);
        let mut now = T0;
        let mut ends = 0;
        for (data, wait) in frames {
            now = now + Duration::from_micros(wait);
            c.handle_timeout(now);
            c.handle_frame(now, &frame(ch.response, &data));
            for _ in 0..MAX_FRAMES {
                let Some(e) = c.poll_event() else {
                    break;
                };
                if let SdoEvent::NeedData { len, .. } = e {
                    prop_assert!(len <= 889);
                    c.provide_data(now, &vec![0xAA; len]).unwrap();
                }
                if terminal(&e) {
                    ends += 1;
                    prop_assert!(c.is_idle());
                }
            }
            prop_assert_eq!(c.poll_event(), None, "the client never stops asking for data");
            for f in transmitted_client(&mut c, now) {
                prop_assert_eq!(f.id(), ch.request);
                prop_assert_eq!(f.len(), 8);
            }
        }
        prop_assert!(ends <= 1);
        prop_assert_eq!(ends == 1, c.is_idle());
    }

    #[test]
    fn a_short_frame_is_never_misread_by_the_server(
        state in 0u8..5,
        full in client_frame().prop_filter("8 bytes", |f| f.len() == 8),
        len in 0usize..8,
    ) {
        let ch = channel();
        let mut a = server_in(state);
        let mut b = server_in(state);
        a.handle_frame(T0, &frame(ch.request, &full[..len]));
        prop_assert!(transmitted_server(&mut a, T0).is_empty());
        prop_assert_eq!(a.poll_event(), None);
        prop_assert_eq!(a.state(), b.state());
        a.handle_frame(T0, &frame(ch.request, &full));
        b.handle_frame(T0, &frame(ch.request, &full));
        prop_assert_eq!(transmitted_server(&mut a, T0), transmitted_server(&mut b, T0));
        prop_assert_eq!(a.state(), b.state());
        prop_assert_eq!(a.dictionary().writes.clone(), b.dictionary().writes.clone());
    }

    #[test]
    fn a_short_frame_is_never_misread_by_the_client(
        state in 0u8..4,
        full in server_response(),
        len in 0usize..8,
    ) {
        let ch = channel();
        let mut a = client_in(state);
        let mut b = client_in(state);
        let full = full.encode();
        a.handle_frame(T0, &frame(ch.response, &full[..len]));
        if state % 4 != 1 {
            // (Inside a sub-block the client has segments of its own still to send.)
            prop_assert!(transmitted_client(&mut a, T0).is_empty());
        }
        prop_assert_eq!(a.poll_event(), None);
        a.handle_frame(T0, &frame(ch.response, &full));
        b.handle_frame(T0, &frame(ch.response, &full));
        prop_assert_eq!(transmitted_client(&mut a, T0), transmitted_client(&mut b, T0));
        let ea: Vec<SdoEvent> = std::iter::from_fn(|| a.poll_event()).collect();
        let eb: Vec<SdoEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        prop_assert_eq!(ea, eb);
    }
}
