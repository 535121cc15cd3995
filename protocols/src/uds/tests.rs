//! A flash client and a flash server talking through two ISO-TP endpoints, with frames
//! and responses lost on the way.

use super::*;
use crate::checksum::crc32;
use crate::isotp::{Event as IsoTpEvent, IsoTpChannel, IsoTpConfig};
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most frames or events one drain of a poll function gives: far more than any test's
/// exchange has at one instant, so a machine that never runs dry fails the test instead
/// of hanging it.
const MAX_DRAIN: usize = 100_000;

/// Bus time of one 8-byte standard frame at 500 kbit/s, roughly.
const FRAME_TIME: Duration = Duration::from_micros(230);

fn isotp() -> IsoTpConfig {
    IsoTpConfig::new(
        CanId::standard(0x7E0).unwrap(),
        CanId::standard(0x7E8).unwrap(),
    )
}

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i ^ (i >> 8) ^ 0x5A) as u8).collect()
}

/// The vendor secret of the tests: each seed byte XOR 0xA5, reversed.
fn key_of(seed: &[u8]) -> Vec<u8> {
    seed.iter().rev().map(|b| b ^ 0xA5).collect()
}

/// Flash memory in a vector, with configurable timing and faults.
#[derive(Debug, Default)]
struct Memory {
    flash: Vec<u8>,
    /// Offsets written, with how often each was written.
    writes: BTreeMap<u64, u32>,
    erase_time: Duration,
    write_time: Duration,
    max_block_len: u64,
    seeds_issued: u32,
    keys_checked: u32,
    resets: Vec<u8>,
    fail_write_at: Option<u64>,
    check_time: Duration,
    /// A byte flipped as it is written: the flash no longer holds what was sent.
    flip_at: Option<u64>,
    /// When set, a wrong image is refused with this code instead of status 0x01.
    check_refusal: Option<Nrc>,
}

impl Memory {
    fn new(max_block_len: u64) -> Memory {
        Memory {
            max_block_len,
            check_time: Duration::from_millis(10),
            ..Memory::default()
        }
    }
}

/// The test flash's size: 16 MiB.
const MEMORY_CAPACITY: u64 = 16 << 20;

impl FlashBackend for Memory {
    fn seed(&mut self, _level: u8) -> Vec<u8> {
        self.seeds_issued += 1;
        vec![0x12, 0x34, 0x56, self.seeds_issued as u8]
    }
    fn key_is_valid(&mut self, _level: u8, seed: &[u8], key: &[u8]) -> bool {
        self.keys_checked += 1;
        key == key_of(seed)
    }
    fn erase(&mut self, _option: &[u8]) -> Result<Duration, Nrc> {
        self.flash.clear();
        Ok(self.erase_time)
    }
    fn request_download(&mut self, _address: u64, size: u64, _format: u8) -> Result<u64, Nrc> {
        // Like a real flash, refuse what does not fit: the size comes off the wire.
        if size > MEMORY_CAPACITY {
            return Err(Nrc::RequestOutOfRange);
        }
        self.flash = vec![0xFF; size as usize];
        Ok(self.max_block_len)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        if self.fail_write_at == Some(offset) {
            return Err(Nrc::GeneralProgrammingFailure);
        }
        let o = offset as usize;
        self.flash[o..o + data.len()].copy_from_slice(data);
        if let Some(at) = self
            .flip_at
            .filter(|&a| a >= offset && a < offset + data.len() as u64)
        {
            self.flash[at as usize] ^= 0x01;
        }
        *self.writes.entry(offset).or_default() += 1;
        Ok(self.write_time)
    }
    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }
    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        let want = u32::from_be_bytes(option.try_into().map_err(|_| Nrc::RequestOutOfRange)?);
        let outcome = match self.check_refusal {
            _ if crc32(&self.flash) == want => CheckOutcome::Correct,
            Some(nrc) => CheckOutcome::Rejected(nrc),
            None => CheckOutcome::Incorrect,
        };
        Ok((self.check_time, outcome))
    }
    fn reset(&mut self, reset_type: u8) {
        self.resets.push(reset_type);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// Everything one run produced.
struct Run {
    events: Vec<FlashEvent>,
    server: FlashServer<Memory>,
    /// Frames that crossed (or were dropped), with their direction.
    frames: Vec<(Dir, CanFrame)>,
    elapsed: Duration,
}

impl Run {
    fn outcome(&self) -> Option<&FlashEvent> {
        self.events
            .iter()
            .rev()
            .find(|e| matches!(e, FlashEvent::Done { .. } | FlashEvent::Failed(_)))
    }

    /// Block sequence counters of the `TransferData` requests the client sent.
    fn transfer_counters(&self) -> Vec<u8> {
        self.frames
            .iter()
            .filter(|(d, _)| *d == Dir::ToServer)
            .filter_map(|(_, f)| match f.data() {
                [0x10..=0x1F, _, 0x36, c, ..] => Some(*c),
                [0x00..=0x07, 0x36, c, ..] => Some(*c),
                _ => None,
            })
            .collect()
    }
}

/// Runs a whole download in virtual time. `drop` decides, for each frame, whether the bus
/// loses it.
fn run(
    config: FlashConfig,
    server_config: ServerConfig,
    backend: Memory,
    img: &[u8],
    mut drop: impl FnMut(Dir, &CanFrame) -> bool,
) -> Run {
    let mut config = config;
    config.check_option = crc32(img).to_be_bytes().to_vec();
    let key = Box::new(|_level: u8, seed: &[u8]| Ok(key_of(seed)));
    let mut client = FlashClient::new(isotp(), config, img.len() as u32, key).unwrap();
    let mut server = FlashServer::new(isotp().peer(), server_config, backend);
    let start = Timestamp::from_micros(1_000_000);
    let mut now = start;
    let mut events = Vec::new();
    let mut frames = Vec::new();
    client.start(now);
    // The longest run of these tests takes about 5 000 rounds.
    for _ in 0..100_000 {
        let mut progressed = false;
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        if let Some(f) = client.poll_transmit(now) {
            now = now + FRAME_TIME;
            frames.push((Dir::ToServer, f));
            if !drop(Dir::ToServer, &f) {
                server.handle_frame(now, &f);
            }
            progressed = true;
        }
        if let Some(f) = server.poll_transmit(now) {
            now = now + FRAME_TIME;
            frames.push((Dir::ToClient, f));
            if !drop(Dir::ToClient, &f) {
                client.handle_frame(now, &f);
            }
            progressed = true;
        }
        let mut drained = 0;
        while let Some(e) = client.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            progressed = true;
            if let FlashEvent::NeedData { offset, len } = e {
                let o = offset as usize;
                client.provide_data(now, &img[o..o + len]).unwrap();
            }
            let finished = matches!(e, FlashEvent::Done { .. } | FlashEvent::Failed(_));
            events.push(e);
            if finished {
                // Let the server see anything still in flight, then stop.
                let mut drained = 0;
                while let Some(f) = client.poll_transmit(now) {
                    drained += 1;
                    assert!(drained <= MAX_DRAIN, "a poll never runs dry");
                    server.handle_frame(now, &f);
                }
                return Run {
                    events,
                    server,
                    frames,
                    elapsed: now.saturating_duration_since(start),
                };
            }
        }
        if !progressed {
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("the exchange stalled with no timer running");
            // Nothing moved this round although every timer due by now was handled: a
            // timer that stays due would repeat the same round forever.
            assert!(
                next > now,
                "a timer stays due at {now:?}: the exchange is stuck"
            );
            now = next;
        }
    }
    panic!("the download did not finish");
}

