//! The four ISO-TP frame types (protocol data units) of classic CAN, normal addressing.
//!
//! | type | byte 0 | then |
//! |---|---|---|
//! | single | `0L` (L = 1..7 bytes) | the data |
//! | first | `1L LL` (12-bit length 8..4095) | 6 data bytes |
//! | first, escaped | `10 00` + 32-bit length (> 4095) | 2 data bytes |
//! | consecutive | `2N` (N = sequence number 0..F) | up to 7 data bytes |
//! | flow control | `3S` (S = status), block size, STmin | - |

use super::StMin;
use super::config::Padding;
use bmsfw_plugin_api::{CanFrame, CanId};

/// Payload bytes of a single frame at most.
pub const SINGLE_FRAME_MAX: usize = 7;
/// Payload bytes of a consecutive frame at most.
pub const CONSECUTIVE_FRAME_MAX: usize = 7;
/// Largest length a first frame's 12-bit field can carry; longer messages use the 32-bit
/// escape.
pub const FIRST_FRAME_12BIT_MAX: u32 = 0xFFF;

/// The flow status of a flow-control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowStatus {
    /// 0: continue to send.
    ContinueToSend,
    /// 1: wait, a new flow-control frame follows.
    Wait,
    /// 2: overflow, the receiver cannot take the message; the sender aborts.
    Overflow,
    /// 3..F: reserved; a sender aborts on it.
    Reserved(u8),
}

impl FlowStatus {
    fn from_nibble(n: u8) -> FlowStatus {
        match n {
            0 => FlowStatus::ContinueToSend,
            1 => FlowStatus::Wait,
            2 => FlowStatus::Overflow,
            other => FlowStatus::Reserved(other),
        }
    }

    fn nibble(self) -> u8 {
        match self {
            FlowStatus::ContinueToSend => 0,
            FlowStatus::Wait => 1,
            FlowStatus::Overflow => 2,
            FlowStatus::Reserved(n) => n & 0x0F,
        }
    }
}

/// One parsed ISO-TP frame, borrowing its data from the CAN frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu<'a> {
    /// A whole message of up to 7 bytes.
    Single {
        /// The message.
        data: &'a [u8],
    },
    /// The start of a segmented message.
    First {
        /// The message's total length.
        total_len: u32,
        /// The first bytes of the message.
        data: &'a [u8],
    },
    /// A continuation of a segmented message.
    Consecutive {
        /// Sequence number, 0 to 15.
        sequence: u8,
        /// Up to 7 bytes of the message; the receiver ignores any padding past the
        /// message's end.
        data: &'a [u8],
    },
    /// The receiver's pacing instructions.
    FlowControl {
        /// Continue, wait or overflow.
        status: FlowStatus,
        /// Consecutive frames before the next flow control; 0 means no further flow control.
        block_size: u8,
        /// Separation time between consecutive frames.
        st_min: StMin,
    },
}

/// Why a CAN frame is not a valid ISO-TP frame. Receivers ignore such frames, as the
/// standard says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The frame has no data bytes.
    #[error("empty frame")]
    Empty,
    /// The protocol-control nibble of byte 0 is not 0 to 3.
    #[error("byte 0: frame type {0:#X} is not single, first, consecutive or flow control")]
    UnknownType(u8),
    /// A single frame's length is 0 or does not fit the frame.
    #[error("byte 0: single-frame length {len} does not fit a {dlc}-byte frame")]
    BadSingleLength {
        /// The length in the frame.
        len: u8,
        /// The frame's data length.
        dlc: usize,
    },
    /// A first frame is shorter than 8 bytes.
    #[error("first frame has {0} bytes, classic CAN first frames have 8")]
    ShortFirstFrame(usize),
    /// A first frame announces a length a single frame should have carried, or uses the
    /// 32-bit escape for a length that fits in 12 bits.
    #[error("first frame announces {0} bytes, which is not a valid segmented length")]
    BadFirstLength(u32),
    /// A flow-control frame is shorter than 3 bytes.
    #[error("flow-control frame has {0} bytes, needs 3")]
    ShortFlowControl(usize),
}

