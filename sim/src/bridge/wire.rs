//! The bridge's records: fixed 16-byte records in both directions of a Unix stream.
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | the kind: 1 hello, 2 frame, 3 error frame, 4 controller state, 5 credit |
//! | 1..5 | hello: the bit rate; frame: the identifier (bit 31: 29-bit format); error: the class bits |
//! | 5 | frame: the data length (0 to 8); state: the state (0 to 4) |
//! | 6..14 | frame: the data; error: the error's details |
//! | 14..16 | hello and credit: a frame count |
//!
//! Every other byte is zero. A record that breaks any rule is refused with the byte and
//! the rule it broke.

use bmsfw_can::{CanFrame, CanId, ControllerState, ErrorFrame};

/// The length of every record.
pub const RECORD_LEN: usize = 16;

const HELLO: u8 = 1;
const FRAME: u8 = 2;
const ERROR: u8 = 3;
const STATE: u8 = 4;
const CREDIT: u8 = 5;

/// Bit 31 of a frame's identifier field: the 29-bit format.
const EXTENDED: u32 = 1 << 31;

/// One record of the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The site's greeting, its first record: the bus's bit rate, and how many frames the
    /// node may send before it waits for a credit.
    Hello {
        /// The bus's bit rate in bit/s.
        bitrate: u32,
        /// Frames the node may send at once.
        credit: u16,
    },
    /// A data frame: sent by the node, or carried by the bus to it.
    Frame(CanFrame),
    /// An error frame the node's controller reported.
    Error(ErrorFrame),
    /// The node's controller changed state.
    State(ControllerState),
    /// The site queued this many of the node's frames: it may send as many more.
    Credit(u16),
}

/// A record that breaks the format: which byte, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge record, byte {byte}: {reason}")]
pub struct RecordError {
    /// The offending byte's offset in the record.
    pub byte: usize,
    /// What was wrong.
    pub reason: String,
}

fn refuse(byte: usize, reason: impl Into<String>) -> RecordError {
    RecordError {
        byte,
        reason: reason.into(),
    }
}

fn state_code(state: ControllerState) -> u8 {
    match state {
        ControllerState::ErrorActive => 0,
        ControllerState::ErrorWarning => 1,
        ControllerState::ErrorPassive => 2,
        ControllerState::BusOff => 3,
        ControllerState::Stopped => 4,
    }
}

