//! Signed update commands: the portal signs every `update` command with its Ed25519 key and
//! the GX verifies it before it starts anything.
//!
//! The signature travels inside the command's arguments as `signature`:
//!
//! ```json
//! {"opCommand": ["update", {"commandid": "u-1", "battery": "SN-1", ...,
//!   "signature": {"version": 1, "key": "<64 hex>", "timestamp_ms": 1767225600000,
//!                 "nonce": "<32 hex>", "value": "<128 hex>"}}]}
//! ```
//!
//! It does not sign the JSON text (which two serializers need not write alike) but the
//! bytes [`signed_bytes`] defines, so the portal, the GX and a third party compute the same
//! bytes from the command's fields. Version 1 of those bytes, every integer big-endian and
//! every text a `u32` length followed by its UTF-8 bytes:
//!
//! | # | field | encoding |
//! |---|---|---|
//! | 1 | domain | text `bmsfw/vrm-command-signature` |
//! | 2 | format version | `u8` = 1 |
//! | 3 | operation | text: `update` (a retry is an update with its own command id, nonce and timestamp); `cancel` is reserved |
//! | 4 | portal id | text: the GX the command is for (its topic's second level) |
//! | 5 | command id | text (`commandid`) |
//! | 6 | battery | text: its serial number |
//! | 7 | file name | text |
//! | 8 | size | `u64`: the package's exact size in bytes |
//! | 9 | chunk size | `u32` |
//! | 10 | SHA-256 | 32 bytes: the package's digest |
//! | 11 | acknowledgements | `u32` count, then each name as text (`site_reachable`, `backup_capacity`, `maintenance_window`) in that order |
//! | 12 | version policy | text: `newer_only` or `allow_reinstall_or_downgrade` (the downgrade choice) |
//! | 13 | targets | `u8` 0 (every node or module) or 1, then `u32` count and each number as `u16`, ascending |
//! | 14 | timestamp | `u64`: milliseconds since the Unix epoch when the portal signed |
//! | 15 | nonce | 16 bytes, random, never used twice |
//!
//! A `cancel` command (sent under the `commandid` of its update) carries a `signature` of
//! the same shape over fields 1 and 2, then the text `cancel`, the portal id, the command
//! id, the job as `u64`, the timestamp and the nonce ([`signed_cancel_bytes`]).
//!
//! The signature is Ed25519 (RFC 8032) over those bytes; the GX verifies it strictly
//! (`verify_strict`). The key named in `key` must be one the GX trusts and has not revoked;
//! the GX also refuses a timestamp outside its window and a nonce it has seen.

use crate::command::{Acknowledgement, CommandId, UpdateCommand, VersionPolicy};
use crate::portal_id::PortalId;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The domain every signed message starts with, so a signature made for anything else
/// never verifies as a command's.
pub const SIGNATURE_DOMAIN: &str = "bmsfw/vrm-command-signature";

/// The version of [`signed_bytes`] this crate writes and reads.
pub const SIGNATURE_VERSION: u8 = 1;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 16;

/// What a signature allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignedOperation {
    /// Start an update (also a retry: a new command with its own id, nonce and timestamp).
    Update,
    /// Cancel an update.
    Cancel,
}

impl SignedOperation {
    /// Its name in the signed bytes.
    pub const fn name(self) -> &'static str {
        match self {
            SignedOperation::Update => "update",
            SignedOperation::Cancel => "cancel",
        }
    }
}

/// Reads a fixed number of bytes from lowercase or uppercase hex text.
fn from_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!(
            "must be {} hex digits, is {} characters",
            2 * N,
            text.len()
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| format!("not hex: {e}"))?;
    Ok(out)
}

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Reads the hex text.
            pub fn parse(text: &str) -> Result<$name, String> {
                from_hex::<$len>(text.trim()).map($name)
            }

            /// The hex text, lowercase.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<$name, String> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.to_hex()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

