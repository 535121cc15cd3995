//! What the fuzz targets share: a cursor over the fuzzer's bytes and a driver that plays
//! a byte string as a script of CAN frames and passing time against a sans-IO state
//! machine.

use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};

/// Bytes handed out front to back; exhausted reads give zeros and empty slices.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// A sans-IO state machine driven by CAN frames and timers.
pub trait Machine {
    /// A frame arrived.
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
    /// The deadline passed.
    fn handle_timeout(&mut self, now: Timestamp);
    /// The next frame to send.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// Takes the pending events; returns how many there were.
    fn drain_events(&mut self, now: Timestamp) -> usize;
    /// A step of the script not about frames or time (`op` is the script's byte).
    fn custom(&mut self, _now: Timestamp, _op: u8, _input: &mut Bytes<'_>) {}
}

/// Frames or events one step may produce before the machine counts as looping.
const STEP_BOUND: usize = 100_000;

/// Plays `input` against `machine`, which listens on `rx`; frames with another
/// identifier are sent on `other`. Each step is an opcode byte then its operands:
///
/// - `0`: a raw frame: length byte (mod 9), then the data;
/// - `1`: a single-frame ISO-TP PDU: length byte (mod 8), then the payload;
/// - `2`: time passes: a byte of milliseconds (times 50 with bit 2 of the opcode);
/// - `3`: time jumps to the next deadline;
/// - `4`: an 8-byte frame whose first byte is the operand (consecutive frames, SDO
///   commands);
/// - anything else: [`Machine::custom`].
///
/// After each step everything the machine has to send and report is taken; a machine
/// that never stops producing panics.
pub fn drive<M: Machine>(machine: &mut M, rx: CanId, other: CanId, input: &[u8]) {
    let mut input = Bytes::new(input);
    let mut now = Timestamp::from_micros(1_000_000);
    while !input.is_empty() {
        let op = input.u8();
        let id = if op & 0x80 == 0 { rx } else { other };
        match op & 0x07 {
            0 => {
                let len = usize::from(input.u8() % 9);
                let data = input.take(len);
                if let Some(frame) = CanFrame::new(id, data) {
                    machine.handle_frame(now, &frame);
                }
            }
            1 => {
                let len = usize::from(input.u8() % 8).max(1);
                let payload = input.take(len);
                let mut data = vec![payload.len() as u8];
                data.extend_from_slice(payload);
                if let Some(frame) = CanFrame::new(id, &data) {
                    machine.handle_frame(now, &frame);
                }
            }
            2 => {
                let ms = u64::from(input.u8()) * if op & 0x08 == 0 { 1 } else { 50 };
                now = now.saturating_add(std::time::Duration::from_millis(ms));
                if machine.poll_timeout().is_some_and(|t| t <= now) {
                    machine.handle_timeout(now);
                }
            }
            3 => {
                if let Some(t) = machine.poll_timeout() {
                    now = now.max(t);
                    machine.handle_timeout(now);
                }
            }
            4 => {
                let mut data = [0u8; 8];
                data[0] = input.u8();
                let tail = input.take(7);
                data[1..1 + tail.len()].copy_from_slice(tail);
                if let Some(frame) = CanFrame::new(id, &data) {
                    machine.handle_frame(now, &frame);
                }
            }
            _ => machine.custom(now, op, &mut input),
        }
        settle(machine, now);
    }
}

/// Takes every frame and event the machine has ready.
pub fn settle<M: Machine>(machine: &mut M, now: Timestamp) {
    let mut sent = 0;
    while machine.poll_transmit(now).is_some() {
        sent += 1;
        assert!(sent < STEP_BOUND, "the machine never stops transmitting");
    }
    let mut events = 0;
    loop {
        let n = machine.drain_events(now);
        if n == 0 {
            break;
        }
        events += n;
        assert!(events < STEP_BOUND, "the machine never stops reporting");
        while machine.poll_transmit(now).is_some() {
            sent += 1;
            assert!(sent < STEP_BOUND, "the machine never stops transmitting");
        }
    }
}

/// A standard identifier.
pub fn std_id(id: u16) -> CanId {
    CanId::standard(id).expect("a standard identifier")
}

/// Parses `data` as every kind of SDO frame; a frame that parses is encoded and parses
/// to the same value again.
pub fn sdo_frame_round_trips(data: &[u8]) {
    use bmsfw_protocols::canopen::frame::{BlockSegment, ClientRequest, ServerResponse};
    if let Ok(r) = ClientRequest::parse(data) {
        assert_eq!(ClientRequest::parse(&r.encode()), Ok(r), "{data:02X?}");
    }
    if let Ok(r) = ServerResponse::parse(data) {
        assert_eq!(ServerResponse::parse(&r.encode()), Ok(r), "{data:02X?}");
    }
    if let Ok(s) = BlockSegment::parse(data) {
        assert_eq!(BlockSegment::parse(&s.encode()), Ok(s), "{data:02X?}");
    }
}
