//! Exact bit timing of classic CAN data frames.
//!
//! A frame's length on the wire depends on its content: after five equal bits the
//! transmitter inserts one complementary *stuff bit*, from the start-of-frame bit through
//! the last bit of the CRC sequence. This module builds the real bit stream of a frame
//! (start of frame, arbitration field, control field, data, CRC-15), stuffs it and counts
//! every bit up to the end of the interframe space, so a simulated bus and the
//! throughput benchmarks measure exactly what a real 500 kbit/s bus carries.
//!
//! Frame layout (ISO 11898-1, classic data frames, dominant = 0):
//!
//! | field | 11-bit identifier | 29-bit identifier |
//! |---|---|---|
//! | start of frame | 1 | 1 |
//! | arbitration | ID (11), RTR | base ID (11), SRR, IDE, extended ID (18), RTR |
//! | control | IDE, r0, DLC (4) | r1, r0, DLC (4) |
//! | data | 8 x length | 8 x length |
//! | CRC sequence | 15 | 15 |
//! | CRC delimiter, ACK slot, ACK delimiter | 3 | 3 |
//! | end of frame, intermission (IFS) | 7 + 3 | 7 + 3 |
//!
//! An 11-bit frame with 8 data bytes is therefore 111 bits before stuffing, a 29-bit one
//! 131 bits.
//!
//! The CRC is computed here bit by bit rather than with the `crc` crate: that crate (like
//! every table-driven CRC library) works on whole bytes, and the CAN CRC covers a bit
//! stream whose length is not a multiple of eight. The tests cross-check this code
//! against the `crc` crate's `CRC_15_CAN` on byte-aligned input.

use bmsfw_plugin_api::{CanFrame, CanId};
use std::fmt;
use std::time::Duration;

/// The standard classic CAN bit rates, bit/s. BMS-Can runs at 500 000.
pub const STANDARD_BITRATES: [u32; 9] = [
    10_000, 20_000, 50_000, 100_000, 125_000, 250_000, 500_000, 800_000, 1_000_000,
];

/// The CAN CRC-15 generator polynomial, `x^15 + x^14 + x^10 + x^8 + x^7 + x^4 + x^3 + 1`.
pub const CRC15_POLY: u16 = 0x4599;

/// Bits after the CRC sequence that are never stuffed: CRC delimiter (1), ACK slot (1),
/// ACK delimiter (1), end of frame (7) and the intermission (3) before the next frame.
pub const TRAILER_BITS: u32 = 1 + 1 + 1 + 7 + 3;

/// Unstuffed bits from start of frame through the end of the DLC of an 11-bit frame.
pub const STANDARD_HEADER_BITS: u32 = 1 + 11 + 1 + 1 + 1 + 4;

/// Unstuffed bits from start of frame through the end of the DLC of a 29-bit frame.
pub const EXTENDED_HEADER_BITS: u32 = 1 + 11 + 1 + 1 + 18 + 1 + 1 + 1 + 4;

/// Length of the CRC sequence.
pub const CRC_BITS: u32 = 15;

/// Bits of an error frame that follow the point where an error was detected: error flag
/// (6; flags of several nodes detecting the error at the same bit overlap), error
/// delimiter (8) and the intermission (3).
pub const ERROR_FRAME_BITS: u32 = 6 + 8 + 3;

/// Bits an error-passive transmitter waits after its own transmission before it may start
/// another one ("suspend transmission").
pub const SUSPEND_TRANSMISSION_BITS: u32 = 8;

/// The identifier format of a frame, which decides the length of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdFormat {
    /// CAN 2.0A, 11-bit identifier.
    Standard,
    /// CAN 2.0B, 29-bit identifier.
    Extended,
}

impl IdFormat {
    /// The format of `id`.
    pub const fn of(id: CanId) -> IdFormat {
        if id.is_extended() {
            IdFormat::Extended
        } else {
            IdFormat::Standard
        }
    }

    /// Unstuffed bits from start of frame through the end of the DLC.
    pub const fn header_bits(self) -> u32 {
        match self {
            IdFormat::Standard => STANDARD_HEADER_BITS,
            IdFormat::Extended => EXTENDED_HEADER_BITS,
        }
    }
}

