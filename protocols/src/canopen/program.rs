//! The program download of CiA 302-3, as a client-side state machine over an
//! [`SdoClient`].

use super::{
    AbortCode, DownloadMethod, ObjectAddress, ProvideDataError, SdoClient, SdoClientConfig,
    SdoError, SdoEvent,
};
use crate::checksum::Crc32;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Indices of the objects a program download and its checks use.
pub mod objects {
    /// 0x1F50 program data (DOMAIN, sub-index = program number): the image is written
    /// here.
    pub const PROGRAM_DATA: u16 = 0x1F50;
    /// 0x1F51 program control (UNSIGNED8, sub-index = program number): see
    /// [`ProgramControl`](super::ProgramControl).
    pub const PROGRAM_CONTROL: u16 = 0x1F51;
    /// 0x1F56 program software identification (UNSIGNED32, sub-index = program number),
    /// often the CRC-32 of the program.
    pub const PROGRAM_SOFTWARE_ID: u16 = 0x1F56;
    /// 0x1F57 flash status identification (UNSIGNED32, sub-index = program number): see
    /// [`FlashStatus`](super::FlashStatus).
    pub const FLASH_STATUS: u16 = 0x1F57;
    /// 0x1018 identity (RECORD): sub-index 1 vendor-id, 2 product code, 3 revision
    /// number, 4 serial number, each UNSIGNED32.
    pub const IDENTITY: u16 = 0x1018;
    /// 0x100A manufacturer software version (VISIBLE_STRING, sub-index 0).
    pub const SOFTWARE_VERSION: u16 = 0x100A;
}

/// A command written to 0x1F51 program control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramControl {
    /// 0: stop the application (the bootloader takes over).
    Stop,
    /// 1: start the application.
    Start,
    /// 2: reset the application.
    Reset,
    /// 3: clear (erase) the program.
    Clear,
}

impl ProgramControl {
    /// The byte written.
    pub const fn to_byte(self) -> u8 {
        match self {
            ProgramControl::Stop => 0,
            ProgramControl::Start => 1,
            ProgramControl::Reset => 2,
            ProgramControl::Clear => 3,
        }
    }

    /// The command of `byte`, if it is one of the four.
    pub const fn from_byte(byte: u8) -> Option<ProgramControl> {
        match byte {
            0 => Some(ProgramControl::Stop),
            1 => Some(ProgramControl::Start),
            2 => Some(ProgramControl::Reset),
            3 => Some(ProgramControl::Clear),
            _ => None,
        }
    }
}

/// The error field of a [`FlashStatus`] (bits 1 to 7). CiA 302-3 names the values
/// below; 8 to 62 are reserved and 64 to 127 manufacturer-specific, both reported as
/// [`FlashStatusCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlashStatusCode {
    /// 0: no error.
    Ok,
    /// 1: no valid program.
    NoValidProgram,
    /// 2: data format unknown.
    DataFormatUnknown,
    /// 3: data format error or data CRC error.
    DataFormatError,
    /// 4: flash not cleared before write.
    FlashNotCleared,
    /// 5: flash write error.
    FlashWriteError,
    /// 6: general address error.
    GeneralAddressError,
    /// 7: flash secured (write access currently forbidden).
    FlashSecured,
    /// 63: unspecified error.
    Unspecified,
    /// Any other value.
    Other(u8),
}

impl FlashStatusCode {
    /// The code of the 7-bit `value`.
    pub const fn from_value(value: u8) -> FlashStatusCode {
        match value & 0x7F {
            0 => FlashStatusCode::Ok,
            1 => FlashStatusCode::NoValidProgram,
            2 => FlashStatusCode::DataFormatUnknown,
            3 => FlashStatusCode::DataFormatError,
            4 => FlashStatusCode::FlashNotCleared,
            5 => FlashStatusCode::FlashWriteError,
            6 => FlashStatusCode::GeneralAddressError,
            7 => FlashStatusCode::FlashSecured,
            63 => FlashStatusCode::Unspecified,
            other => FlashStatusCode::Other(other),
        }
    }

    /// The 7-bit value.
    pub const fn value(self) -> u8 {
        match self {
            FlashStatusCode::Ok => 0,
            FlashStatusCode::NoValidProgram => 1,
            FlashStatusCode::DataFormatUnknown => 2,
            FlashStatusCode::DataFormatError => 3,
            FlashStatusCode::FlashNotCleared => 4,
            FlashStatusCode::FlashWriteError => 5,
            FlashStatusCode::GeneralAddressError => 6,
            FlashStatusCode::FlashSecured => 7,
            FlashStatusCode::Unspecified => 63,
            FlashStatusCode::Other(v) => v & 0x7F,
        }
    }
}

