//! SDO clients, servers and the program download talking to each other by handing
//! frames across, in virtual time, with frames lost or altered on the way.

mod aborts;
mod block;
mod crossing;
mod frames;
mod hostile;
mod program;
mod scripted;
mod segmented;

use super::*;
use crate::checksum::crc32;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// Bus time of one 8-byte standard frame at 500 kbit/s, roughly.
const FRAME_TIME: Duration = Duration::from_micros(230);

/// Most steps of one exchange: the longest (100 KiB in sub-blocks of one segment, about
/// 14 600 segments each acknowledged) takes under 20 000, so a side that never ends fails
/// its test within seconds instead of stalling it.
const MAX_STEPS: usize = 200_000;

/// Most events a client side reports in one step (a progress, a data request, the end).
const MAX_EVENTS_PER_STEP: usize = 64;

/// A plain domain object without conditions.
const SCRATCH: ObjectAddress = ObjectAddress::new(0x2000, 0);
const PROGRAM_DATA: ObjectAddress = ObjectAddress::new(objects::PROGRAM_DATA, 1);
const PROGRAM_CONTROL: ObjectAddress = ObjectAddress::new(objects::PROGRAM_CONTROL, 1);
const SOFTWARE_ID: ObjectAddress = ObjectAddress::new(objects::PROGRAM_SOFTWARE_ID, 1);
const FLASH_STATUS: ObjectAddress = ObjectAddress::new(objects::FLASH_STATUS, 1);
const SOFTWARE_VERSION: ObjectAddress = ObjectAddress::new(objects::SOFTWARE_VERSION, 0);

fn node() -> NodeId {
    NodeId::new(5).unwrap()
}

fn channel() -> SdoChannel {
    SdoChannel::for_node(node())
}

fn client_config() -> SdoClientConfig {
    SdoClientConfig::new(channel())
}

/// An image whose 7-byte segments name themselves: bytes 0 and 1 of segment `k` hold
/// `k` (little-endian), so a block segment on the wire tells which one it carries.
fn image(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 7 {
            0 => (i / 7) as u8,
            1 => ((i / 7) >> 8) as u8,
            _ => (i.wrapping_mul(31) ^ 0xA5) as u8,
        })
        .collect()
}

/// The application state of the simulated bootloader (CiA 302-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppState {
    Running,
    Stopped,
    Cleared,
    Written,
}

/// An object dictionary with a CiA 302-3 bootloader, plain values and a scratch
/// domain, recording every call.
#[derive(Debug)]
struct Device {
    /// Plain values, readable and writable (replaced whole at the end of a write).
    values: BTreeMap<ObjectAddress, Vec<u8>>,
    /// The scratch domain's content after the last completed write.
    scratch: Vec<u8>,
    /// The program (0x1F50:01) after the last completed download.
    program: Vec<u8>,
    /// Bytes of the download under way.
    incoming: Vec<u8>,
    /// Every `write` call: object, offset, length.
    writes: Vec<(ObjectAddress, u64, usize)>,
    /// Writes whose offset was not where the previous one ended.
    misordered: usize,
    /// Every `end_write` call.
    ended: Vec<(ObjectAddress, u64)>,
    /// Every `abort_write` call.
    aborted: Vec<(ObjectAddress, AbortCode)>,
    /// Commands written to 0x1F51, in order.
    controls: Vec<u8>,
    /// What `begin_write` refuses every download with.
    refuse_begin: Option<AbortCode>,
    /// Busy time of each `write`.
    write_time: Duration,
    /// Busy time of each `end_write`.
    end_time: Duration,
    state: AppState,
    /// How long a clear keeps the flash status busy.
    clear_time: Duration,
    /// How long checking a downloaded program keeps the flash status busy.
    program_time: Duration,
    flash_busy_until: Timestamp,
    flash_code: FlashStatusCode,
    /// The error code the flash reports after a download.
    download_fault: Option<FlashStatusCode>,
    /// A 0x1F56 value other than the program's CRC-32.
    software_id: Option<u32>,
}

impl Device {
    fn new() -> Device {
        let mut values = BTreeMap::new();
        for (sub, v) in [
            (1u8, 0x0000_02A7u32),
            (2, 0x0042_0001),
            (3, 0x0002_000F),
            (4, 0x1234_5678),
        ] {
            values.insert(
                ObjectAddress::new(objects::IDENTITY, sub),
                v.to_le_bytes().to_vec(),
            );
        }
        values.insert(SOFTWARE_VERSION, b"boreal-bms 2.15.0".to_vec());
        values.insert(ObjectAddress::new(0x2001, 0), Vec::new());
        Device {
            values,
            scratch: Vec::new(),
            program: Vec::new(),
            incoming: Vec::new(),
            writes: Vec::new(),
            misordered: 0,
            ended: Vec::new(),
            aborted: Vec::new(),
            controls: Vec::new(),
            refuse_begin: None,
            write_time: Duration::ZERO,
            end_time: Duration::ZERO,
            state: AppState::Running,
            clear_time: Duration::ZERO,
            program_time: Duration::ZERO,
            flash_busy_until: Timestamp::ZERO,
            flash_code: FlashStatusCode::Ok,
            download_fault: None,
            software_id: None,
        }
    }

