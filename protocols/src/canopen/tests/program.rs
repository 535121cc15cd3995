//! The CiA 302-3 program download against a simulated bootloader.

use super::*;
use crate::canopen::frame::ClientRequest;
use std::cell::Cell;
use std::rc::Rc;

struct FlowRun {
    events: Vec<ProgramEvent>,
    sim: Sim<ProgramDownload>,
}

impl FlowRun {
    fn outcome(&self) -> &ProgramEvent {
        self.events
            .iter()
            .rev()
            .find(|e| matches!(e, ProgramEvent::Done { .. } | ProgramEvent::Failed(_)))
            .expect("the flow ended")
    }

    fn phases(&self) -> Vec<ProgramPhase> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ProgramEvent::Phase(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn device(&self) -> &Device {
        self.sim.server.dictionary()
    }

    /// How often the client asked for the flash status.
    fn status_reads(&self) -> usize {
        let read = ClientRequest::InitiateUpload {
            object: FLASH_STATUS,
        }
        .encode();
        self.sim
            .sent(Dir::ToServer)
            .iter()
            .filter(|f| **f == read)
            .count()
    }
}

fn config() -> ProgramConfig {
    ProgramConfig {
        software_id: SoftwareIdCheck::Crc32OfImage,
        ..ProgramConfig::new(client_config())
    }
}

fn flow(
    config: ProgramConfig,
    server_config: SdoServerConfig,
    device: Device,
    img: &[u8],
    fate: impl FnMut(Dir, &CanFrame, usize) -> Fate + 'static,
    stop_at: impl FnMut(&mut ProgramDownload, Timestamp, &ProgramEvent) + 'static,
) -> FlowRun {
    let flow = ProgramDownload::new(config, img.len() as u32);
    let sim = Sim::new(flow, server(server_config, device)).with_fate(fate);
    run_flow(sim, img, stop_at)
}

/// Starts the flow of `sim` and drives it until it ends, answering its data requests
/// from `img`.
fn run_flow(
    mut sim: Sim<ProgramDownload>,
    img: &[u8],
    mut stop_at: impl FnMut(&mut ProgramDownload, Timestamp, &ProgramEvent),
) -> FlowRun {
    sim.client.start(sim.now);
    let mut events = Vec::new();
    let mut next = 0u64;
    sim.run(|flow, now| {
        for _ in 0..MAX_EVENTS_PER_STEP {
            let Some(e) = flow.poll_event() else {
                return false;
            };
            if let ProgramEvent::NeedData { offset, len } = e {
                assert_eq!(offset, next, "image bytes asked for out of order or twice");
                assert!(len > 0, "a request for no bytes at {offset}");
                next = offset + len as u64;
                let o = offset as usize;
                flow.provide_data(now, &img[o..o + len]).unwrap();
            }
            stop_at(flow, now, &e);
            let end = matches!(e, ProgramEvent::Done { .. } | ProgramEvent::Failed(_));
            events.push(e);
            if end {
                return true;
            }
        }
        panic!("the flow never stops reporting");
    });
    FlowRun { events, sim }
}

fn deliver(_: Dir, _: &CanFrame, _: usize) -> Fate {
    Fate::Deliver
}

fn carry_on(_: &mut ProgramDownload, _: Timestamp, _: &ProgramEvent) {}

fn slow_device() -> Device {
    let mut d = Device::new();
    d.clear_time = Duration::from_millis(350);
    d.program_time = Duration::from_millis(120);
    d.write_time = Duration::from_micros(50);
    d
}

#[test]
fn a_program_is_stopped_cleared_written_checked_and_started() {
    let img = image(50_000);
    let run = flow(
        config(),
        SdoServerConfig::default(),
        slow_device(),
        &img,
        deliver,
        carry_on,
    );
    let crc = crc32(&img);
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Done {
            software_id: crc,
            start: StartOutcome::Acknowledged
        }
    );
    assert_eq!(
        run.phases(),
        vec![
            ProgramPhase::Stop,
            ProgramPhase::Clear,
            ProgramPhase::Download,
            ProgramPhase::Flash,
            ProgramPhase::Verify,
            ProgramPhase::Start,
            ProgramPhase::Done
        ]
    );
    assert!(run.events.contains(&ProgramEvent::SoftwareId(crc)));
    let d = run.device();
    assert_eq!(d.program, img);
    assert_eq!(d.controls, vec![0, 3, 1]);
    assert_eq!(d.state, AppState::Running);
    // The clear keeps the flash busy for 350 ms, polled every 100 ms: 4 busy reads and
    // one that finds it done; the download's 120 ms take 2 busy reads and one more.
    assert_eq!(run.status_reads(), 5 + 3);
    let progress: Vec<u64> = run
        .events
        .iter()
        .filter_map(|e| match e {
            ProgramEvent::Progress {
                acknowledged,
                total: 50_000,
            } => Some(*acknowledged),
            _ => None,
        })
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&50_000));
    assert_eq!(run.sim.client.progress(), (50_000, 50_000));
    // The image went by block transfer with CRC, to 0x1F50:01.
    let block = ClientRequest::InitiateBlockDownload {
        object: PROGRAM_DATA,
        crc: CrcSupport::Supported,
        size: Some(50_000),
    }
    .encode();
    assert!(run.sim.sent(Dir::ToServer).contains(&block));
}

