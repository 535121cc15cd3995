//! Finding, vetting and loading plugin libraries.
//!
//! For every library file the loader:
//!
//! 1. reads the file once (bounded) and hashes those bytes with SHA-256: a regular file
//!    only, its type and size checked before it is opened for reading, never through a
//!    symbolic link (see [`super::read`]);
//! 2. asks the allowlist about the hash and the file name: unknown, tampered (the
//!    approved file name with another hash), approved bytes under another name than
//!    their entry's, or review or compliance not passed are refused here, and the
//!    library is **never opened** (opening runs its constructors);
//! 3. refuses a second copy of the same bytes or a second library of the same vendor
//!    (a copy refused for its name does not count: the rightly named file still loads);
//! 4. checks the ELF headers of the bytes ([`super::elf`]): a shared library for this
//!    machine whose tables and segments lie inside the file;
//! 5. opens exactly the hashed bytes (see [`LoadMethod`]) with
//!    `lib_header_from_path(..)` and, from the header alone, checks that it is a bmsfw
//!    plugin built against this contract's major version;
//! 6. `init_root_module::<PluginModule_Ref>()`: abi_stable compares the root module's
//!    layout with the engine's; the `load_from_*` helpers are not used because they cache
//!    the first module per interface type and would hand every vendor the same plugin;
//! 7. asks the plugin for its identity, checks it against the contract and against the
//!    allowlist entry (vendor id, plugin version range).
//!
//! A refusal never stops the scan: [`PluginLoader::load_dir`] returns every loaded plugin
//! and every refusal with its reason. File names are printed and logged escaped
//! ([`super::display`]).

use super::allowlist::{Allowlist, AllowlistEntry, ApprovalStatus, Vetting};
use super::display::display_path;
use super::host::{IdentityError, InProcessPlugin, VendorPlugin};
use super::hosted::{HostSettings, HostedPlugin};
use super::open::{LoadMethod, open_header};
use super::refusal::{Refusal, RefusalReason};
use crate::staging::digest::Sha256Digest;
use bmsfw_plugin_api::abi_stable::library::{LibHeader, LibraryError, RootModule};
use bmsfw_plugin_api::abi_stable::sabi_types::VersionNumber;
use bmsfw_plugin_api::{CONTRACT_VERSION, PluginModule_Ref};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest library file the loader reads, by default: 64 MiB.
pub const DEFAULT_MAX_LIBRARY_BYTES: u64 = 64 * 1024 * 1024;

/// Longest abi_stable layout report kept in a refusal, in characters.
const MAX_DETAIL_CHARS: usize = 1500;

/// A library file read into memory and hashed, not opened.
pub struct LibraryFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// SHA-256 of `bytes`.
    pub sha256: Sha256Digest,
    bytes: Vec<u8>,
}

impl LibraryFile {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Checks that the bytes are an ELF shared library for this machine whose headers and
    /// segments lie inside the file ([`super::elf::validate_elf`]); nothing is opened.
    /// Every path that hands the bytes to the dynamic loader calls it first.
    pub fn check_elf(&self) -> Result<(), RefusalReason> {
        super::elf::validate_elf(&self.bytes)
            .map_err(|detail| RefusalReason::MalformedLibrary { detail })
    }
}

impl fmt::Debug for LibraryFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibraryFile")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// A plugin that passed every check.
pub struct LoadedPlugin {
    /// The library file.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
    /// The allowlist entry that approved it.
    pub entry: AllowlistEntry,
    /// The plugin.
    pub plugin: Arc<dyn VendorPlugin>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("info", self.plugin.info())
            .finish_non_exhaustive()
    }
}

/// The outcome of scanning a plugin directory.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Plugins loaded, in file-name order.
    pub loaded: Vec<LoadedPlugin>,
    /// Files refused, in file-name order.
    pub refused: Vec<Refusal>,
    /// Why no library was even considered: the allowlist could not be read or parsed
    /// (the daemon then runs without plugins and refuses every update).
    pub allowlist_error: Option<String>,
}

/// The plugin directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list the plugin directory {}: {source}", path.display())]
pub struct ScanError {
    /// The directory.
    pub path: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: std::io::Error,
}

