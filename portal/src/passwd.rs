//! The broker's password file: one `user:$7$iterations$salt$hash` line per client, in
//! mosquitto's format (PBKDF2-HMAC-SHA512), so that the same file serves the embedded
//! broker and mosquitto (`password_file`).
//!
//! The file is read as hostile input: its size, its line count, every user name and every
//! hash are checked, the iterations are capped (a forged file cannot make each login cost
//! seconds), and an error names the line, never its content.

use crate::acl::Role;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Largest password file read.
pub const MAX_FILE: u64 = 4 * 1024 * 1024;
/// Most entries.
pub const MAX_ENTRIES: usize = 20_000;
/// Iterations of new hashes (mosquitto's default).
pub const ITERATIONS: u32 = 101;
/// Most iterations accepted in a file.
pub const MAX_ITERATIONS: u32 = 100_000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// One password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; HASH_LEN],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash($7${}$...)", self.iterations)
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    type H = hmac::Hmac<sha2::Sha512>;
    let keyed = <H as KeyInit>::new_from_slice(password).expect("HMAC takes any key length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; HASH_LEN] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

impl PasswordHash {
    /// Hashes a password with a fresh salt.
    pub fn new(password: &str) -> PasswordHash {
        let salt: [u8; SALT_LEN] = rand::random();
        PasswordHash {
            iterations: ITERATIONS,
            salt: salt.to_vec(),
            hash: pbkdf2_sha512(password.as_bytes(), &salt, ITERATIONS),
        }
    }

    /// Whether `password` is the one hashed (in constant time over the hash).
    pub fn verify(&self, password: &str) -> bool {
        let got = pbkdf2_sha512(password.as_bytes(), &self.salt, self.iterations);
        got.iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Parses `$7$iterations$salt$hash`.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let mut parts = s.split('$');
        let (Some(""), Some("7"), Some(iter), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("not a $7$ (PBKDF2-SHA512) hash".into());
        };
        let iterations = iter
            .parse::<u32>()
            .ok()
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| format!("iterations must be 1 to {MAX_ITERATIONS}"))?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| (8..=64).contains(&s.len()))
            .ok_or("the salt is not 8 to 64 bytes of base64")?;
        let hash: [u8; HASH_LEN] = STANDARD
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or("the hash is not 64 bytes of base64")?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$7${}${}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.hash)
        )
    }
}

/// The entries of a password file, by user name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    entries: BTreeMap<String, PasswordHash>,
}

impl PasswordFile {
    /// Parses the text of a password file. Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<PasswordFile, String> {
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| format!("line {}: {why}", n + 1);
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| at("expected user:hash".into()))?;
            if Role::of(user).is_none() {
                return Err(at(
                    "the user is neither a portal id (letters, digits, _ and -) nor vrm.portal"
                        .into(),
                ));
            }
            let hash = PasswordHash::parse(hash).map_err(at)?;
            if entries.insert(user.to_owned(), hash).is_some() {
                return Err(at(format!("{user} appears twice")));
            }
            if entries.len() > MAX_ENTRIES {
                return Err(at(format!("more than {MAX_ENTRIES} entries")));
            }
        }
        Ok(PasswordFile { entries })
    }

    /// Reads a password file; a missing file has no entries.
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        use std::io::Read;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PasswordFile::default());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut text = String::new();
        file.take(MAX_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() as u64 > MAX_FILE {
            return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
        }
        PasswordFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The text of the file.
    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(u, h)| format!("{u}:{h}\n"))
            .collect()
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_private(path, self.render().as_bytes())
    }

    /// Sets (or replaces) the password of `user`.
    pub fn set(&mut self, user: &str, password: &str) {
        self.entries
            .insert(user.to_owned(), PasswordHash::new(password));
    }

    /// Removes `user`; whether it was there.
    pub fn remove(&mut self, user: &str) -> bool {
        self.entries.remove(user).is_some()
    }

    /// The entry of `user`.
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.entries.get(user)
    }

    /// The user names.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder (mode 0600), then
/// renames it over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path has no file name"))?;
    let n: u64 = rand::random();
    let tmp = dir.join(format!(".{}.{n:x}.tmp", name.to_string_lossy()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// A fresh random password: 32 bytes, 43 characters of URL-safe base64.
pub fn new_password() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_round_trip() {
        let h = PasswordHash::new("correct horse battery staple");
        assert!(h.verify("correct horse battery staple"));
        assert!(!h.verify("correct horse battery stapler"));
        let again = PasswordHash::parse(&h.to_string()).unwrap();
        assert_eq!(again, h);
        assert!(!format!("{h:?}").contains(&STANDARD.encode(h.hash)));
    }

    #[test]
    fn pbkdf2_matches_the_rfc_vector() {
        // PBKDF2-HMAC-SHA512, P="password", S="salt", c=2 (RFC 7914 style test vector).
        let out = pbkdf2_sha512(b"password", b"salt", 2);
        assert_eq!(
            hex_prefix(&out),
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c"
        );
    }

    fn hex_prefix(b: &[u8]) -> String {
        b[..32].iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hostile_files_are_refused_by_line() {
        let good = PasswordHash::new("x").to_string();
        let f = PasswordFile::parse(&format!("# c\n\ngx1:{good}\nvrm.portal:{good}\n")).unwrap();
        assert_eq!(f.users().collect::<Vec<_>>(), ["gx1", "vrm.portal"]);
        for (bad, line) in [
            (format!("gx1:{good}\ngx1:{good}\n"), 2),
            (format!("g x:{good}\n"), 1),
            ("gx1:$6$abc$def\n".to_owned(), 1),
            ("gx1:$7$999999999$AAAAAAAAAAAAAAAA$AAAA\n".to_owned(), 1),
            ("gx1\n".to_owned(), 1),
            (format!("gx1:{good}\nbad.user:{good}\n"), 2),
        ] {
            let e = PasswordFile::parse(&bad).unwrap_err();
            assert!(e.starts_with(&format!("line {line}:")), "{e}");
        }
    }

    #[test]
    fn saved_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut f = PasswordFile::default();
        f.set("gx1", "secret-secret-secret");
        f.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = PasswordFile::load(&path).unwrap();
        assert!(back.get("gx1").unwrap().verify("secret-secret-secret"));
        assert_eq!(
            PasswordFile::load(&dir.path().join("none")).unwrap(),
            PasswordFile::default()
        );
    }
}
