//! Block downloads: sizes, block sizes, lost segments and resends, CRC, write timing.

use super::*;
use crate::canopen::frame::{BlockSegment, ClientRequest, ServerResponse};
use crate::checksum::crc16_xmodem;
use std::cell::Cell;
use std::rc::Rc;

/// A block segment as it went out: its sequence number, whether it was flagged last,
/// and which image segment it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    sequence: u8,
    last: bool,
    index: usize,
}

/// The segments of a block download: every client frame between the initiate request
/// (the first) and the end request (the last).
fn block_segments(frames: &[[u8; 8]]) -> Vec<Seg> {
    assert!(
        matches!(
            ClientRequest::parse(&frames[0]),
            Ok(ClientRequest::InitiateBlockDownload { .. })
        ),
        "first frame {:02X?}",
        frames[0]
    );
    let last = frames.last().unwrap();
    assert!(
        matches!(
            ClientRequest::parse(last),
            Ok(ClientRequest::EndBlockDownload { .. })
        ),
        "last frame {last:02X?}"
    );
    frames[1..frames.len() - 1]
        .iter()
        .map(|f| {
            let s = BlockSegment::parse(f).unwrap();
            Seg {
                sequence: s.sequence,
                last: s.continuation == frame::Continuation::Last,
                index: usize::from(u16::from_le_bytes([s.data[0], s.data[1]])),
            }
        })
        .collect()
}

/// The block acknowledgements the server sent: (ackseq, next block size).
fn acks(run: &ClientRun) -> Vec<(u8, u8)> {
    run.sim
        .sent(Dir::ToClient)
        .iter()
        .filter_map(|f| match ServerResponse::parse(f) {
            Ok(ServerResponse::BlockAck { ackseq, block_size }) => Some((ackseq, block_size)),
            _ => None,
        })
        .collect()
}

fn indices(segs: &[Seg]) -> Vec<usize> {
    segs.iter().map(|s| s.index).collect()
}

fn block(bs: u8) -> SdoServerConfig {
    SdoServerConfig {
        block_size: bs,
        ..SdoServerConfig::default()
    }
}

fn drop_to_server(frames: &'static [usize]) -> impl FnMut(Dir, &CanFrame, usize) -> Fate {
    move |dir, _, n| {
        if dir == Dir::ToServer && frames.contains(&n) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }
}

fn deliver(_: Dir, _: &CanFrame, _: usize) -> Fate {
    Fate::Deliver
}

const CRC_BLOCK: TransferMode = TransferMode::Block {
    crc: CrcSupport::Supported,
};

