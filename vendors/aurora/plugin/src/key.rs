//! The security-access key for a seed (`PROTOCOL.md`, "Security access").

use bmsfw_protocols::checksum::hmac_sha256;

/// Level 1's secret: SHA-256 of `Aurora PowerCore security access, level 1`.
const SECRET: [u8; 32] = [
    0x8D, 0x8E, 0x4C, 0xD5, 0x8B, 0xF0, 0x85, 0x3C, 0x7B, 0x90, 0x56, 0x7D, 0xB3, 0xA2, 0x16, 0xBE,
    0x89, 0xBD, 0xCB, 0x00, 0x69, 0x57, 0x5A, 0xD1, 0xAB, 0x01, 0xB1, 0x40, 0x10, 0xB6, 0x53, 0x43,
];

/// The first 8 bytes of HMAC-SHA256(secret, `AURORA-SA1` || product code big-endian ||
/// seed).
pub fn key(product_code: u16, seed: &[u8]) -> Vec<u8> {
    let mut message = b"AURORA-SA1".to_vec();
    message.extend_from_slice(&product_code.to_be_bytes());
    message.extend_from_slice(seed);
    hmac_sha256(&SECRET, &message)[..8].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_vectors_of_protocol_md() {
        assert_eq!(
            key(0xA520, &[1, 2, 3, 4, 5, 6, 7, 8]),
            [0x58, 0x84, 0x73, 0x0C, 0x8E, 0xA9, 0x8B, 0x09]
        );
        assert_eq!(
            key(0xA510, &[0x3C, 0xA1, 0x07, 0xF2, 0x19, 0x88, 0x5E, 0xD4]),
            [0xD4, 0x6D, 0x1F, 0x0F, 0x75, 0xDE, 0xB8, 0x6B]
        );
        assert_eq!(
            bmsfw_protocols::checksum::sha256(b"Aurora PowerCore security access, level 1"),
            SECRET
        );
    }
}
