//! Handing exactly the hashed bytes to the dynamic loader.
//!
//! The loader reads a library file once, hashes those bytes, and opens those same bytes:
//! never the path again, since the file could change between the hash and the open. Two
//! ways are offered ([`LoadMethod`]):
//!
//! - **Sealed memfd** (default). The bytes go into an anonymous memory file
//!   (`memfd_create`), which is then sealed against writing, growing and shrinking
//!   (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`) and opened through
//!   `/proc/self/fd/<n>`. Nothing outside this process can reach the file, and nothing,
//!   this process included, can change it after sealing. Needs Linux 3.17+ and `/proc`.
//! - **Private copy**. The bytes are written to a fresh directory with mode 0700 (a
//!   random name under the configured directory), opened from there, and deleted. Only
//!   the daemon's user (or root) could change the copy between write and open. For
//!   systems where memfds cannot be mapped executable (`vm.memfd_noexec = 2`).
//!
//! Opened libraries are never unloaded (abi_stable leaks them: unloading Rust code whose
//! objects may still be referenced is unsound). For the same reason a memfd that was
//! opened is kept open for the life of the process: the dynamic loader remembers loaded
//! objects by path, so a reused descriptor number would make a later `dlopen` of
//! `/proc/self/fd/<n>` return the earlier library.

use super::refusal::RefusalReason;
use bmsfw_plugin_api::abi_stable::library::{LibHeader, LibraryError, lib_header_from_path};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// How the loader hands the hashed bytes to the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoadMethod {
    /// A sealed anonymous memory file (the default).
    #[default]
    SealedMemfd,
    /// A private copy in a fresh 0700 directory under `dir`, deleted after opening.
    PrivateCopy {
        /// Where the private directories are made (e.g. the state directory).
        dir: PathBuf,
    },
}

/// Opens `bytes` as a library and returns its abi_stable header. `label` names the
/// library in `/proc/<pid>/maps` and in errors.
pub(crate) fn open_header(
    bytes: &[u8],
    label: &str,
    method: &LoadMethod,
) -> Result<&'static LibHeader, RefusalReason> {
    match method {
        LoadMethod::SealedMemfd => {
            let file = sealed_memfd(bytes, label).map_err(RefusalReason::Staging)?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let result = lib_header_from_path(&path);
            if !matches!(result, Err(LibraryError::OpenError { .. })) {
                // The dynamic loader has seen this path; see the module documentation.
                std::mem::forget(file);
            }
            result.map_err(|e| library_refusal(e, label))
        }
        LoadMethod::PrivateCopy { dir } => {
            let (_dir, path) = private_copy(bytes, label, dir).map_err(RefusalReason::Staging)?;
            // `_dir` is removed when it goes out of scope; the mapping stays.
            lib_header_from_path(&path).map_err(|e| library_refusal(e, label))
        }
    }
}

/// Opens the library at `path` (the plugin host's `/proc/self/fd/3`) and returns its
/// abi_stable header.
pub(crate) fn open_header_at(
    path: &Path,
    label: &str,
) -> Result<&'static LibHeader, RefusalReason> {
    lib_header_from_path(path).map_err(|e| library_refusal(e, label))
}

/// The bytes as a descriptor a plugin host can load: a sealed memfd, or (for
/// [`LoadMethod::PrivateCopy`]) a private copy opened read-only and then deleted.
pub(crate) fn library_descriptor(
    bytes: &[u8],
    label: &str,
    method: &LoadMethod,
) -> std::io::Result<std::os::fd::OwnedFd> {
    match method {
        LoadMethod::SealedMemfd => sealed_memfd(bytes, label).map(Into::into),
        LoadMethod::PrivateCopy { dir } => {
            let (_dir, path) = private_copy(bytes, label, dir)?;
            std::fs::File::open(&path).map(Into::into)
        }
    }
}

fn sealed_memfd(bytes: &[u8], label: &str) -> std::io::Result<File> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    let name: String = format!("bmsfw-plugin:{label}").chars().take(200).collect();
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Linux 6.3+ wants executable memfds declared (MFD_EXEC); older kernels refuse the
    // flag with EINVAL.
    let fd = match memfd_create(&name, base | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => memfd_create(&name, base)?,
        other => other?,
    };
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(file)
}

fn private_copy(
    bytes: &[u8],
    label: &str,
    dir: &Path,
) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let private = tempfile::Builder::new()
        .prefix("bmsfw-plugin-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)?;
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let path = private.path().join(format!("{safe}.so"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o500)
        .open(&path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok((private, path))
}

/// abi_stable's error as a refusal. Its texts carry newlines; they are flattened.
fn library_refusal(e: LibraryError, label: &str) -> RefusalReason {
    let flat = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match e {
        LibraryError::OpenError { err, .. } => RefusalReason::NotAPlugin {
            detail: format!("the dynamic loader refused {label}: {err}"),
        },
        LibraryError::GetSymbolError { .. } => RefusalReason::NotAPlugin {
            detail: format!(
                "{label} exports no abi_stable root module (not built with export_plugin!)"
            ),
        },
        other @ (LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. }) => {
            RefusalReason::AbiIncompatible {
                detail: flat(other.to_string()),
            }
        }
        other => RefusalReason::NotAPlugin {
            detail: flat(other.to_string()),
        },
    }
}
