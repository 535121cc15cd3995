//! Block acknowledgements that cross segments still on their way: a server whose
//! sub-block timer fires while the client is slow (a loaded machine, a driver queue)
//! acknowledges early, and the segments already sent then reach a server that has
//! begun the next sub-block. Scripted frame by frame, with the real server.

use super::*;
use crate::canopen::frame::{BlockSegment, ClientRequest, ServerResponse};

/// The time `ms` milliseconds into the script.
fn at(ms: u64) -> Timestamp {
    Timestamp::from_micros(1_000_000 + ms * 1000)
}

/// Answers the client's data requests from `img`; returns the other events. A client
/// that keeps asking (answering one request queues at most one more) fails the test
/// instead of hanging it.
fn serve(client: &mut SdoClient, now: Timestamp, img: &[u8]) -> Vec<SdoEvent> {
    let mut other = Vec::new();
    for _ in 0..64 {
        let Some(e) = client.poll_event() else {
            return other;
        };
        match e {
            SdoEvent::NeedData { offset, len } => {
                let o = offset as usize;
                client.provide_data(now, &img[o..o + len]).unwrap();
            }
            e => other.push(e),
        }
    }
    panic!("the client never stops asking for data");
}

/// The next `n` frames the client hands out at `now`, not yet delivered.
fn take(client: &mut SdoClient, now: Timestamp, n: usize) -> Vec<CanFrame> {
    (0..n)
        .map(|_| {
            client
                .poll_transmit(now)
                .expect("the client has a segment ready")
        })
        .collect()
}

/// Fires the server's timers at `now` and takes what it sends.
fn answers(server: &mut SdoServer<Device>, now: Timestamp) -> Vec<CanFrame> {
    server.handle_timeout(now);
    std::iter::from_fn(|| server.poll_transmit(now)).collect()
}

fn block_ack(frame: &CanFrame) -> u8 {
    match ServerResponse::parse(frame.data()) {
        Ok(ServerResponse::BlockAck { ackseq, .. }) => ackseq,
        other => panic!("not a block acknowledgement: {other:?}"),
    }
}

/// The image offset a block segment carries (see [`image`]).
fn carries(frame: &CanFrame) -> u64 {
    let s = BlockSegment::parse(frame.data()).unwrap();
    u64::from(u16::from_le_bytes([s.data[0], s.data[1]])) * 7
}

#[test]
fn an_acknowledgement_of_a_segment_sent_before_an_empty_one_is_taken_and_the_image_arrives_whole() {
    let img = image(3000);
    let mut client = SdoClient::new(client_config());
    let mut srv = server(SdoServerConfig::default(), Device::new());
    client
        .download(at(0), SCRATCH, img.len() as u32, DownloadMethod::Block)
        .unwrap();
    let initiate = client.poll_transmit(at(0)).unwrap();
    srv.handle_frame(at(0), &initiate);
    for f in answers(&mut srv, at(0)) {
        client.handle_frame(at(0), &f);
    }
    serve(&mut client, at(0), &img);

    // Segments 1 to 3 go out; only the first reaches the server before the client's
    // side stalls, so the server's sub-block timer acknowledges it alone.
    let first = take(&mut client, at(1), 3);
    srv.handle_frame(at(1), &first[0]);
    let ack = answers(&mut srv, at(101));
    assert_eq!(ack.iter().map(block_ack).collect::<Vec<_>>(), [1]);
    // Segments 2 and 3 arrive after that acknowledgement: stale, ignored, but heard.
    srv.handle_frame(at(102), &first[1]);
    srv.handle_frame(at(102), &first[2]);
    client.handle_frame(at(103), &ack[0]);
    serve(&mut client, at(103), &img);

    // The client goes on from the second image segment; its first segment is on its
    // way when the server's timer, started by the stale segments, acknowledges nothing.
    let second = take(&mut client, at(150), 1);
    assert_eq!(carries(&second[0]), 7);
    let empty = answers(&mut srv, at(202));
    assert_eq!(empty.iter().map(block_ack).collect::<Vec<_>>(), [0]);
    // The server takes the segment in flight as the first of its new sub-block.
    srv.handle_frame(at(203), &second[0]);
    // The client, told nothing arrived, starts the sub-block again: nothing sent yet.
    client.handle_frame(at(204), &empty[0]);
    serve(&mut client, at(204), &img);

    // Before the client sends anything, the server's timer acknowledges the segment
    // of the earlier attempt: the same bytes the client would send again as sequence 1.
    let crossed = answers(&mut srv, at(303));
    assert_eq!(crossed.iter().map(block_ack).collect::<Vec<_>>(), [1]);
    client.handle_frame(at(304), &crossed[0]);
    let events = serve(&mut client, at(304), &img);
    assert!(
        !events.iter().any(|e| matches!(e, SdoEvent::Failed { .. })),
        "the client refused the acknowledgement: {events:?}"
    );
    assert!(events.contains(&SdoEvent::Progress {
        acknowledged: 14,
        total: img.len() as u64,
    }));

    // From here the bus is clean: the rest arrives once, in order, whole.
    let mut sim = Sim::new(client, srv);
    sim.now = at(305);
    let run = drive(sim, &img);
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: SCRATCH,
            len: img.len() as u64,
            mode: TransferMode::Block {
                crc: CrcSupport::Supported
            },
        }
    );
    assert_eq!(run.device().scratch, img);
    assert_eq!(run.device().misordered, 0);
}