/// The value of 0x1F57 flash status identification: bit 0 set while an operation (a
/// clear, a write) is in progress, bits 1 to 7 the [`FlashStatusCode`]; bits 8 to 31
/// are kept in [`raw`](FlashStatus::raw) for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlashStatus(u32);

impl FlashStatus {
    /// The status of the raw value.
    pub const fn from_raw(raw: u32) -> FlashStatus {
        FlashStatus(raw)
    }

    /// The status with `code`, in progress or not.
    pub const fn new(in_progress: bool, code: FlashStatusCode) -> FlashStatus {
        FlashStatus(((code.value() as u32) << 1) | in_progress as u32)
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether an operation is in progress (the code is not valid yet).
    pub const fn in_progress(self) -> bool {
        self.0 & 1 != 0
    }

    /// The error field.
    pub const fn code(self) -> FlashStatusCode {
        FlashStatusCode::from_value(((self.0 >> 1) & 0x7F) as u8)
    }
}

impl fmt::Display for FlashStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X} ({:?}", self.0, self.code())?;
        if self.in_progress() {
            write!(f, ", in progress")?;
        }
        write!(f, ")")
    }
}

/// What the flow checks of the software identification read back from 0x1F56.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoftwareIdCheck {
    /// Nothing; the value is reported.
    Report,
    /// It must equal this value.
    Equals(u32),
    /// It must equal the CRC-32 (IEEE) of the image downloaded.
    Crc32OfImage,
}

/// The last command written to 0x1F51.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finish {
    /// 1: start the new program.
    Start,
    /// 2: reset the device.
    Reset,
}

impl Finish {
    fn control(self) -> ProgramControl {
        match self {
            Finish::Start => ProgramControl::Start,
            Finish::Reset => ProgramControl::Reset,
        }
    }
}

/// Settings of a [`ProgramDownload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramConfig {
    /// The SDO client's settings (the node's channel, timeout, CRC).
    pub sdo: SdoClientConfig,
    /// The program number: the sub-index of 0x1F50, 0x1F51, 0x1F56 and 0x1F57.
    /// Default 1.
    pub program: u8,
    /// How the image is downloaded. Default block (falling back as the SDO settings
    /// say).
    pub method: DownloadMethod,
    /// Time between two reads of a busy flash status. Default 100 ms.
    pub poll_interval: Duration,
    /// Longest the flash status may stay busy after a clear or a download. Default 60 s.
    pub busy_limit: Duration,
    /// What to check of the software identification read back. Default report only.
    pub software_id: SoftwareIdCheck,
    /// The last command. Default start.
    pub finish: Finish,
}

impl ProgramConfig {
    /// The default settings over `sdo`.
    pub fn new(sdo: SdoClientConfig) -> ProgramConfig {
        ProgramConfig {
            sdo,
            program: 1,
            method: DownloadMethod::Block,
            poll_interval: Duration::from_millis(100),
            busy_limit: Duration::from_secs(60),
            software_id: SoftwareIdCheck::Report,
            finish: Finish::Start,
        }
    }
}

/// Where the flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramPhase {
    /// Not started.
    Idle,
    /// Writing 0x1F51 = 0 (stop).
    Stop,
    /// Writing 0x1F51 = 3 (clear), then waiting for 0x1F57 to leave busy.
    Clear,
    /// Writing the image to 0x1F50.
    Download,
    /// Waiting for 0x1F57 to leave busy after the download.
    Flash,
    /// Reading 0x1F56.
    Verify,
    /// Writing 0x1F51 = 1 (start) or 2 (reset).
    Start,
    /// Finished.
    Done,
    /// Failed; see [`ProgramEvent::Failed`].
    Failed,
}

/// Whether the device answered the final start or reset command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartOutcome {
    /// It confirmed the write.
    Acknowledged,
    /// No answer came in time: many devices restart before answering. The image had
    /// already been checked.
    Unconfirmed,
}

