//! The staging directory: partial uploads and staged packages.

use crate::journal::durable::{TEMP_SUFFIX, ensure_dir, read_bounded, sync_dir, write_atomic};
use crate::staging::announcement::UploadAnnouncement;
use crate::staging::bitmap::{ChunkBitmap, UploadState};
use crate::staging::digest::Sha256Digest;
use crate::staging::error::StagingError;
use crate::staging::inspect::PackageInspector;
use crate::staging::space::available_bytes;
use crate::staging::staged::StagedPackage;
use crate::staging::upload::{
    Incoming, IncomingOutcome, SharedIncoming, Upload, UploadData, lock_incoming,
    package_file_name, received_bytes, verify_and_inspect,
};
use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Largest upload state file read back (the bitmap of 65 536 chunks is 16 KiB in hex).
const MAX_STATE_FILE: u64 = 64 * 1024;

/// Limits of the staging area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingConfig {
    /// The staging directory (created when missing).
    pub dir: PathBuf,
    /// Largest package accepted, in bytes.
    pub max_package_size: u64,
    /// Free space that must remain after the package is written, in bytes.
    pub free_space_margin: u64,
}

impl StagingConfig {
    /// Default largest package: 64 MiB.
    pub const DEFAULT_MAX_PACKAGE_SIZE: u64 = 64 * 1024 * 1024;
    /// Default free-space margin: 8 MiB.
    pub const DEFAULT_FREE_SPACE_MARGIN: u64 = 8 * 1024 * 1024;

    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StagingConfig {
        StagingConfig {
            dir: dir.into(),
            max_package_size: Self::DEFAULT_MAX_PACKAGE_SIZE,
            free_space_margin: Self::DEFAULT_FREE_SPACE_MARGIN,
        }
    }
}

/// The staging area on the GX's disk.
///
/// Layout: `incoming/<sha256>.part` holds a partial upload's bytes at their final offsets,
/// `incoming/<sha256>.upload` its announcement and received-chunk bitmap (replaced
/// atomically after every stored chunk), `packages/<sha256>.pkg` the staged packages.
///
/// Uploads of the same package at once (two batteries updated with one file) share one
/// partial upload: one `.part` file and one bitmap; the first to finish stages the package
/// and the others verify the staged package again. Clones of the area share this.
#[derive(Debug, Clone)]
pub struct StagingArea {
    config: StagingConfig,
    incoming: PathBuf,
    packages: PathBuf,
    /// The partial uploads in progress, by digest.
    live: Arc<Mutex<HashMap<Sha256Digest, Weak<Mutex<Incoming>>>>>,
}

fn part_name(sha256: &Sha256Digest) -> String {
    format!("{sha256}.part")
}

fn state_name(sha256: &Sha256Digest) -> String {
    format!("{sha256}.upload")
}

