//! Firmware bytes inside a command: base64 text, decoded only when its length allows.

use crate::limits::MAX_CHUNK_DATA;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest base64 text of a chunk of [`MAX_CHUNK_DATA`] bytes.
pub const MAX_CHUNK_TEXT: usize = MAX_CHUNK_DATA.div_ceil(3) * 4;

/// The bytes of one chunk, 1 to [`MAX_CHUNK_DATA`], carried as standard padded base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChunkData(Vec<u8>);

impl ChunkData {
    /// Wraps `bytes`; refuses an empty chunk or one above [`MAX_CHUNK_DATA`].
    pub fn new(bytes: Vec<u8>) -> Result<ChunkData, String> {
        if bytes.is_empty() || bytes.len() > MAX_CHUNK_DATA {
            return Err(format!(
                "a chunk holds 1 to {MAX_CHUNK_DATA} bytes, this one {}",
                bytes.len()
            ));
        }
        Ok(ChunkData(bytes))
    }

    /// Decodes base64 text; the length is checked before anything is decoded.
    pub fn decode(text: &str) -> Result<ChunkData, String> {
        if text.len() > MAX_CHUNK_TEXT {
            return Err(format!(
                "{} characters of base64, at most {MAX_CHUNK_TEXT} (a chunk of {MAX_CHUNK_DATA} bytes)",
                text.len()
            ));
        }
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("not valid base64: {e}"))?;
        ChunkData::new(bytes)
    }

    /// The base64 text.
    pub fn encode(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl TryFrom<String> for ChunkData {
    type Error = String;
    fn try_from(s: String) -> Result<ChunkData, String> {
        ChunkData::decode(&s)
    }
}

impl From<ChunkData> for String {
    fn from(d: ChunkData) -> String {
        d.encode()
    }
}

impl fmt::Debug for ChunkData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkData({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_and_errors() {
        assert!(ChunkData::new(Vec::new()).is_err());
        assert!(ChunkData::new(vec![0; MAX_CHUNK_DATA]).is_ok());
        assert!(ChunkData::new(vec![0; MAX_CHUNK_DATA + 1]).is_err());
        assert!(ChunkData::decode("AAEC").is_ok());
        assert!(ChunkData::decode("!!!!").unwrap_err().contains("base64"));
        assert!(ChunkData::decode("").unwrap_err().contains("1 to"));
        let long = "A".repeat(MAX_CHUNK_TEXT + 4);
        assert!(ChunkData::decode(&long).unwrap_err().contains("characters"));
        let max = ChunkData::new(vec![7; MAX_CHUNK_DATA]).unwrap();
        assert_eq!(max.encode().len(), MAX_CHUNK_TEXT);
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..2048)) {
            let d = ChunkData::new(bytes.clone()).unwrap();
            let back = ChunkData::decode(&d.encode()).unwrap();
            prop_assert_eq!(back.bytes(), &bytes[..]);
        }

        #[test]
        fn decoding_never_panics(s in "\\PC{0,200}") {
            let _ = ChunkData::decode(&s);
        }
    }
}