/// Why a program download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// An SDO transfer failed.
    #[error("{phase:?}: {object}: {error}")]
    Sdo {
        /// The phase.
        phase: ProgramPhase,
        /// The object of the transfer.
        object: ObjectAddress,
        /// Why.
        error: SdoError,
    },
    /// The flash status reports an error.
    #[error("{phase:?}: flash status {status}")]
    Flash {
        /// The phase.
        phase: ProgramPhase,
        /// The status read.
        status: FlashStatus,
    },
    /// The flash status stayed busy too long.
    #[error("{phase:?}: the flash stayed busy for more than {limit:?}")]
    Busy {
        /// The phase.
        phase: ProgramPhase,
        /// The configured limit.
        limit: Duration,
    },
    /// An UNSIGNED32 object answered with a length other than 1 to 4 bytes.
    #[error("{object} answered {len} bytes, not 1 to 4")]
    ValueLength {
        /// The object.
        object: ObjectAddress,
        /// Bytes received.
        len: usize,
    },
    /// The software identification read back is not the expected one.
    #[error("software identification 0x{found:08X}, expected 0x{expected:08X}")]
    SoftwareId {
        /// The value expected.
        expected: u32,
        /// The value read.
        found: u32,
    },
    /// The caller aborted the flow.
    #[error("aborted")]
    Aborted,
}