#[test]
fn block_downloads_of_every_size_arrive_whole_with_each_block_size() {
    for size in [0usize, 1, 7, 8, 889, 890, 100 * 1024] {
        for bs in [1u8, 4, 127] {
            let img = image(size);
            let run = download_with(
                client_config(),
                block(bs),
                Device::new(),
                SCRATCH,
                &img,
                DownloadMethod::Block,
                deliver,
            );
            let what = format!("size {size}, block size {bs}");
            assert_eq!(
                run.outcome(),
                &SdoEvent::Downloaded {
                    object: SCRATCH,
                    len: size as u64,
                    mode: CRC_BLOCK
                },
                "{what}"
            );
            assert_eq!(run.device().scratch, img, "{what}");
            let segments = size.div_ceil(7).max(1);
            let sent = block_segments(&run.sim.sent(Dir::ToServer));
            assert_eq!(sent.len(), segments, "{what}: each segment sent once");
            for (k, s) in sent.iter().enumerate() {
                assert_eq!(usize::from(s.sequence), k % usize::from(bs) + 1, "{what}");
                assert_eq!(s.last, k + 1 == segments, "{what}: segment {k}");
            }
            // One acknowledgement per sub-block, each of the whole sub-block.
            let want_acks: Vec<(u8, u8)> = (0..segments)
                .step_by(usize::from(bs))
                .map(|k| ((segments - k).min(usize::from(bs)) as u8, bs))
                .collect();
            assert_eq!(acks(&run), want_acks, "{what}");
            // The end frame: unused bytes of the last segment, CRC of everything.
            let end = *run.sim.sent(Dir::ToServer).last().unwrap();
            let unused = (7 - (size - (segments - 1) * 7)) as u8;
            assert_eq!(
                ClientRequest::parse(&end),
                Ok(ClientRequest::EndBlockDownload {
                    unused,
                    crc: crc16_xmodem(&img)
                }),
                "{what}"
            );
            // Data asked for once each, in order, at most a sub-block at a time.
            let mut next = 0;
            for (offset, len) in run.needs() {
                assert_eq!(offset, next, "{what}");
                assert!(len > 0 && len <= usize::from(bs) * 7, "{what}: {len}");
                next += len as u64;
            }
            assert_eq!(next, size as u64, "{what}");
            let progress = run.progress();
            assert!(progress.windows(2).all(|w| w[0] < w[1]), "{what}");
            assert_eq!(progress.last().copied().unwrap_or(0), size as u64, "{what}");
            // The dictionary got every byte once, in order.
            let offsets = run.device().offsets(SCRATCH);
            let want: Vec<u64> = (0..segments as u64)
                .map(|k| k * 7)
                .take_while(|&o| o < size as u64)
                .collect();
            assert_eq!(offsets, want, "{what}");
            assert_eq!(run.device().ended, vec![(SCRATCH, size as u64)], "{what}");
        }
    }
}

#[test]
fn the_client_follows_the_block_size_of_each_acknowledgement() {
    let sizes = [127u8, 3, 50, 1, 9];
    let img = image(2000);
    let sim = Sim::new(
        SdoClient::new(client_config()),
        server(block(127), Device::new()),
    )
    .with_hook({
        // Counted as the frames come, not over the whole wire at every step: a run a
        // mutant keeps going must reach the step bound in seconds.
        let (mut seen, mut answered) = (0, 0);
        move |server, wire| {
            answered += wire[seen..]
                .iter()
                .filter(|s| s.dir == Dir::ToClient && s.frame.data()[0] & 0xE0 == 0xA0)
                .count();
            seen = wire.len();
            server.set_block_size(sizes[answered % sizes.len()]);
        }
    });
    let mut sim = sim;
    sim.client
        .download(sim.now, SCRATCH, img.len() as u32, DownloadMethod::Block)
        .unwrap();
    let run = drive(sim, &img);
    assert_eq!(run.device().scratch, img);
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    // Split the segments into sub-blocks where the sequence restarts at 1.
    let mut blocks: Vec<usize> = Vec::new();
    for s in &segs {
        if s.sequence == 1 {
            blocks.push(0);
        }
        *blocks.last_mut().unwrap() += 1;
    }
    let mut want = Vec::new();
    let mut left = 2000usize.div_ceil(7);
    let mut i = 0;
    while left > 0 {
        let n = usize::from(sizes[i % sizes.len()]).min(left);
        want.push(n);
        left -= n;
        i += 1;
    }
    assert_eq!(blocks, want);
    assert_eq!(indices(&segs), (0..286).collect::<Vec<_>>());
}

#[test]
fn a_lost_segment_is_resent_from_the_one_after_ackseq() {
    // Frame 0 is the initiate request; frame 5 is sequence 5 (image segment 4).
    let img = image(2000);
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        drop_to_server(&[5]),
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: SCRATCH,
            len: 2000,
            mode: CRC_BLOCK
        }
    );
    assert_eq!(run.device().scratch, img);
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    // Sequence 6 reveals the gap: the server acknowledges 4 at once and the client
    // goes on from image segment 4, numbering from 1 again.
    let mut want: Vec<usize> = (0..=5).collect();
    want.extend(4..286);
    assert_eq!(indices(&segs), want);
    assert_eq!(segs[6].sequence, 1);
    assert_eq!(acks(&run)[0], (4, 127));
    let lost: Vec<Sent> = run
        .sim
        .wire
        .iter()
        .filter(|s| !s.delivered)
        .copied()
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].frame.data()[0], 5);
    let offsets = run.device().offsets(SCRATCH);
    assert_eq!(
        offsets,
        (0..286u64).map(|k| k * 7).collect::<Vec<_>>(),
        "each byte written once"
    );
    // No data was asked for twice: the client kept the unacknowledged bytes.
    let asked: usize = run.needs().iter().map(|n| n.1).sum();
    assert_eq!(asked, 2000);
}