fn phases(events: &[FlashEvent]) -> Vec<FlashPhase> {
    events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Phase(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_whole_download_goes_through_every_phase() {
    let img = image(10_000);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x802),
        &img,
        |_, _| false,
    );
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Done {
            reset: ResetOutcome::Acknowledged
        })
    );
    assert_eq!(
        phases(&r.events),
        vec![
            FlashPhase::Session,
            FlashPhase::Security,
            FlashPhase::Erase,
            FlashPhase::Download,
            FlashPhase::Transfer,
            FlashPhase::Exit,
            FlashPhase::Check,
            FlashPhase::Reset,
            FlashPhase::Done
        ]
    );
    let m = r.server.backend();
    assert_eq!(m.flash, img);
    assert_eq!(m.resets, vec![0x01]);
    // maxNumberOfBlockLength 0x802 leaves 2048 data bytes per block.
    let offsets: Vec<u64> = m.writes.keys().copied().collect();
    assert_eq!(offsets, vec![0, 2048, 4096, 6144, 8192]);
    assert!(m.writes.values().all(|&n| n == 1));
    let needs: Vec<(u64, usize)> = r
        .events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::NeedData { offset, len } => Some((*offset, *len)),
            _ => None,
        })
        .collect();
    assert_eq!(
        needs,
        vec![
            (0, 2048),
            (2048, 2048),
            (4096, 2048),
            (6144, 2048),
            (8192, 1808)
        ]
    );
    let progress: Vec<u64> = r
        .events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Progress {
                acknowledged,
                total: 10_000,
            } => Some(*acknowledged),
            _ => None,
        })
        .collect();
    assert_eq!(progress, vec![2048, 4096, 6144, 8192, 10_000]);
    assert_eq!(r.transfer_counters(), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        r.server.transfer(),
        TransferState::Idle,
        "reset ends the session"
    );
}

#[test]
fn the_block_counter_wraps_from_ff_to_00() {
    // 10-byte blocks carry 8 data bytes: 300 blocks.
    let img = image(8 * 300);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(10),
        &img,
        |_, _| false,
    );
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    let want: Vec<u8> = (1..=300u32).map(|i| (i % 256) as u8).collect();
    assert_eq!(r.transfer_counters(), want);
    assert_eq!(r.server.backend().flash, img);
}

#[test]
fn the_client_caps_blocks_below_the_servers_maximum() {
    let img = image(3000);
    let config = FlashConfig {
        max_block_len: 1026,
        ..FlashConfig::default()
    };
    let r = run(
        config,
        ServerConfig::default(),
        Memory::new(0xFFFF),
        &img,
        |_, _| false,
    );
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    let offsets: Vec<u64> = r.server.backend().writes.keys().copied().collect();
    assert_eq!(offsets, vec![0, 1024, 2048]);
}

#[test]
fn a_long_erase_is_waited_for_through_response_pending() {
    let img = image(100);
    let mut mem = Memory::new(0x102);
    mem.erase_time = Duration::from_secs(12);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        mem,
        &img,
        |_, _| false,
    );
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    assert!(r.elapsed >= Duration::from_secs(12));
    let pendings = r
        .frames
        .iter()
        .filter(|(d, f)| *d == Dir::ToClient && f.data()[1..4] == [0x7F, 0x31, 0x78])
        .count();
    // Pending at 0 s, then every 2 s until the erase ends at 12 s.
    assert_eq!(pendings, 6);
    assert_eq!(r.server.backend().flash, img);
}

#[test]
fn too_many_pending_answers_fail_the_update() {
    let mut mem = Memory::new(0x102);
    mem.erase_time = Duration::from_secs(30);
    let config = FlashConfig {
        max_pending: 3,
        ..FlashConfig::default()
    };
    let r = run(config, ServerConfig::default(), mem, &image(50), |_, _| {
        false
    });
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Failed(FlashError::TooManyPending {
            phase: FlashPhase::Erase,
            max: 3
        }))
    );
}

#[test]
fn a_lost_acknowledgement_repeats_the_block_with_the_same_counter() {
    let img = image(5000);
    let mut dropped = 0;
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x402),
        &img,
        |dir, f| {
            let lose = dir == Dir::ToClient && f.data()[..3] == [0x02, 0x76, 0x02] && dropped == 0;
            dropped += usize::from(lose);
            lose
        },
    );
    assert_eq!(dropped, 1);
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    assert_eq!(r.transfer_counters(), vec![1, 2, 2, 3, 4, 5]);
    let m = r.server.backend();
    assert_eq!(m.flash, img);
    assert!(
        m.writes.values().all(|&n| n == 1),
        "the repeated block was acknowledged without rewriting: {:?}",
        m.writes
    );
}

#[test]
fn a_late_acknowledgement_is_not_mistaken_for_the_next_block() {
    // The server takes 60 ms per block and thinks that is fine (its P2 is 100 ms); the
    // client gives up waiting after 50 ms and repeats. The server answers the repeat
    // with response-pending, then the original acknowledgement arrives.
    let img = image(3000);
    let mut mem = Memory::new(0x402);
    mem.write_time = Duration::from_millis(60);
    let server = ServerConfig {
        p2: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let r = run(FlashConfig::default(), server, mem, &img, |_, _| false);
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    let counters = r.transfer_counters();
    assert_eq!(counters, vec![1, 1, 2, 2, 3, 3]);
    let m = r.server.backend();
    assert_eq!(m.flash, img);
    assert!(m.writes.values().all(|&n| n == 1));
}

#[test]
fn lost_frames_inside_a_request_are_recovered_by_repeating_it() {
    let img = image(4000);
    // Lose the third consecutive frame of the first transfer request (the server's
    // receiver sees a sequence gap and drops the message), and the first frame of the
    // second (the client's sender waits for flow control until N_Bs).
    let mut transfer_frames = 0;
    let mut lost = Vec::new();
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x402),
        &img,
        |dir, f| {
            if dir != Dir::ToServer {
                return false;
            }
            let d = f.data();
            if d[0] >> 4 == 1 && d[2] == 0x36 {
                transfer_frames = 0;
                if d[3] == 2 && !lost.contains(&"first frame") {
                    lost.push("first frame");
                    return true;
                }
            }
            if d[0] >> 4 == 2 {
                transfer_frames += 1;
                if transfer_frames == 3 && !lost.contains(&"consecutive frame") {
                    lost.push("consecutive frame");
                    return true;
                }
            }
            false
        },
    );
    assert_eq!(lost, vec!["consecutive frame", "first frame"]);
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    assert_eq!(r.transfer_counters(), vec![1, 1, 2, 2, 3, 4]);
    assert_eq!(r.server.backend().flash, img);
    assert!(r.elapsed >= Duration::from_secs(1), "N_Bs ran out once");
}

#[test]
fn a_lost_key_acknowledgement_is_recovered_with_a_zero_seed() {
    let img = image(100);
    let mut dropped = false;
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x102),
        &img,
        |dir, f| {
            let lose = dir == Dir::ToClient && f.data()[..3] == [0x02, 0x67, 0x02] && !dropped;
            dropped |= lose;
            lose
        },
    );
    assert!(dropped);
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    let m = r.server.backend();
    assert_eq!(m.keys_checked, 1, "the key was not sent twice");
    assert_eq!(
        m.seeds_issued, 1,
        "the second seed request got the zero seed"
    );
}

#[test]
fn an_unanswered_request_fails_after_the_retries() {
    let mut seen_session = false;
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x102),
        &image(100),
        |dir, f| {
            // Answer the session request, then lose every response.
            if dir != Dir::ToClient {
                return false;
            }
            if f.data()[1] == 0x50 && !seen_session {
                seen_session = true;
                return false;
            }
            true
        },
    );
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Failed(FlashError::NoResponse {
            phase: FlashPhase::Security,
            attempts: 4
        }))
    );
    let seed_requests = r
        .frames
        .iter()
        .filter(|(d, f)| *d == Dir::ToServer && f.data()[..3] == [0x02, 0x27, 0x01])
        .count();
    assert_eq!(seed_requests, 4);
    assert_eq!(phases(&r.events).last(), Some(&FlashPhase::Failed));
}

#[test]
fn a_lost_reset_answer_still_completes() {
    let img = image(100);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        Memory::new(0x102),
        &img,
        |dir, f| dir == Dir::ToClient && f.data()[1] == 0x51,
    );
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Done {
            reset: ResetOutcome::Unconfirmed
        })
    );
    assert_eq!(r.server.backend().resets, vec![0x01]);
}

#[test]
fn refusals_become_typed_errors() {
    // A wrong key.
    let config = FlashConfig {
        check_option: vec![0, 0, 0, 0],
        ..FlashConfig::default()
    };
    let key = Box::new(|_: u8, _: &[u8]| Ok(vec![0u8; 4]));
    let mut client = FlashClient::new(isotp(), config, 100, key).unwrap();
    let mut server = FlashServer::new(isotp().peer(), ServerConfig::default(), Memory::new(0x102));
    let t = Timestamp::from_micros(0);
    client.start(t);
    let mut outcome = None;
    for _ in 0..100 {
        let mut drained = 0;
        while let Some(f) = client.poll_transmit(t) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            server.handle_frame(t, &f);
        }
        let mut drained = 0;
        while let Some(f) = server.poll_transmit(t) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            client.handle_frame(t, &f);
        }
        let mut drained = 0;
        while let Some(e) = client.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            if let FlashEvent::Failed(err) = e {
                outcome = Some(err);
            }
        }
    }
    assert_eq!(
        outcome,
        Some(FlashError::Rejected {
            phase: FlashPhase::Security,
            service: 0x27,
            nrc: Nrc::InvalidKey
        })
    );

    // A programming failure while writing.
    let mut mem = Memory::new(0x102);
    mem.fail_write_at = Some(0x200);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        mem,
        &image(1000),
        |_, _| false,
    );
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Failed(FlashError::Rejected {
            phase: FlashPhase::Transfer,
            service: 0x36,
            nrc: Nrc::GeneralProgrammingFailure
        }))
    );
}

