//! Free space on the staging file system.

use std::io;
use std::path::Path;

/// Bytes available to an unprivileged writer on the file system holding `path` (statvfs
/// `f_bavail * f_frsize`).
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_space_of_an_existing_dir_and_fails_on_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::available_bytes(dir.path()).unwrap() > 0);
        assert!(super::available_bytes(&dir.path().join("missing")).is_err());
    }
}
