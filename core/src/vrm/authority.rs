//! Which update commands the GX obeys: only those its portal signed.
//!
//! Every `update` (and `cancel`) command must carry a signature of the portal's Ed25519
//! key over its fields ([`bmsfw_vrm_wire::signature`]). Before anything else happens to
//! the command (no job, no upload, nothing on the bus), [`CommandAuthority`] checks, in
//! order:
//!
//! 1. that there is a signature (800 `COMMAND_UNSIGNED`);
//! 2. that `gx.toml` trusts at least one portal key (805 `COMMAND_KEYS_NOT_CONFIGURED`);
//! 3. that the key is not revoked (802 `COMMAND_KEY_REVOKED`) and is trusted, and that the
//!    signature verifies over this GX's portal id and the command's fields (801
//!    `COMMAND_SIGNATURE_INVALID`);
//! 4. that the timestamp lies within `max_age_seconds` of the GX's clock, either way
//!    (803 `COMMAND_STALE`);
//! 5. that the nonce was never accepted before (804 `COMMAND_REPLAYED`); the nonce is then
//!    written to the nonce store and fsynced before the command goes on.
//!
//! The staged file is held to the signed digest and size: the upload is announced with
//! the signed values, and stage 1 deletes a file whose digest differs (705) before any
//! frame is sent.
//!
//! The nonce store ([`NonceStore`], `<state dir>/vrm/nonces.json`) is bounded: a nonce is
//! forgotten once its timestamp is older than the window, or when the store is full, and
//! the store then remembers the newest timestamp it forgot as a floor: a command signed
//! at or before the floor is refused as stale, so forgetting never opens a replay, even
//! if the clock steps back. A store that cannot be read on start-up is replaced by an
//! empty one whose floor is the start-up time.

use crate::errors::codes;
use crate::journal::durable::{ensure_dir, read_bounded, write_atomic};
use crate::unix_time::UnixMillis;
use crate::vrm::engine::EngineRefusal;
use bmsfw_vrm_wire::signature::{
    CommandSignature, Nonce, PortalKey, SignatureError, verify_cancel, verify_update,
};
use bmsfw_vrm_wire::{CommandId, PortalId, UpdateCommand};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Portal keys trusted at once, at most: the current one and, during a rotation, the next.
pub const MAX_PORTAL_KEYS: usize = 2;
/// Revoked keys listed, at most.
pub const MAX_REVOKED_KEYS: usize = 64;
/// Nonces remembered, at most (updates are rare: this is hours of constant use).
pub const MAX_NONCES: usize = 1024;
/// The default window of a command's timestamp, in seconds.
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 300;

const NONCE_FILE: &str = "nonces.json";
const MAX_NONCE_FILE: u64 = 256 * 1024;

/// The `[command_signing]` section of `gx.toml`: the portal keys this GX obeys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSigningConfig")]
pub struct CommandSigningConfig {
    /// The portal's Ed25519 public keys (64 hex digits each), one or, while the portal
    /// rotates its key, two. Empty: every update is refused (805).
    pub portal_keys: Vec<PortalKey>,
    /// Keys refused whatever else this file says (a key retired or lost).
    pub revoked_keys: Vec<PortalKey>,
    /// How far a command's timestamp may lie from the GX's clock, either way, in seconds
    /// (1 to 86400).
    pub max_age_seconds: u64,
}

impl Default for CommandSigningConfig {
    fn default() -> CommandSigningConfig {
        CommandSigningConfig {
            portal_keys: Vec::new(),
            revoked_keys: Vec::new(),
            max_age_seconds: DEFAULT_MAX_AGE_SECONDS,
        }
    }
}

impl CommandSigningConfig {
    /// Trusts `keys` with the default window.
    pub fn trusting(keys: impl IntoIterator<Item = PortalKey>) -> CommandSigningConfig {
        CommandSigningConfig {
            portal_keys: keys.into_iter().collect(),
            ..CommandSigningConfig::default()
        }
    }

