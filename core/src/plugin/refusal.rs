//! Why a plugin library was refused, in words a person can act on.

use super::allowlist::{ApprovalDate, ApprovalStatus, VendorId};
use super::display::{display_path, escape_name, one_line};
use crate::staging::digest::Sha256Digest;
use bmsfw_plugin_api::ContractVersion;
use std::fmt;
use std::path::PathBuf;

/// A library file the loader refused, and why.
#[derive(Debug)]
pub struct Refusal {
    /// The file.
    pub path: PathBuf,
    /// Its SHA-256, when it could be read.
    pub sha256: Option<Sha256Digest>,
    /// Why (boxed: refusals travel in `Result`s and most reasons are large).
    pub reason: Box<RefusalReason>,
}

/// One line, whatever the file name holds: the path and the reason are escaped (see
/// [`super::display`]), so that a crafted name cannot start a line of its own.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: refused by the {} check: {}",
            display_path(&self.path),
            self.reason.check(),
            one_line(&self.reason.to_string())
        )
    }
}

impl std::error::Error for Refusal {}

/// The check a library failed. Variants before [`RefusalReason::NotAPlugin`] are decided
/// from the file's bytes and the allowlist alone: the library was never opened.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(#[source] std::io::Error),
    /// Not a regular file (a directory, device node, FIFO or socket). Decided from the
    /// file's type alone: the file was never opened for reading.
    #[error("{kind}, not a regular file")]
    NotAFile {
        /// What it is ("a directory", "a named pipe (FIFO)", ...).
        kind: &'static str,
    },
    /// A symbolic link: the loader does not follow links in the plugin directory.
    #[error(
        "a symbolic link{}, not a library file: the loader does not follow links",
        target.as_ref().map(|t| format!(" to {}", display_path(t))).unwrap_or_default()
    )]
    SymbolicLink {
        /// Where it points, when that could be read.
        target: Option<PathBuf>,
    },
    /// Larger than the loader's limit.
    #[error("the file is {size} bytes, above the {limit}-byte limit for a plugin library")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The hash is not in the allowlist.
    #[error("SHA-256 {found} is not in the allowlist")]
    UnknownHash {
        /// The file's hash.
        found: Sha256Digest,
    },
    /// Approved bytes under another file name than their allowlist entry's.
    #[error(
        "these bytes are approved only under the file name {}, not under this one",
        escape_name(std::ffi::OsStr::new(expected))
    )]
    WrongFileName {
        /// The file name of the entry approving the bytes.
        expected: String,
    },
    /// A file approved under this name has another hash now.
    #[error(
        "the file was approved with SHA-256 {} but is now {found}: it changed since its approval",
        expected.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" or ")
    )]
    Tampered {
        /// The hashes approved for the file name.
        expected: Vec<Sha256Digest>,
        /// The file's hash.
        found: Sha256Digest,
    },
    /// The code review has not passed.
    #[error("code review status is {status} (since {date}), it must be passed")]
    ReviewNotPassed {
        /// The entry's review status.
        status: ApprovalStatus,
        /// Its date.
        date: ApprovalDate,
    },
    /// The compliance test has not passed.
    #[error("compliance test status is {status} (since {date}), it must be passed")]
    ComplianceNotPassed {
        /// The entry's compliance status.
        status: ApprovalStatus,
        /// Its date.
        date: ApprovalDate,
    },
    /// The same bytes were already loaded from another file.
    #[error("identical to {}, already loaded", display_path(first))]
    DuplicateLibrary {
        /// The file loaded first.
        first: PathBuf,
    },
    /// Another library of the same vendor was already loaded.
    #[error(
        "vendor {vendor} is already served by {}; keep one library per vendor",
        display_path(first)
    )]
    DuplicateVendor {
        /// The vendor.
        vendor: VendorId,
        /// The file loaded first.
        first: PathBuf,
    },
    /// The bytes are not an ELF shared library for this machine whose headers and
    /// segments lie inside the file (see [`super::elf`]). Decided from the bytes alone:
    /// no dynamic loader saw them.
    #[error("not a well-formed shared library for this machine: {detail}")]
    MalformedLibrary {
        /// What is wrong, and where.
        detail: String,
    },
    /// The loader could not stage the bytes for loading.
    #[error("cannot prepare the library for loading: {0}")]
    Staging(#[source] std::io::Error),
    /// The dynamic loader refused the file, or it exports no plugin root module.
    #[error("not a bmsfw plugin library: {detail}")]
    NotAPlugin {
        /// The loader's words.
        detail: String,
    },
    /// Built with an incompatible abi_stable.
    #[error("built with an incompatible abi_stable: {detail}")]
    AbiIncompatible {
        /// abi_stable's words.
        detail: String,
    },
    /// Built against another major contract version.
    #[error(
        "built against plugin contract {found}, this engine implements contract {expected}: \
         the major versions differ"
    )]
    ContractMismatch {
        /// The engine's contract.
        expected: ContractVersion,
        /// The library's, as its header states it.
        found: String,
    },
    /// The root module's layout differs from the engine's.
    #[error(
        "root module layout of the library (contract {found}) differs from the engine's \
         (contract {expected}): {detail}"
    )]
    LayoutMismatch {
        /// The engine's contract.
        expected: ContractVersion,
        /// The library's.
        found: String,
        /// abi_stable's description of the differences (shortened).
        detail: String,
    },
    /// The root module's constructor failed.
    #[error("the library's root module failed to initialize: {detail}")]
    RootModuleFailed {
        /// abi_stable's words.
        detail: String,
    },
    /// The plugin host crashed, hung or broke its protocol while loading the library.
    #[error("{0}")]
    HostFailed(super::hosted::HostFault),
    /// The identity entry point failed (a panic included: code PLUGIN_FAULT).
    #[error("the identity entry point failed: {0}")]
    IdentityFailed(super::types::PluginFailure),
    /// The identity breaks the contract (bad vendor id, version, ranges, ...).
    #[error("the identity breaks the contract: {0}")]
    IdentityInvalid(String),
    /// The plugin reports another vendor id than its allowlist entry.
    #[error("the plugin reports vendor id {found}, its allowlist entry approves {expected}")]
    VendorMismatch {
        /// The entry's vendor id.
        expected: VendorId,
        /// The plugin's.
        found: String,
    },
    /// The plugin's version is outside the entry's range.
    #[error("plugin version {found} is outside the approved range {allowed}")]
    VersionOutOfRange {
        /// The entry's range.
        allowed: semver::VersionReq,
        /// The plugin's version.
        found: semver::Version,
    },
}