/// Up to 128 bits in transmission order; bit 0 of the sequence is the most significant
/// of the `len` used bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BitSeq {
    bits: u128,
    len: u32,
}

impl BitSeq {
    const CAPACITY: u32 = 128;

    const fn empty() -> BitSeq {
        BitSeq { bits: 0, len: 0 }
    }

    /// Appends the `n` low bits of `value`, most significant first.
    fn push(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 32 && self.len + n <= Self::CAPACITY);
        let value = u128::from(value) & ((1u128 << n) - 1);
        self.bits = (self.bits << n) | value;
        self.len += n;
    }

    /// Number of bits.
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// Whether the sequence holds no bit.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bit at position `i` (0 = first transmitted), `true` = recessive, or `None`
    /// past the end.
    pub const fn get(&self, i: u32) -> Option<bool> {
        if i >= self.len {
            None
        } else {
            Some((self.bits >> (self.len - 1 - i)) & 1 == 1)
        }
    }

    /// The bits in transmission order.
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(move |i| (self.bits >> (self.len - 1 - i)) & 1 == 1)
    }
}

/// Prints the bits as `0` (dominant) and `1` (recessive) in transmission order.
impl fmt::Display for BitSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for bit in self.iter() {
            f.write_str(if bit { "1" } else { "0" })?;
        }
        Ok(())
    }
}

impl fmt::Debug for BitSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BitSeq({self})")
    }
}

/// The bit-level anatomy of one classic data frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameBits {
    format: IdFormat,
    unstuffed: BitSeq,
    crc: u16,
    stuff_bits: u32,
}

impl FrameBits {
    /// Builds and stuffs the bit stream of `frame`.
    pub fn of(frame: &CanFrame) -> FrameBits {
        let format = IdFormat::of(frame.id());
        let mut seq = BitSeq::empty();
        seq.push(0, 1); // start of frame
        let raw = frame.id().raw();
        match format {
            IdFormat::Standard => {
                seq.push(raw, 11);
                seq.push(0, 1); // RTR: data frame
                seq.push(0, 1); // IDE: standard
                seq.push(0, 1); // r0
            }
            IdFormat::Extended => {
                seq.push(raw >> 18, 11);
                seq.push(1, 1); // SRR
                seq.push(1, 1); // IDE: extended
                seq.push(raw & 0x3_FFFF, 18);
                seq.push(0, 1); // RTR: data frame
                seq.push(0, 1); // r1
                seq.push(0, 1); // r0
            }
        }
        seq.push(frame.len() as u32, 4);
        for &byte in frame.data() {
            seq.push(u32::from(byte), 8);
        }
        let crc = crc15(seq.iter());
        seq.push(u32::from(crc), CRC_BITS);
        let stuff_bits = count_stuff_bits(seq.iter());
        FrameBits {
            format,
            unstuffed: seq,
            crc,
            stuff_bits,
        }
    }

    /// The identifier format.
    pub const fn format(&self) -> IdFormat {
        self.format
    }

    /// The CRC-15 over start of frame through the last data bit.
    pub const fn crc(&self) -> u16 {
        self.crc
    }

    /// Start of frame through the CRC sequence, before stuffing.
    pub const fn unstuffed(&self) -> BitSeq {
        self.unstuffed
    }

    /// Start of frame through the CRC sequence as transmitted, stuff bits included.
    pub fn stuffed(&self) -> String {
        let mut out = String::with_capacity((self.unstuffed.len() + self.stuff_bits) as usize);
        stuff(self.unstuffed.iter(), |bit| {
            out.push(if bit { '1' } else { '0' })
        });
        out
    }

    /// Stuff bits the transmitter inserts.
    pub const fn stuff_bits(&self) -> u32 {
        self.stuff_bits
    }

    /// Bits without stuffing, start of frame through the intermission.
    pub const fn unstuffed_bits(&self) -> u32 {
        self.unstuffed.len() + TRAILER_BITS
    }