    /// Offsets written to `object`, in order.
    fn offsets(&self, object: ObjectAddress) -> Vec<u64> {
        self.writes
            .iter()
            .filter(|w| w.0 == object)
            .map(|w| w.1)
            .collect()
    }

    fn flash_status(&self, now: Timestamp) -> FlashStatus {
        FlashStatus::new(now < self.flash_busy_until, self.flash_code)
    }

    fn control(&mut self, now: Timestamp, command: u8) -> Result<(), AbortCode> {
        self.controls.push(command);
        match (ProgramControl::from_byte(command), self.state) {
            (Some(ProgramControl::Stop), _) => self.state = AppState::Stopped,
            (
                Some(ProgramControl::Clear),
                AppState::Stopped | AppState::Cleared | AppState::Written,
            ) => {
                self.state = AppState::Cleared;
                self.program.clear();
                self.flash_busy_until = now + self.clear_time;
                self.flash_code = FlashStatusCode::NoValidProgram;
            }
            (Some(ProgramControl::Start), AppState::Written | AppState::Running) => {
                self.state = AppState::Running
            }
            (Some(ProgramControl::Reset), _) => self.state = AppState::Running,
            (Some(_), _) => return Err(AbortCode::DeviceState),
            (None, _) => return Err(AbortCode::InvalidValue),
        }
        Ok(())
    }
}

impl ObjectDictionary for Device {
    fn read(&mut self, now: Timestamp, object: ObjectAddress) -> Result<Vec<u8>, AbortCode> {
        match object {
            SOFTWARE_ID => Ok(self
                .software_id
                .unwrap_or_else(|| crc32(&self.program))
                .to_le_bytes()
                .to_vec()),
            FLASH_STATUS => Ok(self.flash_status(now).raw().to_le_bytes().to_vec()),
            PROGRAM_CONTROL => Ok(vec![match self.state {
                AppState::Running => 1,
                _ => 0,
            }]),
            PROGRAM_DATA | SCRATCH => Err(AbortCode::WriteOnly),
            other => self
                .values
                .get(&other)
                .cloned()
                .ok_or(AbortCode::ObjectDoesNotExist),
        }
    }

    fn begin_write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        size: Option<u32>,
    ) -> Result<(), AbortCode> {
        if let Some(code) = self.refuse_begin {
            return Err(code);
        }
        match object {
            SOFTWARE_ID | FLASH_STATUS => return Err(AbortCode::ReadOnly),
            PROGRAM_CONTROL if size != Some(1) => return Err(AbortCode::LengthMismatch),
            PROGRAM_DATA if self.state != AppState::Cleared => return Err(AbortCode::DeviceState),
            PROGRAM_CONTROL | PROGRAM_DATA | SCRATCH => {}
            other if !self.values.contains_key(&other) => {
                return Err(AbortCode::ObjectDoesNotExist);
            }
            _ => {}
        }
        self.incoming.clear();
        Ok(())
    }

    fn write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        offset: u64,
        data: &[u8],
    ) -> Result<Duration, AbortCode> {
        self.writes.push((object, offset, data.len()));
        if offset != self.incoming.len() as u64 {
            // The server must hand data over in order, each byte once.
            self.misordered += 1;
            return Err(AbortCode::GeneralError);
        }
        self.incoming.extend_from_slice(data);
        Ok(self.write_time)
    }

    fn end_write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        len: u64,
    ) -> Result<Duration, AbortCode> {
        assert_eq!(len, self.incoming.len() as u64, "end_write length");
        self.ended.push((object, len));
        let data = std::mem::take(&mut self.incoming);
        match object {
            PROGRAM_CONTROL => self.control(now, data[0])?,
            PROGRAM_DATA => {
                self.program = data;
                self.state = AppState::Written;
                self.flash_busy_until = now + self.program_time;
                self.flash_code = self.download_fault.unwrap_or(FlashStatusCode::Ok);
            }
            SCRATCH => self.scratch = data,
            other => {
                self.values.insert(other, data);
            }
        }
        Ok(self.end_time)
    }

    fn abort_write(&mut self, _now: Timestamp, object: ObjectAddress, code: AbortCode) {
        self.aborted.push((object, code));
        self.incoming.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// What the bus does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Replace(CanFrame),
}