impl Record {
    /// The record's 16 bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        match self {
            Record::Hello { bitrate, credit } => {
                out[0] = HELLO;
                out[1..5].copy_from_slice(&bitrate.to_le_bytes());
                out[14..16].copy_from_slice(&credit.to_le_bytes());
            }
            Record::Frame(frame) => {
                out[0] = FRAME;
                let id = frame.id();
                let word = id.raw() | if id.is_extended() { EXTENDED } else { 0 };
                out[1..5].copy_from_slice(&word.to_le_bytes());
                out[5] = frame.len() as u8;
                out[6..6 + frame.len()].copy_from_slice(frame.data());
            }
            Record::Error(error) => {
                out[0] = ERROR;
                out[1..5].copy_from_slice(&error.class.to_le_bytes());
                out[6..14].copy_from_slice(&error.data);
            }
            Record::State(state) => {
                out[0] = STATE;
                out[5] = state_code(*state);
            }
            Record::Credit(n) => {
                out[0] = CREDIT;
                out[14..16].copy_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// Reads one record, refusing any byte the format does not allow.
    pub fn decode(bytes: &[u8; RECORD_LEN]) -> Result<Record, RecordError> {
        let word = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let count = u16::from_le_bytes([bytes[14], bytes[15]]);
        // The bytes a kind uses; every other must be zero.
        let (record, used): (Record, &[(usize, usize)]) = match bytes[0] {
            HELLO => {
                if word == 0 {
                    return Err(refuse(1, "a bit rate of 0"));
                }
                if count == 0 {
                    return Err(refuse(14, "a credit of 0 frames"));
                }
                (
                    Record::Hello {
                        bitrate: word,
                        credit: count,
                    },
                    &[(1, 5), (14, 16)],
                )
            }
            FRAME => {
                let id = if word & EXTENDED != 0 {
                    CanId::extended(word & !EXTENDED)
                        .ok_or_else(|| refuse(1, "a 29-bit identifier out of range"))?
                } else {
                    u16::try_from(word)
                        .ok()
                        .and_then(CanId::standard)
                        .ok_or_else(|| refuse(1, format!("{word:#x} is no 11-bit identifier")))?
                };
                let len = usize::from(bytes[5]);
                let frame = CanFrame::new(id, bytes.get(6..6 + len).unwrap_or(&[]))
                    .filter(|_| len <= 8)
                    .ok_or_else(|| refuse(5, format!("a data length of {len} (at most 8)")))?;
                (Record::Frame(frame), &[(1, 5), (5, 6), (6, 6 + len)])
            }
            ERROR => {
                if word >> 29 != 0 {
                    return Err(refuse(
                        1,
                        format!("error class {word:#x} has more than 29 bits"),
                    ));
                }
                let mut data = [0u8; 8];
                data.copy_from_slice(&bytes[6..14]);
                (
                    Record::Error(ErrorFrame { class: word, data }),
                    &[(1, 5), (6, 14)],
                )
            }
            STATE => {
                let state = match bytes[5] {
                    0 => ControllerState::ErrorActive,
                    1 => ControllerState::ErrorWarning,
                    2 => ControllerState::ErrorPassive,
                    3 => ControllerState::BusOff,
                    4 => ControllerState::Stopped,
                    other => return Err(refuse(5, format!("no controller state {other}"))),
                };
                (Record::State(state), &[(5, 6)])
            }
            CREDIT => {
                if count == 0 {
                    return Err(refuse(14, "a credit of 0 frames"));
                }
                (Record::Credit(count), &[(14, 16)])
            }
            other => return Err(refuse(0, format!("no record kind {other}"))),
        };
        if let Some(i) = (1..RECORD_LEN)
            .find(|i| bytes[*i] != 0 && !used.iter().any(|(from, to)| (*from..*to).contains(i)))
        {
            return Err(refuse(
                i,
                "a byte this kind of record does not use is not zero",
            ));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(id: CanId, data: &[u8]) -> Record {
        Record::Frame(CanFrame::new(id, data).unwrap())
    }

    #[test]
    fn every_kind_reads_back() {
        for record in [
            Record::Hello {
                bitrate: 500_000,
                credit: 2,
            },
            frame(CanId::standard(0x7E8).unwrap(), &[1, 2, 3]),
            frame(CanId::standard(0).unwrap(), &[]),
            frame(CanId::extended(0x1FFF_FFFF).unwrap(), &[0xFF; 8]),
            Record::Error(ErrorFrame::RX_OVERFLOW),
            Record::Error(ErrorFrame::CRC_ERROR),
            Record::State(ControllerState::ErrorPassive),
            Record::State(ControllerState::Stopped),
            Record::Credit(u16::MAX),
        ] {
            assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        }
    }

    #[test]
    fn a_frame_keeps_its_identifier_format() {
        let bytes = frame(CanId::extended(0x7E8).unwrap(), &[]).encode();
        assert_eq!(bytes[4], 0x80);
        let Record::Frame(f) = Record::decode(&bytes).unwrap() else {
            panic!("not a frame");
        };
        assert!(f.id().is_extended());
        assert_eq!(f.id().raw(), 0x7E8);
    }

    #[test]
    fn broken_records_name_the_byte() {
        let mut bad = frame(CanId::standard(0x100).unwrap(), &[1]).encode();
        bad[5] = 9;
        assert_eq!(Record::decode(&bad).unwrap_err().byte, 5);
        let mut bad = frame(CanId::standard(0x100).unwrap(), &[1]).encode();
        bad[2] = 0x08; // 0x800: past 11 bits
        assert_eq!(Record::decode(&bad).unwrap_err().byte, 1);
        let mut bad = frame(CanId::standard(0x100).unwrap(), &[1]).encode();
        bad[7] = 1; // past the frame's one data byte
        let e = Record::decode(&bad).unwrap_err();
        assert_eq!(e.byte, 7, "{e}");
        let mut bad = Record::Credit(1).encode();
        bad[0] = 9;
        assert!(
            Record::decode(&bad)
                .unwrap_err()
                .to_string()
                .contains("no record kind 9")
        );
        assert_eq!(
            Record::decode(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .byte,
            14
        );
        let mut bad = Record::State(ControllerState::BusOff).encode();
        bad[5] = 5;
        assert_eq!(Record::decode(&bad).unwrap_err().byte, 5);
        let hello = Record::Hello {
            bitrate: 0,
            credit: 1,
        }
        .encode();
        assert_eq!(Record::decode(&hello).unwrap_err().byte, 1);
    }

    proptest! {
        #[test]
        fn any_bytes_read_or_are_refused_and_what_reads_encodes_the_same(bytes in any::<[u8; RECORD_LEN]>()) {
            if let Ok(record) = Record::decode(&bytes) {
                prop_assert_eq!(record.encode(), bytes);
            }
        }
    }
}
