//! One package arriving in chunks.

use crate::job::percent::Percent;
use crate::journal::durable::{sync_dir, write_atomic};
use crate::staging::announcement::UploadAnnouncement;
use crate::staging::bitmap::{ChunkBitmap, UploadState};
use crate::staging::digest::Sha256Digest;
use crate::staging::error::StagingError;
use crate::staging::inspect::{PackageCandidate, PackageInspector};
use crate::staging::staged::StagedPackage;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What became of an accepted chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The chunk was new; it is durably stored and marked received.
    Stored,
    /// The chunk had already arrived; nothing was written.
    Duplicate,
}

/// What became of a partial upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IncomingOutcome {
    /// Chunks are still arriving.
    Open,
    /// One of its uploads staged it: the package is at this path.
    Staged(PathBuf),
    /// One of its uploads found the wrong digest (or a plugin refused it) and deleted it.
    Discarded,
}

/// The partial upload of one package (`incoming/<sha256>.part`), shared by every
/// [`Upload`] of that package in this process: two updates of the same file at once write
/// one file, share one received-chunk bitmap, and the first to finish stages it for both.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) announcement: UploadAnnouncement,
    pub(super) file: File,
    pub(super) bitmap: ChunkBitmap,
    pub(super) outcome: IncomingOutcome,
}

/// A partial upload shared between uploads of the same package.
pub(super) type SharedIncoming = Arc<Mutex<Incoming>>;

pub(super) fn lock_incoming(shared: &SharedIncoming) -> MutexGuard<'_, Incoming> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where an upload's bytes are.
#[derive(Debug)]
pub(super) enum UploadData {
    /// Still arriving: `incoming/<sha256>.part`, with its state file.
    Incoming {
        shared: SharedIncoming,
        part: PathBuf,
        state_name: String,
    },
    /// Already staged before (a repeated announcement or a restart after staging).
    Staged { path: PathBuf },
}

/// A package on its way into the staging area. Created by
/// [`crate::staging::StagingArea::begin`], which resumes a partial upload of the same
/// package after a restart, and joins one in progress for another update of the same
/// package (see [`Incoming`]).
#[derive(Debug)]
pub struct Upload {
    pub(super) announcement: UploadAnnouncement,
    /// Every chunk, for a package staged before; unused while chunks arrive (the shared
    /// partial upload holds the bitmap then).
    pub(super) bitmap: ChunkBitmap,
    pub(super) data: UploadData,
    pub(super) incoming_dir: PathBuf,
    pub(super) packages_dir: PathBuf,
}

impl Upload {
    /// The announcement this upload follows.
    pub fn announcement(&self) -> &UploadAnnouncement {
        &self.announcement
    }

    /// Reads the received-chunk bitmap (a staged package has every chunk).
    fn with_bitmap<R>(&self, f: impl FnOnce(&ChunkBitmap) -> R) -> R {
        match &self.data {
            // Complete once staged: staging requires every chunk.
            UploadData::Incoming { shared, .. } => f(&lock_incoming(shared).bitmap),
            UploadData::Staged { .. } => f(&self.bitmap),
        }
    }

    /// The first chunk not yet received, which the link asks for after a reconnect; `None`
    /// once every chunk is here.
    pub fn first_missing(&self) -> Option<u32> {
        self.with_bitmap(ChunkBitmap::first_missing)
    }

    /// Whether chunk `index` has arrived.
    pub fn has_chunk(&self, index: u32) -> bool {
        self.with_bitmap(|b| b.contains(index))
    }

    /// Bytes received so far.
    pub fn received_bytes(&self) -> u64 {
        self.with_bitmap(|b| received_bytes(&self.announcement, b))
    }

    /// Upload progress, rounded down.
    pub fn progress(&self) -> Percent {
        Percent::of(self.received_bytes(), self.announcement.size())
    }

    /// Whether every chunk has arrived.
    pub fn is_complete(&self) -> bool {
        self.with_bitmap(ChunkBitmap::is_complete)
    }

