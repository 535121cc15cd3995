//! Ed25519 signatures (RFC 8032) over package manifests.
//!
//! A vendor signs the small part of its package that names everything else (a manifest
//! holding the SHA-256 of every image), and its plugin carries the vendor's 32-byte
//! public key. Verification here is strict (`verify_strict` of `ed25519-dalek`): weak
//! public keys and non-canonical signatures are refused, so one message has one valid
//! signature per key.
//!
//! ```
//! use bmsfw_protocols::signature::{PublicKey, Signature, SignatureError};
//!
//! // RFC 8032, section 7.1, test 1: the empty message.
//! let key = PublicKey::from_bytes(&[
//!     0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
//!     0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
//!     0xf7, 0x07, 0x51, 0x1a,
//! ])
//! .unwrap();
//! let mut sig = [0u8; 64];
//! sig[..32].copy_from_slice(&[
//!     0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72, 0x90, 0x86, 0xe2, 0xcc, 0x80, 0x6e,
//!     0x82, 0x8a, 0x84, 0x87, 0x7f, 0x1e, 0xb8, 0xe5, 0xd9, 0x74, 0xd8, 0x73, 0xe0, 0x65,
//!     0x22, 0x49, 0x01, 0x55,
//! ]);
//! sig[32..].copy_from_slice(&[
//!     0x5f, 0xb8, 0x82, 0x15, 0x90, 0xa3, 0x3b, 0xac, 0xc6, 0x1e, 0x39, 0x70, 0x1c, 0xf9,
//!     0xb4, 0x6b, 0xd2, 0x5b, 0xf5, 0xf0, 0x59, 0x5b, 0xbe, 0x24, 0x65, 0x51, 0x41, 0x43,
//!     0x8e, 0x7a, 0x10, 0x0b,
//! ]);
//! let sig = Signature::from_bytes(&sig);
//! assert_eq!(key.verify(b"", &sig), Ok(()));
//! assert_eq!(key.verify(b"x", &sig), Err(SignatureError::Mismatch));
//! ```

use std::fmt;

/// Why a public key or a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The 32 bytes are not a valid Ed25519 public key (not a curve point, or a weak key).
    #[error("the 32 bytes are not a valid Ed25519 public key")]
    BadKey,
    /// The signature does not verify for this message under this key (or is not
    /// canonical).
    #[error("the Ed25519 signature does not verify under the key")]
    Mismatch,
}

/// An Ed25519 public key, checked when built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The key of 32 bytes (RFC 8032 encoding); refused when the bytes are not a curve
    /// point or the point is of small order (a weak key any signature could verify
    /// under).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError::BadKey)?;
        if key.is_weak() {
            return Err(SignatureError::BadKey);
        }
        Ok(PublicKey(key))
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Whether `signature` is this key's signature of `message` (strict RFC 8032
    /// verification: a non-canonical signature is refused).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        self.0
            .verify_strict(message, &signature.0)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Prints the key in lower-case hex.
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// An Ed25519 signature: 64 bytes, `R` then `s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The signature of 64 bytes. Any 64 bytes are accepted here; a malformed signature
    /// fails [`PublicKey::verify`].
    pub fn from_bytes(bytes: &[u8; 64]) -> Signature {
        Signature(ed25519_dalek::Signature::from_bytes(bytes))
    }

    /// The signature's 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// RFC 8032, section 7.1, tests 2 and 3.
    #[test]
    fn the_rfc_8032_vectors_verify_and_every_changed_byte_fails() {
        let vectors: [(&str, &[u8], &str); 2] = [
            (
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                &[0x72],
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                &[0xaf, 0x82],
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
                 18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (key, message, sig) in vectors {
            let key = PublicKey::from_bytes(&hex::<32>(key)).unwrap();
            let sig_bytes = hex::<64>(&sig.replace(char::is_whitespace, ""));
            let sig = Signature::from_bytes(&sig_bytes);
            assert_eq!(key.verify(message, &sig), Ok(()));
            for i in 0..64 {
                let mut bad = sig_bytes;
                bad[i] ^= 0x01;
                assert_eq!(
                    key.verify(message, &Signature::from_bytes(&bad)),
                    Err(SignatureError::Mismatch),
                    "byte {i} of the signature changed"
                );
            }
            let mut other = message.to_vec();
            other[0] ^= 0x80;
            assert_eq!(key.verify(&other, &sig), Err(SignatureError::Mismatch));
            assert_eq!(Signature::from_bytes(&sig_bytes).to_bytes(), sig_bytes);
        }
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(SignatureError::BadKey)
        );
        // y = 2 is not on the curve.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(
            PublicKey::from_bytes(&not_a_point),
            Err(SignatureError::BadKey)
        );
    }

    /// A signature whose `s` is not reduced below the group order is refused even when
    /// it would verify after reduction (malleability).
    #[test]
    fn a_non_canonical_signature_is_refused() {
        let key = PublicKey::from_bytes(&hex::<32>(
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        ))
        .unwrap();
        let mut sig = hex::<64>(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
                .replace(char::is_whitespace, "")
                .as_str(),
        );
        // s + L, L = 2^252 + 27742317777372353535851937790883648493 (little-endian).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(
            key.verify(&[0x72], &Signature::from_bytes(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            key in proptest::array::uniform32(proptest::num::u8::ANY),
            sig in proptest::collection::vec(proptest::num::u8::ANY, 64),
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let sig: [u8; 64] = sig.try_into().unwrap();
            if let Ok(key) = PublicKey::from_bytes(&key) {
                // Random bytes are (overwhelmingly) not a signature of the message.
                let _ = key.verify(&message, &Signature::from_bytes(&sig));
            }
        }
    }
}