/// A frame that went on the bus.
#[derive(Debug, Clone, Copy)]
struct Sent {
    dir: Dir,
    frame: CanFrame,
    delivered: bool,
}

/// Something driven like the client side: an [`SdoClient`] or a [`ProgramDownload`].
trait Peer {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
    fn handle_timeout(&mut self, now: Timestamp);
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    fn poll_timeout(&self) -> Option<Timestamp>;
}

macro_rules! peer {
    ($t:ty) => {
        impl Peer for $t {
            fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
                <$t>::handle_frame(self, now, frame)
            }
            fn handle_timeout(&mut self, now: Timestamp) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
                <$t>::poll_transmit(self, now)
            }
            fn poll_timeout(&self) -> Option<Timestamp> {
                <$t>::poll_timeout(self)
            }
        }
    };
}
peer!(SdoClient);
peer!(ProgramDownload);

type FateFn = Box<dyn FnMut(Dir, &CanFrame, usize) -> Fate>;
type HookFn = Box<dyn FnMut(&mut SdoServer<Device>, &[Sent])>;

/// A client side and a server handing frames to each other in virtual time.
struct Sim<C> {
    client: C,
    server: SdoServer<Device>,
    start: Timestamp,
    now: Timestamp,
    wire: Vec<Sent>,
    fate: FateFn,
    /// Called before every step, to change the server as the transfer goes.
    hook: HookFn,
    /// Frames seen so far in each direction (to server, to client).
    counts: [usize; 2],
    /// Bus time of each frame.
    frame_time: Duration,
}

impl<C: Peer> Sim<C> {
    fn new(client: C, server: SdoServer<Device>) -> Sim<C> {
        let start = Timestamp::from_micros(1_000_000);
        Sim {
            client,
            server,
            start,
            now: start,
            wire: Vec::new(),
            fate: Box::new(|_, _, _| Fate::Deliver),
            hook: Box::new(|_, _| {}),
            counts: [0, 0],
            frame_time: FRAME_TIME,
        }
    }

    /// Frames take no bus time: every exchange happens at the instant a timer fires.
    fn instant(mut self) -> Sim<C> {
        self.frame_time = Duration::ZERO;
        self
    }

    /// Decides the fate of each frame: given its direction and its number in that
    /// direction (from 0).
    fn with_fate(mut self, fate: impl FnMut(Dir, &CanFrame, usize) -> Fate + 'static) -> Sim<C> {
        self.fate = Box::new(fate);
        self
    }

    fn with_hook(mut self, hook: impl FnMut(&mut SdoServer<Device>, &[Sent]) + 'static) -> Sim<C> {
        self.hook = Box::new(hook);
        self
    }

    fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    fn carry(&mut self, dir: Dir, frame: CanFrame) {
        self.now = self.now + self.frame_time;
        let n = &mut self.counts[dir as usize];
        let fate = (self.fate)(dir, &frame, *n);
        *n += 1;
        let delivered = match fate {
            Fate::Deliver => Some(frame),
            Fate::Drop => None,
            Fate::Replace(other) => Some(other),
        };
        self.wire.push(Sent {
            dir,
            frame: delivered.unwrap_or(frame),
            delivered: delivered.is_some(),
        });
        if let Some(f) = delivered {
            match dir {
                Dir::ToServer => self.server.handle_frame(self.now, &f),
                Dir::ToClient => self.client.handle_frame(self.now, &f),
            }
        }
    }

    /// Moves frames and fires timers until `done` says so; `done` sees the client
    /// after every step (to drain its events).
    fn run(&mut self, mut done: impl FnMut(&mut C, Timestamp) -> bool) {
        for _ in 0..MAX_STEPS {
            (self.hook)(&mut self.server, &self.wire);
            if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
                self.client.handle_timeout(self.now);
            }
            if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                self.server.handle_timeout(self.now);
            }
            let mut moved = false;
            if let Some(f) = self.client.poll_transmit(self.now) {
                self.carry(Dir::ToServer, f);
                moved = true;
            }
            if let Some(f) = self.server.poll_transmit(self.now) {
                self.carry(Dir::ToClient, f);
                moved = true;
            }
            if done(&mut self.client, self.now) {
                self.settle();
                return;
            }
            if !moved {
                let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("the exchange stalled with no timer running");
                self.now = self.now.max(next);
            }
        }
        panic!("the exchange did not finish");
    }

    /// Delivers what is still queued on both sides (an abort, a late response).
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            if let Some(f) = self.client.poll_transmit(self.now) {
                self.carry(Dir::ToServer, f);
                moved = true;
            }
            if let Some(f) = self.server.poll_transmit(self.now) {
                self.carry(Dir::ToClient, f);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// The data of the frames that went one way (delivered or not).
    fn sent(&self, dir: Dir) -> Vec<[u8; 8]> {
        self.wire
            .iter()
            .filter(|s| s.dir == dir)
            .map(|s| s.frame.data().try_into().expect("SDO frames are 8 bytes"))
            .collect()
    }
}