    /// Stores chunk `index`. Refuses an index beyond the announced size (703) and a length
    /// other than the announced chunk size, or the remainder for the last chunk (704).
    /// A repeated chunk is acknowledged without rewriting. The chunk's bytes are fsynced
    /// before the received-chunk bitmap that records them is committed.
    pub fn accept_chunk(&mut self, index: u32, bytes: &[u8]) -> Result<ChunkOutcome, StagingError> {
        let expected = self
            .announcement
            .chunk_len(index)
            .ok_or(StagingError::ChunkOutOfRange {
                index,
                chunk_count: self.announcement.chunk_count(),
            })?;
        if bytes.len() != expected as usize {
            return Err(StagingError::ChunkWrongLength {
                index,
                expected,
                actual: bytes.len(),
            });
        }
        let UploadData::Incoming {
            shared,
            part,
            state_name,
        } = &self.data
        else {
            // A staged upload has every chunk.
            return Ok(ChunkOutcome::Duplicate);
        };
        // Held while writing: a chunk never lands in a package another upload is hashing
        // or has staged.
        let mut incoming = lock_incoming(shared);
        match incoming.outcome {
            IncomingOutcome::Open => {}
            // Another update of the same file staged it: every chunk is there.
            IncomingOutcome::Staged(_) => return Ok(ChunkOutcome::Duplicate),
            IncomingOutcome::Discarded => {
                return Err(StagingError::Discarded {
                    sha256: self.announcement.sha256(),
                });
            }
        }
        if incoming.bitmap.contains(index) {
            return Ok(ChunkOutcome::Duplicate);
        }
        let offset = self.announcement.chunk_offset(index);
        crate::crash::point("staging.chunk");
        incoming
            .file
            .write_all_at(bytes, offset)
            .and_then(|()| incoming.file.sync_data())
            .map_err(|e| StagingError::io("write chunk to", part, e))?;
        incoming.bitmap.insert(index);
        let state = UploadState::encode(&self.announcement, &incoming.bitmap);
        if let Err(e) = write_atomic(&self.incoming_dir, state_name, &state) {
            incoming.bitmap.remove(index);
            return Err(StagingError::io(
                "record received chunk in",
                self.incoming_dir.join(state_name),
                e,
            ));
        }
        crate::crash::point("staging.chunk_recorded");
        Ok(ChunkOutcome::Stored)
    }

    /// Ends stage 1: checks that every chunk arrived (708), hashes the package and compares
    /// the announced SHA-256 (on mismatch the file is deleted: 705, or 709 for a package
    /// that had been staged before), hands it to `inspector` (a refusal deletes it and
    /// carries the inspector's code), then moves it into the staging area.
    ///
    /// When another update of the same package staged it first, this one verifies that
    /// staged package again (digest and plugin) instead.
    pub fn finish(self, inspector: &dyn PackageInspector) -> Result<StagedPackage, StagingError> {
        if let Some(first_missing) = self.first_missing() {
            return Err(StagingError::Incomplete {
                first_missing,
                chunk_count: self.announcement.chunk_count(),
            });
        }
        let Upload {
            announcement,
            data,
            incoming_dir,
            packages_dir,
            ..
        } = self;
        let sha256 = announcement.sha256();
        match data {
            UploadData::Staged { path } => verify_and_inspect(&announcement, path, inspector, true),
            UploadData::Incoming {
                shared,
                part,
                state_name,
            } => {
                // Held until the package is staged or discarded: no chunk of another update
                // of the same file is written meanwhile.
                let mut incoming = lock_incoming(&shared);
                match &incoming.outcome {
                    IncomingOutcome::Open => {}
                    IncomingOutcome::Staged(path) => {
                        let path = path.clone();
                        drop(incoming);
                        return verify_and_inspect(&announcement, path, inspector, true);
                    }
                    IncomingOutcome::Discarded => return Err(StagingError::Discarded { sha256 }),
                }
                let candidate = verify_and_inspect(&announcement, part.clone(), inspector, false);
                let remove_state = || {
                    let _ = fs::remove_file(incoming_dir.join(&state_name));
                };
                let staged = match candidate {
                    Ok(staged) => staged,
                    Err(e) => {
                        // The package was deleted (digest mismatch, refusal): so goes its
                        // state. A storage error keeps both for another attempt.
                        if !part.exists() {
                            remove_state();
                            incoming.outcome = IncomingOutcome::Discarded;
                        }
                        return Err(e);
                    }
                };
                let target = packages_dir.join(package_file_name(&sha256));
                crate::crash::point("staging.stage");
                fs::rename(&part, &target)
                    .and_then(|()| sync_dir(&packages_dir))
                    .map_err(|e| StagingError::io("move staged package to", &target, e))?;
                incoming.outcome = IncomingOutcome::Staged(target.clone());
                drop(incoming);
                remove_state();
                let _ = sync_dir(&incoming_dir);
                tracing::info!(%sha256, size = announcement.size(), "package staged");
                Ok(StagedPackage::new(
                    target,
                    staged.file_name().to_owned(),
                    staged.size(),
                    sha256,
                    staged.package().clone(),
                ))
            }
        }
    }
}