impl StagingArea {
    /// Opens (creating) the staging directory.
    pub fn open(config: StagingConfig) -> Result<StagingArea, StagingError> {
        let incoming = config.dir.join("incoming");
        let packages = config.dir.join("packages");
        for dir in [&incoming, &packages] {
            ensure_dir(dir).map_err(|e| StagingError::io("create", dir, e))?;
        }
        Ok(StagingArea {
            config,
            incoming,
            packages,
            live: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &StagingConfig {
        &self.config
    }

    /// Bytes free for the daemon on the staging file system.
    pub fn available_space(&self) -> Result<u64, StagingError> {
        available_bytes(&self.config.dir)
            .map_err(|e| StagingError::io("statvfs", &self.config.dir, e))
    }

    /// Where the staged package with digest `sha256` is, when it is staged.
    pub fn staged_path(&self, sha256: &Sha256Digest) -> Option<PathBuf> {
        let path = self.packages.join(package_file_name(sha256));
        path.is_file().then_some(path)
    }

    /// Starts or resumes the upload of `announcement`'s package.
    ///
    /// - refuses a package above the size limit (701) or when the free space is below the
    ///   bytes still to come plus the margin (702);
    /// - resumes a partial upload of the same package (same digest, size and chunk size)
    ///   left by an earlier run: [`Upload::first_missing`] tells the link where to continue;
    ///   a partial upload with other geometry or a damaged state file is discarded;
    /// - a package already staged comes back complete, to be verified again by
    ///   [`Upload::finish`];
    /// - a package another upload in this process is receiving joins that upload (the same
    ///   file and bitmap); with another chunk size it is refused (700).
    pub fn begin(&self, announcement: &UploadAnnouncement) -> Result<Upload, StagingError> {
        let size = announcement.size();
        if size > self.config.max_package_size {
            return Err(StagingError::TooLarge {
                size,
                max: self.config.max_package_size,
            });
        }
        let sha256 = announcement.sha256();
        // Held until the partial upload is registered: two begins never create it twice.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = live.get(&sha256).and_then(Weak::upgrade) {
            let incoming = lock_incoming(&shared);
            if let IncomingOutcome::Open = incoming.outcome {
                if incoming.announcement.size() != size
                    || incoming.announcement.chunk_size() != announcement.chunk_size()
                {
                    return Err(StagingError::InvalidAnnouncement {
                        field: "chunk_size",
                        reason: format!(
                            "{} differs from the upload of the same file in progress for \
                             another update ({} bytes of {}); send the same chunk size",
                            announcement.chunk_size(),
                            incoming.announcement.chunk_size(),
                            incoming.announcement.size()
                        ),
                    });
                }
                drop(incoming);
                return Ok(self.joined(announcement, shared));
            }
            // Staged (the file is looked for below, after the upload that staged it moved
            // it into place) or discarded: not joined.
        }
        let staged = self.packages.join(package_file_name(&sha256));
        if staged.is_file() {
            let mut bitmap = ChunkBitmap::new(announcement.chunk_count());
            for i in 0..bitmap.count() {
                bitmap.insert(i);
            }
            return Ok(self.upload(announcement, bitmap, UploadData::Staged { path: staged }));
        }
        let bitmap = self
            .resumable_bitmap(announcement)
            .unwrap_or_else(|| ChunkBitmap::new(announcement.chunk_count()));
        let resumed = bitmap.received() > 0;
        let still_to_come = size - received_bytes(announcement, &bitmap);
        let needed = still_to_come.saturating_add(self.config.free_space_margin);
        let available = self.available_space()?;
        if available < needed {
            return Err(StagingError::InsufficientSpace {
                path: self.config.dir.clone(),
                needed,
                available,
            });
        }
        let part = self.incoming.join(part_name(&sha256));
        let state = state_name(&sha256);
        let file = if resumed {
            OpenOptions::new()
                .write(true)
                .read(true)
                .open(&part)
                .map_err(|e| StagingError::io("reopen partial upload", &part, e))?
        } else {
            let file = OpenOptions::new()
                .write(true)
                .read(true)
                .create(true)
                .truncate(true)
                .open(&part)
                .map_err(|e| StagingError::io("create", &part, e))?;
            file.set_len(size)
                .and_then(|()| file.sync_all())
                .and_then(|()| sync_dir(&self.incoming))
                .map_err(|e| StagingError::io("allocate", &part, e))?;
            write_atomic(
                &self.incoming,
                &state,
                &UploadState::encode(announcement, &bitmap),
            )
            .map_err(|e| StagingError::io("record upload in", self.incoming.join(&state), e))?;
            file
        };
        if resumed {
            tracing::info!(
                %sha256,
                first_missing = ?bitmap.first_missing(),
                received = bitmap.received(),
                "resuming partial upload"
            );
        }
        let shared: SharedIncoming = Arc::new(Mutex::new(Incoming {
            announcement: announcement.clone(),
            file,
            bitmap,
            outcome: IncomingOutcome::Open,
        }));
        live.insert(sha256, Arc::downgrade(&shared));
        Ok(self.joined(announcement, shared))
    }

    /// How many partial uploads this area tracks (those some [`Upload`] still holds).
    #[cfg(test)]
    pub(crate) fn uploads_tracked(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// An upload of the partial upload `shared`.
    fn joined(&self, announcement: &UploadAnnouncement, shared: SharedIncoming) -> Upload {
        let sha256 = announcement.sha256();
        let data = UploadData::Incoming {
            shared,
            part: self.incoming.join(part_name(&sha256)),
            state_name: state_name(&sha256),
        };
        self.upload(
            announcement,
            ChunkBitmap::new(announcement.chunk_count()),
            data,
        )
    }

    fn upload(
        &self,
        announcement: &UploadAnnouncement,
        bitmap: ChunkBitmap,
        data: UploadData,
    ) -> Upload {
        Upload {
            announcement: announcement.clone(),
            bitmap,
            data,
            incoming_dir: self.incoming.clone(),
            packages_dir: self.packages.clone(),
        }
    }

    /// The bitmap of a partial upload of exactly this package, if one is on disk intact.
    fn resumable_bitmap(&self, announcement: &UploadAnnouncement) -> Option<ChunkBitmap> {
        let sha256 = announcement.sha256();
        let state_path = self.incoming.join(state_name(&sha256));
        let part = self.incoming.join(part_name(&sha256));
        let bytes = match read_bounded(&state_path, MAX_STATE_FILE) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                tracing::warn!(path = %state_path.display(), "upload state file too large; restarting upload");
                return None;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %state_path.display(), error = %e, "upload state unreadable; restarting upload");
                return None;
            }
        };
        let (stored, bitmap) = match UploadState::decode(&bytes) {
            Ok(state) => state,
            Err(reason) => {
                tracing::warn!(path = %state_path.display(), %reason, "upload state damaged; restarting upload");
                return None;
            }
        };
        if stored.size() != announcement.size()
            || stored.chunk_size() != announcement.chunk_size()
            || stored.sha256() != sha256
        {
            tracing::warn!(%sha256, "partial upload has another geometry; restarting upload");
            return None;
        }
        match fs::metadata(&part) {
            Ok(m) if m.len() == announcement.size() => Some(bitmap),
            _ => {
                tracing::warn!(path = %part.display(), "partial upload data missing or resized; restarting upload");
                None
            }
        }
    }