impl<'a> Pdu<'a> {
    /// Parses the data of a CAN frame.
    pub fn parse(data: &'a [u8]) -> Result<Pdu<'a>, PduError> {
        let Some(&b0) = data.first() else {
            return Err(PduError::Empty);
        };
        match b0 >> 4 {
            0 => {
                let len = b0 & 0x0F;
                if len == 0 || usize::from(len) > SINGLE_FRAME_MAX || usize::from(len) >= data.len()
                {
                    return Err(PduError::BadSingleLength {
                        len,
                        dlc: data.len(),
                    });
                }
                Ok(Pdu::Single {
                    data: &data[1..=usize::from(len)],
                })
            }
            1 => {
                if data.len() < 8 {
                    return Err(PduError::ShortFirstFrame(data.len()));
                }
                let short = (u32::from(b0 & 0x0F) << 8) | u32::from(data[1]);
                if short != 0 {
                    if short <= SINGLE_FRAME_MAX as u32 {
                        return Err(PduError::BadFirstLength(short));
                    }
                    return Ok(Pdu::First {
                        total_len: short,
                        data: &data[2..8],
                    });
                }
                let long = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
                if long <= FIRST_FRAME_12BIT_MAX {
                    return Err(PduError::BadFirstLength(long));
                }
                Ok(Pdu::First {
                    total_len: long,
                    data: &data[6..8],
                })
            }
            2 => Ok(Pdu::Consecutive {
                sequence: b0 & 0x0F,
                data: &data[1..],
            }),
            3 => {
                if data.len() < 3 {
                    return Err(PduError::ShortFlowControl(data.len()));
                }
                Ok(Pdu::FlowControl {
                    status: FlowStatus::from_nibble(b0 & 0x0F),
                    block_size: data[1],
                    st_min: StMin::from_byte(data[2]),
                })
            }
            other => Err(PduError::UnknownType(other)),
        }
    }

    /// Builds the CAN frame for this PDU on `id`, padded as `padding` says.
    ///
    /// Returns `None` when the PDU does not fit a classic frame (single data over 7 bytes,
    /// first-frame data of the wrong size for its length form, consecutive data over 7
    /// bytes).
    pub fn to_frame(&self, id: CanId, padding: Padding) -> Option<CanFrame> {
        let mut buf = [0u8; 8];
        let len = match *self {
            Pdu::Single { data } => {
                if data.is_empty() || data.len() > SINGLE_FRAME_MAX {
                    return None;
                }
                buf[0] = data.len() as u8;
                buf[1..=data.len()].copy_from_slice(data);
                1 + data.len()
            }
            Pdu::First { total_len, data } => {
                if total_len <= FIRST_FRAME_12BIT_MAX {
                    if data.len() != 6 || total_len <= SINGLE_FRAME_MAX as u32 {
                        return None;
                    }
                    buf[0] = 0x10 | (total_len >> 8) as u8;
                    buf[1] = total_len as u8;
                    buf[2..8].copy_from_slice(data);
                } else {
                    if data.len() != 2 {
                        return None;
                    }
                    buf[0] = 0x10;
                    buf[2..6].copy_from_slice(&total_len.to_be_bytes());
                    buf[6..8].copy_from_slice(data);
                }
                8
            }
            Pdu::Consecutive { sequence, data } => {
                if data.len() > CONSECUTIVE_FRAME_MAX {
                    return None;
                }
                buf[0] = 0x20 | (sequence & 0x0F);
                buf[1..=data.len()].copy_from_slice(data);
                1 + data.len()
            }
            Pdu::FlowControl {
                status,
                block_size,
                st_min,
            } => {
                buf[0] = 0x30 | status.nibble();
                buf[1] = block_size;
                buf[2] = st_min.to_byte();
                3
            }
        };
        match padding {
            Padding::None => CanFrame::new(id, &buf[..len]),
            Padding::Fill(fill) => {
                buf[len..].fill(fill);
                CanFrame::new(id, &buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> CanId {
        CanId::standard(0x7E0).unwrap()
    }

    #[test]
    fn single_frames() {
        let f = Pdu::Single {
            data: &[0x10, 0x02],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x02, 0x10, 0x02]);
        let padded = Pdu::Single {
            data: &[0x10, 0x02],
        }
        .to_frame(id(), Padding::Fill(0xCC))
        .unwrap();
        assert_eq!(
            padded.data(),
            &[0x02, 0x10, 0x02, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]
        );
        assert_eq!(
            Pdu::parse(padded.data()),
            Ok(Pdu::Single {
                data: &[0x10, 0x02]
            })
        );
        assert_eq!(
            Pdu::parse(&[0x07, 1, 2, 3, 4, 5, 6, 7]),
            Ok(Pdu::Single {
                data: &[1, 2, 3, 4, 5, 6, 7]
            })
        );
        assert_eq!(
            Pdu::parse(&[0x00, 1]),
            Err(PduError::BadSingleLength { len: 0, dlc: 2 })
        );
        assert_eq!(
            Pdu::parse(&[0x03, 1, 2]),
            Err(PduError::BadSingleLength { len: 3, dlc: 3 })
        );
        assert_eq!(
            Pdu::parse(&[0x08, 1, 2, 3, 4, 5, 6, 7]),
            Err(PduError::BadSingleLength { len: 8, dlc: 8 })
        );
        assert!(
            Pdu::Single { data: &[0; 8] }
                .to_frame(id(), Padding::None)
                .is_none()
        );
        assert!(
            Pdu::Single { data: &[] }
                .to_frame(id(), Padding::None)
                .is_none()
        );
    }

    #[test]
    fn first_frames_with_12_bit_and_escaped_lengths() {
        let f = Pdu::First {
            total_len: 0xABC,
            data: &[1, 2, 3, 4, 5, 6],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x1A, 0xBC, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            Pdu::parse(f.data()),
            Ok(Pdu::First {
                total_len: 0xABC,
                data: &[1, 2, 3, 4, 5, 6]
            })
        );
        let e = Pdu::First {
            total_len: 0x0102_0304,
            data: &[9, 8],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(e.data(), &[0x10, 0x00, 0x01, 0x02, 0x03, 0x04, 9, 8]);
        assert_eq!(
            Pdu::parse(e.data()),
            Ok(Pdu::First {
                total_len: 0x0102_0304,
                data: &[9, 8]
            })
        );
        assert_eq!(
            Pdu::parse(&[0x10, 0x00, 0, 0, 0x0F, 0xFF, 0, 0]),
            Err(PduError::BadFirstLength(0xFFF)),
            "the escape is only for lengths over 4095"
        );
        assert_eq!(
            Pdu::parse(&[0x10, 0x07, 1, 2, 3, 4, 5, 6]),
            Err(PduError::BadFirstLength(7))
        );
        assert_eq!(
            Pdu::parse(&[0x10, 0x08, 1, 2, 3, 4, 5]),
            Err(PduError::ShortFirstFrame(7))
        );
    }

    #[test]
    fn consecutive_and_flow_control_frames() {
        let c = Pdu::Consecutive {
            sequence: 0xF,
            data: &[1, 2],
        }
        .to_frame(id(), Padding::Fill(0x55))
        .unwrap();
        assert_eq!(c.data(), &[0x2F, 1, 2, 0x55, 0x55, 0x55, 0x55, 0x55]);
        let fc = Pdu::FlowControl {
            status: FlowStatus::Wait,
            block_size: 8,
            st_min: StMin::from_byte(0xF3),
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(fc.data(), &[0x31, 8, 0xF3]);
        assert_eq!(
            Pdu::parse(&[0x32, 0, 0]),
            Ok(Pdu::FlowControl {
                status: FlowStatus::Overflow,
                block_size: 0,
                st_min: StMin::ZERO
            })
        );
        assert_eq!(
            Pdu::parse(&[0x37, 0, 0]),
            Ok(Pdu::FlowControl {
                status: FlowStatus::Reserved(7),
                block_size: 0,
                st_min: StMin::ZERO
            })
        );
        assert_eq!(Pdu::parse(&[0x30, 0]), Err(PduError::ShortFlowControl(2)));
        assert_eq!(Pdu::parse(&[0x40]), Err(PduError::UnknownType(4)));
        assert_eq!(Pdu::parse(&[]), Err(PduError::Empty));
    }

    #[test]
    fn pdus_that_do_not_fit_a_classic_frame_build_none() {
        let cases = [
            Pdu::First {
                total_len: 0xABC,
                data: &[1, 2, 3, 4, 5],
            },
            Pdu::First {
                total_len: 0xABC,
                data: &[1, 2, 3, 4, 5, 6, 7],
            },
            Pdu::First {
                total_len: 7,
                data: &[1, 2, 3, 4, 5, 6],
            },
            Pdu::First {
                total_len: 0x1000,
                data: &[1, 2, 3],
            },
            Pdu::First {
                total_len: 0x1000,
                data: &[1],
            },
            Pdu::Consecutive {
                sequence: 1,
                data: &[0; 8],
            },
        ];
        for pdu in cases {
            for padding in [Padding::None, Padding::Fill(0xCC)] {
                assert_eq!(pdu.to_frame(id(), padding), None, "{pdu:?}");
            }
        }
        // The largest of each still fits.
        let f = Pdu::Consecutive {
            sequence: 3,
            data: &[1, 2, 3, 4, 5, 6, 7],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x23, 1, 2, 3, 4, 5, 6, 7]);
        let f = Pdu::First {
            total_len: 8,
            data: &[1, 2, 3, 4, 5, 6],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x10, 0x08, 1, 2, 3, 4, 5, 6]);
        let f = Pdu::First {
            total_len: 0xFFF,
            data: &[1, 2, 3, 4, 5, 6],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x1F, 0xFF, 1, 2, 3, 4, 5, 6]);
        let f = Pdu::First {
            total_len: 0x1000,
            data: &[1, 2],
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 1, 2]);
    }

    #[test]
    fn every_flow_status_round_trips_through_its_nibble() {
        for nibble in 0u8..16 {
            let status = FlowStatus::from_nibble(nibble);
            let want = match nibble {
                0 => FlowStatus::ContinueToSend,
                1 => FlowStatus::Wait,
                2 => FlowStatus::Overflow,
                n => FlowStatus::Reserved(n),
            };
            assert_eq!(status, want);
            let f = Pdu::FlowControl {
                status,
                block_size: 0x20,
                st_min: StMin::from_byte(0x05),
            }
            .to_frame(id(), Padding::Fill(0xAA))
            .unwrap();
            assert_eq!(
                f.data(),
                &[0x30 | nibble, 0x20, 0x05, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA]
            );
            assert_eq!(
                Pdu::parse(f.data()),
                Ok(Pdu::FlowControl {
                    status,
                    block_size: 0x20,
                    st_min: StMin::from_byte(0x05)
                })
            );
        }
        // Only the low nibble of a reserved status fits the frame.
        let f = Pdu::FlowControl {
            status: FlowStatus::Reserved(0x17),
            block_size: 0,
            st_min: StMin::ZERO,
        }
        .to_frame(id(), Padding::None)
        .unwrap();
        assert_eq!(f.data(), &[0x37, 0, 0]);
    }

    #[test]
    fn a_single_frame_length_over_7_is_refused_even_in_a_longer_slice() {
        for len in 8u8..=15 {
            let mut data = vec![len];
            data.extend(1..=16u8);
            assert_eq!(
                Pdu::parse(&data),
                Err(PduError::BadSingleLength { len, dlc: 17 })
            );
        }
        assert_eq!(
            Pdu::parse(&[0x01, 0xAB]),
            Ok(Pdu::Single { data: &[0xAB] }),
            "the shortest single frame"
        );
        assert_eq!(
            Pdu::parse(&[0x21]),
            Ok(Pdu::Consecutive {
                sequence: 1,
                data: &[]
            }),
            "a consecutive frame without data is the receiver's to judge"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_never_reads_past_the_frame(data in prop::collection::vec(any::<u8>(), 0..=8)) {
            match Pdu::parse(&data) {
                Ok(Pdu::Single { data: d }) => prop_assert!(d.len() < data.len()),
                Ok(Pdu::First { total_len, data: d }) => {
                    prop_assert_eq!(data.len(), 8);
                    prop_assert!(total_len > 7);
                    prop_assert_eq!(d.len(), if total_len > 0xFFF { 2 } else { 6 });
                }
                _ => {}
            }
        }

        #[test]
        fn frames_built_parse_back(seq in 0u8..16, payload in prop::collection::vec(any::<u8>(), 1..=7), fill in any::<u8>()) {
            for padding in [Padding::None, Padding::Fill(fill)] {
                let sf = Pdu::Single { data: &payload }.to_frame(id(), padding).unwrap();
                prop_assert_eq!(Pdu::parse(sf.data()), Ok(Pdu::Single { data: &payload }));
                let cf = Pdu::Consecutive { sequence: seq, data: &payload }.to_frame(id(), padding).unwrap();
                match Pdu::parse(cf.data()) {
                    Ok(Pdu::Consecutive { sequence, data }) => {
                        prop_assert_eq!(sequence, seq);
                        prop_assert_eq!(&data[..payload.len()], &payload[..]);
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