    /// Checks the limits and that no key is both trusted and revoked.
    pub fn check(&self) -> Result<(), String> {
        if self.portal_keys.len() > MAX_PORTAL_KEYS {
            return Err(format!(
                "portal_keys lists {} keys, at most {MAX_PORTAL_KEYS} (the current key and, \
                 during a rotation, the next)",
                self.portal_keys.len()
            ));
        }
        if self.revoked_keys.len() > MAX_REVOKED_KEYS {
            return Err(format!(
                "revoked_keys lists {} keys, at most {MAX_REVOKED_KEYS}",
                self.revoked_keys.len()
            ));
        }
        if let Some(k) = self
            .portal_keys
            .iter()
            .find(|k| self.revoked_keys.contains(k))
        {
            return Err(format!(
                "key {k} is in both portal_keys and revoked_keys: remove it from portal_keys"
            ));
        }
        if !(1..=86_400).contains(&self.max_age_seconds) {
            return Err(format!(
                "max_age_seconds must be between 1 and 86400, got {}",
                self.max_age_seconds
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigningConfig {
    #[serde(default, deserialize_with = "keys")]
    portal_keys: Vec<PortalKey>,
    #[serde(default, deserialize_with = "keys")]
    revoked_keys: Vec<PortalKey>,
    #[serde(default)]
    max_age_seconds: Option<i64>,
}

fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortalKey>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    if texts.len() > MAX_REVOKED_KEYS {
        return Err(serde::de::Error::custom(format!(
            "{} keys, at most {MAX_REVOKED_KEYS}",
            texts.len()
        )));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            PortalKey::parse(t).map_err(|e| {
                serde::de::Error::custom(format!("key {}: an Ed25519 public key {e}", i + 1))
            })
        })
        .collect()
}

impl TryFrom<RawSigningConfig> for CommandSigningConfig {
    type Error = String;
    fn try_from(raw: RawSigningConfig) -> Result<CommandSigningConfig, String> {
        let max_age_seconds = match raw.max_age_seconds {
            None => DEFAULT_MAX_AGE_SECONDS,
            Some(v) => u64::try_from(v).unwrap_or(0),
        };
        let c = CommandSigningConfig {
            portal_keys: raw.portal_keys,
            revoked_keys: raw.revoked_keys,
            max_age_seconds,
        };
        c.check()?;
        Ok(c)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceFile {
    /// Commands signed at or before this are refused (their nonces may be forgotten).
    floor_ms: u64,
    /// Accepted nonces and their commands' timestamps.
    nonces: Vec<(Nonce, u64)>,
}

/// The nonces of the accepted commands, on disk: bounded, fsynced on every change.
#[derive(Debug)]
pub struct NonceStore {
    dir: PathBuf,
    floor_ms: u64,
    nonces: BTreeMap<Nonce, u64>,
}

impl NonceStore {
    /// Opens the store in `dir`; an unreadable or oversized file is reported and replaced
    /// by an empty store whose floor is `now` (no command signed before the start-up is
    /// accepted, so nothing it held can be replayed).
    pub fn open(dir: &Path, now: UnixMillis) -> io::Result<NonceStore> {
        ensure_dir(dir)?;
        let path = dir.join(NONCE_FILE);
        let file = match read_bounded(&path, MAX_NONCE_FILE) {
            Ok(Ok(bytes)) => serde_json::from_slice::<NonceFile>(&bytes)
                .ok()
                .filter(|f| f.nonces.len() <= MAX_NONCES),
            Ok(Err(_)) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(NonceFile::default()),
            Err(e) => return Err(e),
        };
        let file = file.unwrap_or_else(|| {
            tracing::warn!(file = %path.display(), "unreadable nonce store; accepting only commands signed from now on");
            NonceFile {
                floor_ms: now.0,
                nonces: Vec::new(),
            }
        });
        Ok(NonceStore {
            dir: dir.to_path_buf(),
            floor_ms: file.floor_ms,
            nonces: file.nonces.into_iter().collect(),
        })
    }

    /// Commands signed at or before this are refused.
    pub fn floor_ms(&self) -> u64 {
        self.floor_ms
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }

    /// Whether `nonce` was accepted.
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.nonces.contains_key(nonce)
    }

    /// Records `nonce` of a command signed at `timestamp_ms`, forgetting those older than
    /// `oldest_ms` and, beyond [`MAX_NONCES`], the oldest (raising the floor to their
    /// timestamps), and writes the store durably.
    pub fn insert(&mut self, nonce: Nonce, timestamp_ms: u64, oldest_ms: u64) -> io::Result<()> {
        let floor = &mut self.floor_ms;
        self.nonces.retain(|_, ts| {
            let keep = *ts >= oldest_ms;
            if !keep {
                *floor = (*floor).max(*ts);
            }
            keep
        });
        while self.nonces.len() >= MAX_NONCES {
            let Some((&n, &ts)) = self.nonces.iter().min_by_key(|(_, ts)| **ts) else {
                break;
            };
            self.nonces.remove(&n);
            self.floor_ms = self.floor_ms.max(ts);
        }
        self.nonces.insert(nonce, timestamp_ms);
        let file = NonceFile {
            floor_ms: self.floor_ms,
            nonces: self.nonces.iter().map(|(n, ts)| (*n, *ts)).collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
        write_atomic(&self.dir, NONCE_FILE, &bytes)
    }
}

/// What the signature of a command must match.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// An `update` command.
    Update(&'a UpdateCommand),
    /// A `cancel` of this job.
    Cancel {
        /// The job.
        job: u64,
        /// The signature the command carried.
        signature: Option<&'a CommandSignature>,
    },
}

impl Signed<'_> {
    fn signature(&self) -> Option<&CommandSignature> {
        match self {
            Signed::Update(u) => u.signature.as_ref(),
            Signed::Cancel { signature, .. } => *signature,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Signed::Update(_) => "update",
            Signed::Cancel { .. } => "cancel",
        }
    }
}

/// The checks of the module's documentation, with the nonce store.
#[derive(Debug)]
pub struct CommandAuthority {
    config: CommandSigningConfig,
    nonces: NonceStore,
}

impl CommandAuthority {
    /// Opens the nonce store in `dir` (the link's directory).
    pub fn open(
        dir: &Path,
        config: CommandSigningConfig,
        now: UnixMillis,
    ) -> io::Result<CommandAuthority> {
        if config.portal_keys.is_empty() {
            tracing::warn!(
                "no portal key in [command_signing] portal_keys: every update from VRM will be refused"
            );
        }
        Ok(CommandAuthority {
            config,
            nonces: NonceStore::open(dir, now)?,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &CommandSigningConfig {
        &self.config
    }

    /// The nonce store.
    pub fn nonces(&self) -> &NonceStore {
        &self.nonces
    }

    /// Checks `command`, command id `id` for this GX `portal`, at `now`. With `resend`
    /// (the command id already started an update of the same package: the portal asks
    /// again where it stands) only the signature is checked: nothing new starts. On
    /// success the nonce is stored durably.
    pub fn check(
        &mut self,
        portal: &PortalId,
        id: &CommandId,
        command: Signed<'_>,
        now: UnixMillis,
        resend: bool,
    ) -> Result<(), EngineRefusal> {
        let what = command.what();
        let Some(signature) = command.signature() else {
            return Err(EngineRefusal::new(
                codes::COMMAND_UNSIGNED,
                format!(
                    "the {what} command {id} carries no signature: this GX device obeys only \
                     commands signed by its portal"
                ),
            ));
        };
        let c = &self.config;
        if c.portal_keys.is_empty() {
            return Err(EngineRefusal::new(
                codes::COMMAND_KEYS_NOT_CONFIGURED,
                "this GX device trusts no portal key ([command_signing] portal_keys in gx.toml \
                 is empty), so it refuses every update",
            ));
        }
        if c.revoked_keys.contains(&signature.key) {
            return Err(EngineRefusal::new(
                codes::COMMAND_KEY_REVOKED,
                format!(
                    "the {what} command {id} is signed with portal key {}, which this GX device \
                     has revoked",
                    signature.key
                ),
            ));
        }
        if !c.portal_keys.contains(&signature.key) {
            return Err(EngineRefusal::new(
                codes::COMMAND_SIGNATURE_INVALID,
                format!(
                    "the {what} command {id} is signed with portal key {}, which this GX device \
                     does not trust",
                    signature.key
                ),
            ));
        }
        let verified = match command {
            Signed::Update(u) => verify_update(signature, portal, id, u),
            Signed::Cancel { job, .. } => verify_cancel(signature, portal, id, job),
        };
        if let Err(e) = verified {
            let why = match e {
                SignatureError::Mismatch(_) => format!(
                    "its signature does not match its fields for GX {portal}: the command was \
                     altered, or signed for another GX device"
                ),
                other => other.to_string(),
            };
            return Err(EngineRefusal::new(
                codes::COMMAND_SIGNATURE_INVALID,
                format!("the {what} command {id} is refused: {why}"),
            ));
        }
        if resend {
            return Ok(());
        }
        let window_ms = c.max_age_seconds.saturating_mul(1000);
        let ts = signature.timestamp_ms;
        if ts.abs_diff(now.0) > window_ms {
            return Err(EngineRefusal::new(
                codes::COMMAND_STALE,
                format!(
                    "the {what} command {id} was signed at {}, {} s from this GX device's clock \
                     ({now}); it accepts {} s either way: check both clocks and send it again",
                    UnixMillis(ts),
                    ts.abs_diff(now.0) / 1000,
                    c.max_age_seconds
                ),
            ));
        }
        if ts <= self.nonces.floor_ms() {
            return Err(EngineRefusal::new(
                codes::COMMAND_STALE,
                format!(
                    "the {what} command {id} was signed at {}, not after {}, the newest command \
                     this GX device no longer remembers: send it again",
                    UnixMillis(ts),
                    UnixMillis(self.nonces.floor_ms())
                ),
            ));
        }
        if self.nonces.contains(&signature.nonce) {
            return Err(EngineRefusal::new(
                codes::COMMAND_REPLAYED,
                format!(
                    "the {what} command {id} repeats nonce {} of a command this GX device \
                     already accepted",
                    signature.nonce
                ),
            ));
        }
        let oldest = now.0.saturating_sub(window_ms);
        self.nonces
            .insert(signature.nonce, ts, oldest)
            .map_err(|e| {
                EngineRefusal::new(
                    codes::STAGING_STORAGE_ERROR,
                    format!(
                        "the {what} command {id} is refused: the GX device could not record \
                         its nonce: {e}"
                    ),
                )
            })
    }
}

/// A command refused by [`CommandAuthority`], as the event log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCommand {
    /// The battery the command named (for a cancel: its job's battery).
    pub battery_serial: String,
    /// `update` or `cancel`.
    pub command: &'static str,
    /// The command's id.
    pub commandid: CommandId,
    /// The code and message the portal receives.
    pub refusal: EngineRefusal,
}

impl RefusedCommand {
    /// The event-log line's event.
    pub fn event(&self) -> crate::events::EventKind {
        crate::events::EventKind::CommandRefused {
            command: self.command.to_owned(),
            commandid: self.commandid.as_str().to_owned(),
            code: self.refusal.code,
            name: codes_name(self.refusal.code).to_owned(),
            message: self.refusal.message.clone(),
        }
    }
}

fn codes_name(code: u32) -> &'static str {
    crate::errors::name_of(code)
}

/// Checks `command` (see [`CommandAuthority::check`]) and, when it is refused, records the
/// refusal in the event log of the battery it names before returning it: the caller
/// replies with it and does nothing else.
pub async fn admit(
    authority: &mut CommandAuthority,
    engine: &dyn crate::vrm::GxEngine,
    portal: &PortalId,
    id: &CommandId,
    command: Signed<'_>,
    resend: bool,
) -> Result<(), EngineRefusal> {
    let Err(refusal) = authority.check(portal, id, command, UnixMillis::now(), resend) else {
        return Ok(());
    };
    let battery_serial = match command {
        Signed::Update(u) => u.battery.as_str().to_owned(),
        Signed::Cancel { job, .. } => engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id().0 == job)
            .map(|r| r.battery().serial.clone())
            .unwrap_or_default(),
    };
    tracing::warn!(commandid = %id, battery = %battery_serial, code = refusal.code, message = %refusal.message, "command from VRM refused: not authorised by the portal's signature");
    engine
        .record_refusal(RefusedCommand {
            battery_serial,
            command: command.what(),
            commandid: id.clone(),
            refusal: refusal.clone(),
        })
        .await;
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_vrm_wire::signature::{public_key, sign_cancel, sign_update};
    use bmsfw_vrm_wire::{Acknowledgement, FileName, Serial, Sha256Hex, VersionPolicy};
    use ed25519_dalek::SigningKey;

    const NOW: UnixMillis = UnixMillis(1_767_225_600_000);

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn portal() -> PortalId {
        PortalId::new("c0619ab1e2f3").unwrap()
    }

    fn id(n: u32) -> CommandId {
        CommandId::new(&format!("u-{n}")).unwrap()
    }

    fn signed(key: &SigningKey, n: u32, ts: u64, nonce: u8) -> UpdateCommand {
        let mut u = UpdateCommand {
            battery: Serial::new("SN-0042").unwrap(),
            file_name: FileName::new("ax5-2.1.bin").unwrap(),
            size: 40_000,
            chunk_size: 16_384,
            sha256: Sha256Hex([0xab; 32]),
            acknowledgements: Acknowledgement::ALL.into_iter().collect(),
            version_policy: VersionPolicy::NewerOnly,
            targets: None,
            signature: None,
        };
        u.signature = Some(sign_update(
            key,
            &portal(),
            &id(n),
            &u,
            ts,
            Nonce([nonce; 16]),
        ));
        u
    }

    fn authority(dir: &Path, keys: &[&SigningKey]) -> CommandAuthority {
        let config = CommandSigningConfig::trusting(keys.iter().map(|k| public_key(k)));
        CommandAuthority::open(dir, config, NOW).unwrap()
    }

    fn code(a: &mut CommandAuthority, n: u32, u: &UpdateCommand, now: UnixMillis) -> u32 {
        a.check(&portal(), &id(n), Signed::Update(u), now, false)
            .map(|()| 0)
            .unwrap_or_else(|r| r.code)
    }

    #[test]
    fn each_check_has_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = authority(dir.path(), &[&key(1)]);
        let mut unsigned = signed(&key(1), 1, NOW.0, 1);
        unsigned.signature = None;
        assert_eq!(code(&mut a, 1, &unsigned, NOW), codes::COMMAND_UNSIGNED);
        assert_eq!(
            code(&mut a, 1, &signed(&key(2), 1, NOW.0, 1), NOW),
            codes::COMMAND_SIGNATURE_INVALID
        );
        let mut tampered = signed(&key(1), 1, NOW.0, 1);
        tampered.size += 1;
        assert_eq!(
            code(&mut a, 1, &tampered, NOW),
            codes::COMMAND_SIGNATURE_INVALID
        );
        assert_eq!(
            code(&mut a, 1, &signed(&key(1), 1, NOW.0 - 301_000, 1), NOW),
            codes::COMMAND_STALE
        );
        assert_eq!(
            code(&mut a, 1, &signed(&key(1), 1, NOW.0 + 301_000, 1), NOW),
            codes::COMMAND_STALE
        );
        // None of the refusals used the nonce up.
        assert!(a.nonces().is_empty());
        let good = signed(&key(1), 1, NOW.0 - 299_000, 1);
        assert_eq!(code(&mut a, 1, &good, NOW), 0);
        assert_eq!(code(&mut a, 1, &good, NOW), codes::COMMAND_REPLAYED);
        // Another command id with the same nonce: still a replay.
        assert_eq!(
            code(&mut a, 2, &signed(&key(1), 2, NOW.0, 1), NOW),
            codes::COMMAND_REPLAYED
        );
        // A resend of an accepted command is checked for its signature only.
        assert!(
            a.check(&portal(), &id(1), Signed::Update(&good), NOW, true)
                .is_ok()
        );
        assert_eq!(
            a.check(&portal(), &id(1), Signed::Update(&tampered), NOW, true)
                .unwrap_err()
                .code,
            codes::COMMAND_SIGNATURE_INVALID
        );
        let mut empty = CommandAuthority::open(
            &dir.path().join("other"),
            CommandSigningConfig::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            code(&mut empty, 1, &signed(&key(1), 1, NOW.0, 9), NOW),
            codes::COMMAND_KEYS_NOT_CONFIGURED
        );
    }

    #[test]
    fn rotation_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (key(1), key(2));
        let mut both = authority(dir.path(), &[&old, &new]);
        assert_eq!(code(&mut both, 1, &signed(&old, 1, NOW.0, 1), NOW), 0);
        assert_eq!(code(&mut both, 2, &signed(&new, 2, NOW.0, 2), NOW), 0);
        drop(both);
        let config = CommandSigningConfig {
            portal_keys: vec![public_key(&new)],
            revoked_keys: vec![public_key(&old)],
            ..CommandSigningConfig::default()
        };
        let mut after = CommandAuthority::open(dir.path(), config, NOW).unwrap();
        assert_eq!(
            code(&mut after, 3, &signed(&old, 3, NOW.0, 3), NOW),
            codes::COMMAND_KEY_REVOKED
        );
        assert_eq!(code(&mut after, 4, &signed(&new, 4, NOW.0, 4), NOW), 0);
    }

    #[test]
    fn cancels_are_checked_alike() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = authority(dir.path(), &[&key(1)]);
        let sig = sign_cancel(&key(1), &portal(), &id(1), 7, NOW.0, Nonce([5; 16]));
        let check = |a: &mut CommandAuthority, job, sig: Option<&CommandSignature>| {
            a.check(
                &portal(),
                &id(1),
                Signed::Cancel {
                    job,
                    signature: sig,
                },
                NOW,
                false,
            )
            .map_err(|r| r.code)
        };
        assert_eq!(check(&mut a, 7, None), Err(codes::COMMAND_UNSIGNED));
        assert_eq!(
            check(&mut a, 8, Some(&sig)),
            Err(codes::COMMAND_SIGNATURE_INVALID)
        );
        assert_eq!(check(&mut a, 7, Some(&sig)), Ok(()));
        assert_eq!(check(&mut a, 7, Some(&sig)), Err(codes::COMMAND_REPLAYED));
    }

    #[test]
    fn the_nonce_store_survives_a_restart_and_a_damaged_one_refuses_the_past() {
        let dir = tempfile::tempdir().unwrap();
        let good = signed(&key(1), 1, NOW.0, 1);
        let mut a = authority(dir.path(), &[&key(1)]);
        assert_eq!(code(&mut a, 1, &good, NOW), 0);
        drop(a);
        let mut a = authority(dir.path(), &[&key(1)]);
        assert_eq!(code(&mut a, 1, &good, NOW), codes::COMMAND_REPLAYED);
        drop(a);
        std::fs::write(dir.path().join(NONCE_FILE), b"{damaged").unwrap();
        let later = UnixMillis(NOW.0 + 1_000);
        let mut a = CommandAuthority::open(
            dir.path(),
            CommandSigningConfig::trusting([public_key(&key(1))]),
            later,
        )
        .unwrap();
        assert_eq!(code(&mut a, 1, &good, later), codes::COMMAND_STALE);
        assert_eq!(
            code(&mut a, 2, &signed(&key(1), 2, later.0 + 1, 2), later),
            0
        );
    }

    #[test]
    fn the_store_is_bounded_and_forgetting_raises_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = NonceStore::open(dir.path(), NOW).unwrap();
        for i in 0..(MAX_NONCES as u64 + 10) {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&i.to_be_bytes());
            store.insert(Nonce(n), NOW.0 + i, 0).unwrap();
        }
        assert_eq!(store.len(), MAX_NONCES);
        assert_eq!(store.floor_ms(), NOW.0 + 9);
        // Expired ones go and raise the floor to the newest of them.
        store
            .insert(Nonce([0xff; 16]), NOW.0 + 5_000, NOW.0 + 500)
            .unwrap();
        assert_eq!(store.floor_ms(), NOW.0 + 499);
        let back = NonceStore::open(dir.path(), NOW).unwrap();
        assert_eq!(back.floor_ms(), NOW.0 + 499);
        assert_eq!(back.len(), store.len());
    }

    #[test]
    fn the_configuration_is_checked() {
        let parse = |text: &str| toml::from_str::<CommandSigningConfig>(text);
        let k1 = public_key(&key(1));
        let k2 = public_key(&key(2));
        let k3 = public_key(&key(3));
        let ok = parse(&format!(
            "portal_keys = [\"{k1}\", \"{k2}\"]\nrevoked_keys = [\"{k3}\"]\nmax_age_seconds = 60\n"
        ))
        .unwrap();
        assert_eq!(ok.portal_keys, vec![k1, k2]);
        assert_eq!(ok.max_age_seconds, 60);
        for (text, needle) in [
            (
                format!("portal_keys = [\"{k1}\", \"{k2}\", \"{k3}\"]"),
                "at most 2",
            ),
            (
                format!("portal_keys = [\"{k1}\"]\nrevoked_keys = [\"{k1}\"]"),
                "both",
            ),
            ("portal_keys = [\"abc\"]".to_owned(), "key 1"),
            ("max_age_seconds = 0".to_owned(), "max_age_seconds"),
            ("max_age_seconds = -5".to_owned(), "max_age_seconds"),
            ("portal_key = []".to_owned(), "unknown field"),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