/// Everything an SDO client run produced.
struct ClientRun {
    events: Vec<SdoEvent>,
    sim: Sim<SdoClient>,
}

impl ClientRun {
    fn outcome(&self) -> &SdoEvent {
        self.events
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e,
                    SdoEvent::Downloaded { .. }
                        | SdoEvent::Uploaded { .. }
                        | SdoEvent::Failed { .. }
                )
            })
            .expect("the transfer ended")
    }

    fn needs(&self) -> Vec<(u64, usize)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SdoEvent::NeedData { offset, len } => Some((*offset, *len)),
                _ => None,
            })
            .collect()
    }

    fn progress(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SdoEvent::Progress { acknowledged, .. } => Some(*acknowledged),
                _ => None,
            })
            .collect()
    }

    fn device(&self) -> &Device {
        self.sim.server.dictionary()
    }
}

/// Drives a client until its transfer ends, answering its data requests from `img`.
/// Each request must ask for some bytes and start where the previous one ended: every
/// byte is asked for once, in order.
fn drive(mut sim: Sim<SdoClient>, img: &[u8]) -> ClientRun {
    let mut events = Vec::new();
    let mut next = None;
    sim.run(|client, now| {
        // Answering a request queues at most one more: a client that keeps asking fails
        // the test instead of hanging it.
        for _ in 0..MAX_EVENTS_PER_STEP {
            let Some(e) = client.poll_event() else {
                return false;
            };
            if let SdoEvent::NeedData { offset, len } = e {
                let expected = next.unwrap_or(offset);
                assert_eq!(offset, expected, "bytes asked for out of order or twice");
                assert!(len > 0, "a request for no bytes at {offset}");
                next = Some(offset + len as u64);
                let o = offset as usize;
                client.provide_data(now, &img[o..o + len]).unwrap();
            }
            let end = matches!(
                e,
                SdoEvent::Downloaded { .. } | SdoEvent::Uploaded { .. } | SdoEvent::Failed { .. }
            );
            events.push(e);
            if end {
                return true;
            }
        }
        panic!("the client never stops reporting");
    });
    ClientRun { events, sim }
}

fn server(config: SdoServerConfig, device: Device) -> SdoServer<Device> {
    SdoServer::new(channel(), config, device)
}

/// A download of `img` to `object`, with `fate` deciding what the bus does.
fn download_with(
    client: SdoClientConfig,
    server_config: SdoServerConfig,
    device: Device,
    object: ObjectAddress,
    img: &[u8],
    method: DownloadMethod,
    fate: impl FnMut(Dir, &CanFrame, usize) -> Fate + 'static,
) -> ClientRun {
    let mut sim = Sim::new(SdoClient::new(client), server(server_config, device)).with_fate(fate);
    sim.client
        .download(sim.now, object, img.len() as u32, method)
        .unwrap();
    drive(sim, img)
}

/// An upload of `object`, accepting `max_len` bytes.
fn upload_with(
    server_config: SdoServerConfig,
    device: Device,
    object: ObjectAddress,
    max_len: usize,
) -> ClientRun {
    let mut sim = Sim::new(
        SdoClient::new(client_config()),
        server(server_config, device),
    );
    sim.client.upload(sim.now, object, max_len).unwrap();
    drive(sim, &[])
}

fn frame(id: bmsfw_plugin_api::CanId, data: &[u8]) -> CanFrame {
    CanFrame::new(id, data).unwrap()
}

#[test]
fn a_node_id_is_1_to_127_and_names_its_default_sdo_channel() {
    assert_eq!(NodeId::new(0), None);
    assert_eq!(NodeId::new(128), None);
    let id = |raw: u16| bmsfw_plugin_api::CanId::standard(raw).unwrap();
    for (node, request, response) in [(1u8, 0x601, 0x581), (5, 0x605, 0x585), (127, 0x67F, 0x5FF)] {
        let node_id = NodeId::new(node).unwrap();
        assert_eq!(node_id.get(), node);
        let channel = SdoChannel::for_node(node_id);
        assert_eq!(channel.request, id(request));
        assert_eq!(channel.response, id(response));
    }
}

#[test]
fn nodes_and_objects_print_as_logs_and_errors_name_them() {
    assert_eq!(NodeId::new(16).unwrap().to_string(), "node 16");
    assert_eq!(PROGRAM_DATA.to_string(), "0x1F50:01");
    assert_eq!(ObjectAddress::new(0x100A, 0xFE).to_string(), "0x100A:FE");
}