    /// The staged package of `announcement`, verified again (digest and plugin) as stage 2
    /// needs it after a restart. A missing or altered file gives 709 (and is deleted).
    pub fn staged(
        &self,
        announcement: &UploadAnnouncement,
        inspector: &dyn PackageInspector,
    ) -> Result<StagedPackage, StagingError> {
        let path = self
            .packages
            .join(package_file_name(&announcement.sha256()));
        verify_and_inspect(announcement, path, inspector, true)
    }

    /// Whether a staged package with this digest is on disk (not verified).
    pub fn is_staged(&self, sha256: &Sha256Digest) -> bool {
        self.packages.join(package_file_name(sha256)).is_file()
    }

    /// Deletes the partial upload and the staged package of `sha256`, if any.
    pub fn remove(&self, sha256: &Sha256Digest) -> Result<(), StagingError> {
        for path in [
            self.incoming.join(state_name(sha256)),
            self.incoming.join(part_name(sha256)),
            self.packages.join(package_file_name(sha256)),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StagingError::io("delete", &path, e)),
            }
        }
        Ok(())
    }

    /// Deletes partial uploads, staged packages and temp files of every package not in
    /// `keep` (the packages that jobs can still use). Files the staging area did not create
    /// are left alone. Returns what was deleted.
    pub fn collect_garbage(
        &self,
        keep: &HashSet<Sha256Digest>,
    ) -> Result<Vec<PathBuf>, StagingError> {
        let mut removed = Vec::new();
        for dir in [&self.incoming, &self.packages] {
            let entries = fs::read_dir(dir).map_err(|e| StagingError::io("list", dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StagingError::io("list", dir, e))?;
                let path = entry.path();
                if owned_file_is_garbage(&path, keep) {
                    match fs::remove_file(&path) {
                        Ok(()) => removed.push(path),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "could not delete")
                        }
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Whether `path` is a staging file (`<sha256>.part|.upload|.pkg`, maybe with the temp
/// suffix) whose package is not kept. Temp files are always garbage.
fn owned_file_is_garbage(path: &Path, keep: &HashSet<Sha256Digest>) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let (name, temp) = match name.strip_suffix(TEMP_SUFFIX) {
        Some(base) => (base, true),
        None => (name, false),
    };
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    if !matches!(ext, "part" | "upload" | "pkg") {
        return false;
    }
    let Ok(sha256) = stem.parse::<Sha256Digest>() else {
        return false;
    };
    temp || !keep.contains(&sha256)
}