#[test]
fn a_failed_check_stops_before_the_reset() {
    let img = image(500);
    // Corrupt one byte of the second transfer request on its way: the server writes what
    // it received and its check finds the CRC wrong.
    let mut corrupted = false;
    let config = FlashConfig {
        check_option: crc32(&img).to_be_bytes().to_vec(),
        ..FlashConfig::default()
    };
    let key = Box::new(|_level: u8, seed: &[u8]| Ok(key_of(seed)));
    let mut client = FlashClient::new(isotp(), config, img.len() as u32, key).unwrap();
    let mut server = FlashServer::new(isotp().peer(), ServerConfig::default(), Memory::new(0x102));
    let mut now = Timestamp::from_micros(0);
    client.start(now);
    let mut failure = None;
    for _ in 0..10_000 {
        now = now + FRAME_TIME;
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        let mut drained = 0;
        while let Some(f) = client.poll_transmit(now) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            let mut data = f.data().to_vec();
            if !corrupted && data[0] == 0x21 && server.backend().writes.len() == 1 {
                data[5] ^= 0x01;
                corrupted = true;
            }
            server.handle_frame(now, &CanFrame::new(f.id(), &data).unwrap());
        }
        let mut drained = 0;
        while let Some(f) = server.poll_transmit(now) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            client.handle_frame(now, &f);
        }
        let mut drained = 0;
        while let Some(e) = client.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            match e {
                FlashEvent::NeedData { offset, len } => {
                    let o = offset as usize;
                    client.provide_data(now, &img[o..o + len]).unwrap();
                }
                FlashEvent::Failed(err) => failure = Some(err),
                FlashEvent::Done { .. } => panic!("a corrupted image passed the check"),
                _ => {}
            }
        }
        if failure.is_some() {
            break;
        }
    }
    assert!(corrupted);
    assert_eq!(
        failure,
        Some(FlashError::CheckFailed { status: vec![0x01] })
    );
    assert!(server.backend().resets.is_empty());
}

#[test]
fn provide_data_checks_what_was_asked() {
    let key = Box::new(|_: u8, s: &[u8]| Ok(s.to_vec()));
    let mut client = FlashClient::new(isotp(), FlashConfig::default(), 10, key).unwrap();
    let t = Timestamp::ZERO;
    assert_eq!(
        client.provide_data(t, &[0; 10]),
        Err(ProvideDataError::NotExpected)
    );
    let bad = |config: FlashConfig, len: u32| {
        FlashClient::new(
            isotp(),
            config,
            len,
            Box::new(|_: u8, s: &[u8]| Ok(s.to_vec())),
        )
        .err()
    };
    assert_eq!(
        bad(FlashConfig::default(), 0),
        Some(FlashConfigError::EmptyImage)
    );
    let c = FlashConfig {
        size_len: 1,
        ..FlashConfig::default()
    };
    assert!(matches!(
        bad(c, 256),
        Some(FlashConfigError::DoesNotFit { .. })
    ));
    let c = FlashConfig {
        security_level: 2,
        ..FlashConfig::default()
    };
    assert_eq!(bad(c, 10), Some(FlashConfigError::SecurityLevel(2)));
}

/// A client and a bare ISO-TP endpoint in the server's place: the test reads each request
/// the client sends and answers it itself, when it chooses.
struct Scripted {
    client: FlashClient,
    server: IsoTpChannel,
    now: Timestamp,
    /// The client's events so far.
    events: Vec<FlashEvent>,
}

/// The seed the scripted server hands out.
const SCRIPTED_SEED: [u8; 2] = [0x12, 0x34];

impl Scripted {
    /// A started client of an `image_len`-byte image, unlocking with [`key_of`].
    fn new(config: FlashConfig, image_len: u32) -> Scripted {
        let key = Box::new(|_level: u8, seed: &[u8]| Ok(key_of(seed)));
        let mut client = FlashClient::new(isotp(), config, image_len, key).unwrap();
        let now = Timestamp::from_micros(1_000_000);
        client.start(now);
        let mut s = Scripted {
            client,
            server: IsoTpChannel::new(isotp().peer()),
            now,
            events: Vec::new(),
        };
        s.pump();
        s
    }

    /// Moves frames both ways until both sides are quiet, then collects the client's
    /// events; at most 10 000 frames, so a side that never stops sending fails the test
    /// instead of hanging it.
    fn pump(&mut self) {
        crate::test_support::pump(&mut self.client, &mut self.server, self.now, 10_000);
        let mut drained = 0;
        while let Some(e) = self.client.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            self.events.push(e);
        }
    }

    /// The requests that reached the server since the last call, in order.
    fn requests(&mut self) -> Vec<Vec<u8>> {
        self.pump();
        let mut requests = Vec::new();
        let mut drained = 0;
        while let Some(e) = self.server.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            if let IsoTpEvent::Received(r) = e {
                requests.push(r);
            }
        }
        requests
    }

    /// The one request that reached the server since the last call.
    fn request(&mut self) -> Vec<u8> {
        let mut requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:02X?}");
        requests.remove(0)
    }

    /// Sends `response` to the client now.
    fn answer(&mut self, response: &[u8]) {
        self.server.send(self.now, response.to_vec()).unwrap();
        self.pump();
    }

    /// Moves to the client's next timer and fires it; returns the time waited.
    fn wait(&mut self) -> Duration {
        let next = self
            .client
            .poll_timeout()
            .expect("the client waits for nothing");
        let waited = next.saturating_duration_since(self.now);
        self.now = self.now.max(next);
        self.client.handle_timeout(self.now);
        self.pump();
        waited
    }

    /// Answers the session, security, erase and download requests of the default
    /// configuration; the download with maxNumberOfBlockLength `max_block_len`.
    fn open_transfer(&mut self, max_block_len: u64) {
        assert_eq!(self.request(), [0x10, 0x02]);
        self.answer(&[0x50, 0x02, 0x00, 0x32, 0x01, 0xF4]);
        assert_eq!(self.request(), [0x27, 0x01]);
        self.answer(&[&[0x67, 0x01][..], &SCRIPTED_SEED].concat());
        assert_eq!(
            self.request(),
            [&[0x27, 0x02][..], &key_of(&SCRIPTED_SEED)].concat()
        );
        self.answer(&[0x67, 0x02]);
        assert_eq!(self.request(), [0x31, 0x01, 0xFF, 0x00]);
        self.answer(&[0x71, 0x01, 0xFF, 0x00]);
        assert_eq!(self.request()[0], 0x34);
        self.answer(&request_download_positive(max_block_len));
    }

    /// Answers the client's latest [`FlashEvent::NeedData`] from `img`.
    fn give(&mut self, img: &[u8]) {
        let Some(&FlashEvent::NeedData { offset, len }) = self
            .events
            .iter()
            .rev()
            .find(|e| matches!(e, FlashEvent::NeedData { .. }))
        else {
            panic!("no data was asked for: {:?}", self.events);
        };
        let o = offset as usize;
        self.client
            .provide_data(self.now, &img[o..o + len])
            .unwrap();
        self.pump();
    }

    /// Sends `response` and checks the client neither answers it nor ends: it does not
    /// answer the request under way.
    fn ignores(&mut self, response: &[u8]) {
        let seen = self.events.len();
        self.answer(response);
        assert_eq!(
            self.requests(),
            Vec::<Vec<u8>>::new(),
            "{response:02X?} was taken"
        );
        assert_eq!(self.events[seen..], [], "{response:02X?} was taken");
    }

    /// The last event, if it ends the download.
    fn outcome(&self) -> Option<&FlashEvent> {
        self.events
            .last()
            .filter(|e| matches!(e, FlashEvent::Done { .. } | FlashEvent::Failed(_)))
    }
}