/// Loads the plugins an allowlist approves.
#[derive(Debug)]
pub struct PluginLoader {
    allowlist: Allowlist,
    method: LoadMethod,
    max_library_bytes: u64,
    isolation: Isolation,
}

/// Where a loaded plugin's code runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// In plugin host processes, each sandboxed and supervised (the default).
    Hosted(Arc<HostSettings>),
    /// In this process: a crash of the plugin is a crash of the caller. Only for a test
    /// or a developer who asks for it by name.
    InProcess,
}

impl Default for Isolation {
    fn default() -> Isolation {
        Isolation::Hosted(Arc::new(HostSettings::default()))
    }
}

impl PluginLoader {
    /// A loader for `allowlist`, loading through a sealed memfd.
    pub fn new(allowlist: Allowlist) -> PluginLoader {
        PluginLoader {
            allowlist,
            method: LoadMethod::default(),
            max_library_bytes: DEFAULT_MAX_LIBRARY_BYTES,
            isolation: Isolation::default(),
        }
    }

    /// Runs the plugins as `isolation` says.
    pub fn with_isolation(mut self, isolation: Isolation) -> PluginLoader {
        self.isolation = isolation;
        self
    }

    /// Loads plugins into this process, without a host: for tests and developers only.
    pub fn in_process(self) -> PluginLoader {
        self.with_isolation(Isolation::InProcess)
    }

    /// Where the loaded plugins run.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// Uses `method` to open libraries.
    pub fn with_method(mut self, method: LoadMethod) -> PluginLoader {
        self.method = method;
        self
    }

    /// Refuses library files above `limit` bytes.
    pub fn with_max_library_bytes(mut self, limit: u64) -> PluginLoader {
        self.max_library_bytes = limit;
        self
    }