#[test]
fn a_device_without_block_transfer_gets_the_program_in_segments() {
    let img = image(3_000);
    let server_config = SdoServerConfig {
        block_transfer: BlockTransfer::Refused,
        ..SdoServerConfig::default()
    };
    let run = flow(
        config(),
        server_config,
        Device::new(),
        &img,
        deliver,
        carry_on,
    );
    assert!(matches!(run.outcome(), ProgramEvent::Done { .. }));
    assert_eq!(run.device().program, img);
    let segmented = ClientRequest::InitiateDownload {
        object: PROGRAM_DATA,
        payload: frame::InitiatePayload::Segmented { size: Some(3_000) },
    }
    .encode();
    assert!(run.sim.sent(Dir::ToServer).contains(&segmented));
}

#[test]
fn a_flash_error_after_the_download_fails_before_the_start() {
    let img = image(1_000);
    let mut device = slow_device();
    device.download_fault = Some(FlashStatusCode::FlashWriteError);
    let run = flow(
        config(),
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    let ProgramEvent::Failed(ProgramError::Flash { phase, status }) = run.outcome() else {
        panic!("{:?}", run.outcome());
    };
    assert_eq!(*phase, ProgramPhase::Flash);
    assert_eq!(status.code(), FlashStatusCode::FlashWriteError);
    assert!(!status.in_progress());
    assert_eq!(run.device().controls, vec![0, 3], "never started");
}

#[test]
fn a_flash_that_stays_busy_fails_after_the_limit() {
    let img = image(1_000);
    let mut device = Device::new();
    device.program_time = Duration::from_secs(600);
    let config = ProgramConfig {
        busy_limit: Duration::from_secs(2),
        ..config()
    };
    let run = flow(
        config,
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Failed(ProgramError::Busy {
            phase: ProgramPhase::Flash,
            limit: Duration::from_secs(2)
        })
    );
    // Reads every 100 ms for 2 s, plus the one after the clear.
    let reads = run.status_reads();
    assert!((21..=23).contains(&reads), "{reads}");
}

#[test]
fn a_flash_still_busy_at_exactly_the_limit_is_read_again() {
    // Frames take no time: the status is read right after the download, then every
    // 100 ms. At 300 ms, the limit, it is still busy and is read again at 400 ms, when
    // the flash is done.
    let img = image(1_000);
    let mut device = Device::new();
    device.program_time = Duration::from_millis(350);
    let config = ProgramConfig {
        busy_limit: Duration::from_millis(300),
        ..config()
    };
    let flow = ProgramDownload::new(config, img.len() as u32);
    let sim = Sim::new(flow, server(SdoServerConfig::default(), device)).instant();
    let run = run_flow(sim, &img, carry_on);
    assert!(
        matches!(run.outcome(), ProgramEvent::Done { .. }),
        "{:?}",
        run.outcome()
    );
    // One read after the clear, five after the download (0 to 400 ms).
    assert_eq!(run.status_reads(), 6);
}

#[test]
fn a_wrong_software_identification_fails_before_the_start() {
    let img = image(1_000);
    let mut device = Device::new();
    device.software_id = Some(0xDEAD_BEEF);
    let run = flow(
        config(),
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Failed(ProgramError::SoftwareId {
            expected: crc32(&img),
            found: 0xDEAD_BEEF
        })
    );
    assert_eq!(run.device().controls, vec![0, 3]);

    // An expected value given outright, and a report-only flow.
    let mut device = Device::new();
    device.software_id = Some(0x0102_0304);
    let config_equals = ProgramConfig {
        software_id: SoftwareIdCheck::Equals(0x0102_0304),
        finish: Finish::Reset,
        ..config()
    };
    let run = flow(
        config_equals,
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Done {
            software_id: 0x0102_0304,
            start: StartOutcome::Acknowledged
        }
    );
    assert_eq!(run.device().controls, vec![0, 3, 2]);
    let mut device = Device::new();
    device.software_id = Some(7);
    let report = ProgramConfig {
        software_id: SoftwareIdCheck::Report,
        ..config()
    };
    let run = flow(
        report,
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    assert!(matches!(
        run.outcome(),
        ProgramEvent::Done { software_id: 7, .. }
    ));
}

#[test]
fn a_device_that_restarts_without_answering_the_start_is_unconfirmed() {
    let img = image(1_000);
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let start = [0x2F, 0x51, 0x1F, 0x01, 0x01, 0, 0, 0];
    let run = flow(
        config(),
        SdoServerConfig::default(),
        Device::new(),
        &img,
        move |dir, f, _| {
            if dir == Dir::ToServer && f.data() == start {
                s.set(true);
            }
            if dir == Dir::ToClient && s.get() {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        carry_on,
    );
    assert!(started.get());
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Done {
            software_id: crc32(&img),
            start: StartOutcome::Unconfirmed
        }
    );
    assert_eq!(run.device().state, AppState::Running);
}

#[test]
fn a_refused_command_names_the_phase_object_and_code() {
    let img = image(1_000);
    let mut device = Device::new();
    device.refuse_begin = Some(AbortCode::LocalControl);
    let run = flow(
        config(),
        SdoServerConfig::default(),
        device,
        &img,
        deliver,
        carry_on,
    );
    assert_eq!(
        run.outcome(),
        &ProgramEvent::Failed(ProgramError::Sdo {
            phase: ProgramPhase::Stop,
            object: PROGRAM_CONTROL,
            error: SdoError::ServerAbort(AbortCode::LocalControl)
        })
    );
    if let ProgramEvent::Failed(e) = run.outcome() {
        assert_eq!(
            e.to_string(),
            "Stop: 0x1F51:01: the server aborted with abort code 0x08000021 (data cannot be \
             transferred or stored to the application because of local control)"
        );
    }
}

#[test]
fn a_download_aborted_by_the_caller_is_aborted_on_the_device() {
    let img = image(20_000);
    let run = flow(
        config(),
        SdoServerConfig::default(),
        Device::new(),
        &img,
        deliver,
        |flow, now, e| {
            if matches!(e, ProgramEvent::Progress { acknowledged, .. } if *acknowledged > 5_000) {
                flow.abort(now);
            }
        },
    );
    assert_eq!(run.outcome(), &ProgramEvent::Failed(ProgramError::Aborted));
    assert_eq!(
        run.device().aborted,
        vec![(PROGRAM_DATA, AbortCode::GeneralError)]
    );
    assert!(run.device().program.is_empty());
    assert_eq!(run.device().controls, vec![0, 3]);
}

#[test]
fn flash_status_values_decode() {
    let s = FlashStatus::from_raw(0x0000_000B);
    assert!(s.in_progress());
    assert_eq!(s.code(), FlashStatusCode::FlashWriteError);
    assert_eq!(
        FlashStatus::from_raw(0x7E).code(),
        FlashStatusCode::Unspecified
    );
    assert_eq!(
        FlashStatus::from_raw(0x80).code(),
        FlashStatusCode::Other(64)
    );
    assert_eq!(
        FlashStatus::from_raw(0xFFFF_0002).code(),
        FlashStatusCode::NoValidProgram
    );
    assert_eq!(FlashStatus::new(true, FlashStatusCode::Ok).raw(), 1);
    for v in 0..=127u8 {
        assert_eq!(FlashStatusCode::from_value(v).value(), v);
        assert_eq!(
            FlashStatus::new(false, FlashStatusCode::from_value(v))
                .code()
                .value(),
            v
        );
    }
    assert_eq!(
        FlashStatus::from_raw(0x0B).to_string(),
        "0x0000000B (FlashWriteError, in progress)"
    );
    for b in 0..=3 {
        assert_eq!(ProgramControl::from_byte(b).unwrap().to_byte(), b);
    }
    assert_eq!(ProgramControl::from_byte(4), None);
}