#[test]
fn the_client_tells_its_block_length_and_progress() {
    let img = image(10);
    let mut s = Scripted::new(FlashConfig::default(), 10);
    assert_eq!(
        s.client.block_data_len(),
        None,
        "not known before the download"
    );
    assert_eq!(s.client.progress(), (0, 10));
    // maxNumberOfBlockLength 6: 4 data bytes per block.
    s.open_transfer(6);
    assert_eq!(s.client.block_data_len(), Some(4));
    assert_eq!(s.client.phase(), FlashPhase::Transfer);
    s.give(&img);
    assert_eq!(s.request(), [0x36, 0x01, img[0], img[1], img[2], img[3]]);
    s.answer(&[0x76, 0x01]);
    assert_eq!(s.client.progress(), (4, 10));
    let debug = format!("{:?}", s.client);
    assert!(
        debug.contains("phase: Transfer") && debug.contains("acknowledged: 4"),
        "{debug}"
    );
}

#[test]
fn an_aborted_download_fails_once_and_sends_nothing_more() {
    let img = image(10);
    let mut s = Scripted::new(FlashConfig::default(), 10);
    s.open_transfer(6);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x01]);
    s.client.abort();
    s.pump();
    assert_eq!(s.client.phase(), FlashPhase::Failed);
    assert_eq!(s.outcome(), Some(&FlashEvent::Failed(FlashError::Aborted)));
    assert_eq!(s.client.poll_timeout(), None, "nothing left to wait for");
    // A late acknowledgement changes nothing, nor does a second abort.
    let seen = s.events.len();
    s.answer(&[0x76, 0x01]);
    s.client.abort();
    s.pump();
    assert_eq!(s.events.len(), seen, "{:?}", &s.events[seen..]);
    assert_eq!(s.requests(), Vec::<Vec<u8>>::new());
    assert_eq!(s.client.progress(), (0, 10));
}

#[test]
fn aborting_a_finished_download_changes_nothing() {
    let img = image(4);
    let mut s = Scripted::new(FlashConfig::default(), 4);
    s.open_transfer(6);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x01]);
    s.answer(&[0x76, 0x01]);
    assert_eq!(s.request(), [0x37]);
    s.answer(&[0x77]);
    assert_eq!(s.request(), [0x31, 0x01, 0xFF, 0x01]);
    s.answer(&[0x71, 0x01, 0xFF, 0x01, 0x00]);
    assert_eq!(s.request(), [0x11, 0x01]);
    s.answer(&[0x51, 0x01]);
    let done = FlashEvent::Done {
        reset: ResetOutcome::Acknowledged,
    };
    assert_eq!(s.outcome(), Some(&done));
    let seen = s.events.len();
    s.client.abort();
    s.pump();
    assert_eq!(s.events.len(), seen);
    assert_eq!(s.client.phase(), FlashPhase::Done);
}

#[test]
fn an_unanswered_request_is_repeated_at_p2_not_before() {
    let mut s = Scripted::new(FlashConfig::default(), 10);
    assert_eq!(s.request(), [0x10, 0x02]);
    let sent = s.now;
    assert_eq!(
        s.client.poll_timeout(),
        Some(sent + Duration::from_millis(50))
    );
    // Called early, the timer does nothing.
    s.now = sent + Duration::from_micros(49_999);
    s.client.handle_timeout(s.now);
    assert_eq!(s.requests(), Vec::<Vec<u8>>::new());
    assert_eq!(s.wait(), Duration::from_micros(1));
    assert_eq!(s.request(), [0x10, 0x02]);
}

#[test]
fn a_busy_server_is_asked_again_p2_later_until_the_retries_run_out() {
    let mut s = Scripted::new(FlashConfig::default(), 10);
    assert_eq!(s.request(), [0x10, 0x02]);
    // max_retries 3: the first busy answer and three more repeats are asked again.
    for retry in 1..=3 {
        s.answer(&negative(0x10, Nrc::BusyRepeatRequest));
        let busy = s.now;
        assert_eq!(
            s.client.poll_timeout(),
            Some(busy + Duration::from_millis(50))
        );
        s.now = busy + Duration::from_micros(49_999);
        s.client.handle_timeout(s.now);
        assert_eq!(
            s.requests(),
            Vec::<Vec<u8>>::new(),
            "retry {retry} too early"
        );
        assert_eq!(s.wait(), Duration::from_micros(1));
        assert_eq!(s.request(), [0x10, 0x02], "retry {retry}");
        assert_eq!(s.outcome(), None);
    }
    s.answer(&negative(0x10, Nrc::BusyRepeatRequest));
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Failed(FlashError::Rejected {
            phase: FlashPhase::Session,
            service: 0x10,
            nrc: Nrc::BusyRepeatRequest
        }))
    );
    assert_eq!(s.requests(), Vec::<Vec<u8>>::new());
}

#[test]
fn a_long_response_still_arriving_at_p2_is_waited_for() {
    let mut s = Scripted::new(FlashConfig::default(), 10);
    assert_eq!(s.request(), [0x10, 0x02]);
    s.answer(&[0x50, 0x02, 0x00, 0x32, 0x01, 0xF4]);
    assert_eq!(s.request(), [0x27, 0x01]);
    let sent = s.now;
    let deadline = sent + Duration::from_millis(50);
    // A 20-byte seed takes four frames; the first arrives 1 ms before P2 runs out.
    let seed: Vec<u8> = (1..=20).collect();
    s.now = sent + Duration::from_millis(49);
    s.server
        .send(s.now, [&[0x67, 0x01][..], &seed].concat())
        .unwrap();
    let first = s.server.poll_transmit(s.now).unwrap();
    s.client.handle_frame(s.now, &first);
    let flow_control = s.client.poll_transmit(s.now).unwrap();
    s.server.handle_frame(s.now, &flow_control);
    // Past P2 the client waits for the rest of the response, not for the P2 deadline.
    s.now = sent + Duration::from_millis(60);
    assert!(s.client.poll_timeout().is_some_and(|t| t > deadline));
    s.client.handle_timeout(s.now);
    s.pump();
    assert_eq!(
        s.request(),
        [&[0x27, 0x02][..], &key_of(&seed)].concat(),
        "the seed was taken, not asked for again"
    );
}

#[test]
fn answers_that_do_not_echo_the_request_are_ignored() {
    let img = image(4);
    let mut s = Scripted::new(FlashConfig::default(), 4);
    assert_eq!(s.request(), [0x10, 0x02]);
    // Answers to another request, and another session.
    s.ignores(&negative(0x22, Nrc::RequestOutOfRange));
    s.ignores(&[0x62, 0xF1, 0x95, 0x01]);
    s.ignores(&[0x50, 0x03, 0x00, 0x32, 0x01, 0xF4]);
    s.answer(&[0x50, 0x02, 0x00, 0x32, 0x01, 0xF4]);
    assert_eq!(s.request(), [0x27, 0x01]);
    // A seed, then a key acknowledgement, of another level.
    s.ignores(&[0x67, 0x03, 0x12, 0x34]);
    s.answer(&[&[0x67, 0x01][..], &SCRIPTED_SEED].concat());
    assert_eq!(s.request()[..2], [0x27, 0x02]);
    s.ignores(&[0x67, 0x04]);
    s.answer(&[0x67, 0x02]);
    assert_eq!(s.request(), [0x31, 0x01, 0xFF, 0x00]);
    // An echo cut short, a stopped routine, another routine.
    s.ignores(&[0x71, 0x01, 0xFF]);
    s.ignores(&[0x71, 0x02, 0xFF, 0x00]);
    s.ignores(&[0x71, 0x01, 0xFF, 0x01]);
    s.answer(&[0x71, 0x01, 0xFF, 0x00]);
    assert_eq!(s.request()[0], 0x34);
    s.answer(&request_download_positive(6));
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x01]);
    s.answer(&[0x76, 0x01]);
    assert_eq!(s.request(), [0x37]);
    s.answer(&[0x77]);
    assert_eq!(s.request(), [0x31, 0x01, 0xFF, 0x01]);
    // The erase routine's echo does not answer the check.
    s.ignores(&[0x71, 0x01, 0xFF, 0x00, 0x00]);
    s.answer(&[0x71, 0x01, 0xFF, 0x01, 0x00]);
    assert_eq!(s.request(), [0x11, 0x01]);
    // Another reset type.
    s.ignores(&[0x51, 0x03]);
    s.answer(&[0x51, 0x01]);
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Done {
            reset: ResetOutcome::Acknowledged
        })
    );
}