    /// Bits the frame occupies the bus for, start of frame through the intermission,
    /// stuff bits included.
    pub const fn total_bits(&self) -> u32 {
        self.unstuffed_bits() + self.stuff_bits
    }

    /// Bits the bus carries when an error is detected in this frame at the end of its
    /// ACK delimiter (the case of a CRC error): the frame up to that point, then an error
    /// frame.
    pub const fn bits_with_crc_error(&self) -> u32 {
        self.total_bits() - 7 - 3 + ERROR_FRAME_BITS
    }
}

/// Bits `frame` occupies the bus for, stuff bits and the 3-bit intermission included.
pub fn frame_bits(frame: &CanFrame) -> u32 {
    FrameBits::of(frame).total_bits()
}

/// Stuff bits in `frame` as transmitted.
pub fn stuff_bit_count(frame: &CanFrame) -> u32 {
    FrameBits::of(frame).stuff_bits()
}

/// How long `bits` bit times last at `bitrate` bit/s, rounded to the nearest nanosecond
/// (exact for every bit rate that divides 10^9, which covers all standard CAN rates).
///
/// # Panics
///
/// When `bitrate` is zero.
pub fn bits_duration(bits: u64, bitrate: u32) -> Duration {
    assert!(bitrate > 0, "a CAN bit rate must be positive");
    let rate = u128::from(bitrate);
    let nanos = (u128::from(bits) * 1_000_000_000 + rate / 2) / rate;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How long `frame` occupies a bus at `bitrate` bit/s.
///
/// # Panics
///
/// When `bitrate` is zero.
pub fn frame_duration(frame: &CanFrame, bitrate: u32) -> Duration {
    bits_duration(u64::from(frame_bits(frame)), bitrate)
}

/// The classic upper bound of a frame's length with the most stuff bits its header and
/// payload could need (Davis et al.): `8n + g + 13 + floor((g + 8n - 1) / 4)` with
/// `g` = 34 (11-bit) or 54 (29-bit). 135 bits for an 11-bit frame with 8 bytes, 160 for a
/// 29-bit one. Every real frame is at most this long.
pub const fn worst_case_frame_bits(format: IdFormat, len: u8) -> u32 {
    let stuffable = stuffable_bits(format, len);
    stuffable + TRAILER_BITS + (stuffable - 1) / 4
}

/// A frame's length without any stuff bit: the lower bound.
pub const fn unstuffed_frame_bits(format: IdFormat, len: u8) -> u32 {
    stuffable_bits(format, len) + TRAILER_BITS
}

/// Bits subject to stuffing (start of frame through CRC) for a payload of `len` bytes;
/// payloads longer than 8 bytes count as 8.
const fn stuffable_bits(format: IdFormat, len: u8) -> u32 {
    let len = if len > 8 { 8 } else { len as u32 };
    format.header_bits() + 8 * len + CRC_BITS
}

/// How frames are counted when their exact content is not known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stuffing {
    /// No stuff bit at all: the ceiling no real bus reaches.
    None,
    /// The upper bound of [`worst_case_frame_bits`].
    WorstCase,
    /// A mean number of stuff bits per frame, measured on real content (see
    /// [`mean_frame_bits`]).
    Mean(f64),
}

/// The shape of the frames of a transfer: identifier format, data length code, and how
/// many of the data bytes carry payload (the rest are protocol overhead such as an
/// ISO-TP protocol control byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameShape {
    /// Identifier format.
    pub format: IdFormat,
    /// Data bytes per frame (0 to 8).
    pub len: u8,
    /// Payload bytes per frame (at most `len`).
    pub payload: u8,
}

impl FrameShape {
    /// Bits per frame under the given stuffing assumption.
    pub fn bits(&self, stuffing: Stuffing) -> f64 {
        match stuffing {
            Stuffing::None => f64::from(unstuffed_frame_bits(self.format, self.len)),
            Stuffing::WorstCase => f64::from(worst_case_frame_bits(self.format, self.len)),
            Stuffing::Mean(stuff) => f64::from(unstuffed_frame_bits(self.format, self.len)) + stuff,
        }
    }