    /// The allowlist.
    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    /// The library files (`*.so`) in `dir`, sorted by name.
    pub fn libraries_in(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
        let scan_err = |source| ScanError {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(scan_err)? {
            let path = entry.map_err(scan_err)?.path();
            if path
                .extension()
                .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
            {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Loads every approved library in `dir`; refusals are collected, never fatal.
    pub fn load_dir(&self, dir: &Path) -> Result<LoadReport, ScanError> {
        let mut report = LoadReport::default();
        let mut seen_hashes: HashMap<Sha256Digest, PathBuf> = HashMap::new();
        let mut seen_vendors: HashMap<String, PathBuf> = HashMap::new();
        for path in Self::libraries_in(dir)? {
            let result = self.read_file(&path).and_then(|file| {
                let refuse = |reason| Refusal {
                    path: file.path.clone(),
                    sha256: Some(file.sha256),
                    reason: Box::new(reason),
                };
                let verdict = self.admit(&file);
                // A copy of approved bytes under another name is refused for its name
                // and does not count as the first of its bytes: the rightly named file
                // loads whichever sorts first.
                if let Err(reason @ RefusalReason::WrongFileName { .. }) = verdict {
                    return Err(refuse(reason));
                }
                if let Some(first) = seen_hashes.get(&file.sha256) {
                    return Err(refuse(RefusalReason::DuplicateLibrary {
                        first: first.clone(),
                    }));
                }
                seen_hashes.insert(file.sha256, file.path.clone());
                let entry = verdict.map_err(refuse)?;
                if let Some(first) = seen_vendors.get(entry.vendor_id.as_str()) {
                    return Err(refuse(RefusalReason::DuplicateVendor {
                        vendor: entry.vendor_id.clone(),
                        first: first.clone(),
                    }));
                }
                file.check_elf().map_err(refuse)?;
                let loaded = self.open_approved(&file, entry).map_err(refuse)?;
                seen_vendors.insert(entry.vendor_id.as_str().to_owned(), file.path.clone());
                Ok(loaded)
            });
            match result {
                Ok(loaded) => {
                    tracing::info!(
                        path = %display_path(&loaded.path),
                        vendor = %loaded.plugin.info().vendor_id,
                        version = %loaded.plugin.info().version,
                        "plugin loaded"
                    );
                    report.loaded.push(loaded);
                }
                Err(refusal) => {
                    tracing::warn!(%refusal, remedy = refusal.reason.remedy(), "plugin refused");
                    report.refused.push(refusal);
                }
            }
        }
        Ok(report)
    }

    /// Loads one library file, with every check.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, Refusal> {
        let file = self.read_file(path)?;
        self.load_read(&file)
    }

    /// Loads a library file already read with [`PluginLoader::read_file`]: vets the
    /// bytes that were hashed, then opens those same bytes.
    pub fn load_read(&self, file: &LibraryFile) -> Result<LoadedPlugin, Refusal> {
        let refuse = |reason| Refusal {
            path: file.path.clone(),
            sha256: Some(file.sha256),
            reason: Box::new(reason),
        };
        let entry = self.admit(file).map_err(refuse)?;
        file.check_elf().map_err(refuse)?;
        self.open_approved(file, entry).map_err(refuse)
    }

    /// Reads and hashes a library file (bounded); nothing is opened. Only a regular file
    /// is read: its type and size are checked before it is opened for reading, and a
    /// symbolic link is refused (see [`super::read`]).
    pub fn read_file(&self, path: &Path) -> Result<LibraryFile, Refusal> {
        let bytes =
            super::read::read_regular(path, self.max_library_bytes).map_err(|reason| Refusal {
                path: path.to_path_buf(),
                sha256: None,
                reason: Box::new(reason),
            })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(LibraryFile {
            path: path.to_path_buf(),
            file_name,
            sha256: Sha256Digest::of(&bytes),
            bytes,
        })
    }

    /// The allowlist's verdict on `file`, from its name and bytes alone.
    pub fn admit(&self, file: &LibraryFile) -> Result<&AllowlistEntry, RefusalReason> {
        match self.allowlist.vet(&file.file_name, &file.sha256) {
            Vetting::Approved(entry) => Ok(entry),
            Vetting::Misnamed(entry) => Err(RefusalReason::WrongFileName {
                expected: entry.file.clone(),
            }),
            Vetting::UnknownHash => Err(RefusalReason::UnknownHash { found: file.sha256 }),
            Vetting::Tampered { expected } => Err(RefusalReason::Tampered {
                expected,
                found: file.sha256,
            }),
            Vetting::NotPassed(entry) if entry.review.status != ApprovalStatus::Passed => {
                Err(RefusalReason::ReviewNotPassed {
                    status: entry.review.status,
                    date: entry.review.date,
                })
            }
            Vetting::NotPassed(entry) => Err(RefusalReason::ComplianceNotPassed {
                status: entry.compliance.status,
                date: entry.compliance.date,
            }),
        }
    }

    /// Opens a library the allowlist approved and checks it against its entry.
    fn open_approved(
        &self,
        file: &LibraryFile,
        entry: &AllowlistEntry,
    ) -> Result<LoadedPlugin, RefusalReason> {
        let plugin = self.open_unvetted(file)?;
        let info = plugin.info();
        if info.vendor_id != entry.vendor_id {
            return Err(RefusalReason::VendorMismatch {
                expected: entry.vendor_id.clone(),
                found: info.vendor_id.to_string(),
            });
        }
        if !entry.versions.matches(&info.version) {
            return Err(RefusalReason::VersionOutOfRange {
                allowed: entry.versions.clone(),
                found: info.version.clone(),
            });
        }
        Ok(LoadedPlugin {
            path: file.path.clone(),
            sha256: file.sha256,
            entry: entry.clone(),
            plugin,
        })
    }

    /// Opens a library **without asking the allowlist** and runs the contract, layout
    /// and identity checks, in a plugin host unless the loader is
    /// [`PluginLoader::in_process`]. Its constructors run: only for an integrator
    /// reviewing a library on a review machine (`bmsfw plugin check --open-unapproved`,
    /// `bmsfw plugin conformance`), never in the daemon.
    pub fn open_unvetted(
        &self,
        file: &LibraryFile,
    ) -> Result<Arc<dyn VendorPlugin>, RefusalReason> {
        match &self.isolation {
            Isolation::Hosted(settings) => Ok(Arc::new(HostedPlugin::load(
                &file.bytes,
                &file.file_name,
                &self.method,
                settings.clone(),
            )?)),
            Isolation::InProcess => Ok(Arc::new(self.open_in_process(file)?)),
        }
    }

    /// Opens a library into this process (no host), with the contract, layout and
    /// identity checks.
    pub fn open_in_process(&self, file: &LibraryFile) -> Result<InProcessPlugin, RefusalReason> {
        let header = open_header(&file.bytes, &file.file_name, &self.method)?;
        let module = init_module(header)?;
        InProcessPlugin::new(module).map_err(|e| match e {
            IdentityError::Failed(f) => RefusalReason::IdentityFailed(f),
            IdentityError::Invalid(why) => RefusalReason::IdentityInvalid(why),
        })
    }
}

/// `major.minor` of an abi_stable version string, or the bounded raw text.
fn render_version(text: &str) -> String {
    let flat: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
    match flat.parse::<semver::Version>() {
        Ok(v) => format!("{}.{}", v.major, v.minor),
        Err(_) => format!("{flat:?}"),
    }
}

/// The differences abi_stable's layout report lists (its `Error:` lines), or the start
/// of the report when it lists none; bounded to [`MAX_DETAIL_CHARS`].
fn layout_errors(report: &str) -> String {
    let flat = report.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut errors: Vec<&str> = Vec::new();
    for segment in flat.split("Error:").skip(1) {
        let layout = segment.find(" Layout of").unwrap_or(segment.len());
        let error = match segment.find(" error(s)") {
            // "... Found: 16 1 error(s)": drop the count of the next group.
            Some(count) if count < layout => segment[..count]
                .rsplit_once(' ')
                .map_or("", |(before, _)| before),
            _ => &segment[..layout],
        }
        .trim();
        if !error.is_empty() && !errors.contains(&error) {
            errors.push(error);
        }
    }
    let text = if errors.is_empty() {
        flat
    } else {
        errors.join("; ")
    };
    let mut detail: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    if text.chars().count() > MAX_DETAIL_CHARS {
        detail.push('…');
    }
    detail
}

/// Checks the header (module name, contract major), then the layout, and initializes
/// the root module.
pub(crate) fn init_module(header: &'static LibHeader) -> Result<PluginModule_Ref, RefusalReason> {
    init_module_as::<PluginModule_Ref>(header)
}

/// The contract minor a library's header states (`None` when it states no version).
pub(crate) fn header_minor(header: &'static LibHeader) -> Option<u32> {
    VersionNumber::new(header.version_strings())
        .ok()
        .map(|v| v.minor)
}

/// [`init_module`] with the root module type of one contract minor: the plugin host
/// loads a 1.0 library with the 1.0 interface (`bmsfw-plugin-api-1-0`).
pub(crate) fn init_module_as<M: RootModule>(
    header: &'static LibHeader,
) -> Result<M, RefusalReason> {
    let consts = header.root_mod_consts();
    let name = consts.name();
    if name.as_str() != M::NAME {
        return Err(RefusalReason::NotAPlugin {
            detail: format!(
                "its abi_stable root module is {:?}, not {:?}",
                name.as_str().chars().take(64).collect::<String>(),
                M::NAME
            ),
        });
    }
    let found_text = header.version_strings().to_string();
    let found = render_version(&found_text);
    let major_ok = VersionNumber::new(header.version_strings())
        .is_ok_and(|v| v.major == u32::from(CONTRACT_VERSION.major));
    if !major_ok {
        return Err(RefusalReason::ContractMismatch {
            expected: CONTRACT_VERSION,
            found,
        });
    }
    header.init_root_module::<M>().map_err(|e| match e {
        LibraryError::AbiInstability(report) => RefusalReason::LayoutMismatch {
            expected: CONTRACT_VERSION,
            found: found.clone(),
            detail: layout_errors(&report.to_string()),
        },
        LibraryError::IncompatibleVersionNumber { .. } => RefusalReason::ContractMismatch {
            expected: CONTRACT_VERSION,
            found: found.clone(),
        },
        LibraryError::RootModule { err, .. } => RefusalReason::RootModuleFailed {
            detail: err
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        },
        other => RefusalReason::NotAPlugin {
            detail: other
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        },
    })
}