#[test]
fn exactly_max_pending_answers_are_waited_for() {
    let config = FlashConfig {
        max_pending: 2,
        ..FlashConfig::default()
    };
    let mut s = Scripted::new(config, 10);
    assert_eq!(s.request(), [0x10, 0x02]);
    for _ in 0..2 {
        s.answer(&negative(0x10, Nrc::ResponsePending));
        assert_eq!(
            s.client.poll_timeout(),
            Some(s.now + Duration::from_millis(5000)),
            "P2* from the pending answer"
        );
    }
    s.answer(&[0x50, 0x02, 0x00, 0x32, 0x01, 0xF4]);
    assert_eq!(s.request(), [0x27, 0x01]);
    // The count starts again with each request; one more than max_pending fails.
    for _ in 0..2 {
        s.answer(&negative(0x27, Nrc::ResponsePending));
    }
    assert_eq!(s.outcome(), None);
    s.answer(&negative(0x27, Nrc::ResponsePending));
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Failed(FlashError::TooManyPending {
            phase: FlashPhase::Security,
            max: 2
        }))
    );
}

#[test]
fn a_block_length_of_two_leaves_no_room_and_three_carries_one_byte() {
    let mut s = Scripted::new(FlashConfig::default(), 10);
    s.open_transfer(2);
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Failed(FlashError::BlockLengthTooSmall(2)))
    );
    let img = image(2);
    let mut s = Scripted::new(FlashConfig::default(), 2);
    s.open_transfer(3);
    assert_eq!(s.client.block_data_len(), Some(1));
    s.give(&img);
    assert_eq!(s.request(), [0x36, 0x01, img[0]]);
    s.answer(&[0x76, 0x01]);
    s.give(&img);
    assert_eq!(s.request(), [0x36, 0x02, img[1]]);
}

#[test]
fn an_acknowledgement_of_a_later_block_fails_the_download_and_a_late_one_is_ignored() {
    let img = image(12);
    let mut s = Scripted::new(FlashConfig::default(), 12);
    s.open_transfer(6);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x01]);
    s.answer(&[0x76, 0x01]);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x02]);
    // Block 1's acknowledgement once more: late, and ignored.
    s.ignores(&[0x76, 0x01]);
    assert_eq!(s.client.progress(), (4, 12));
    // One for a block not sent yet.
    s.answer(&[0x76, 0x03]);
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Failed(FlashError::UnexpectedResponse {
            phase: FlashPhase::Transfer,
            response: vec![0x76, 0x03]
        }))
    );
}

#[test]
fn an_acknowledged_count_at_the_blocks_start_fails_the_download() {
    // The server's count says it holds nothing of block 2: the client stops rather than
    // ask for the same bytes under the next counter.
    let img = image(12);
    let (config, _) = adaptive(2, 4);
    let mut s = Scripted::new(config, 12);
    s.open_transfer(6);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x01]);
    s.answer(&[0x76, 0x01, 0, 0, 0, 4]);
    s.give(&img);
    assert_eq!(s.request()[..2], [0x36, 0x02]);
    s.answer(&[0x76, 0x02, 0, 0, 0, 4]);
    assert_eq!(
        s.outcome(),
        Some(&FlashEvent::Failed(FlashError::UnexpectedResponse {
            phase: FlashPhase::Transfer,
            response: vec![0x76, 0x02, 0, 0, 0, 4]
        }))
    );
    assert_eq!(s.client.progress(), (4, 12));
}

/// Drives a bare server message by message.
struct Bench {
    server: FlashServer<Memory>,
    now: Timestamp,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            server: FlashServer::new(isotp().peer(), ServerConfig::default(), Memory::new(0x0A)),
            now: Timestamp::ZERO,
        }
    }

    fn ask(&mut self, request: &[u8]) -> Vec<u8> {
        self.server.handle_request(self.now, request);
        self.now = self.now + Duration::from_millis(1);
        self.server.handle_timeout(self.now);
        self.server.poll_response().unwrap_or_default()
    }

    fn unlock_and_erase(&mut self) {
        assert_eq!(self.ask(&[0x10, 0x02])[..2], [0x50, 0x02]);
        let seed = self.ask(&[0x27, 0x01]);
        let mut key = vec![0x27, 0x02];
        key.extend(key_of(&seed[2..]));
        assert_eq!(self.ask(&key), vec![0x67, 0x02]);
        assert_eq!(
            self.ask(&[0x31, 0x01, 0xFF, 0x00]),
            vec![0x71, 0x01, 0xFF, 0x00]
        );
    }
}

