//! Which chunks of an upload have arrived, and how that survives a restart.

use crate::staging::announcement::UploadAnnouncement;
use serde::{Deserialize, Serialize};

/// One bit per chunk: set once the chunk's bytes are durably on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBitmap {
    bits: Vec<u8>,
    count: u32,
}

impl ChunkBitmap {
    /// A bitmap of `count` chunks, none received.
    pub fn new(count: u32) -> ChunkBitmap {
        ChunkBitmap {
            bits: vec![0; (count as usize).div_ceil(8)],
            count,
        }
    }

    /// Rebuilds a bitmap of `count` chunks from its bytes; `None` when the length is wrong or
    /// bits beyond `count` are set (a damaged or foreign state file).
    pub fn from_bytes(bits: Vec<u8>, count: u32) -> Option<ChunkBitmap> {
        if bits.len() != (count as usize).div_ceil(8) {
            return None;
        }
        let map = ChunkBitmap { bits, count };
        let tail_clean = (count..map.bits.len() as u32 * 8).all(|i| !map.bit(i));
        tail_clean.then_some(map)
    }

    /// The raw bytes (chunk `i` is bit `i % 8` of byte `i / 8`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of chunks.
    pub fn count(&self) -> u32 {
        self.count
    }

    fn bit(&self, i: u32) -> bool {
        self.bits
            .get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Whether chunk `index` has arrived (false beyond the end).
    pub fn contains(&self, index: u32) -> bool {
        index < self.count && self.bit(index)
    }

    /// Marks chunk `index` received; returns whether it was new. Ignores indices beyond the end.
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.count || self.bit(index) {
            return false;
        }
        self.bits[(index / 8) as usize] |= 1 << (index % 8);
        true
    }

    /// Marks chunk `index` missing again.
    pub fn remove(&mut self, index: u32) {
        if index < self.count {
            self.bits[(index / 8) as usize] &= !(1 << (index % 8));
        }
    }

    /// The first chunk that has not arrived, or `None` when all have.
    pub fn first_missing(&self) -> Option<u32> {
        let byte = self.bits.iter().position(|b| *b != 0xFF)?;
        let i = byte as u32 * 8 + self.bits[byte].trailing_ones();
        (i < self.count).then_some(i)
    }

    /// Number of chunks that have arrived.
    pub fn received(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every chunk has arrived.
    pub fn is_complete(&self) -> bool {
        self.received() == self.count
    }
}

/// Format version of the persisted upload state.
pub(crate) const STATE_FORMAT: u32 = 1;

/// The persisted state of a partial upload (`incoming/<sha256>.upload`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UploadState {
    pub(crate) format: u32,
    pub(crate) announcement: UploadAnnouncement,
    #[serde(with = "hex")]
    pub(crate) received: Vec<u8>,
}

impl UploadState {
    pub(crate) fn encode(announcement: &UploadAnnouncement, bitmap: &ChunkBitmap) -> Vec<u8> {
        let state = UploadState {
            format: STATE_FORMAT,
            announcement: announcement.clone(),
            received: bitmap.as_bytes().to_vec(),
        };
        // Serializing plain data into memory cannot fail.
        serde_json::to_vec(&state).unwrap_or_default()
    }

