//! Segmented and expedited downloads (also as the fallback of block downloads) and
//! expedited and segmented uploads.

use super::*;
use crate::canopen::frame::{ClientRequest, ServerResponse};

fn deliver(_: Dir, _: &CanFrame, _: usize) -> Fate {
    Fate::Deliver
}

fn no_block() -> SdoServerConfig {
    SdoServerConfig {
        block_transfer: BlockTransfer::Refused,
        ..SdoServerConfig::default()
    }
}

/// The segments of a segmented download as sent: (toggle bit set, data length, last).
fn download_segments(frames: &[[u8; 8]]) -> Vec<(bool, usize, bool)> {
    frames
        .iter()
        .filter_map(|f| match ClientRequest::parse(f) {
            Ok(ClientRequest::DownloadSegment {
                toggle,
                data,
                continuation,
            }) => Some((
                toggle == frame::Toggle::One,
                data.len(),
                continuation == frame::Continuation::Last,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_without_block_transfer_gets_a_segmented_download() {
    for size in [0usize, 5, 100, 890] {
        let img = image(size);
        let run = download_with(
            client_config(),
            no_block(),
            Device::new(),
            SCRATCH,
            &img,
            DownloadMethod::Block,
            deliver,
        );
        assert_eq!(
            run.outcome(),
            &SdoEvent::Downloaded {
                object: SCRATCH,
                len: size as u64,
                mode: TransferMode::Segmented
            },
            "size {size}"
        );
        assert_eq!(run.device().scratch, img);
        let to_server = run.sim.sent(Dir::ToServer);
        let to_client = run.sim.sent(Dir::ToClient);
        let size_le = (size as u32).to_le_bytes();
        assert_eq!(
            to_server[0],
            [
                0xC6, 0x00, 0x20, 0x00, size_le[0], size_le[1], size_le[2], size_le[3]
            ]
        );
        assert_eq!(
            to_client[0],
            [0x80, 0x00, 0x20, 0x00, 0x01, 0x00, 0x04, 0x05]
        );
        assert_eq!(
            to_server[1],
            [
                0x21, 0x00, 0x20, 0x00, size_le[0], size_le[1], size_le[2], size_le[3]
            ]
        );
        let segs = download_segments(&to_server);
        let n = size.div_ceil(7).max(1);
        assert_eq!(segs.len(), n, "size {size}");
        for (k, &(toggle, len, last)) in segs.iter().enumerate() {
            assert_eq!(toggle, k % 2 == 1, "toggle alternates from 0");
            assert_eq!(len, (size - k * 7).min(7));
            assert_eq!(last, k + 1 == n);
        }
        // Each confirmation echoes its segment's toggle bit.
        let confirmations: Vec<u8> = to_client[2..].iter().map(|f| f[0]).collect();
        let want: Vec<u8> = (0..n)
            .map(|k| if k % 2 == 0 { 0x20 } else { 0x30 })
            .collect();
        assert_eq!(confirmations, want);
        // One segment's bytes confirmed at a time.
        let progress = run.progress();
        assert_eq!(progress.len(), n);
        assert_eq!(progress.last().copied(), Some(size as u64));
    }
}

#[test]
fn up_to_four_bytes_fall_back_to_an_expedited_download() {
    for size in 1..=4usize {
        let img = image(size);
        let run = download_with(
            client_config(),
            no_block(),
            Device::new(),
            SCRATCH,
            &img,
            DownloadMethod::Block,
            deliver,
        );
        assert_eq!(
            run.outcome(),
            &SdoEvent::Downloaded {
                object: SCRATCH,
                len: size as u64,
                mode: TransferMode::Expedited
            }
        );
        assert_eq!(run.device().scratch, img);
        let expedited = run.sim.sent(Dir::ToServer)[1];
        let n = (4 - size) as u8;
        assert_eq!(expedited[0], 0x23 | (n << 2));
        assert_eq!(&expedited[4..4 + size], &img[..]);
        assert_eq!(
            run.sim.sent(Dir::ToClient)[1],
            [0x60, 0x00, 0x20, 0x00, 0, 0, 0, 0]
        );
    }
}

#[test]
fn a_client_told_not_to_fall_back_fails_with_the_servers_abort() {
    let config = SdoClientConfig {
        block_fallback: BlockFallback::Fail,
        ..client_config()
    };
    let img = image(100);
    let run = download_with(
        config,
        no_block(),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Block,
        deliver,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SCRATCH,
            error: SdoError::ServerAbort(AbortCode::InvalidCommand)
        }
    );
    assert_eq!(run.sim.sent(Dir::ToServer).len(), 1);
}

#[test]
fn a_segmented_download_asks_for_data_a_window_at_a_time() {
    let img = image(2000);
    let run = download_with(
        client_config(),
        SdoServerConfig::default(),
        Device::new(),
        SCRATCH,
        &img,
        DownloadMethod::Segmented,
        deliver,
    );
    assert_eq!(run.device().scratch, img);
    assert_eq!(run.needs(), vec![(0, 889), (889, 889), (1778, 222)]);
    assert_eq!(run.sim.sent(Dir::ToServer)[0][0], 0x21);
}

#[test]
fn a_value_is_written_expedited() {
    let mut sim = Sim::new(
        SdoClient::new(client_config()),
        server(SdoServerConfig::default(), Device::new()),
    );
    sim.client
        .download_value(sim.now, PROGRAM_CONTROL, &[0])
        .unwrap();
    let run = drive(sim, &[]);
    assert_eq!(
        run.outcome(),
        &SdoEvent::Downloaded {
            object: PROGRAM_CONTROL,
            len: 1,
            mode: TransferMode::Expedited
        }
    );
    assert!(run.needs().is_empty());
    assert_eq!(
        run.sim.sent(Dir::ToServer),
        vec![[0x2F, 0x51, 0x1F, 0x01, 0, 0, 0, 0]]
    );
    assert_eq!(
        run.sim.sent(Dir::ToClient),
        vec![[0x60, 0x51, 0x1F, 0x01, 0, 0, 0, 0]]
    );
    assert_eq!(run.device().controls, vec![0]);
    assert_eq!(run.device().state, AppState::Stopped);
}

#[test]
fn starting_a_transfer_checks_its_arguments_and_the_client_state() {
    let mut c = SdoClient::new(client_config());
    let now = Timestamp::ZERO;
    assert_eq!(
        c.download_value(now, SCRATCH, &[]),
        Err(StartError::ExpeditedLength(0))
    );
    assert_eq!(
        c.download_value(now, SCRATCH, &[1; 5]),
        Err(StartError::ExpeditedLength(5))
    );
    assert!(c.is_idle());
    assert_eq!(
        c.provide_data(now, &[1]),
        Err(ProvideDataError::NotExpected)
    );
    c.download(now, SCRATCH, 3, DownloadMethod::Segmented)
        .unwrap();
    assert_eq!(
        c.poll_event(),
        Some(SdoEvent::NeedData { offset: 0, len: 3 })
    );
    assert_eq!(c.upload(now, SCRATCH, 10), Err(StartError::Busy));
    assert_eq!(
        c.download(now, SCRATCH, 3, DownloadMethod::Block),
        Err(StartError::Busy)
    );
    assert_eq!(
        c.provide_data(now, &[1, 2]),
        Err(ProvideDataError::WrongLength {
            expected: 3,
            got: 2
        })
    );
    c.provide_data(now, &[1, 2, 3]).unwrap();
    assert_eq!(
        c.provide_data(now, &[1, 2, 3]),
        Err(ProvideDataError::NotExpected)
    );
    let f = c.poll_transmit(now).unwrap();
    assert_eq!(f.data(), &[0x27, 0x00, 0x20, 0x00, 1, 2, 3, 0]);
}

#[test]
fn short_values_are_uploaded_expedited() {
    let run = upload_with(
        SdoServerConfig::default(),
        Device::new(),
        PROGRAM_CONTROL,
        4,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Uploaded {
            object: PROGRAM_CONTROL,
            data: vec![1]
        }
    );
    assert_eq!(
        run.sim.sent(Dir::ToServer),
        vec![[0x40, 0x51, 0x1F, 0x01, 0, 0, 0, 0]]
    );
    assert_eq!(
        run.sim.sent(Dir::ToClient),
        vec![[0x4F, 0x51, 0x1F, 0x01, 1, 0, 0, 0]]
    );

    let mut device = Device::new();
    device.program = image(300);
    let want = crc32(&device.program).to_le_bytes();
    let run = upload_with(SdoServerConfig::default(), device, SOFTWARE_ID, 4);
    assert_eq!(
        run.outcome(),
        &SdoEvent::Uploaded {
            object: SOFTWARE_ID,
            data: want.to_vec()
        }
    );
    assert_eq!(run.sim.sent(Dir::ToClient)[0][0], 0x43);

    for (sub, value) in [
        (1u8, 0x0000_02A7u32),
        (2, 0x0042_0001),
        (3, 0x0002_000F),
        (4, 0x1234_5678),
    ] {
        let object = ObjectAddress::new(objects::IDENTITY, sub);
        let run = upload_with(SdoServerConfig::default(), Device::new(), object, 4);
        assert_eq!(
            run.outcome(),
            &SdoEvent::Uploaded {
                object,
                data: value.to_le_bytes().to_vec()
            }
        );
    }
}

#[test]
fn longer_values_are_uploaded_in_segments() {
    let mut run = upload_with(
        SdoServerConfig::default(),
        Device::new(),
        SOFTWARE_VERSION,
        64,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Uploaded {
            object: SOFTWARE_VERSION,
            data: b"boreal-bms 2.15.0".to_vec()
        }
    );
    assert_eq!(
        run.sim.sent(Dir::ToServer),
        vec![
            [0x40, 0x0A, 0x10, 0x00, 0, 0, 0, 0],
            [0x60, 0, 0, 0, 0, 0, 0, 0],
            [0x70, 0, 0, 0, 0, 0, 0, 0],
            [0x60, 0, 0, 0, 0, 0, 0, 0],
        ]
    );
    let to_client = run.sim.sent(Dir::ToClient);
    assert_eq!(to_client[0], [0x41, 0x0A, 0x10, 0x00, 17, 0, 0, 0]);
    assert_eq!(
        to_client[1],
        [0x00, b'b', b'o', b'r', b'e', b'a', b'l', b'-']
    );
    assert_eq!(
        to_client[2],
        [0x10, b'b', b'm', b's', b' ', b'2', b'.', b'1']
    );
    // 3 bytes in the last segment: n = 4 unused, c = 1.
    assert_eq!(to_client[3], [0x09, b'5', b'.', b'0', 0, 0, 0, 0]);
    assert_eq!(
        run.sim.server.poll_event(),
        Some(ServerEvent::Uploaded {
            object: SOFTWARE_VERSION,
            len: 17
        })
    );
}

#[test]
fn an_empty_object_uploads_as_one_empty_segment() {
    let object = ObjectAddress::new(0x2001, 0);
    let run = upload_with(SdoServerConfig::default(), Device::new(), object, 8);
    assert_eq!(
        run.outcome(),
        &SdoEvent::Uploaded {
            object,
            data: vec![]
        }
    );
    assert_eq!(
        run.sim.sent(Dir::ToClient)[0],
        [0x41, 0x01, 0x20, 0x00, 0, 0, 0, 0]
    );
    assert_eq!(run.sim.sent(Dir::ToClient)[1], [0x0F, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn an_upload_larger_than_allowed_is_aborted() {
    let run = upload_with(
        SdoServerConfig::default(),
        Device::new(),
        SOFTWARE_VERSION,
        8,
    );
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object: SOFTWARE_VERSION,
            error: SdoError::TooLarge { size: 17, max: 8 }
        }
    );
    assert_eq!(
        *run.sim.sent(Dir::ToServer).last().unwrap(),
        [0x80, 0x0A, 0x10, 0x00, 0x05, 0x00, 0x04, 0x05]
    );
    let mut server = run.sim.server;
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Aborted {
            object: SOFTWARE_VERSION,
            code: AbortCode::OutOfMemory,
            by: AbortedBy::Client
        })
    );
    assert_eq!(server.state(), ServerState::Idle);
}

#[test]
fn an_upload_of_a_missing_object_fails_with_the_servers_code() {
    let object = ObjectAddress::new(0x5FFF, 3);
    let run = upload_with(SdoServerConfig::default(), Device::new(), object, 8);
    assert_eq!(
        run.outcome(),
        &SdoEvent::Failed {
            object,
            error: SdoError::ServerAbort(AbortCode::ObjectDoesNotExist)
        }
    );
    assert_eq!(
        ServerResponse::parse(&run.sim.sent(Dir::ToClient)[0]),
        Ok(ServerResponse::Abort {
            object,
            code: AbortCode::ObjectDoesNotExist
        })
    );
}
