//! Provisioning: a GX (or the portal itself) gets a fresh random password; its entry goes
//! into the broker's password file and the password into a credentials file for the GX
//! (`[mqtt] credentials` of gx.toml). Provisioning again rotates the password (the old one
//! stops working at once); revoking removes the entry. The embedded broker re-reads the
//! password file and disconnects a client whose entry changed within seconds; mosquitto
//! re-reads it on SIGHUP.

use crate::acl::Role;
use crate::passwd::{PasswordFile, new_password, write_private};
use std::path::Path;

/// Why provisioning failed. Never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The user name is neither a portal id nor the portal's.
    #[error("{0:?} is neither a portal id (1 to 64 letters, digits, _ and -) nor vrm.portal")]
    BadUser(String),
    /// The password file is unreadable or damaged.
    #[error("password file {0}")]
    PasswordFile(String),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ProvisionError> {
    write_private(path, bytes).map_err(|source| ProvisionError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The text of a credentials file.
pub fn credentials_text(user: &str, password: &str) -> String {
    format!(
        "# MQTT credentials of {user} on the VRM broker, written by `bmsfw portal provision`.\n\
         # Secret: keep this file readable by its owner only (mode 0600).\n\
         username = \"{user}\"\n\
         password = \"{password}\"\n"
    )
}

/// Gives `user` a new password: writes `credentials` (mode 0600) and sets the entry in
/// `password_file` (created if missing).
pub fn provision(
    password_file: &Path,
    user: &str,
    credentials: &Path,
) -> Result<(), ProvisionError> {
    Role::of(user).ok_or_else(|| ProvisionError::BadUser(user.chars().take(80).collect()))?;
    let mut entries = PasswordFile::load(password_file).map_err(ProvisionError::PasswordFile)?;
    let password = new_password();
    write(credentials, credentials_text(user, &password).as_bytes())?;
    entries.set(user, &password);
    write(password_file, entries.render().as_bytes())
}

/// Removes the entry of `user`; whether there was one.
pub fn revoke(password_file: &Path, user: &str) -> Result<bool, ProvisionError> {
    let mut entries = PasswordFile::load(password_file).map_err(ProvisionError::PasswordFile)?;
    let had = entries.remove(user);
    if had {
        write(password_file, entries.render().as_bytes())?;
    }
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_core::vrm::tls::MqttCredentials;

    #[test]
    fn provision_rotate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let creds = dir.path().join("gx1.toml");
        provision(&passwd, "gx1", &creds).unwrap();
        let first = MqttCredentials::load(&creds).unwrap();
        assert_eq!(first.username, "gx1");
        let file = PasswordFile::load(&passwd).unwrap();
        assert!(file.get("gx1").unwrap().verify(first.password.expose()));
        // Rotation: the old password no longer matches.
        provision(&passwd, "gx1", &creds).unwrap();
        let second = MqttCredentials::load(&creds).unwrap();
        let file = PasswordFile::load(&passwd).unwrap();
        assert!(file.get("gx1").unwrap().verify(second.password.expose()));
        assert!(!file.get("gx1").unwrap().verify(first.password.expose()));
        assert!(revoke(&passwd, "gx1").unwrap());
        assert!(PasswordFile::load(&passwd).unwrap().get("gx1").is_none());
        assert!(!revoke(&passwd, "gx1").unwrap());
        assert!(matches!(
            provision(&passwd, "../etc", &creds),
            Err(ProvisionError::BadUser(_))
        ));
        // A damaged password file is never overwritten by a provisioning.
        std::fs::write(&passwd, "garbage\n").unwrap();
        assert!(provision(&passwd, "gx2", &creds).is_err());
        assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "garbage\n");
    }
}
