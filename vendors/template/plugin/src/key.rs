//! The security-access key for a seed (`PROTOCOL.md`, "Security access").

use bmsfw_protocols::checksum::hmac_sha256;

/// Level 1's secret. A real vendor keeps its own out of the repository it publishes and
/// builds it in from its release pipeline; the template's is public on purpose.
pub const SECRET: &[u8; 32] = b"acme template secret: change me!";

/// The first 4 bytes of HMAC-SHA256(secret, seed).
pub fn key(seed: &[u8]) -> Vec<u8> {
    hmac_sha256(SECRET, seed)[..4].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_vector_of_protocol_md() {
        assert_eq!(key(&[0x11, 0x22, 0x33, 0x44]), [0x9E, 0x6D, 0x8B, 0xAA]);
    }
}