    /// Parses a state file; `Err` names what was wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(UploadAnnouncement, ChunkBitmap), String> {
        let state: UploadState =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if state.format != STATE_FORMAT {
            return Err(format!("unknown format {}", state.format));
        }
        let count = state.announcement.chunk_count();
        let bitmap = ChunkBitmap::from_bytes(state.received, count)
            .ok_or_else(|| format!("bitmap does not fit {count} chunks"))?;
        Ok((state.announcement, bitmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::digest::Sha256Digest;
    use proptest::prelude::*;

    #[test]
    fn first_missing_and_counts() {
        let mut m = ChunkBitmap::new(10);
        assert_eq!(m.first_missing(), Some(0));
        for i in [0, 1, 2, 4] {
            assert!(m.insert(i));
        }
        assert!(!m.insert(4));
        assert!(!m.insert(10));
        assert_eq!(m.first_missing(), Some(3));
        assert_eq!(m.received(), 4);
        for i in 0..10 {
            m.insert(i);
        }
        assert!(m.is_complete());
        assert_eq!(m.first_missing(), None);
        m.remove(9);
        assert_eq!(m.first_missing(), Some(9));
    }

    #[test]
    fn from_bytes_refuses_wrong_length_and_stray_bits() {
        assert!(ChunkBitmap::from_bytes(vec![0xFF], 8).is_some());
        assert!(ChunkBitmap::from_bytes(vec![0xFF], 7).is_none());
        assert!(ChunkBitmap::from_bytes(vec![0x7F], 7).is_some());
        assert!(ChunkBitmap::from_bytes(vec![0, 0], 8).is_none());
    }

    #[test]
    fn state_round_trips_and_refuses_mismatched_bitmaps() {
        let ann = UploadAnnouncement::new("a.bin".into(), 100, 10, Sha256Digest([1; 32])).unwrap();
        let mut m = ChunkBitmap::new(10);
        m.insert(3);
        let bytes = UploadState::encode(&ann, &m);
        let (a2, m2) = UploadState::decode(&bytes).unwrap();
        assert_eq!((a2, m2), (ann.clone(), m));
        let wrong = String::from_utf8(bytes)
            .unwrap()
            .replace("\"received\":\"0800\"", "\"received\":\"08\"");
        assert!(
            UploadState::decode(wrong.as_bytes())
                .unwrap_err()
                .contains("bitmap")
        );
    }

    /// A state file whose bitmap has bits set past the chunk count is damaged: it is
    /// refused, so an upload never counts chunks it does not have.
    #[test]
    fn bits_past_the_end_are_refused_in_every_byte_of_the_tail() {
        // 10 chunks in 2 bytes: bits 10 to 15 of the second byte must be clear.
        assert!(ChunkBitmap::from_bytes(vec![0xFF, 0x03], 10).is_some());
        for stray in 2..8 {
            let bytes = vec![0xFF, 0x03 | (1 << stray)];
            assert!(
                ChunkBitmap::from_bytes(bytes, 10).is_none(),
                "bit {}",
                8 + stray
            );
        }
        // 17 chunks in 3 bytes: a stray bit in the last byte.
        assert!(ChunkBitmap::from_bytes(vec![0, 0, 0x80], 17).is_none());
        assert!(ChunkBitmap::from_bytes(vec![0, 0, 0x01], 17).is_some());
        let map = ChunkBitmap::from_bytes(vec![0x05, 0x01], 9).unwrap();
        assert_eq!(map.count(), 9);
        assert_eq!(map.received(), 3);
        assert!(map.contains(0) && !map.contains(1) && map.contains(2) && map.contains(8));
        assert!(!map.contains(9), "nothing past the end");
    }

    /// Rolling back chunk `i` (after its state could not be written) clears exactly bit
    /// `i`; an index past the end changes nothing.
    #[test]
    fn remove_clears_exactly_one_chunk() {
        let mut m = ChunkBitmap::new(16);
        for i in 0..16 {
            assert!(m.insert(i));
        }
        m.remove(12);
        assert_eq!(m.as_bytes(), &[0xFF, 0xEF]);
        assert_eq!(m.first_missing(), Some(12));
        assert_eq!(m.received(), 15);
        assert!(!m.is_complete());
        m.remove(3);
        assert_eq!(m.as_bytes(), &[0xF7, 0xEF]);
        m.remove(16);
        m.remove(u32::MAX);
        assert_eq!(m.as_bytes(), &[0xF7, 0xEF]);
        // Inserting it again makes it new again.
        assert!(m.insert(12));
        assert!(!m.insert(12));
        assert_eq!(m.as_bytes(), &[0xF7, 0xFF]);
    }

    /// A bitmap whose count is not a multiple of 8 is complete once its last chunk is in,
    /// and the last partial byte's missing chunk is found.
    #[test]
    fn a_partial_last_byte_completes_and_reports_its_gaps() {
        let mut m = ChunkBitmap::new(11);
        for i in 0..10 {
            m.insert(i);
        }
        assert_eq!(m.first_missing(), Some(10));
        assert!(!m.is_complete());
        assert!(m.insert(10));
        assert!(m.is_complete());
        assert_eq!(m.first_missing(), None);
        assert_eq!(m.as_bytes(), &[0xFF, 0x07]);
        let empty = ChunkBitmap::new(0);
        assert!(empty.as_bytes().is_empty());
        assert!(empty.is_complete());
        assert_eq!(empty.first_missing(), None);
    }

    proptest! {
        #[test]
        fn decoding_hostile_state_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = UploadState::decode(&bytes);
        }

        #[test]
        fn first_missing_is_the_lowest_absent_index(
            count in 1u32..200,
            present in proptest::collection::btree_set(0u32..200, 0..200),
        ) {
            let mut m = ChunkBitmap::new(count);
            for i in &present { m.insert(*i); }
            let expected = (0..count).find(|i| !present.contains(i));
            prop_assert_eq!(m.first_missing(), expected);
            prop_assert_eq!(m.received() as usize, present.iter().filter(|i| **i < count).count());
        }
    }
}
