//! The security-access key the BMS expects for a seed.

use bmsfw_protocols::checksum::hmac_sha256;

/// The vendor secret of level 1: SHA-256 of the text
/// `Aurora PowerCore security access, level 1`.
pub const SECRET: [u8; 32] = [
    0x8D, 0x8E, 0x4C, 0xD5, 0x8B, 0xF0, 0x85, 0x3C, 0x7B, 0x90, 0x56, 0x7D, 0xB3, 0xA2, 0x16, 0xBE,
    0x89, 0xBD, 0xCB, 0x00, 0x69, 0x57, 0x5A, 0xD1, 0xAB, 0x01, 0xB1, 0x40, 0x10, 0xB6, 0x53, 0x43,
];

/// The label that starts the keyed message.
const LABEL: &[u8] = b"AURORA-SA1";

/// The key for `seed`: the first 8 bytes of HMAC-SHA256 under `secret` of the label
/// `AURORA-SA1`, the product code (2 bytes big-endian) and the seed.
pub fn key_for(secret: &[u8], product_code: u16, seed: &[u8]) -> [u8; 8] {
    let mut message = Vec::with_capacity(LABEL.len() + 2 + seed.len());
    message.extend_from_slice(LABEL);
    message.extend_from_slice(&product_code.to_be_bytes());
    message.extend_from_slice(seed);
    let mac = hmac_sha256(secret, &message);
    let mut key = [0u8; 8];
    key.copy_from_slice(&mac[..8]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_vectors_of_protocol_md() {
        assert_eq!(
            key_for(&SECRET, 0xA520, &[1, 2, 3, 4, 5, 6, 7, 8]),
            [0x58, 0x84, 0x73, 0x0C, 0x8E, 0xA9, 0x8B, 0x09]
        );
        assert_eq!(
            key_for(
                &SECRET,
                0xA510,
                &[0x3C, 0xA1, 0x07, 0xF2, 0x19, 0x88, 0x5E, 0xD4]
            ),
            [0xD4, 0x6D, 0x1F, 0x0F, 0x75, 0xDE, 0xB8, 0x6B]
        );
        assert_eq!(
            bmsfw_protocols::checksum::sha256(b"Aurora PowerCore security access, level 1"),
            SECRET
        );
    }
}