    /// Frames per second a bus at `bitrate` carries when frames of this shape occupy
    /// `load_cap` (0.0 to 1.0) of its time.
    pub fn frames_per_second(&self, bitrate: u32, load_cap: f64, stuffing: Stuffing) -> f64 {
        f64::from(bitrate) * load_cap / self.bits(stuffing)
    }

    /// The theoretical payload ceiling in bytes per second: frames per second times
    /// payload bytes per frame. Benchmarks divide a measured throughput by this.
    pub fn payload_ceiling(&self, bitrate: u32, load_cap: f64, stuffing: Stuffing) -> f64 {
        self.frames_per_second(bitrate, load_cap, stuffing) * f64::from(self.payload.min(self.len))
    }
}

/// Mean exact length in bits of `frames` (stuff bits counted on each frame's content), or
/// `None` for no frame.
pub fn mean_frame_bits<'a>(frames: impl IntoIterator<Item = &'a CanFrame>) -> Option<f64> {
    let (count, bits) = frames.into_iter().fold((0u64, 0u64), |(n, b), f| {
        (n + 1, b + u64::from(frame_bits(f)))
    });
    (count > 0).then(|| bits as f64 / count as f64)
}

/// The exact payload ceiling of a given sequence of frames: `payload_bytes` delivered by
/// `frames` on a bus at `bitrate` bit/s restricted to `load_cap` (0.0 to 1.0) of its
/// time, in bytes per second. Zero when the frames carry no bit.
pub fn payload_ceiling_of<'a>(
    frames: impl IntoIterator<Item = &'a CanFrame>,
    payload_bytes: u64,
    bitrate: u32,
    load_cap: f64,
) -> f64 {
    let bits: u64 = frames.into_iter().map(|f| u64::from(frame_bits(f))).sum();
    if bits == 0 {
        return 0.0;
    }
    let seconds = bits as f64 / (f64::from(bitrate) * load_cap);
    payload_bytes as f64 / seconds
}

/// The arbitration field of `id` as a number where lower wins arbitration: the bits a
/// node sends from the identifier through RTR, dominant (0) beating recessive (1).
///
/// An 11-bit frame beats a 29-bit frame with the same base identifier because its RTR
/// bit (dominant for a data frame) meets the extended frame's recessive SRR bit.
pub const fn arbitration_key(id: CanId) -> u32 {
    let raw = id.raw();
    if id.is_extended() {
        // base (11) | SRR=1 | IDE=1 | extended (18) | RTR=0
        ((raw >> 18) << 21) | (1 << 20) | (1 << 19) | ((raw & 0x3_FFFF) << 1)
    } else {
        // ID (11) | RTR=0 | IDE=0 | 19 bits no extended frame can win with
        raw << 21
    }
}

/// CRC-15/CAN of a bit sequence (polynomial 0x4599, initial value 0, no reflection).
pub fn crc15(bits: impl IntoIterator<Item = bool>) -> u16 {
    let mut crc: u16 = 0;
    for bit in bits {
        let feedback = bit ^ (crc & 0x4000 != 0);
        crc = (crc << 1) & 0x7FFF;
        if feedback {
            crc ^= CRC15_POLY;
        }
    }
    crc
}

/// Runs the stuffing rule over `bits`, handing every transmitted bit (stuff bits
/// included) to `emit`; returns the number of stuff bits.
fn stuff(bits: impl IntoIterator<Item = bool>, mut emit: impl FnMut(bool)) -> u32 {
    let mut stuffed = 0;
    let mut last = None;
    let mut run = 0u32;
    for bit in bits {
        emit(bit);
        if Some(bit) == last {
            run += 1;
        } else {
            last = Some(bit);
            run = 1;
        }
        if run == 5 {
            // The complement follows, and it starts the next run.
            emit(!bit);
            stuffed += 1;
            last = Some(!bit);
            run = 1;
        }
    }
    stuffed
}

/// Stuff bits needed by `bits`: one after every five equal bits, the stuff bit itself
/// counting toward the next run.
pub fn count_stuff_bits(bits: impl IntoIterator<Item = bool>) -> u32 {
    stuff(bits, |_| {})
}

#[cfg(test)]
mod tests;
