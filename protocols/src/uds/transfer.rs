//! What a `TransferData` acknowledgement carries, and how a client sizes its blocks.

use super::response::{POSITIVE_OFFSET, ResponseError};
use super::service;

/// What a server appends to its positive response to `TransferData` (`76 <counter>`).
///
/// ISO 14229 leaves the transferResponseParameterRecord to the manufacturer. Client and
/// server must agree on it: it is part of a vendor's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransferAck {
    /// Nothing: `76 <counter>`. A client reading this mode ignores any bytes after the
    /// counter.
    #[default]
    Counter,
    /// The number of download bytes the server holds once the block is written, 4 bytes
    /// big-endian: `76 <counter> <received>`. A repeated block (same counter) is answered
    /// with the count as it is, so a client that repeated a block after a lost response
    /// learns which bytes the server kept, and may repeat a block shorter than the
    /// original (see [`BlockSizing::Adaptive`]).
    CounterAndBytesReceived,
}

/// A `TransferData` acknowledgement as a client read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferAckRecord {
    /// The block sequence counter acknowledged.
    pub counter: u8,
    /// The bytes the server holds, in [`TransferAck::CounterAndBytesReceived`] mode.
    pub received: Option<u64>,
}

impl TransferAck {
    /// Bytes of the record after the counter.
    const RECEIVED_LEN: usize = 4;

    /// The whole positive response acknowledging block `counter` with `received` bytes
    /// of the download held (counts above `u32::MAX` are sent as `u32::MAX`).
    pub fn response(self, counter: u8, received: u64) -> Vec<u8> {
        let mut out = vec![service::TRANSFER_DATA + POSITIVE_OFFSET, counter];
        if self == TransferAck::CounterAndBytesReceived {
            let received = u32::try_from(received).unwrap_or(u32::MAX);
            out.extend_from_slice(&received.to_be_bytes());
        }
        out
    }

    /// Reads the data of a positive `TransferData` response (the bytes after `76`).
    pub fn parse(self, data: &[u8]) -> Result<TransferAckRecord, ResponseError> {
        let needed = match self {
            TransferAck::Counter => 1,
            TransferAck::CounterAndBytesReceived => 1 + Self::RECEIVED_LEN,
        };
        if data.len() < needed {
            return Err(ResponseError::Truncated {
                service: service::TRANSFER_DATA,
                needed: needed + 1,
                len: data.len() + 1,
            });
        }
        let received = match self {
            TransferAck::Counter => None,
            TransferAck::CounterAndBytesReceived => Some(u64::from(u32::from_be_bytes([
                data[1], data[2], data[3], data[4],
            ]))),
        };
        Ok(TransferAckRecord {
            counter: data[0],
            received,
        })
    }
}

/// How long a client makes its `TransferData` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockSizing {
    /// Every block as long as the server's maxNumberOfBlockLength and the client's
    /// `max_block_len` allow; a block is repeated unchanged after a lost response.
    #[default]
    Fixed,
    /// Blocks start as long as allowed. A block whose response does not come is repeated
    /// at half its length (never below `min_data_len` data bytes), without counting as a
    /// retry while it can still shrink; later blocks keep the shorter length, and after
    /// `grow_after` blocks in a row acknowledged at their first attempt the length
    /// doubles again, up to the maximum. On a lossy bus a long ISO-TP message loses one
    /// of its frames almost surely (ISO-TP never retransmits), so shorter blocks are what
    /// gets through. Needs [`TransferAck::CounterAndBytesReceived`]: only the server's
    /// count makes a shorter repeat of a block it may already hold safe.
    Adaptive {
        /// The shortest block, in data bytes (at least 1).
        min_data_len: usize,
        /// First-attempt acknowledgements in a row before the length doubles (at least 1).
        grow_after: u16,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_round_trip_in_both_modes() {
        let plain = TransferAck::Counter.response(0x07, 1234);
        assert_eq!(plain, vec![0x76, 0x07]);
        assert_eq!(
            TransferAck::Counter.parse(&plain[1..]).unwrap(),
            TransferAckRecord {
                counter: 7,
                received: None
            }
        );
        let counted = TransferAck::CounterAndBytesReceived.response(0xFF, 0x0001_0203);
        assert_eq!(counted, vec![0x76, 0xFF, 0x00, 0x01, 0x02, 0x03]);
        assert_eq!(
            TransferAck::CounterAndBytesReceived
                .parse(&counted[1..])
                .unwrap(),
            TransferAckRecord {
                counter: 0xFF,
                received: Some(0x0001_0203)
            }
        );
        assert_eq!(
            TransferAck::CounterAndBytesReceived.parse(&[0x01, 0x00, 0x00]),
            Err(ResponseError::Truncated {
                service: 0x36,
                needed: 6,
                len: 4
            })
        );
        assert!(TransferAck::Counter.parse(&[]).is_err());
        // Counts beyond the 32-bit field saturate rather than wrap.
        assert_eq!(
            TransferAck::CounterAndBytesReceived.response(1, u64::MAX)[2..],
            [0xFF; 4]
        );
    }
}