#[test]
fn a_restarted_server_forgets_its_session_and_work() {
    let mut b = Bench::new();
    b.unlock_and_erase();
    let t0 = b.now;
    b.server.backend_mut().erase_time = Duration::from_secs(3);
    b.server.handle_request(t0, &[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    b.server.handle_request(t0, &[0x3E, 0x00]);
    b.server.restart();
    assert_eq!(b.server.poll_response(), None, "queued answers are lost");
    assert_eq!(
        b.server.poll_timeout(),
        None,
        "the erase under way is forgotten"
    );
    assert_eq!(b.server.session(), Session::Default);
    assert_eq!(*b.server.security(), Security::Locked);
    assert_eq!(b.server.transfer(), TransferState::Idle);
    assert_eq!(
        b.ask(&[0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 0, 0, 1]),
        vec![0x7F, 0x34, 0x7F]
    );
    assert_eq!(b.ask(&[0x10, 0x02])[..2], [0x50, 0x02]);
}

#[test]
fn server_enforces_the_sequence() {
    let mut b = Bench::new();
    assert_eq!(
        b.ask(&[0x27, 0x01]),
        vec![0x7F, 0x27, 0x7F],
        "no security in default"
    );
    assert_eq!(b.ask(&[0x10, 0x02])[..2], [0x50, 0x02]);
    assert_eq!(
        b.ask(&[0x31, 0x01, 0xFF, 0x00]),
        vec![0x7F, 0x31, 0x33],
        "locked"
    );
    assert_eq!(
        b.ask(&[0x27, 0x02, 0x00]),
        vec![0x7F, 0x27, 0x24],
        "key before seed"
    );
    b.ask(&[0x27, 0x01]);
    assert_eq!(
        b.ask(&[0x27, 0x02, 0x00]),
        vec![0x7F, 0x27, 0x35],
        "wrong key"
    );
    b.ask(&[0x27, 0x01]);
    assert_eq!(b.ask(&[0x27, 0x02, 0x00]), vec![0x7F, 0x27, 0x35]);
    b.ask(&[0x27, 0x01]);
    assert_eq!(
        b.ask(&[0x27, 0x02, 0x00]),
        vec![0x7F, 0x27, 0x36],
        "third wrong key"
    );
    assert_eq!(b.ask(&[0x27, 0x01]), vec![0x7F, 0x27, 0x37], "locked out");

    let mut b = Bench::new();
    b.ask(&[0x10, 0x02]);
    let seed = b.ask(&[0x27, 0x01]);
    let mut key = vec![0x27, 0x02];
    key.extend(key_of(&seed[2..]));
    b.ask(&key);
    assert_eq!(
        b.ask(&[0x27, 0x01]),
        vec![0x67, 0x01, 0, 0, 0, 0],
        "unlocked: zero seed"
    );
    let download = [0x34, 0x00, 0x11, 0x00, 0x10];
    assert_eq!(
        b.ask(&download),
        vec![0x7F, 0x34, 0x24],
        "download before erase"
    );
    assert_eq!(
        b.ask(&[0x31, 0x01, 0xFF, 0x01]),
        vec![0x7F, 0x31, 0x24],
        "check first"
    );
    assert_eq!(
        b.ask(&[0x31, 0x01, 0x12, 0x34]),
        vec![0x7F, 0x31, 0x31],
        "unknown routine"
    );
    assert_eq!(
        b.ask(&[0x36, 0x01, 0xAA]),
        vec![0x7F, 0x36, 0x24],
        "no download"
    );
    assert_eq!(b.ask(&[0x37]), vec![0x7F, 0x37, 0x24]);
    assert_eq!(b.ask(&[0x10]), vec![0x7F, 0x10, 0x13], "malformed");
    assert_eq!(
        b.ask(&[0x85, 0x01]),
        vec![0x7F, 0x85, 0x11],
        "unknown service"
    );
    assert_eq!(
        b.ask(&[0x3E, 0x80]),
        Vec::<u8>::new(),
        "suppressed positive response"
    );
    assert_eq!(b.ask(&[0x3E, 0x00]), vec![0x7E, 0x00]);
}

#[test]
fn server_checks_counters_acknowledges_repeats_and_wraps() {
    let mut b = Bench::new();
    b.unlock_and_erase();
    // 0x0A = 10-byte blocks: 8 data bytes. 300 blocks.
    let size: u32 = 8 * 300;
    let mut req = vec![0x34, 0x00, 0x24, 0, 0, 0, 0];
    req.extend_from_slice(&(size as u16).to_be_bytes());
    assert_eq!(b.ask(&req), vec![0x74, 0x20, 0x00, 0x0A]);
    assert_eq!(
        b.ask(&req),
        vec![0x74, 0x20, 0x00, 0x0A],
        "repeat before data"
    );
    assert_eq!(
        b.ask(&[0x36, 0x02, 1]),
        vec![0x7F, 0x36, 0x73],
        "must start at 1"
    );
    assert_eq!(
        b.ask(&[0x36, 0x01, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        vec![0x7F, 0x36, 0x13],
        "too long"
    );
    let mut counter = 1u8;
    for i in 0..300u32 {
        let mut block = vec![0x36, counter];
        block.extend((0..8).map(|j| (i * 8 + j) as u8));
        assert_eq!(b.ask(&block), vec![0x76, counter], "block {i}");
        if i == 7 {
            assert_eq!(b.ask(&block), vec![0x76, counter], "repeat acknowledged");
            let skip = [0x36, counter.wrapping_add(2), 0];
            assert_eq!(b.ask(&skip), vec![0x7F, 0x36, 0x73]);
            assert_eq!(
                b.ask(&req),
                vec![0x7F, 0x34, 0x24],
                "download already has data"
            );
        }
        if counter == 0xFF {
            assert_eq!(
                b.ask(&[0x36, 0x01, 0]),
                vec![0x7F, 0x36, 0x73],
                "0xFF is followed by 0x00"
            );
        }
        counter = counter.wrapping_add(1);
    }
    assert_eq!(b.server.backend().writes.len(), 300);
    assert!(b.server.backend().writes.values().all(|&n| n == 1));
    let want: Vec<u8> = (0..size).map(|i| i as u8).collect();
    assert_eq!(b.server.backend().flash, want);
    assert_eq!(
        b.ask(&[0x36, counter, 0]),
        vec![0x7F, 0x36, 0x71],
        "more than announced"
    );
    assert_eq!(b.ask(&[0x37]), vec![0x77]);
    assert_eq!(b.ask(&[0x37]), vec![0x77], "repeated exit");
    let mut check = vec![0x31, 0x01, 0xFF, 0x01];
    check.extend(crc32(&want).to_be_bytes());
    b.server.handle_request(b.now, &check);
    assert_eq!(b.server.poll_response(), None, "the check takes 10 ms");
    b.now = b.now + Duration::from_millis(10);
    b.server.handle_timeout(b.now);
    assert_eq!(
        b.server.poll_response(),
        Some(vec![0x71, 0x01, 0xFF, 0x01, 0x00])
    );
    assert_eq!(
        b.server.transfer(),
        TransferState::Checked(CheckOutcome::Correct)
    );
}

#[test]
fn server_answers_pending_then_busy_while_working() {
    let mut b = Bench::new();
    b.server.backend_mut().erase_time = Duration::from_millis(4500);
    b.ask(&[0x10, 0x02]);
    let seed = b.ask(&[0x27, 0x01]);
    let mut key = vec![0x27, 0x02];
    key.extend(key_of(&seed[2..]));
    b.ask(&key);
    let t0 = b.now;
    b.server.handle_request(t0, &[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    assert_eq!(
        b.server.poll_timeout(),
        Some(t0 + Duration::from_millis(2000))
    );
    b.server.handle_request(t0, &[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(
        b.server.poll_response(),
        Some(vec![0x7F, 0x31, 0x78]),
        "same request"
    );
    b.server.handle_request(t0, &[0x3E, 0x00]);
    assert_eq!(
        b.server.poll_response(),
        Some(vec![0x7F, 0x3E, 0x21]),
        "busy"
    );
    b.server.handle_timeout(t0 + Duration::from_millis(2000));
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    b.server.handle_timeout(t0 + Duration::from_millis(4000));
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    b.server.handle_timeout(t0 + Duration::from_millis(4500));
    assert_eq!(b.server.poll_response(), Some(vec![0x71, 0x01, 0xFF, 0x00]));
    assert_eq!(b.server.poll_timeout(), None);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_client_fed_random_responses_never_panics(
            responses in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=7), 0..60),
            useful in prop::collection::vec(any::<bool>(), 60),
        ) {
            // Interleave plausible answers with random ones so the client gets past its
            // early phases now and then.
            let key = Box::new(|_: u8, s: &[u8]| Ok(key_of(s)));
            let mut client = FlashClient::new(isotp(), FlashConfig::default(), 64, key).unwrap();
            let mut now = Timestamp::ZERO;
            client.start(now);
            let plausible: [&[u8]; 8] = [
                &[0x50, 0x02],
                &[0x67, 0x01, 1, 2],
                &[0x67, 0x02],
                &[0x71, 0x01, 0xFF, 0x00],
                &[0x74, 0x20, 0x00, 0x12],
                &[0x76, 0x01],
                &[0x77],
                &[0x7F, 0x36, 0x78],
            ];
            for (i, r) in responses.iter().enumerate() {
                now = now + Duration::from_millis(7);
                let sent = std::iter::from_fn(|| client.poll_transmit(now)).take(MAX_DRAIN + 1).count();
                prop_assert!(sent <= MAX_DRAIN, "the client never stops sending");
                let payload = if useful[i] { plausible[i % plausible.len()] } else { &r[..] };
                let mut data = vec![payload.len() as u8];
                data.extend_from_slice(payload);
                let f = CanFrame::new(CanId::standard(0x7E8).unwrap(), &data).unwrap();
                client.handle_frame(now, &f);
                client.handle_timeout(now);
                let mut drained = 0;
                while let Some(e) = client.poll_event() {
                    drained += 1;
                    assert!(drained <= MAX_DRAIN, "a poll never runs dry");
                    if let FlashEvent::NeedData { len, .. } = e {
                        prop_assert!(len <= 0x10);
                        client.provide_data(now, &vec![0xAB; len]).unwrap();
                    }
                }
                let (acked, total) = client.progress();
                prop_assert!(acked <= total);
            }
        }

        #[test]
        fn a_server_fed_random_requests_never_panics(
            requests in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..60),
        ) {
            let mut b = Bench::new();
            b.unlock_and_erase();
            for r in &requests {
                let answer = b.ask(r);
                if let Some(&first) = answer.first() {
                    prop_assert!(first == 0x7F || first >= 0x40);
                }
            }
        }
    }
}

/// The adaptive client and the counting server of the tests.
fn adaptive(min_data_len: usize, grow_after: u16) -> (FlashConfig, ServerConfig) {
    (
        FlashConfig {
            transfer_ack: TransferAck::CounterAndBytesReceived,
            block_sizing: BlockSizing::Adaptive {
                min_data_len,
                grow_after,
            },
            ..FlashConfig::default()
        },
        ServerConfig {
            transfer_ack: TransferAck::CounterAndBytesReceived,
            ..ServerConfig::default()
        },
    )
}

/// Data lengths the client asked for, in order.
fn needs(events: &[FlashEvent]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::NeedData { len, .. } => Some(*len),
            _ => None,
        })
        .collect()
}

#[test]
fn adaptive_blocks_shrink_while_long_messages_are_lost_and_grow_back() {
    // The bus loses a frame of every message towards the server longer than 1000 bytes:
    // only blocks of at most 998 data bytes get through.
    let img = image(20_000);
    let (config, server) = adaptive(64, 4);
    let mut long_message = false;
    let r = run(config, server, Memory::new(0x1002), &img, |dir, f| {
        let d = f.data();
        if dir != Dir::ToServer {
            return false;
        }
        match d[0] >> 4 {
            0 => long_message = false,
            1 => {
                let len = match (usize::from(d[0] & 0x0F) << 8) | usize::from(d[1]) {
                    0 => u32::from_be_bytes([d[2], d[3], d[4], d[5]]) as usize,
                    n => n,
                };
                long_message = len > 1000;
            }
            _ => {}
        }
        long_message && d[0] >> 4 == 2
    });
    assert!(
        matches!(r.outcome(), Some(FlashEvent::Done { .. })),
        "{:?}",
        r.outcome()
    );
    let m = r.server.backend();
    assert_eq!(m.flash, img);
    assert!(m.writes.values().all(|&n| n == 1), "{:?}", m.writes);
    let lens = needs(&r.events);
    // 4096 fails, its repeats shrink to 512 within the same block; later blocks start at
    // 512 and, after four first-attempt successes, try 1024 again (and shrink back).
    assert_eq!(lens[0], 4096);
    assert!(lens[1..5].iter().all(|&l| l == 512), "{lens:?}");
    assert_eq!(lens[5], 1024, "{lens:?}");
    assert!(m.writes.keys().all(|o| o % 512 == 0));
    // No write is longer than what gets through.
    let offsets: Vec<u64> = m.writes.keys().copied().collect();
    assert!(
        offsets.windows(2).all(|w| w[1] - w[0] <= 998),
        "{offsets:?}"
    );
}

#[test]
fn a_shorter_repeat_of_a_block_the_server_already_holds_follows_the_servers_count() {
    // The acknowledgement of block 2 (1024 bytes, written) is lost; the client repeats it
    // at 512 bytes, and the server, holding all 1024, says so.
    let img = image(5000);
    let (config, server) = adaptive(64, 100);
    let mut dropped = 0;
    let r = run(config, server, Memory::new(0x402), &img, |dir, f| {
        let lose = dir == Dir::ToClient && f.data()[..3] == [0x06, 0x76, 0x02] && dropped == 0;
        dropped += usize::from(lose);
        lose
    });
    assert_eq!(dropped, 1);
    assert!(matches!(r.outcome(), Some(FlashEvent::Done { .. })));
    let m = r.server.backend();
    assert_eq!(m.flash, img);
    assert!(m.writes.values().all(|&n| n == 1), "{:?}", m.writes);
    assert_eq!(
        m.writes.keys().copied().collect::<Vec<_>>(),
        vec![0, 1024, 2048, 2560, 3072, 3584, 4096, 4608]
    );
    let progress: Vec<u64> = r
        .events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Progress { acknowledged, .. } => Some(*acknowledged),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress[..2],
        [1024, 2048],
        "the server's count, not the repeat's length"
    );
}

#[test]
fn adaptive_sizing_needs_the_servers_count() {
    let key = || Box::new(|_: u8, s: &[u8]| Ok(key_of(s)));
    let (mut config, _) = adaptive(64, 4);
    config.transfer_ack = TransferAck::Counter;
    assert_eq!(
        FlashClient::new(isotp(), config, 10, key()).unwrap_err(),
        FlashConfigError::AdaptiveSizing
    );
    let (mut config, _) = adaptive(0, 4);
    config.max_retries = 1;
    assert_eq!(
        FlashClient::new(isotp(), config, 10, key()).unwrap_err(),
        FlashConfigError::AdaptiveSizing
    );
}

#[test]
fn repeats_shrink_to_the_minimum_before_they_count_as_retries() {
    // Every acknowledgement is lost.
    let img = image(3000);
    let (config, server) = adaptive(64, 4);
    let r = run(config, server, Memory::new(0x402), &img, |dir, f| {
        dir == Dir::ToClient && f.data()[1] == 0x76
    });
    assert!(
        matches!(
            r.outcome(),
            Some(FlashEvent::Failed(FlashError::NoResponse {
                phase: FlashPhase::Transfer,
                ..
            }))
        ),
        "{:?}",
        r.outcome()
    );
    // Repeats shrank the block to the minimum before any counted as a retry.
    let lens: Vec<usize> = r
        .frames
        .iter()
        .filter(|(d, _)| *d == Dir::ToServer)
        .filter_map(|(_, f)| match f.data() {
            [0x10..=0x1F, _, 0x36, ..] => {
                Some(((usize::from(f.data()[0] & 0x0F) << 8) | usize::from(f.data()[1])) - 2)
            }
            [n @ 0x00..=0x07, 0x36, ..] => Some(usize::from(*n) - 2),
            _ => None,
        })
        .collect();
    assert_eq!(lens, vec![1024, 512, 256, 128, 64, 64, 64, 64]);
}

#[test]
fn a_refused_check_answers_negatively_after_its_time() {
    let img = image(500);
    let mut mem = Memory::new(0x102);
    mem.check_time = Duration::from_millis(700);
    mem.check_refusal = Some(Nrc::Other(0xF1));
    let config = FlashConfig {
        check_option: crc32(b"another image").to_be_bytes().to_vec(),
        ..FlashConfig::default()
    };
    // `run` overrides the check option with the right CRC; drive the check by hand.
    let mut b = Bench::new();
    *b.server.backend_mut() = mem;
    b.unlock_and_erase();
    assert_eq!(
        b.ask(&[0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 0, 0x01, 0xF4])[0],
        0x74
    );
    for (i, chunk) in img.chunks(0x100).enumerate() {
        let mut req = vec![0x36, (i + 1) as u8];
        req.extend_from_slice(chunk);
        assert_eq!(b.ask(&req)[0], 0x76);
    }
    assert_eq!(b.ask(&[0x37]), vec![0x77]);
    let mut check = vec![0x31, 0x01, 0xFF, 0x01];
    check.extend_from_slice(&config.check_option);
    let t0 = b.now;
    b.server.handle_request(t0, &check);
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    b.server.handle_timeout(t0 + Duration::from_millis(699));
    assert_eq!(b.server.poll_response(), None);
    b.server.handle_timeout(t0 + Duration::from_millis(700));
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0xF1]));

    // Through the client, the refusal is a rejection of the check.
    let mut mem = Memory::new(0x102);
    mem.check_refusal = Some(Nrc::Other(0xF0));
    mem.flip_at = Some(300);
    let r = run(
        FlashConfig::default(),
        ServerConfig::default(),
        mem,
        &img,
        |_, _| false,
    );
    assert_eq!(
        r.outcome(),
        Some(&FlashEvent::Failed(FlashError::Rejected {
            phase: FlashPhase::Check,
            service: 0x31,
            nrc: Nrc::Other(0xF0)
        }))
    );
    assert!(r.server.backend().resets.is_empty());
}

