//! The Coral **TEST** signing key (`PROTOCOL.md` section 11).
//!
//! Its private half is public on purpose: the seed is the SHA-256 of an ASCII text written
//! in `PROTOCOL.md`, so that the simulator and the tests can sign bundles. No real battery
//! may trust it.

use bmsfw_protocols::checksum::sha256;
use ed25519_dalek::SigningKey;

/// The id bundle headers name the test key by.
pub const TEST_KEY_ID: u8 = 0x01;

/// The text whose SHA-256 is the test key's seed.
pub const TEST_KEY_TEXT: &[u8] =
    b"Coral ReefStack TEST signing key - never use for production firmware";

/// The test key's public half, as `PROTOCOL.md` prints it.
pub const TEST_PUBLIC_KEY: [u8; 32] = [
    0x38, 0x6D, 0x64, 0xD5, 0x42, 0xA1, 0x38, 0x37, 0x63, 0x89, 0xDA, 0xF2, 0x15, 0x6E, 0x3E, 0xC0,
    0xCB, 0x9C, 0xA8, 0x1B, 0x34, 0xD5, 0xD7, 0x7C, 0x3B, 0x4E, 0x21, 0xE0, 0x8F, 0x16, 0x1D, 0x2C,
];

/// The test signing key.
pub fn test_signing_key() -> SigningKey {
    SigningKey::from_bytes(&sha256(TEST_KEY_TEXT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_gives_the_documented_public_key() {
        assert_eq!(
            test_signing_key().verifying_key().to_bytes(),
            TEST_PUBLIC_KEY
        );
    }
}
