//! The only way into stage 2: a package that passed every stage-1 check.

use crate::staging::digest::Sha256Digest;
use crate::staging::inspect::AcceptedPackage;
use std::path::{Path, PathBuf};

/// A complete package on the GX's disk whose SHA-256 matched the announcement and that its
/// plugin accepted. Only the staging area constructs it, after those checks, so holding one
/// proves them.
#[derive(Debug)]
pub struct StagedPackage {
    path: PathBuf,
    file_name: String,
    size: u64,
    sha256: Sha256Digest,
    package: AcceptedPackage,
}

impl StagedPackage {
    pub(super) fn new(
        path: PathBuf,
        file_name: String,
        size: u64,
        sha256: Sha256Digest,
        package: AcceptedPackage,
    ) -> StagedPackage {
        StagedPackage {
            path,
            file_name,
            size,
            sha256,
            package,
        }
    }

    /// Where the package is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The installer's file name.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The verified SHA-256.
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// What the plugin found in it.
    pub fn package(&self) -> &AcceptedPackage {
        &self.package
    }
}