#[test]
fn an_acknowledged_count_outside_the_block_fails_the_download() {
    // The server's count claims more than the client ever sent of the block: the client
    // stops rather than skip bytes.
    let img = image(3000);
    let (config, server_config) = adaptive(64, 4);
    let key = Box::new(|_level: u8, seed: &[u8]| Ok(key_of(seed)));
    let mut client = FlashClient::new(isotp(), config, img.len() as u32, key).unwrap();
    let mut server = FlashServer::new(isotp().peer(), server_config, Memory::new(0x402));
    let mut now = Timestamp::ZERO;
    client.start(now);
    let mut failure = None;
    for _ in 0..10_000 {
        now = now + FRAME_TIME;
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        let mut drained = 0;
        while let Some(f) = client.poll_transmit(now) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            server.handle_frame(now, &f);
        }
        let mut drained = 0;
        while let Some(f) = server.poll_transmit(now) {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            let mut data = f.data().to_vec();
            if data[..3] == [0x06, 0x76, 0x01] {
                // Block 1 carried 1024 bytes; claim 1025.
                data[3..7].copy_from_slice(&1025u32.to_be_bytes());
            }
            client.handle_frame(now, &CanFrame::new(f.id(), &data).unwrap());
        }
        let mut drained = 0;
        while let Some(e) = client.poll_event() {
            drained += 1;
            assert!(drained <= MAX_DRAIN, "a poll never runs dry");
            match e {
                FlashEvent::NeedData { offset, len } => {
                    let o = offset as usize;
                    client.provide_data(now, &img[o..o + len]).unwrap();
                }
                FlashEvent::Failed(err) => failure = Some(err),
                FlashEvent::Done { .. } => panic!("a wrong count was believed"),
                _ => {}
            }
        }
        if failure.is_some() {
            break;
        }
    }
    assert_eq!(
        failure,
        Some(FlashError::UnexpectedResponse {
            phase: FlashPhase::Transfer,
            response: vec![0x76, 0x01, 0x00, 0x00, 0x04, 0x01]
        })
    );
    assert_eq!(client.progress().0, 0);
}