#[test]
fn a_lost_last_segment_of_a_sub_block_is_acknowledged_after_the_block_timeout() {
    let img = image(2000);
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        drop_to_server(&[127]),
    );
    assert_eq!(run.device().scratch, img);
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    let mut want: Vec<usize> = (0..=126).collect();
    want.extend(126..286);
    assert_eq!(indices(&segs), want, "only segment 126 is resent");
    assert_eq!(acks(&run)[0], (126, 127));
    assert!(run.sim.elapsed() >= SdoServerConfig::default().block_timeout);
}

#[test]
fn a_lost_first_segment_makes_the_whole_sub_block_go_again() {
    let img = image(2000);
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        drop_to_server(&[1]),
    );
    assert_eq!(run.device().scratch, img);
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    let mut want: Vec<usize> = (0..=126).collect();
    want.extend(0..286);
    assert_eq!(indices(&segs), want);
    assert_eq!(acks(&run)[0], (0, 127));
    assert_eq!(run.device().offsets(SCRATCH).len(), 286);
}

#[test]
fn a_lost_final_segment_is_resent_alone() {
    // 100 bytes: 15 segments in one sub-block; frame 15 is the one flagged last.
    let img = image(100);
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        drop_to_server(&[15]),
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: SCRATCH,
            len: 100,
            mode: CRC_BLOCK
        }
    );
    assert_eq!(run.device().scratch, img);
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    let mut want: Vec<usize> = (0..15).collect();
    want.push(14);
    assert_eq!(indices(&segs), want);
    assert_eq!(
        segs.last().copied(),
        Some(Seg {
            sequence: 1,
            last: true,
            index: 14
        })
    );
    assert_eq!(acks(&run), vec![(14, 127), (1, 127)]);
}

#[test]
fn many_losses_in_many_sub_blocks_still_write_each_byte_once() {
    // 2858 segments, the last of 2 bytes (so it still names itself).
    let img = image(20_001);
    let run = download_with(
        client_config(),
        block(40),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        |dir, f, n| {
            // Never the end request nor a last segment (bit 7 of byte 0).
            if dir == Dir::ToServer && n > 0 && n % 37 == 0 && f.data()[0] & 0x80 == 0 {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
    );
    assert!(matches!(run.outcome(), SdoEvent::Downloaded { .. }));
    assert_eq!(run.device().scratch, img);
    let offsets = run.device().offsets(SCRATCH);
    let segments = 20_001u64.div_ceil(7);
    assert_eq!(offsets, (0..segments).map(|k| k * 7).collect::<Vec<_>>());
    // Every resend restarts right after the last acknowledged segment.
    let segs = block_segments(&run.sim.sent(Dir::ToServer));
    let mut acked = 0usize;
    let mut in_block = Vec::new();
    let ack_list = acks(&run);
    let mut a = ack_list.iter();
    for s in &segs {
        if s.sequence == 1 && !in_block.is_empty() {
            let (ackseq, _) = a.next().unwrap();
            acked += usize::from(*ackseq);
            in_block.clear();
        }
        assert_eq!(s.index, acked + usize::from(s.sequence) - 1);
        in_block.push(s.index);
    }
    assert!(segs.len() > segments as usize, "some segments were resent");
}

#[test]
fn a_corrupted_segment_fails_the_crc_and_nothing_is_stored() {
    let img = image(1000);
    let corrupt = |dir: Dir, f: &CanFrame, n: usize| {
        if dir == Dir::ToServer && n == 3 {
            let mut d: [u8; 8] = f.data().try_into().unwrap();
            d[4] ^= 0x01;
            Fate::Replace(frame(f.id(), &d))
        } else {
            Fate::Deliver
        }
    };
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        corrupt,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::ServerAbort(AbortCode::CrcError)
        }
    );
    let abort = *run.sim.sent(Dir::ToClient).last().unwrap();
    assert_eq!(abort, [0x80, 0x00, 0x20, 0x00, 0x04, 0x00, 0x04, 0x05]);
    assert!(run.device().ended.is_empty());
    assert_eq!(run.device().aborted, vec![(SCRATCH, AbortCode::CrcError)]);
    assert!(run.device().scratch.is_empty());

    // Without CRC on the server side the same corruption goes through: the CRC is what
    // caught it.
    let run = download_with(
        client_config(),
        SdoServerConfig {
            crc: CrcSupport::NotSupported,
            ..SdoServerConfig::default()
        },
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        corrupt,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: SCRATCH,
            len: 1000,
            mode: TransferMode::Block {
                crc: CrcSupport::NotSupported
            }
        }
    );
    assert_ne!(run.device().scratch, img);
}