#[test]
fn an_acknowledgement_of_a_segment_never_sent_from_the_offset_is_still_refused() {
    let img = image(3000);
    let mut client = SdoClient::new(client_config());
    let mut srv = server(SdoServerConfig::default(), Device::new());
    client
        .download(at(0), SCRATCH, img.len() as u32, DownloadMethod::Block)
        .unwrap();
    let initiate = client.poll_transmit(at(0)).unwrap();
    srv.handle_frame(at(0), &initiate);
    for f in answers(&mut srv, at(0)) {
        client.handle_frame(at(0), &f);
    }
    serve(&mut client, at(0), &img);
    take(&mut client, at(1), 2);
    // An acknowledgement of nothing, then one of segment 3, which never went out.
    let empty = ServerResponse::BlockAck {
        ackseq: 0,
        block_size: 127,
    };
    let beyond = ServerResponse::BlockAck {
        ackseq: 3,
        block_size: 127,
    };
    let response = channel().response;
    client.handle_frame(at(2), &frame(response, &empty.encode()));
    client.handle_frame(at(3), &frame(response, &beyond.encode()));
    let events = serve(&mut client, at(3), &img);
    assert_eq!(
        events.last(),
        Some(&SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::Protocol(Violation::AckSequence { ackseq: 3, sent: 2 }),
        })
    );
    let abort = client.poll_transmit(at(3)).unwrap();
    assert_eq!(
        ClientRequest::parse(abort.data()),
        Ok(ClientRequest::Abort {
            object: SCRATCH,
            code: AbortCode::InvalidSequenceNumber,
        })
    );
}

#[test]
fn an_acknowledgement_of_an_earlier_attempt_while_data_is_asked_for_moves_the_sub_block_on() {
    let img = image(100);
    let response = channel().response;
    let ack = |ackseq: u8, block_size: u8| {
        frame(
            response,
            &ServerResponse::BlockAck { ackseq, block_size }.encode(),
        )
    };
    let mut client = SdoClient::new(client_config());
    client
        .download(at(0), SCRATCH, img.len() as u32, DownloadMethod::Block)
        .unwrap();
    client.poll_transmit(at(0)).unwrap();
    let initiate = ServerResponse::InitiateBlockDownload {
        object: SCRATCH,
        crc: CrcSupport::Supported,
        block_size: 2,
    };
    client.handle_frame(at(1), &frame(response, &initiate.encode()));
    serve(&mut client, at(1), &img);
    take(&mut client, at(1), 2);
    // Nothing arrived, and the next sub-block is to be 5 segments: 21 more bytes are
    // asked for.
    client.handle_frame(at(2), &ack(0, 5));
    assert_eq!(
        client.poll_event(),
        Some(SdoEvent::NeedData {
            offset: 14,
            len: 21
        })
    );
    // Meanwhile the server took both segments of the first attempt after all.
    client.handle_frame(at(3), &ack(2, 5));
    assert_eq!(
        client.poll_event(),
        Some(SdoEvent::Progress {
            acknowledged: 14,
            total: 100
        })
    );
    assert_eq!(
        client.poll_transmit(at(3)),
        None,
        "the bytes are not in yet"
    );
    client.provide_data(at(4), &img[14..35]).unwrap();
    // The sub-block of 5 now begins at byte 14: 14 more bytes are needed.
    assert_eq!(
        client.poll_event(),
        Some(SdoEvent::NeedData {
            offset: 35,
            len: 14
        })
    );
    client.provide_data(at(4), &img[35..49]).unwrap();
    let sent = take(&mut client, at(4), 5);
    for (k, f) in sent.iter().enumerate() {
        assert_eq!(f.data()[0], k as u8 + 1);
        assert_eq!(carries(f), 14 + 7 * k as u64);
    }
}
