//! The portal's command-signing key: every `update` and `cancel` the portal sends carries
//! an Ed25519 signature a GX verifies before it acts ([`bmsfw_vrm_wire::signature`]).
//!
//! The key lives in a file of its own (`signing_key` in `portal.toml`; by default
//! `portal-signing.key` beside the database): 64 hex digits, created on the first start
//! with mode 0600, refused when group or others may read it. Its public key is written
//! beside it (`<key file>.pub`) and printed at start: that is what goes into each GX's
//! `gx.toml` under `[command_signing] portal_keys`. The secret itself never appears in a
//! log, an error or a `Debug` output.

use bmsfw_vrm_wire::signature::{
    CommandSignature, NONCE_LEN, Nonce, PortalKey, public_key, sign_cancel, sign_update,
};
use bmsfw_vrm_wire::{CommandId, PortalId, UpdateCommand};
use ed25519_dalek::SigningKey;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest key file read (64 hex digits and a line end; more is not a key file).
const MAX_KEY_FILE: u64 = 256;

/// Why the key could not be loaded or created. Never carries the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// Reading, creating or writing the file failed.
    #[error("portal signing key {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file's permissions let others read it.
    #[error(
        "portal signing key {}: mode {mode:04o} lets others read it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file is not a key.
    #[error("portal signing key {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
}

/// The portal's signing key.
pub struct PortalSigner {
    key: SigningKey,
    public: PortalKey,
}

impl fmt::Debug for PortalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out[..]);
    out
}

impl PortalSigner {
    /// The key of `secret` (tests and tools; a portal loads its key file).
    pub fn from_secret(secret: [u8; 32]) -> PortalSigner {
        let key = SigningKey::from_bytes(&secret);
        PortalSigner {
            public: public_key(&key),
            key,
        }
    }

    /// A new random key.
    pub fn generate() -> PortalSigner {
        PortalSigner::from_secret(random::<32>())
    }

    /// Loads the key in `path`, or creates it there (mode 0600, fsynced) with its public
    /// key beside it in `<path>.pub`.
    pub fn load_or_create(path: &Path) -> Result<PortalSigner, SignerError> {
        let io_err = |source| SignerError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::File::open(path) {
            Ok(file) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
                    if mode & 0o077 != 0 {
                        return Err(SignerError::Exposed {
                            path: path.to_path_buf(),
                            mode,
                        });
                    }
                }
                let mut text = Vec::new();
                file.take(MAX_KEY_FILE + 1)
                    .read_to_end(&mut text)
                    .map_err(io_err)?;
                let invalid = |reason: &str| SignerError::Invalid {
                    path: path.to_path_buf(),
                    reason: reason.to_owned(),
                };
                if text.len() as u64 > MAX_KEY_FILE {
                    return Err(invalid("larger than a key file"));
                }
                let text = std::str::from_utf8(&text)
                    .map_err(|_| invalid("not text: expected 64 hex digits"))?
                    .trim();
                if text.len() != 64 {
                    return Err(invalid("expected 64 hex digits"));
                }
                let mut secret = [0u8; 32];
                hex::decode_to_slice(text, &mut secret)
                    .map_err(|_| invalid("expected 64 hex digits"))?;
                let signer = PortalSigner::from_secret(secret);
                signer.write_public(path)?;
                Ok(signer)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let signer = PortalSigner::generate();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io_err)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io_err)?;
                let text = format!("{}\n", hex::encode(signer.key.to_bytes()));
                file.write_all(text.as_bytes()).map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = std::fs::File::open(dir)
                {
                    let _ = d.sync_all();
                }
                tracing::info!(file = %path.display(), public_key = %signer.public, "created the portal's command-signing key");
                signer.write_public(path)?;
                Ok(signer)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Writes the public key to `<path>.pub`.
    fn write_public(&self, path: &Path) -> Result<(), SignerError> {
        let public = public_path(path);
        std::fs::write(&public, format!("{}\n", self.public)).map_err(|source| SignerError::Io {
            path: public,
            source,
        })
    }

    /// The public key, for `gx.toml`'s `[command_signing] portal_keys`.
    pub fn public_key(&self) -> PortalKey {
        self.public
    }

    /// Signs `update`, command `id` for the GX `portal`, now, with a fresh nonce, and
    /// returns it with its signature.
    pub fn sign_update(
        &self,
        portal: &PortalId,
        id: &CommandId,
        mut update: UpdateCommand,
    ) -> UpdateCommand {
        update.signature = None;
        let signature = sign_update(
            &self.key,
            portal,
            id,
            &update,
            now_ms(),
            Nonce(random::<NONCE_LEN>()),
        );
        update.signature = Some(signature);
        update
    }

    /// The signature of a cancel of `job`, command `id`, for the GX `portal`, now.
    pub fn sign_cancel(&self, portal: &PortalId, id: &CommandId, job: u64) -> CommandSignature {
        sign_cancel(
            &self.key,
            portal,
            id,
            job,
            now_ms(),
            Nonce(random::<NONCE_LEN>()),
        )
    }
}

/// Where the public key of the key file `path` is written.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".pub");
    path.with_file_name(name)
}

fn now_ms() -> u64 {
    crate::presence::now_ms()
}

/// `update` signed by `signer`, or unsigned without one (a GX refuses it with 800).
pub fn signed_update(
    signer: Option<&PortalSigner>,
    portal: &PortalId,
    id: &CommandId,
    update: UpdateCommand,
) -> UpdateCommand {
    match signer {
        Some(s) => s.sign_update(portal, id, update),
        None => update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_vrm_wire::signature::verify_update;
    use bmsfw_vrm_wire::{Acknowledgement, FileName, Serial, Sha256Hex, VersionPolicy};

    fn update() -> UpdateCommand {
        UpdateCommand {
            battery: Serial::new("SN-1").unwrap(),
            file_name: FileName::new("a.bin").unwrap(),
            size: 10,
            chunk_size: 4,
            sha256: Sha256Hex([1; 32]),
            acknowledgements: Acknowledgement::ALL.into_iter().collect(),
            version_policy: VersionPolicy::NewerOnly,
            targets: None,
            signature: None,
        }
    }

    #[test]
    fn a_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/portal-signing.key");
        let first = PortalSigner::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = PortalSigner::load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        let public = std::fs::read_to_string(public_path(&path)).unwrap();
        assert_eq!(public.trim(), first.public_key().to_hex());
        // The secret appears in no Debug output.
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{first:?}").contains(secret.trim()));
        let portal = PortalId::new("gx1").unwrap();
        let id = CommandId::new("u-1").unwrap();
        let a = first.sign_update(&portal, &id, update());
        let b = first.sign_update(&portal, &id, a.clone());
        let (sa, sb) = (a.signature.clone().unwrap(), b.signature.clone().unwrap());
        assert_ne!(sa.nonce, sb.nonce, "every signature has its own nonce");
        verify_update(&sa, &portal, &id, &a).unwrap();
        verify_update(&sb, &portal, &id, &b).unwrap();
    }

    #[test]
    fn exposed_or_damaged_key_files_are_refused_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        PortalSigner::load_or_create(&path).unwrap();
        let secret = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = PortalSigner::load_or_create(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(!e.contains(secret.trim()));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, format!("{}zz", &secret.trim()[..62])).unwrap();
        let e = PortalSigner::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        assert!(!e.contains(&secret.trim()[..62]));
        std::fs::write(&path, vec![b'a'; 1000]).unwrap();
        let e = PortalSigner::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("larger"), "{e}");
    }
}