hex_bytes!(
    /// A portal's Ed25519 public key: 32 bytes, written as 64 hex digits (in `gx.toml` and
    /// in a command's `signature.key`).
    PortalKey,
    32
);
hex_bytes!(
    /// A command's nonce: 16 random bytes, 32 hex digits.
    Nonce,
    NONCE_LEN
);
hex_bytes!(
    /// An Ed25519 signature: 64 bytes, 128 hex digits.
    SignatureValue,
    64
);

/// The `signature` member of a signed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSignature {
    /// The version of [`signed_bytes`] (only [`SIGNATURE_VERSION`] is known).
    pub version: u8,
    /// The public key of the portal's key that signed.
    pub key: PortalKey,
    /// When the portal signed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// A random value the GX accepts once.
    pub nonce: Nonce,
    /// The signature over [`signed_bytes`].
    pub value: SignatureValue,
}

/// Why a signature did not verify (the GX maps each to a catalogue code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A format version this side does not know.
    #[error(
        "signature format version {0} is not known (this side reads version {SIGNATURE_VERSION})"
    )]
    UnknownVersion(u8),
    /// The key is not a valid Ed25519 public key.
    #[error("the signing key {0} is not a valid Ed25519 public key")]
    BadKey(PortalKey),
    /// The signature does not match the command's fields under the key.
    #[error("the signature does not match the command's fields under key {0}")]
    Mismatch(PortalKey),
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Every text here is bounded far below 4 GiB by its type.
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The wire name of an acknowledgement, as in the command's JSON.
pub const fn acknowledgement_name(a: Acknowledgement) -> &'static str {
    match a {
        Acknowledgement::SiteReachable => "site_reachable",
        Acknowledgement::BackupCapacity => "backup_capacity",
        Acknowledgement::MaintenanceWindow => "maintenance_window",
    }
}

/// The wire name of a version policy, as in the command's JSON.
pub const fn version_policy_name(p: VersionPolicy) -> &'static str {
    match p {
        VersionPolicy::NewerOnly => "newer_only",
        VersionPolicy::AllowReinstallOrDowngrade => "allow_reinstall_or_downgrade",
    }
}

/// The bytes a signature of version [`SIGNATURE_VERSION`] covers (see the module's table).
/// The command's own `signature` member is not part of them.
pub fn signed_bytes(
    operation: SignedOperation,
    portal: &PortalId,
    id: &CommandId,
    update: &UpdateCommand,
    timestamp_ms: u64,
    nonce: &Nonce,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_text(&mut out, SIGNATURE_DOMAIN);
    out.push(SIGNATURE_VERSION);
    put_text(&mut out, operation.name());
    put_text(&mut out, portal.as_str());
    put_text(&mut out, id.as_str());
    put_text(&mut out, update.battery.as_str());
    put_text(&mut out, update.file_name.as_str());
    out.extend_from_slice(&update.size.to_be_bytes());
    out.extend_from_slice(&update.chunk_size.to_be_bytes());
    out.extend_from_slice(&update.sha256.0);
    // A set: in the order of `Acknowledgement::ALL`, whatever order the JSON listed.
    let acks: Vec<Acknowledgement> = Acknowledgement::ALL
        .into_iter()
        .filter(|a| update.acknowledgements.contains(a))
        .collect();
    out.extend_from_slice(&(acks.len() as u32).to_be_bytes());
    for a in acks {
        put_text(&mut out, acknowledgement_name(a));
    }
    put_text(&mut out, version_policy_name(update.version_policy));
    match &update.targets {
        None => out.push(0),
        Some(list) => {
            out.push(1);
            out.extend_from_slice(&(list.ids().len() as u32).to_be_bytes());
            for id in list.ids() {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&nonce.0);
    out
}

/// The bytes a signature of a `cancel` of `job`, sent under command id `id` to `portal`,
/// covers (see the module's documentation).
pub fn signed_cancel_bytes(
    portal: &PortalId,
    id: &CommandId,
    job: u64,
    timestamp_ms: u64,
    nonce: &Nonce,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_text(&mut out, SIGNATURE_DOMAIN);
    out.push(SIGNATURE_VERSION);
    put_text(&mut out, SignedOperation::Cancel.name());
    put_text(&mut out, portal.as_str());
    put_text(&mut out, id.as_str());
    out.extend_from_slice(&job.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&nonce.0);
    out
}

fn sign_bytes(key: &SigningKey, bytes: &[u8], timestamp_ms: u64, nonce: Nonce) -> CommandSignature {
    CommandSignature {
        version: SIGNATURE_VERSION,
        key: public_key(key),
        timestamp_ms,
        nonce,
        value: SignatureValue(key.sign(bytes).to_bytes()),
    }
}

fn verify_bytes(signature: &CommandSignature, bytes: &[u8]) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&signature.key.0)
        .map_err(|_| SignatureError::BadKey(signature.key))?;
    key.verify_strict(bytes, &Signature::from_bytes(&signature.value.0))
        .map_err(|_| SignatureError::Mismatch(signature.key))
}

