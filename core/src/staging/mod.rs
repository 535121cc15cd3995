//! Stage 1: a package arrives from VRM in chunks and is staged on the GX's disk.
//!
//! The VRM link announces a package ([`UploadAnnouncement`]: file name, size, fixed chunk
//! size, SHA-256), then sends numbered chunks, possibly repeated or out of order. The
//! [`StagingArea`] checks the size limit and the free space, writes each chunk at its offset
//! and keeps a received-chunk bitmap on disk so a partial upload survives a GX restart; after
//! a reconnect the link asks [`Upload::first_missing`]. [`Upload::finish`] compares the
//! SHA-256, lets the matching plugin inspect the package ([`PackageInspector`]) and yields a
//! [`StagedPackage`], the only ticket into stage 2. A package whose digest does not match is
//! deleted, never staged.

pub mod announcement;
pub mod area;
pub mod bitmap;
pub mod digest;
pub mod error;
pub mod inspect;
pub mod space;
pub mod staged;
pub mod upload;

pub use announcement::{MAX_CHUNK_SIZE, MAX_CHUNKS, UploadAnnouncement};
pub use area::{StagingArea, StagingConfig};
pub use bitmap::ChunkBitmap;
pub use digest::Sha256Digest;
pub use error::StagingError;
pub use inspect::{
    AcceptedPackage, InspectionFailure, ModuleImage, PackageCandidate, PackageInspector,
    SignatureStatus,
};
pub use staged::StagedPackage;
pub use upload::{ChunkOutcome, Upload};

#[cfg(test)]
mod tests;
