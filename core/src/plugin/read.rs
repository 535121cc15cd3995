//! Reading a library file out of the plugin directory: a regular file only, checked
//! before it is opened for reading.
//!
//! Whoever can write to the plugin directory can put anything there under a `*.so`
//! name. Opening a device node or a FIFO for reading has effects of its own (a FIFO's
//! writer is released, a device driver runs its open routine), and reading a huge or
//! endless file costs memory and time. So the loader:
//!
//! 1. opens the path with `O_PATH | O_NOFOLLOW | O_CLOEXEC`: a handle on the directory
//!    entry's inode that reads nothing, opens no device and no FIFO, and does not
//!    follow a symbolic link (it designates the link itself);
//! 2. `fstat`s that handle: a symbolic link is refused with its own reason (the loader
//!    never follows links in the plugin directory), anything else that is not a regular
//!    file (directory, device node, FIFO, socket) is refused as not a file, and a size
//!    above the limit is refused, all without reading a byte;
//! 3. opens **that same inode** for reading through `/proc/self/fd/<n>` of the `O_PATH`
//!    handle (the kernel reopens the file the handle holds, whatever the directory entry
//!    points to by then). Without `/proc`, it opens the path again with `O_NOFOLLOW`;
//! 4. `fstat`s the readable descriptor and compares device and inode numbers with the
//!    first `fstat`: a file swapped in between is refused. The type and size are checked
//!    again;
//! 5. reads at most the limit plus one byte (the file may have grown since the `fstat`);
//!    more is refused as too large.

use super::refusal::RefusalReason;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::io::Read;
use std::path::Path;

/// Reads the regular file at `path`, at most `limit` bytes; see the module documentation.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, RefusalReason> {
    read_regular_with(path, limit, reopen)
}

/// [`read_regular`] with the step that opens the checked inode for reading given.
pub(crate) fn read_regular_with(
    path: &Path,
    limit: u64,
    reopen: impl FnOnce(&OwnedFd, &Path) -> Result<OwnedFd, RefusalReason>,
) -> Result<Vec<u8>, RefusalReason> {
    let handle = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| open_error(e, path))?;
    let first = rustix::fs::fstat(&handle).map_err(unreadable)?;
    let size = checked(&first, path, limit)?;

    let fd = reopen(&handle, path)?;
    let second = rustix::fs::fstat(&fd).map_err(unreadable)?;
    if (second.st_dev, second.st_ino) != (first.st_dev, first.st_ino) {
        return Err(RefusalReason::Unreadable(std::io::Error::other(format!(
            "the file was replaced while it was being opened (inode {} became {})",
            first.st_ino, second.st_ino
        ))));
    }
    let size = checked(&second, path, limit)?.max(size);
    drop(handle);

    let capacity = usize::try_from(size.min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    std::fs::File::from(fd)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(RefusalReason::Unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(RefusalReason::TooLarge {
            size: size.max(bytes.len() as u64),
            limit,
        });
    }
    Ok(bytes)
}

/// Opens the inode `handle` (an `O_PATH` descriptor) holds for reading: through
/// `/proc/self/fd/<n>`, or, without `/proc`, the path again with `O_NOFOLLOW` (the caller
/// then sees a swapped file by its inode number).
pub(crate) fn reopen(handle: &OwnedFd, path: &Path) -> Result<OwnedFd, RefusalReason> {
    // O_NONBLOCK: should the path route ever meet a FIFO, opening it does not wait for
    // a writer (the inode comparison refuses it).
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let via_proc = format!("/proc/self/fd/{}", handle.as_raw_fd());
    match rustix::fs::open(via_proc.as_str(), flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => reopen_by_path(path),
        Err(e) => Err(unreadable(e)),
    }
}

/// Opens `path` for reading without following a final symbolic link.
pub(crate) fn reopen_by_path(path: &Path) -> Result<OwnedFd, RefusalReason> {
    let flags =
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::NOFOLLOW;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| open_error(e, path))
}

/// The file's size once its type is a regular file's and its size within `limit`.
fn checked(stat: &Stat, path: &Path, limit: u64) -> Result<u64, RefusalReason> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Symlink => return Err(symbolic_link(path)),
        other => {
            return Err(RefusalReason::NotAFile {
                kind: kind_of(other),
            });
        }
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > limit {
        return Err(RefusalReason::TooLarge { size, limit });
    }
    Ok(size)
}

fn kind_of(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Directory => "a directory",
        FileType::Fifo => "a named pipe (FIFO)",
        FileType::CharacterDevice => "a character device node",
        FileType::BlockDevice => "a block device node",
        FileType::Socket => "a socket",
        FileType::RegularFile => "a regular file",
        FileType::Symlink => "a symbolic link",
        _ => "a file of unknown type",
    }
}

/// `ELOOP` from an `O_NOFOLLOW` open means a symbolic link.
fn open_error(e: Errno, path: &Path) -> RefusalReason {
    if e == Errno::LOOP {
        symbolic_link(path)
    } else {
        unreadable(e)
    }
}

fn symbolic_link(path: &Path) -> RefusalReason {
    RefusalReason::SymbolicLink {
        target: std::fs::read_link(path).ok(),
    }
}

fn unreadable(e: Errno) -> RefusalReason {
    RefusalReason::Unreadable(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("liba.so");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_regular(&p, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&p, 9),
            Err(RefusalReason::TooLarge { size: 10, limit: 9 })
        ));
        assert_eq!(
            read_regular_with(&p, 10, |_, p| reopen_by_path(p))
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn a_file_swapped_between_the_check_and_the_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("liba.so");
        std::fs::write(&p, b"checked").unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"swapped in").unwrap();
        // The path route sees the swap by the inode number.
        let r = read_regular_with(&p, 100, |_, path| {
            std::fs::rename(&other, path).unwrap();
            reopen_by_path(path)
        });
        let Err(RefusalReason::Unreadable(e)) = r else {
            panic!("{r:?}");
        };
        assert!(
            e.to_string().contains("replaced while it was being opened"),
            "{e}"
        );

        // The /proc route reads the checked inode, whatever the name points to now.
        std::fs::write(&p, b"checked").unwrap();
        std::fs::write(&other, b"swapped in").unwrap();
        let bytes = read_regular_with(&p, 100, |handle, path| {
            std::fs::rename(&other, path).unwrap();
            reopen(handle, path)
        })
        .unwrap();
        assert_eq!(bytes, b"checked");
    }

    #[test]
    fn a_link_swapped_in_before_the_path_route_opens_is_refused_as_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("liba.so");
        std::fs::write(&p, b"checked").unwrap();
        let r = read_regular_with(&p, 100, |_, path| {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink("/etc/hostname", path).unwrap();
            reopen_by_path(path)
        });
        assert!(
            matches!(&r, Err(RefusalReason::SymbolicLink { target: Some(t) }) if t == Path::new("/etc/hostname")),
            "{r:?}"
        );
    }
}