#[test]
fn a_client_without_crc_sends_none_and_the_server_checks_none() {
    let img = image(500);
    let config = SdoClientConfig {
        crc: CrcSupport::NotSupported,
        ..client_config()
    };
    let run = download_with(
        config,
        SdoServerConfig::default(),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        deliver,
    );
    let sent = run.sim.sent(Dir::ToServer);
    assert_eq!(sent[0][0], 0xC2, "no CRC bit, size indicated");
    assert_eq!(
        ClientRequest::parse(sent.last().unwrap()),
        Ok(ClientRequest::EndBlockDownload { unused: 4, crc: 0 })
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: SCRATCH,
            len: 500,
            mode: TransferMode::Block {
                crc: CrcSupport::NotSupported
            }
        }
    );
    assert_eq!(run.device().scratch, img);
}

#[test]
fn write_time_delays_each_acknowledgement() {
    let img = image(889 * 2);
    let mut device = Device::new();
    device.write_time = Duration::from_millis(2);
    let run = download_with(
        client_config(),
        block(127),
        device,
        SCRATCH,
        &img,
        DownloadMethod::Block,
        deliver,
    );
    assert_eq!(run.device().scratch, img);
    // 253 full segments are written as they come, then the last one at the end.
    assert!(
        run.sim.elapsed() >= Duration::from_millis(2 * 254),
        "{:?}",
        run.sim.elapsed()
    );

    // A client whose timeout is shorter than a sub-block's write time gives up.
    let mut device = Device::new();
    device.write_time = Duration::from_millis(2);
    let config = SdoClientConfig {
        timeout: Duration::from_millis(100),
        ..client_config()
    };
    let run = download_with(
        config,
        block(127),
        device,
        SCRATCH,
        &img,
        DownloadMethod::Block,
        deliver,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::Timeout {
                awaiting: client::Awaiting::BlockAck,
                timeout: Duration::from_millis(100)
            }
        }
    );
}

#[test]
fn a_lost_acknowledgement_times_out_and_the_server_hears_the_abort() {
    let img = image(2000);
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    let run = download_with(
        client_config(),
        block(127),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        move |dir, f, _| {
            if dir == Dir::ToClient && f.data()[0] == 0xA2 && !s.get() {
                s.set(true);
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
    );
    assert!(seen.get());
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::Timeout {
                awaiting: client::Awaiting::BlockAck,
                timeout: Duration::from_millis(1000)
            }
        }
    );
    let abort = *run.sim.sent(Dir::ToServer).last().unwrap();
    assert_eq!(abort, [0x80, 0x00, 0x20, 0x00, 0x00, 0x00, 0x04, 0x05]);
    assert_eq!(run.device().aborted, vec![(SCRATCH, AbortCode::Timeout)]);
    assert_eq!(run.sim.server.state(), ServerState::Idle);
}