mod adaptive_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever frames the bus loses, an adaptive download never writes a wrong image:
        /// it completes with exactly the image, or gives up.
        #[test]
        fn lost_frames_never_corrupt_an_adaptive_download(
            lost in prop::collection::btree_set(0usize..3000, 0..60),
            len in 1usize..9000,
        ) {
            let img = image(len);
            let (mut config, server) = adaptive(32, 3);
            config.max_retries = 8;
            let mut n = 0;
            let r = run(config, server, Memory::new(0x802), &img, |_, _| {
                n += 1;
                lost.contains(&(n - 1))
            });
            match r.outcome() {
                Some(FlashEvent::Done { .. }) => prop_assert_eq!(&r.server.backend().flash, &img),
                Some(FlashEvent::Failed(FlashError::NoResponse { .. })) => {}
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
        }
    }
}

/// A backend that knows some data identifiers; everything else as [`Memory`].
struct Identified(Memory, BTreeMap<u16, Vec<u8>>);

impl FlashBackend for Identified {
    fn seed(&mut self, level: u8) -> Vec<u8> {
        self.0.seed(level)
    }
    fn key_is_valid(&mut self, level: u8, seed: &[u8], key: &[u8]) -> bool {
        self.0.key_is_valid(level, seed, key)
    }
    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        self.0.erase(option)
    }
    fn request_download(&mut self, address: u64, size: u64, format: u8) -> Result<u64, Nrc> {
        self.0.request_download(address, size, format)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        self.0.write(offset, data)
    }
    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        self.0.transfer_exit()
    }
    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        self.0.check(option)
    }
    fn reset(&mut self, reset_type: u8) {
        self.0.reset(reset_type)
    }
    fn read_data(&mut self, identifier: u16) -> Option<Vec<u8>> {
        self.1.get(&identifier).cloned()
    }
}

#[test]
fn server_reads_the_identifiers_its_backend_knows_and_refuses_the_rest() {
    // A backend without identification data refuses every read.
    let mut b = Bench::new();
    assert_eq!(b.ask(&[0x22, 0xF1, 0x95]), vec![0x7F, 0x22, 0x31]);
    // One that has some answers them all in request order, or refuses the whole request.
    let data = BTreeMap::from([(0xF195, vec![1, 12]), (0xF18C, vec![b'S', b'N'])]);
    let mut server = FlashServer::new(
        isotp().peer(),
        ServerConfig::default(),
        Identified(Memory::new(0x0A), data),
    );
    server.handle_request(Timestamp::ZERO, &[0x22, 0xF1, 0x8C, 0xF1, 0x95]);
    assert_eq!(
        server.poll_response(),
        Some(vec![0x62, 0xF1, 0x8C, b'S', b'N', 0xF1, 0x95, 1, 12])
    );
    server.handle_request(Timestamp::ZERO, &[0x22, 0xF1, 0x95, 0xF1, 0x80]);
    assert_eq!(server.poll_response(), Some(vec![0x7F, 0x22, 0x31]));
    assert_eq!(server.poll_response(), None);
}

#[test]
fn server_sessions_announce_their_timing_and_a_new_session_locks() {
    let mut b = Bench::new();
    // P2 server 50 ms, P2* server 5000 ms in units of 10 ms.
    assert_eq!(
        b.ask(&[0x10, 0x03]),
        vec![0x50, 0x03, 0x00, 0x32, 0x01, 0xF4]
    );
    assert_eq!(b.server.session(), Session::Extended);
    assert_eq!(
        b.ask(&[0x10, 0x01]),
        vec![0x50, 0x01, 0x00, 0x32, 0x01, 0xF4]
    );
    assert_eq!(b.server.session(), Session::Default);
    assert_eq!(b.ask(&[0x10, 0x04]), vec![0x7F, 0x10, 0x12]);
    assert_eq!(b.server.session(), Session::Default);
    // Re-entering the active session keeps what was unlocked and erased.
    b.unlock_and_erase();
    assert_eq!(b.ask(&[0x10, 0x02])[..2], [0x50, 0x02]);
    assert_eq!(*b.server.security(), Security::Unlocked { level: 1 });
    assert_eq!(b.server.transfer(), TransferState::Erased);
    // Another session drops both.
    assert_eq!(b.ask(&[0x10, 0x03])[..2], [0x50, 0x03]);
    assert_eq!(*b.server.security(), Security::Locked);
    assert_eq!(b.server.transfer(), TransferState::Idle);
    // A suppressed answer still switches.
    assert_eq!(b.ask(&[0x10, 0x82]), Vec::<u8>::new());
    assert_eq!(b.server.session(), Session::Programming);
}

#[test]
fn server_refuses_requests_out_of_order_or_out_of_range() {
    let mut b = Bench::new();
    b.ask(&[0x10, 0x02]);
    let download = [0x34, 0x00, 0x11, 0x00, 0x10];
    assert_eq!(b.ask(&download), vec![0x7F, 0x34, 0x33], "locked");
    b.ask(&[0x27, 0x01]);
    assert_eq!(
        b.ask(&[0x27, 0x04, 0x00]),
        vec![0x7F, 0x27, 0x24],
        "a key for another level than the seed's"
    );
    assert_eq!(b.server.backend().keys_checked, 0);
    b.unlock_and_erase();
    for control in [0x02, 0x03] {
        assert_eq!(
            b.ask(&[0x31, control, 0xFF, 0x00]),
            vec![0x7F, 0x31, 0x12],
            "only starting a routine is supported"
        );
    }
    assert_eq!(b.ask(&[0x11, 0x04]), vec![0x7F, 0x11, 0x12]);
    assert!(b.server.backend().resets.is_empty());
    assert_eq!(b.ask(&download), vec![0x74, 0x20, 0x00, 0x0A]);
    assert_eq!(
        b.ask(&[0x34, 0x00, 0x11, 0x00, 0x11]),
        vec![0x7F, 0x34, 0x24],
        "a repeat must ask for the same download"
    );
    assert_eq!(
        b.ask(&[0x31, 0x01, 0xFF, 0x00]),
        vec![0x7F, 0x31, 0x22],
        "no erase in the middle of a download"
    );
    assert_eq!(
        b.ask(&[0x36, 0x01]),
        vec![0x7F, 0x36, 0x13],
        "an empty block"
    );
    assert_eq!(
        b.ask(&[0x36, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]),
        vec![0x76, 0x01]
    );
    assert_eq!(
        b.ask(&[0x37]),
        vec![0x7F, 0x37, 0x24],
        "8 of the 16 bytes announced"
    );
    assert!(matches!(
        b.server.transfer(),
        TransferState::Downloading { received: 8, .. }
    ));
}

#[test]
fn server_answers_at_once_or_after_p2_with_response_pending() {
    let mut b = Bench::new();
    b.ask(&[0x10, 0x02]);
    let seed = b.ask(&[0x27, 0x01]);
    let mut key = vec![0x27, 0x02];
    key.extend(key_of(&seed[2..]));
    b.ask(&key);
    let erase = [0x31, 0x01, 0xFF, 0x00];
    // An operation that takes no time is answered at once, without a timer.
    b.server.handle_request(b.now, &erase);
    assert_eq!(b.server.poll_response(), Some(vec![0x71, 0x01, 0xFF, 0x00]));
    assert_eq!(b.server.poll_timeout(), None);
    // One that takes exactly P2 is answered when it is done, without response-pending.
    b.server.backend_mut().erase_time = Duration::from_millis(50);
    let t0 = b.now;
    b.server.handle_request(t0, &erase);
    assert_eq!(b.server.poll_response(), None);
    assert_eq!(
        b.server.poll_timeout(),
        Some(t0 + Duration::from_millis(50))
    );
    b.server.handle_timeout(t0 + Duration::from_millis(49));
    assert_eq!(b.server.poll_response(), None);
    b.server.handle_timeout(t0 + Duration::from_millis(50));
    assert_eq!(b.server.poll_response(), Some(vec![0x71, 0x01, 0xFF, 0x00]));
    // One a millisecond longer gets response-pending first.
    b.server.backend_mut().erase_time = Duration::from_millis(51);
    let t1 = t0 + Duration::from_millis(100);
    b.server.handle_request(t1, &erase);
    assert_eq!(b.server.poll_response(), Some(vec![0x7F, 0x31, 0x78]));
    assert_eq!(
        b.server.poll_timeout(),
        Some(t1 + Duration::from_millis(51))
    );
    b.server.handle_timeout(t1 + Duration::from_millis(51));
    assert_eq!(b.server.poll_response(), Some(vec![0x71, 0x01, 0xFF, 0x00]));
    assert_eq!(b.server.poll_timeout(), None);
}
