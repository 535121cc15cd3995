//! What the VRM link announces before the first chunk of a package.

use crate::staging::digest::Sha256Digest;
use crate::staging::error::StagingError;
use serde::{Deserialize, Serialize};

/// Largest chunk the ingest accepts.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Most chunks one package may have (bounds the received-chunk bitmap to 8 KiB).
pub const MAX_CHUNKS: u32 = 65_536;
/// Longest file name kept, in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// A package on its way to the GX: the file name the installer chose, the exact size, the
/// fixed chunk size of the transfer and the SHA-256 the portal computed.
///
/// Constructed only through [`UploadAnnouncement::new`] (deserializing runs the same
/// checks), so every value in circulation is within bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAnnouncement")]
pub struct UploadAnnouncement {
    file_name: String,
    size: u64,
    chunk_size: u32,
    sha256: Sha256Digest,
}

#[derive(Deserialize)]
struct RawAnnouncement {
    file_name: String,
    size: u64,
    chunk_size: u32,
    sha256: Sha256Digest,
}

impl TryFrom<RawAnnouncement> for UploadAnnouncement {
    type Error = StagingError;
    fn try_from(r: RawAnnouncement) -> Result<UploadAnnouncement, StagingError> {
        UploadAnnouncement::new(r.file_name, r.size, r.chunk_size, r.sha256)
    }
}

fn invalid(field: &'static str, reason: String) -> StagingError {
    StagingError::InvalidAnnouncement { field, reason }
}

impl UploadAnnouncement {
    /// Checks an announcement: a non-empty file name of at most 255 bytes without control
    /// characters or path separators, a size of at least one byte, a chunk size of 1 byte to
    /// [`MAX_CHUNK_SIZE`], and at most [`MAX_CHUNKS`] chunks. The size limit of the staging
    /// area is checked when the upload begins.
    pub fn new(
        file_name: String,
        size: u64,
        chunk_size: u32,
        sha256: Sha256Digest,
    ) -> Result<UploadAnnouncement, StagingError> {
        if file_name.is_empty() || file_name.len() > MAX_FILE_NAME {
            return Err(invalid(
                "file_name",
                format!("must be 1 to {MAX_FILE_NAME} bytes, is {}", file_name.len()),
            ));
        }
        if let Some(c) = file_name
            .chars()
            .find(|c| c.is_control() || *c == '/' || *c == '\\')
        {
            return Err(invalid(
                "file_name",
                format!("contains the forbidden character {c:?}"),
            ));
        }
        if size == 0 {
            return Err(invalid("size", "an empty package cannot be staged".into()));
        }
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(invalid(
                "chunk_size",
                format!("must be 1 to {MAX_CHUNK_SIZE} bytes, is {chunk_size}"),
            ));
        }
        let chunks = size.div_ceil(u64::from(chunk_size));
        if chunks > u64::from(MAX_CHUNKS) {
            return Err(invalid(
                "chunk_size",
                format!(
                    "{size} bytes in chunks of {chunk_size} make {chunks} chunks, more than {MAX_CHUNKS}"
                ),
            ));
        }
        Ok(UploadAnnouncement {
            file_name,
            size,
            chunk_size,
            sha256,
        })
    }

    /// The installer's file name (for display only; the GX stores files by digest).
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Exact package size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The fixed chunk size; only the last chunk may be shorter.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The announced SHA-256 of the whole package.
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// Number of chunks (at least 1, at most [`MAX_CHUNKS`]).
    pub fn chunk_count(&self) -> u32 {
        // Bounded by MAX_CHUNKS in `new`.
        self.size.div_ceil(u64::from(self.chunk_size)) as u32
    }

    /// Byte offset of chunk `index` (which must be below [`Self::chunk_count`]).
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// The exact length chunk `index` must have, or `None` beyond the last chunk.
    pub fn chunk_len(&self, index: u32) -> Option<u32> {
        if index >= self.chunk_count() {
            return None;
        }
        let rest = self.size - self.chunk_offset(index);
        // rest <= size and the chunk size is a u32.
        Some(rest.min(u64::from(self.chunk_size)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(size: u64, chunk: u32) -> Result<UploadAnnouncement, StagingError> {
        UploadAnnouncement::new("fw.bin".into(), size, chunk, Sha256Digest([7; 32]))
    }

    #[test]
    fn chunk_geometry() {
        let a = ann(10, 4).unwrap();
        assert_eq!(a.chunk_count(), 3);
        assert_eq!(a.chunk_len(0), Some(4));
        assert_eq!(a.chunk_len(2), Some(2));
        assert_eq!(a.chunk_len(3), None);
        assert_eq!(a.chunk_offset(2), 8);
        let exact = ann(8, 4).unwrap();
        assert_eq!(exact.chunk_count(), 2);
        assert_eq!(exact.chunk_len(1), Some(4));
    }

    #[test]
    fn refuses_impossible_announcements_naming_the_field() {
        let field = |r: Result<UploadAnnouncement, StagingError>| match r {
            Err(StagingError::InvalidAnnouncement { field, .. }) => field,
            other => panic!("expected an invalid announcement, got {other:?}"),
        };
        assert_eq!(field(ann(0, 4)), "size");
        assert_eq!(field(ann(10, 0)), "chunk_size");
        assert_eq!(field(ann(10, MAX_CHUNK_SIZE + 1)), "chunk_size");
        assert_eq!(field(ann(u64::from(MAX_CHUNKS) + 1, 1)), "chunk_size");
        assert!(ann(u64::from(MAX_CHUNKS), 1).is_ok());
        for name in ["", "a/b", "a\nb", &"x".repeat(256)] {
            assert_eq!(
                field(UploadAnnouncement::new(
                    name.into(),
                    1,
                    1,
                    Sha256Digest([0; 32])
                )),
                "file_name"
            );
        }
    }

    #[test]
    fn deserializing_runs_the_same_checks() {
        let ok = ann(10, 4).unwrap();
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            serde_json::from_str::<UploadAnnouncement>(&json).unwrap(),
            ok
        );
        let bad = json.replace("\"chunk_size\":4", "\"chunk_size\":0");
        let err = serde_json::from_str::<UploadAnnouncement>(&bad).unwrap_err();
        assert!(err.to_string().contains("chunk_size"), "{err}");
    }
}