/// What the flow reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramEvent {
    /// The phase changed.
    Phase(ProgramPhase),
    /// Answer with [`ProgramDownload::provide_data`]: the `len` image bytes from
    /// `offset`, asked for once each and in order. A request not yet taken from the
    /// queue is withdrawn when the flow fails.
    NeedData {
        /// Offset in the image.
        offset: u64,
        /// Number of bytes.
        len: usize,
    },
    /// The device confirmed more image bytes.
    Progress {
        /// Bytes confirmed.
        acknowledged: u64,
        /// Image length.
        total: u64,
    },
    /// The software identification read back from 0x1F56 (and checked as configured).
    SoftwareId(u32),
    /// The new program was written, checked and started.
    Done {
        /// The software identification read back.
        software_id: u32,
        /// Whether the start (or reset) was confirmed.
        start: StartOutcome,
    },
    /// The flow failed.
    Failed(ProgramError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stop,
    Clear,
    ClearStatus { since: Timestamp },
    Data,
    DataStatus { since: Timestamp },
    SoftwareId,
    Finish { software_id: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// An SDO transfer is under way.
    Transfer,
    /// The flash status is read again at this instant.
    PollAt(Timestamp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Running { step: Step, wait: Wait },
    Done,
    Failed,
}

/// The program download of CiA 302-3 over one node's SDO server:
///
/// 1. write 0x1F51 = 0: stop the application;
/// 2. write 0x1F51 = 3: clear the program, then read 0x1F57 every
///    [`poll_interval`](ProgramConfig::poll_interval) while it reports busy (bit 0);
///    error codes 0 (no error) and 1 (no valid program, as a cleared flash is) pass;
/// 3. download the image to 0x1F50 (block transfer with CRC, or segmented when the
///    device has no block transfer), its bytes asked for with
///    [`ProgramEvent::NeedData`] and its progress reported;
/// 4. read 0x1F57 while busy; any error code but 0 fails the update;
/// 5. read back 0x1F56 and check it as [`SoftwareIdCheck`] says;
/// 6. write 0x1F51 = 1 (start) or 2 (reset); a device that restarts without answering
///    ends the flow as [`StartOutcome::Unconfirmed`].
///
/// Values of 0x1F56 and 0x1F57 are UNSIGNED32, little-endian; 1 to 4 bytes are accepted.
#[derive(Debug)]
pub struct ProgramDownload {
    sdo: SdoClient,
    config: ProgramConfig,
    total: u64,
    acknowledged: u64,
    image_crc: Crc32,
    phase: ProgramPhase,
    state: State,
    events: VecDeque<ProgramEvent>,
}

impl ProgramDownload {
    /// A flow that will download an image of `image_len` bytes.
    pub fn new(config: ProgramConfig, image_len: u32) -> ProgramDownload {
        ProgramDownload {
            sdo: SdoClient::new(config.sdo.clone()),
            config,
            total: u64::from(image_len),
            acknowledged: 0,
            image_crc: Crc32::new(),
            phase: ProgramPhase::Idle,
            state: State::Idle,
            events: VecDeque::new(),
        }
    }

    /// Starts the flow; nothing happens when it already started.
    pub fn start(&mut self, now: Timestamp) {
        if self.state == State::Idle {
            self.control(now, Step::Stop, ProgramControl::Stop);
        }
    }

    /// Stops the flow, aborting the SDO transfer under way with abort code 0x08000000
    /// (general error); it ends as failed with [`ProgramError::Aborted`].
    pub fn abort(&mut self, now: Timestamp) {
        if matches!(self.state, State::Running { .. }) {
            self.sdo.abort(now, AbortCode::GeneralError);
            while self.sdo.poll_event().is_some() {}
            self.fail(ProgramError::Aborted);
        }
    }

    /// The current phase.
    pub fn phase(&self) -> ProgramPhase {
        self.phase
    }

    /// Image bytes confirmed by the device, and the image length.
    pub fn progress(&self) -> (u64, u64) {
        (self.acknowledged, self.total)
    }

    /// Answers a [`ProgramEvent::NeedData`] with exactly the bytes asked for.
    pub fn provide_data(&mut self, now: Timestamp, data: &[u8]) -> Result<(), ProvideDataError> {
        self.sdo.provide_data(now, data)?;
        self.image_crc.update(data);
        self.drain(now);
        Ok(())
    }

    /// Feeds a received CAN frame.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.sdo.handle_frame(now, frame);
        self.drain(now);
    }

    /// Fires expired timers: the SDO timeout and the next flash-status poll.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.sdo.handle_timeout(now);
        self.drain(now);
        if let State::Running {
            step,
            wait: Wait::PollAt(at),
        } = self.state
        {
            if now >= at {
                self.read_status(now, step);
            }
        }
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let frame = self.sdo.poll_transmit(now);
        self.drain(now);
        frame
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let poll = match self.state {
            State::Running {
                wait: Wait::PollAt(at),
                ..
            } => Some(at),
            _ => None,
        };
        [poll, self.sdo.poll_timeout()].into_iter().flatten().min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProgramEvent> {
        self.events.pop_front()
    }

    fn object(&self, index: u16) -> ObjectAddress {
        ObjectAddress::new(index, self.config.program)
    }

    fn drain(&mut self, now: Timestamp) {
        while let Some(event) = self.sdo.poll_event() {
            let State::Running { step, .. } = self.state else {
                continue;
            };
            match event {
                SdoEvent::NeedData { offset, len } => self
                    .events
                    .push_back(ProgramEvent::NeedData { offset, len }),
                SdoEvent::Progress {
                    acknowledged,
                    total,
                } => {
                    if step == Step::Data {
                        self.acknowledged = acknowledged;
                        self.events.push_back(ProgramEvent::Progress {
                            acknowledged,
                            total,
                        });
                    }
                }
                SdoEvent::Downloaded { .. } => self.downloaded(now, step),
                SdoEvent::Uploaded { object, data } => self.uploaded(now, step, object, &data),
                SdoEvent::Failed { object, error } => match (step, error) {
                    (Step::Finish { software_id }, SdoError::Timeout { .. }) => {
                        self.finish(software_id, StartOutcome::Unconfirmed)
                    }
                    (_, error) => self.fail(ProgramError::Sdo {
                        phase: self.phase,
                        object,
                        error,
                    }),
                },
            }
        }
    }

    fn downloaded(&mut self, now: Timestamp, step: Step) {
        match step {
            Step::Stop => self.control(now, Step::Clear, ProgramControl::Clear),
            Step::Clear => self.read_status(now, Step::ClearStatus { since: now }),
            Step::Data => {
                self.acknowledged = self.total;
                self.set_phase(ProgramPhase::Flash);
                self.read_status(now, Step::DataStatus { since: now });
            }
            Step::Finish { software_id } => self.finish(software_id, StartOutcome::Acknowledged),
            Step::ClearStatus { .. } | Step::DataStatus { .. } | Step::SoftwareId => {}
        }
    }

    fn uploaded(&mut self, now: Timestamp, step: Step, object: ObjectAddress, data: &[u8]) {
        let value = match data.len() {
            1..=4 => {
                let mut bytes = [0u8; 4];
                bytes[..data.len()].copy_from_slice(data);
                u32::from_le_bytes(bytes)
            }
            len => return self.fail(ProgramError::ValueLength { object, len }),
        };
        match step {
            Step::ClearStatus { since } | Step::DataStatus { since } => {
                let status = FlashStatus::from_raw(value);
                if status.in_progress() {
                    if now.saturating_duration_since(since) > self.config.busy_limit {
                        return self.fail(ProgramError::Busy {
                            phase: self.phase,
                            limit: self.config.busy_limit,
                        });
                    }
                    self.state = State::Running {
                        step,
                        wait: Wait::PollAt(now + self.config.poll_interval),
                    };
                    return;
                }
                let acceptable = match step {
                    Step::ClearStatus { .. } => matches!(
                        status.code(),
                        FlashStatusCode::Ok | FlashStatusCode::NoValidProgram
                    ),
                    _ => status.code() == FlashStatusCode::Ok,
                };
                if !acceptable {
                    return self.fail(ProgramError::Flash {
                        phase: self.phase,
                        status,
                    });
                }
                if matches!(step, Step::ClearStatus { .. }) {
                    self.begin_data(now);
                } else {
                    self.set_phase(ProgramPhase::Verify);
                    self.transfer(
                        now,
                        Step::SoftwareId,
                        |sdo, object| sdo.upload(now, object, 4),
                        objects::PROGRAM_SOFTWARE_ID,
                    );
                }
            }
            Step::SoftwareId => {
                let expected = match self.config.software_id {
                    SoftwareIdCheck::Report => None,
                    SoftwareIdCheck::Equals(v) => Some(v),
                    SoftwareIdCheck::Crc32OfImage => Some(self.image_crc.value()),
                };
                if let Some(expected) = expected.filter(|&e| e != value) {
                    return self.fail(ProgramError::SoftwareId {
                        expected,
                        found: value,
                    });
                }
                self.events.push_back(ProgramEvent::SoftwareId(value));
                let command = self.config.finish.control();
                self.control(now, Step::Finish { software_id: value }, command);
            }
            Step::Stop | Step::Clear | Step::Data | Step::Finish { .. } => {}
        }
    }

    /// Writes `command` to 0x1F51.
    fn control(&mut self, now: Timestamp, step: Step, command: ProgramControl) {
        self.set_phase(match step {
            Step::Stop => ProgramPhase::Stop,
            Step::Clear => ProgramPhase::Clear,
            _ => ProgramPhase::Start,
        });
        self.transfer(
            now,
            step,
            |sdo, object| sdo.download_value(now, object, &[command.to_byte()]),
            objects::PROGRAM_CONTROL,
        );
    }

    fn begin_data(&mut self, now: Timestamp) {
        self.set_phase(ProgramPhase::Download);
        let (size, method) = (
            u32::try_from(self.total).unwrap_or(u32::MAX),
            self.config.method,
        );
        self.transfer(
            now,
            Step::Data,
            |sdo, object| sdo.download(now, object, size, method),
            objects::PROGRAM_DATA,
        );
    }

    fn read_status(&mut self, now: Timestamp, step: Step) {
        self.transfer(
            now,
            step,
            |sdo, object| sdo.upload(now, object, 4),
            objects::FLASH_STATUS,
        );
    }

    /// Starts an SDO transfer of object `index` for `step`.
    fn transfer(
        &mut self,
        now: Timestamp,
        step: Step,
        begin: impl FnOnce(&mut SdoClient, ObjectAddress) -> Result<(), super::StartError>,
        index: u16,
    ) {
        let object = self.object(index);
        self.state = State::Running {
            step,
            wait: Wait::Transfer,
        };
        if let Err(error) = begin(&mut self.sdo, object) {
            // The client is idle between steps; this would be a bug of the flow.
            tracing::error!(%error, "the SDO client refused a transfer");
            self.sdo.abort(now, AbortCode::GeneralError);
            self.fail(ProgramError::Sdo {
                phase: self.phase,
                object,
                error: SdoError::Cancelled(AbortCode::GeneralError),
            });
        }
    }

    fn set_phase(&mut self, phase: ProgramPhase) {
        if self.phase != phase {
            self.phase = phase;
            self.events.push_back(ProgramEvent::Phase(phase));
        }
    }

    fn finish(&mut self, software_id: u32, start: StartOutcome) {
        self.state = State::Done;
        self.set_phase(ProgramPhase::Done);
        self.events
            .push_back(ProgramEvent::Done { software_id, start });
    }

    fn fail(&mut self, error: ProgramError) {
        tracing::warn!(phase = ?self.phase, %error, "program download failed");
        self.events
            .retain(|e| !matches!(e, ProgramEvent::NeedData { .. }));
        self.state = State::Failed;
        self.set_phase(ProgramPhase::Failed);
        self.events.push_back(ProgramEvent::Failed(error));
    }
}
