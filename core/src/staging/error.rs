//! Why the ingest refused a request, with the catalogue code for each reason.

use crate::errors::codes;
use crate::staging::digest::Sha256Digest;
use std::io;
use std::path::PathBuf;

/// A refused announcement, chunk or package. [`StagingError::code`] gives the stable code
/// the VRM link reports.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The announcement is malformed.
    #[error("invalid upload announcement: {field} {reason}")]
    InvalidAnnouncement {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The package exceeds the configured limit.
    #[error("package of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// Not enough free space for the package plus the margin.
    #[error(
        "not enough free space in {}: {needed} bytes needed (package and margin), {available} available",
        path.display()
    )]
    InsufficientSpace {
        /// The staging directory.
        path: PathBuf,
        /// Bytes still to be written plus the configured margin.
        needed: u64,
        /// Bytes available to the daemon.
        available: u64,
    },
    /// A chunk index beyond the announced size.
    #[error("chunk {index} is beyond the package's {chunk_count} chunks")]
    ChunkOutOfRange {
        /// The refused index.
        index: u32,
        /// Number of chunks of the package.
        chunk_count: u32,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index} has {actual} bytes, the announcement requires {expected}")]
    ChunkWrongLength {
        /// The chunk's index.
        index: u32,
        /// Required length.
        expected: u32,
        /// Received length.
        actual: usize,
    },
    /// The received package does not have the announced digest; it was deleted.
    #[error("received package has SHA-256 {actual}, announced {expected}; it was deleted")]
    DigestMismatch {
        /// Announced digest.
        expected: Sha256Digest,
        /// Digest of what arrived.
        actual: Sha256Digest,
    },
    /// Another update of the same package finished the shared upload, found the wrong
    /// digest (or its plugin refused it) and deleted it.
    #[error(
        "the partial upload of {sha256} was deleted: another update of the same file found it damaged or refused; upload it again"
    )]
    Discarded {
        /// The package's digest.
        sha256: Sha256Digest,
    },
    /// Finishing was requested while chunks are missing.
    #[error("upload incomplete: chunk {first_missing} of {chunk_count} has not arrived")]
    Incomplete {
        /// The first chunk still missing.
        first_missing: u32,
        /// Number of chunks of the package.
        chunk_count: u32,
    },
    /// A staged package is missing or no longer matches its digest.
    #[error("staged package {sha256} is missing or damaged: {reason}")]
    StagedPackageDamaged {
        /// The package's digest.
        sha256: Sha256Digest,
        /// What was found.
        reason: String,
    },
    /// The plugin refused the package (or no plugin reads it); it was deleted.
    #[error("package refused by its plugin (code {code}): {message}")]
    Rejected {
        /// The catalogue code the inspector gave.
        code: u32,
        /// The inspector's message.
        message: String,
    },
    /// Reading or writing the staging directory failed.
    #[error("staging storage: {op} {}: {source}", path.display())]
    Io {
        /// What the ingest was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl StagingError {
    /// The stable catalogue code of this error.
    pub fn code(&self) -> u32 {
        match self {
            StagingError::InvalidAnnouncement { .. } => codes::UPLOAD_REQUEST_INVALID,
            StagingError::TooLarge { .. } => codes::PACKAGE_TOO_LARGE,
            StagingError::InsufficientSpace { .. } => codes::INSUFFICIENT_STORAGE,
            StagingError::ChunkOutOfRange { .. } => codes::CHUNK_OUT_OF_RANGE,
            StagingError::ChunkWrongLength { .. } => codes::CHUNK_WRONG_LENGTH,
            StagingError::DigestMismatch { .. } | StagingError::Discarded { .. } => {
                codes::UPLOAD_CORRUPTED
            }
            StagingError::Incomplete { .. } => codes::UPLOAD_INCOMPLETE,
            StagingError::StagedPackageDamaged { .. } => codes::STAGED_PACKAGE_DAMAGED,
            StagingError::Rejected { code, .. } => *code,
            StagingError::Io { .. } => codes::STAGING_STORAGE_ERROR,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StagingError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