/// Signs the cancel of `job`, under command id `id`, for the GX `portal`.
pub fn sign_cancel(
    key: &SigningKey,
    portal: &PortalId,
    id: &CommandId,
    job: u64,
    timestamp_ms: u64,
    nonce: Nonce,
) -> CommandSignature {
    let bytes = signed_cancel_bytes(portal, id, job, timestamp_ms, &nonce);
    sign_bytes(key, &bytes, timestamp_ms, nonce)
}

/// Checks that `signature` is a valid signature of the cancel of `job` under command id
/// `id` for `portal`, under the key it names (trust, timestamp and nonce are the
/// verifier's to check).
pub fn verify_cancel(
    signature: &CommandSignature,
    portal: &PortalId,
    id: &CommandId,
    job: u64,
) -> Result<(), SignatureError> {
    if signature.version != SIGNATURE_VERSION {
        return Err(SignatureError::UnknownVersion(signature.version));
    }
    let bytes = signed_cancel_bytes(portal, id, job, signature.timestamp_ms, &signature.nonce);
    verify_bytes(signature, &bytes)
}

/// The public key of `key`.
pub fn public_key(key: &SigningKey) -> PortalKey {
    PortalKey(key.verifying_key().to_bytes())
}

/// Signs `update`, command `id` for the GX `portal`, at `timestamp_ms` with `nonce`.
pub fn sign_update(
    key: &SigningKey,
    portal: &PortalId,
    id: &CommandId,
    update: &UpdateCommand,
    timestamp_ms: u64,
    nonce: Nonce,
) -> CommandSignature {
    let bytes = signed_bytes(
        SignedOperation::Update,
        portal,
        id,
        update,
        timestamp_ms,
        &nonce,
    );
    sign_bytes(key, &bytes, timestamp_ms, nonce)
}

