//! The keys Coral bundles may be signed with (`PROTOCOL.md` section 11).

use bmsfw_protocols::signature::PublicKey;

/// A signing key the plugin trusts.
#[derive(Clone, Copy, Debug)]
pub struct TrustedKey {
    /// The id a bundle header names it by.
    pub id: u8,
    /// What it is, for messages.
    pub name: &'static str,
    /// Its Ed25519 public key.
    pub public: [u8; 32],
}

/// Key id 0x01: the **TEST** key of the simulator and the tests. Its private half is
/// public (the seed is the SHA-256 of `Coral ReefStack TEST signing key - never use for
/// production firmware`): anyone can sign with it. A plugin built for real batteries
/// carries Coral's production key instead and must not list this one.
pub const TEST_KEY: TrustedKey = TrustedKey {
    id: 0x01,
    name: "the Coral TEST key",
    public: [
        0x38, 0x6D, 0x64, 0xD5, 0x42, 0xA1, 0x38, 0x37, 0x63, 0x89, 0xDA, 0xF2, 0x15, 0x6E, 0x3E,
        0xC0, 0xCB, 0x9C, 0xA8, 0x1B, 0x34, 0xD5, 0xD7, 0x7C, 0x3B, 0x4E, 0x21, 0xE0, 0x8F, 0x16,
        0x1D, 0x2C,
    ],
};

/// The keys this build of the plugin accepts.
pub const TRUSTED_KEYS: &[TrustedKey] = &[TEST_KEY];

/// The trusted key with id `id`, checked.
pub fn key(id: u8) -> Option<(TrustedKey, PublicKey)> {
    let trusted = TRUSTED_KEYS.iter().find(|k| k.id == id)?;
    let public = PublicKey::from_bytes(&trusted.public).ok()?;
    Some((*trusted, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_protocols::signature::Signature;

    /// The test key's signature of `CORAL`, made with the seed of `PROTOCOL.md` by an
    /// independent Ed25519 implementation.
    const SIGNATURE_OF_CORAL: &str = "27e9829b1c3d7d6243646c23d8850ef281d7ac909646a6162591b41fc1863ae7\
                                      6dd69f33d2af687f1639837605b74e471d537484edf2ada70d13695d95852a02";

    #[test]
    fn the_test_key_is_the_documented_one_and_verifies_its_signature() {
        let (trusted, public) = key(0x01).unwrap();
        assert!(trusted.name.contains("TEST"));
        let hex = SIGNATURE_OF_CORAL.replace(char::is_whitespace, "");
        let bytes: Vec<u8> = (0..128)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let sig = Signature::from_bytes(&bytes.try_into().unwrap());
        assert_eq!(public.verify(b"CORAL", &sig), Ok(()));
        assert!(public.verify(b"CORAl", &sig).is_err());
        assert!(key(0x02).is_none());
        assert!(key(0x00).is_none());
    }
}