/// Bytes covered by the received chunks of `bitmap` (the last chunk may be short).
pub(super) fn received_bytes(announcement: &UploadAnnouncement, bitmap: &ChunkBitmap) -> u64 {
    let chunk = u64::from(announcement.chunk_size());
    let full = u64::from(bitmap.received()) * chunk;
    let last = announcement.chunk_count() - 1;
    if bitmap.contains(last) {
        full - (chunk - u64::from(announcement.chunk_len(last).unwrap_or(0)))
    } else {
        full
    }
}

/// `packages/` file name of a staged package.
pub(super) fn package_file_name(sha256: &Sha256Digest) -> String {
    format!("{sha256}.pkg")
}

/// Hashes `path`, compares with the announcement, and asks the inspector; deletes the file
/// when either check fails. `was_staged` picks the code of a digest mismatch.
pub(super) fn verify_and_inspect(
    announcement: &UploadAnnouncement,
    path: PathBuf,
    inspector: &dyn PackageInspector,
    was_staged: bool,
) -> Result<StagedPackage, StagingError> {
    let expected = announcement.sha256();
    let file = File::open(&path).map_err(|e| {
        if was_staged && e.kind() == std::io::ErrorKind::NotFound {
            StagingError::StagedPackageDamaged {
                sha256: expected,
                reason: format!("{} is missing", path.display()),
            }
        } else {
            StagingError::io("open package", &path, e)
        }
    })?;
    let size = file
        .metadata()
        .map_err(|e| StagingError::io("read size of", &path, e))?
        .len();
    let actual =
        Sha256Digest::of_reader(&file).map_err(|e| StagingError::io("hash package", &path, e))?;
    drop(file);
    if actual != expected || size != announcement.size() {
        discard(&path);
        return Err(if was_staged {
            StagingError::StagedPackageDamaged {
                sha256: expected,
                reason: format!("its content now hashes to {actual} ({size} bytes); deleted"),
            }
        } else {
            StagingError::DigestMismatch { expected, actual }
        });
    }
    let candidate = PackageCandidate {
        path: &path,
        file_name: announcement.file_name(),
        size,
        sha256: actual,
    };
    match inspector.inspect(&candidate) {
        Ok(package) => Ok(StagedPackage::new(
            path.clone(),
            announcement.file_name().to_owned(),
            size,
            actual,
            package,
        )),
        Err(failure) => {
            discard(&path);
            tracing::warn!(code = failure.code, message = %failure.message, sha256 = %actual, "plugin refused package");
            Err(StagingError::Rejected {
                code: failure.code,
                message: failure.message,
            })
        }
    }
}

fn discard(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not delete refused package");
    }
}
