//! Users, passwords and sessions.
//!
//! Passwords are kept only as argon2id hashes (PHC strings); session tokens are 256 random
//! bits handed to the browser once, and the portal keeps only their SHA-256, so neither a
//! leaked configuration nor a memory dump of the session table lets anyone log in.
//!
//! Access levels follow VRM: **Full control** may upload firmware and start updates;
//! **Monitor only** sees everything and can start nothing.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLevel {
    /// Sees everything and may upload firmware and start updates.
    FullControl,
    /// Sees everything and can start nothing.
    MonitorOnly,
}

impl AccessLevel {
    /// The label VRM shows.
    pub const fn label(self) -> &'static str {
        match self {
            AccessLevel::FullControl => "Full control",
            AccessLevel::MonitorOnly => "Monitor only",
        }
    }
}

/// One user as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The login name.
    pub name: String,
    /// The argon2id hash of the password, as a PHC string (`bmsfw portal hash-password`).
    pub password_hash: String,
    /// What the user may do.
    pub access: AccessLevel,
    /// The portal ids of the installations the user sees; `"*"` means all.
    pub installations: Vec<String>,
}

impl UserRecord {
    /// Whether the user sees installation `portal_id`.
    pub fn sees(&self, portal_id: &str) -> bool {
        self.installations
            .iter()
            .any(|i| i == "*" || i == portal_id)
    }
}

/// Why a password could not be hashed or a user list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A stored hash is not a valid PHC string.
    #[error("user {user:?}: password_hash is not an argon2 PHC string: {reason}")]
    BadHash {
        /// The user.
        user: String,
        /// What was wrong.
        reason: String,
    },
    /// Two users share a name.
    #[error("user {0:?} is listed twice")]
    Duplicate(String),
}

/// Hashes `password` with argon2id, the default parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// The configured users.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, UserRecord>,
    /// Verified against when the name is unknown, so both cases take the same time.
    decoy: String,
}

impl Users {
    /// Checks every hash and that names are unique.
    pub fn new(records: Vec<UserRecord>) -> Result<Users, AuthError> {
        let mut by_name = HashMap::new();
        for r in records {
            PasswordHash::new(&r.password_hash).map_err(|e| AuthError::BadHash {
                user: r.name.clone(),
                reason: e.to_string(),
            })?;
            if by_name.contains_key(&r.name) {
                return Err(AuthError::Duplicate(r.name));
            }
            by_name.insert(r.name.clone(), r);
        }
        Ok(Users {
            by_name,
            decoy: hash_password("decoy password for unknown users")?,
        })
    }

    /// The user `name` if `password` is theirs.
    pub fn verify(&self, name: &str, password: &str) -> Option<&UserRecord> {
        let record = self.by_name.get(name);
        let hash = record.map_or(self.decoy.as_str(), |r| r.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        record.filter(|_| ok)
    }

    /// The user `name`.
    pub fn get(&self, name: &str) -> Option<&UserRecord> {
        self.by_name.get(name)
    }
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's name.
    pub user: String,
    /// What the user may do.
    pub access: AccessLevel,
    expires: Instant,
}

/// Most sessions kept at once; the oldest goes beyond.
const MAX_SESSIONS: usize = 10_000;

/// The sessions, keyed by the SHA-256 of their token.
#[derive(Debug)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions that last `lifetime` from login.
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            by_hash: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `user` and returns its token (64 hex digits), which only the
    /// browser keeps.
    pub fn create(&self, user: &UserRecord) -> String {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            token_hash(&token),
            Session {
                user: user.name.clone(),
                access: user.access,
                expires: now + self.lifetime,
            },
        );
        token
    }

    /// The live session of `token`.
    pub fn lookup(&self, token: &str) -> Option<Session> {
        if token.len() != 64 {
            return None;
        }
        let key = token_hash(token);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub fn remove(&self, token: &str) {
        self.lock().remove(&token_hash(token));
    }

    /// Whether the table holds `token` in clear anywhere (it must not).
    #[cfg(test)]
    fn stores_plain(&self, token: &str) -> bool {
        self.lock()
            .keys()
            .any(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>() == token)
    }
}