impl RefusalReason {
    /// The name of the check that refused, as printed and documented.
    pub fn check(&self) -> &'static str {
        match self {
            RefusalReason::Unreadable(_)
            | RefusalReason::NotAFile { .. }
            | RefusalReason::SymbolicLink { .. } => "file",
            RefusalReason::TooLarge { .. } => "size",
            RefusalReason::UnknownHash { .. } | RefusalReason::Tampered { .. } => "hash",
            RefusalReason::WrongFileName { .. } => "name",
            RefusalReason::ReviewNotPassed { .. } => "review",
            RefusalReason::ComplianceNotPassed { .. } => "compliance",
            RefusalReason::DuplicateLibrary { .. } | RefusalReason::DuplicateVendor { .. } => {
                "duplicate"
            }
            RefusalReason::Staging(_) => "staging",
            RefusalReason::MalformedLibrary { .. } | RefusalReason::NotAPlugin { .. } => "library",
            RefusalReason::AbiIncompatible { .. } => "abi",
            RefusalReason::ContractMismatch { .. } => "contract",
            RefusalReason::LayoutMismatch { .. } => "layout",
            RefusalReason::RootModuleFailed { .. } => "init",
            RefusalReason::HostFailed(_) => "host",
            RefusalReason::IdentityFailed(_) | RefusalReason::IdentityInvalid(_) => "identity",
            RefusalReason::VendorMismatch { .. } => "vendor",
            RefusalReason::VersionOutOfRange { .. } => "version",
        }
    }

    /// Whether the library was opened (its constructors ran) before the refusal.
    pub fn was_opened(&self) -> bool {
        matches!(
            self,
            RefusalReason::AbiIncompatible { .. }
                | RefusalReason::ContractMismatch { .. }
                | RefusalReason::LayoutMismatch { .. }
                | RefusalReason::RootModuleFailed { .. }
                | RefusalReason::HostFailed(_)
                | RefusalReason::IdentityFailed(_)
                | RefusalReason::IdentityInvalid(_)
                | RefusalReason::VendorMismatch { .. }
                | RefusalReason::VersionOutOfRange { .. }
        )
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            RefusalReason::Unreadable(_) | RefusalReason::NotAFile { .. } => {
                "make the plugin directory hold readable library files only"
            }
            RefusalReason::SymbolicLink { .. } => {
                "put the library file itself in the plugin directory, under the name its \
                 allowlist entry gives, instead of a link to it"
            }
            RefusalReason::TooLarge { .. } => {
                "this is not a plugin library; remove it from the plugin directory"
            }
            RefusalReason::UnknownHash { .. } => {
                "have the library reviewed and add an allowlist entry with this SHA-256 \
                 (`bmsfw plugin check` prints one), or remove the file"
            }
            RefusalReason::WrongFileName { .. } => {
                "name the file as its allowlist entry does (the `file` field) and remove \
                 other copies; to approve it under another name, change the entry's `file` \
                 after review"
            }
            RefusalReason::Tampered { .. } => {
                "replace the file with the approved build from the vendor; if the vendor \
                 shipped a new build, it needs its own review and allowlist entry"
            }
            RefusalReason::ReviewNotPassed { .. } => {
                "complete the code review and set review.status = \"passed\" with its date"
            }
            RefusalReason::ComplianceNotPassed { .. } => {
                "complete the compliance tests and set compliance.status = \"passed\" with its date"
            }
            RefusalReason::DuplicateLibrary { .. } => "remove the duplicate file",
            RefusalReason::DuplicateVendor { .. } => {
                "remove the older library of this vendor from the plugin directory"
            }
            RefusalReason::MalformedLibrary { .. } => {
                "the file is damaged, truncated or built for another machine: copy the \
                 vendor's approved build for this machine's architecture again"
            }
            RefusalReason::Staging(_) => {
                "check that the kernel supports memfd_create, or set plugins.load_method = \
                 \"private-copy\" with a writable state directory"
            }
            RefusalReason::NotAPlugin { .. } => {
                "the file is not a plugin built with bmsfw-plugin-api's export_plugin!; \
                 remove it or ask the vendor for the right build (architecture, libc)"
            }
            RefusalReason::AbiIncompatible { .. }
            | RefusalReason::ContractMismatch { .. }
            | RefusalReason::LayoutMismatch { .. } => {
                "ask the vendor for a build against this engine's plugin contract version"
            }
            RefusalReason::RootModuleFailed { .. }
            | RefusalReason::HostFailed(_)
            | RefusalReason::IdentityFailed(_)
            | RefusalReason::IdentityInvalid(_) => {
                "the plugin is faulty; report this message to the vendor"
            }
            RefusalReason::VendorMismatch { .. } | RefusalReason::VersionOutOfRange { .. } => {
                "the allowlist entry does not describe this library; correct the entry after \
                 review, or ask the vendor for the approved build"
            }
        }
    }
}