/// Checks that `signature` is a valid signature of `update`, command `id` for `portal`,
/// under the key it names. Whether that key is trusted, and the timestamp and nonce, are
/// the verifier's to check.
pub fn verify_update(
    signature: &CommandSignature,
    portal: &PortalId,
    id: &CommandId,
    update: &UpdateCommand,
) -> Result<(), SignatureError> {
    if signature.version != SIGNATURE_VERSION {
        return Err(SignatureError::UnknownVersion(signature.version));
    }
    let bytes = signed_bytes(
        SignedOperation::Update,
        portal,
        id,
        update,
        signature.timestamp_ms,
        &signature.nonce,
    );
    verify_bytes(signature, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{FileName, Serial, Sha256Hex};
    use crate::targets::TargetList;
    use crate::{Command, RpcCommand};
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn portal() -> PortalId {
        PortalId::new("c0619ab1e2f3").unwrap()
    }

    fn id() -> CommandId {
        CommandId::new("u-1").unwrap()
    }

    fn update() -> UpdateCommand {
        UpdateCommand {
            battery: Serial::new("SN-0042").unwrap(),
            file_name: FileName::new("ax5-2.1.bin").unwrap(),
            size: 40_000,
            chunk_size: 16_384,
            sha256: Sha256Hex([0xab; 32]),
            acknowledgements: Acknowledgement::ALL.into_iter().collect(),
            version_policy: VersionPolicy::NewerOnly,
            targets: None,
            signature: None,
        }
    }

    const NONCE: Nonce = Nonce([7; NONCE_LEN]);

    #[test]
    fn a_signature_verifies_and_survives_the_wire() {
        let mut u = update();
        u.signature = Some(sign_update(&key(1), &portal(), &id(), &u, 1_000, NONCE));
        let rpc = RpcCommand {
            id: id(),
            command: Command::Update(u),
        };
        let back = RpcCommand::parse(&rpc.encode()).unwrap();
        assert_eq!(back, rpc);
        let Command::Update(u) = back.command else {
            panic!("not an update")
        };
        let sig = u.signature.clone().unwrap();
        assert_eq!(sig.key, public_key(&key(1)));
        verify_update(&sig, &portal(), &id(), &u).unwrap();
    }

    /// The canonical bytes of a fixed command, byte for byte: a change of the format
    /// must change its version.
    #[test]
    fn the_signed_bytes_are_the_documented_ones() {
        let mut u = update();
        u.targets = Some(TargetList::new(vec![3, 2]).unwrap());
        u.version_policy = VersionPolicy::AllowReinstallOrDowngrade;
        let bytes = signed_bytes(
            SignedOperation::Update,
            &portal(),
            &id(),
            &u,
            0x0102,
            &NONCE,
        );
        let mut expected = Vec::new();
        let text = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u32).to_be_bytes());
            out.extend(s.as_bytes());
        };
        text(&mut expected, "bmsfw/vrm-command-signature");
        expected.push(1);
        text(&mut expected, "update");
        text(&mut expected, "c0619ab1e2f3");
        text(&mut expected, "u-1");
        text(&mut expected, "SN-0042");
        text(&mut expected, "ax5-2.1.bin");
        expected.extend(40_000u64.to_be_bytes());
        expected.extend(16_384u32.to_be_bytes());
        expected.extend([0xab; 32]);
        expected.extend(3u32.to_be_bytes());
        text(&mut expected, "site_reachable");
        text(&mut expected, "backup_capacity");
        text(&mut expected, "maintenance_window");
        text(&mut expected, "allow_reinstall_or_downgrade");
        expected.push(1);
        expected.extend(2u32.to_be_bytes());
        expected.extend(2u16.to_be_bytes());
        expected.extend(3u16.to_be_bytes());
        expected.extend(0x0102u64.to_be_bytes());
        expected.extend([7; NONCE_LEN]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_field_is_covered() {
        let u = update();
        let sig = sign_update(&key(1), &portal(), &id(), &u, 1_000, NONCE);
        let mismatch =
            |sig: &CommandSignature, portal: &PortalId, id: &CommandId, u: &UpdateCommand| {
                assert_eq!(
                    verify_update(sig, portal, id, u),
                    Err(SignatureError::Mismatch(sig.key))
                );
            };
        let other_portal = PortalId::new("c0619ab1e2f4").unwrap();
        mismatch(&sig, &other_portal, &id(), &u);
        mismatch(&sig, &portal(), &CommandId::new("u-2").unwrap(), &u);
        let changes: Vec<fn(&mut UpdateCommand)> = vec![
            |u| u.battery = Serial::new("SN-0043").unwrap(),
            |u| u.file_name = FileName::new("other.bin").unwrap(),
            |u| u.size += 1,
            |u| u.chunk_size -= 1,
            |u| u.sha256.0[31] ^= 1,
            |u| {
                u.acknowledgements.remove(&Acknowledgement::BackupCapacity);
            },
            |u| u.version_policy = VersionPolicy::AllowReinstallOrDowngrade,
            |u| u.targets = Some(TargetList::new(vec![1]).unwrap()),
        ];
        for change in changes {
            let mut t = update();
            change(&mut t);
            mismatch(&sig, &portal(), &id(), &t);
        }
        let mut later = sig.clone();
        later.timestamp_ms += 1;
        mismatch(&later, &portal(), &id(), &u);
        let mut renonced = sig.clone();
        renonced.nonce.0[0] ^= 1;
        mismatch(&renonced, &portal(), &id(), &u);
        // Another key's name on this signature, and this key on another's.
        let mut other_key = sig.clone();
        other_key.key = public_key(&key(2));
        mismatch(&other_key, &portal(), &id(), &u);
        let mut v2 = sig.clone();
        v2.version = 2;
        assert_eq!(
            verify_update(&v2, &portal(), &id(), &u),
            Err(SignatureError::UnknownVersion(2))
        );
        verify_update(&sig, &portal(), &id(), &u).unwrap();
    }

    #[test]
    fn a_cancel_signature_covers_its_job_and_is_not_an_updates() {
        let sig = sign_cancel(&key(1), &portal(), &id(), 7, 1_000, NONCE);
        verify_cancel(&sig, &portal(), &id(), 7).unwrap();
        assert!(verify_cancel(&sig, &portal(), &id(), 8).is_err());
        assert!(verify_cancel(&sig, &portal(), &CommandId::new("u-2").unwrap(), 7).is_err());
        assert!(verify_update(&sig, &portal(), &id(), &update()).is_err());
        let u = sign_update(&key(1), &portal(), &id(), &update(), 1_000, NONCE);
        assert!(verify_cancel(&u, &portal(), &id(), 7).is_err());
    }

    #[test]
    fn hostile_signature_members_are_refused_by_field() {
        let mut u = update();
        u.signature = Some(sign_update(&key(1), &portal(), &id(), &u, 1_000, NONCE));
        let rpc = RpcCommand {
            id: id(),
            command: Command::Update(u),
        };
        let base: serde_json::Value = serde_json::from_slice(&rpc.encode()).unwrap();
        for (member, value, field) in [
            (
                "key",
                serde_json::json!("abc"),
                "opCommand[1].signature.key",
            ),
            (
                "nonce",
                serde_json::json!("zz".repeat(16)),
                "opCommand[1].signature.nonce",
            ),
            (
                "value",
                serde_json::json!(5),
                "opCommand[1].signature.value",
            ),
            (
                "timestamp_ms",
                serde_json::json!(-1),
                "opCommand[1].signature.timestamp_ms",
            ),
            ("extra", serde_json::json!(1), "opCommand[1].signature"),
        ] {
            let mut v = base.clone();
            v["opCommand"][1]["signature"][member] = value;
            let e = RpcCommand::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert_eq!(e.commandid, Some(id()));
            match e.error {
                crate::WireError::Field { field: f, .. } => {
                    assert!(f.starts_with(field), "{member}: {f}")
                }
                other => panic!("{member}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_invalid_public_key_is_named() {
        let u = update();
        let mut sig = sign_update(&key(1), &portal(), &id(), &u, 1_000, NONCE);
        // Not a point on the curve (y = 2 has no x).
        let mut bad = [0u8; 32];
        bad[0] = 2;
        sig.key = PortalKey(bad);
        match verify_update(&sig, &portal(), &id(), &u) {
            Err(SignatureError::BadKey(_)) | Err(SignatureError::Mismatch(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn flipping_any_bit_of_the_signature_breaks_it(byte in 0usize..64, bit in 0u8..8) {
            let u = update();
            let mut sig = sign_update(&key(1), &portal(), &id(), &u, 1_000, NONCE);
            sig.value.0[byte] ^= 1 << bit;
            prop_assert!(verify_update(&sig, &portal(), &id(), &u).is_err());
        }

        #[test]
        fn hex_parsers_never_panic(s in "\\PC{0,200}") {
            let _ = PortalKey::parse(&s);
            let _ = Nonce::parse(&s);
            let _ = SignatureValue::parse(&s);
        }
    }
}