/// Failed logins in a row after which a user name is locked for a while.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long a user name stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(30);
/// Most user names tracked (guesses at unknown names cannot grow the table without end).
const MAX_TRACKED: usize = 1024;

/// Slows down password guessing: after [`MAX_FAILED_LOGINS`] failures in a row, a user
/// name is refused for [`LOCKOUT`].
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` when `name` may try now, or how long it must wait.
    pub fn check(&self, name: &str) -> Result<(), Duration> {
        match self.lock().get(name) {
            Some((n, last)) if *n >= MAX_FAILED_LOGINS => {
                let until = *last + LOCKOUT;
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// A failed attempt for `name`.
    pub fn failed(&self, name: &str) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(name) {
            let now = Instant::now();
            map.retain(|_, (_, last)| now.duration_since(*last) < LOCKOUT);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(name.to_owned()).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    /// A successful login for `name`.
    pub fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, access: AccessLevel) -> UserRecord {
        UserRecord {
            name: name.into(),
            password_hash: hash_password(password).unwrap(),
            access,
            installations: vec!["gx1".into()],
        }
    }

    #[test]
    fn passwords_are_stored_hashed_and_verified() {
        let u = user("ann", "correct horse", AccessLevel::FullControl);
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("correct horse"));
        let users = Users::new(vec![u]).unwrap();
        assert!(users.verify("ann", "correct horse").is_some());
        assert!(users.verify("ann", "wrong").is_none());
        assert!(users.verify("bob", "correct horse").is_none());
    }

    #[test]
    fn bad_hashes_and_duplicates_are_refused() {
        let mut u = user("ann", "x", AccessLevel::MonitorOnly);
        u.password_hash = "plain".into();
        assert!(matches!(
            Users::new(vec![u]),
            Err(AuthError::BadHash { .. })
        ));
        let a = user("ann", "x", AccessLevel::MonitorOnly);
        assert_eq!(
            Users::new(vec![a.clone(), a]).unwrap_err(),
            AuthError::Duplicate("ann".into())
        );
    }

    #[test]
    fn sessions_keep_only_token_hashes_and_expire() {
        let u = user("ann", "x", AccessLevel::MonitorOnly);
        let sessions = Sessions::new(Duration::from_secs(60));
        let token = sessions.create(&u);
        assert_eq!(token.len(), 64);
        assert!(!sessions.stores_plain(&token));
        let s = sessions.lookup(&token).unwrap();
        assert_eq!(s.user, "ann");
        assert_eq!(s.access, AccessLevel::MonitorOnly);
        assert!(sessions.lookup(&"0".repeat(64)).is_none());
        assert!(sessions.lookup("short").is_none());
        sessions.remove(&token);
        assert!(sessions.lookup(&token).is_none());
        let expired = Sessions::new(Duration::ZERO);
        let t = expired.create(&u);
        assert!(expired.lookup(&t).is_none());
    }

    #[test]
    fn repeated_failures_lock_a_user_name_for_a_while() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            t.failed("ann");
        }
        assert!(t.check("ann").is_ok());
        t.failed("ann");
        let wait = t.check("ann").unwrap_err();
        assert!(wait <= LOCKOUT && wait > LOCKOUT - Duration::from_secs(5));
        assert!(t.check("bob").is_ok(), "other names are not affected");
        t.succeeded("ann");
        assert!(t.check("ann").is_ok());
    }

    #[test]
    fn installations_visible_to_a_user() {
        let mut u = user("ann", "x", AccessLevel::MonitorOnly);
        assert!(u.sees("gx1"));
        assert!(!u.sees("gx2"));
        u.installations = vec!["*".into()];
        assert!(u.sees("gx2"));
    }
}
