//! Checksums vendors' bootloaders use over images and transfers.
//!
//! Each algorithm comes one-shot ([`crc32`], [`crc16_ccitt_false`], [`crc16_xmodem`],
//! [`sha256`]) and streamed ([`Crc32`], [`Crc16CcittFalse`], [`Crc16Xmodem`], [`Sha256`]) so
//! an image can be checked block by block as it is transferred, never held whole in memory.
//! Streaming any split of the input gives the one-shot result.
//!
//! [`hmac_sha256`] (RFC 2104 over SHA-256) is the keyed function vendors build their
//! security-access keys from: a key derived from a secret, unlike a CRC or an XOR.
//!
//! | algorithm | catalogue name | check value of `"123456789"` |
//! |---|---|---|
//! | [`crc32`] | CRC-32/ISO-HDLC (IEEE 802.3, zlib) | `0xCBF43926` |
//! | [`crc16_ccitt_false`] | CRC-16/IBM-3740 (CCITT-FALSE) | `0x29B1` |
//! | [`crc16_xmodem`] | CRC-16/XMODEM (the CANopen SDO block CRC) | `0x31C3` |

use crc::{CRC_16_IBM_3740, CRC_16_XMODEM, CRC_32_ISO_HDLC, Crc, Digest};
use hmac::{KeyInit, Mac};
use sha2::Digest as _;

static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
static CRC16_CCITT_FALSE: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
static CRC16_XMODEM: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// CRC-32 (IEEE 802.3, as zlib and most bootloaders compute it) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection) of `data`.
pub fn crc16_ccitt_false(data: &[u8]) -> u16 {
    CRC16_CCITT_FALSE.checksum(data)
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0) of `data`: the CRC of a CANopen SDO
/// block transfer (CiA 301).
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    CRC16_XMODEM.checksum(data)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`; keys of any length are accepted (longer
/// than 64 bytes they are hashed first, as the RFC says).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of every length; `new_from_slice` cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

macro_rules! streamed_crc {
    ($(#[$doc:meta])* $name:ident, $width:ty, $algo:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            digest: Digest<'static, $width>,
        }

        impl $name {
            /// A checksum over no bytes yet.
            pub fn new() -> Self {
                Self { digest: $algo.digest() }
            }

            /// Feeds the next bytes.
            pub fn update(&mut self, data: &[u8]) {
                self.digest.update(data);
            }

            /// The checksum of every byte fed so far. The stream can go on after this.
            pub fn value(&self) -> $width {
                self.digest.clone().finalize()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("value", &self.value())
                    .finish()
            }
        }
    };
}

streamed_crc!(
    /// CRC-32 (IEEE) computed over a stream; see [`crc32`].
    Crc32,
    u32,
    CRC32
);
streamed_crc!(
    /// CRC-16/CCITT-FALSE computed over a stream; see [`crc16_ccitt_false`].
    Crc16CcittFalse,
    u16,
    CRC16_CCITT_FALSE
);
streamed_crc!(
    /// CRC-16/XMODEM (CANopen SDO) computed over a stream; see [`crc16_xmodem`].
    Crc16Xmodem,
    u16,
    CRC16_XMODEM
);

/// SHA-256 computed over a stream; see [`sha256`].
#[derive(Clone, Default)]
pub struct Sha256 {
    hasher: sha2::Sha256,
}

impl Sha256 {
    /// A digest over no bytes yet.
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The digest of every byte fed so far. The stream can go on after this.
    pub fn value(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha256").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHECK: &[u8] = b"123456789";

    #[test]
    fn catalogue_check_values() {
        assert_eq!(crc32(CHECK), 0xCBF4_3926);
        assert_eq!(crc16_ccitt_false(CHECK), 0x29B1);
        assert_eq!(crc16_xmodem(CHECK), 0x31C3);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn sha256_known_digests() {
        let empty = sha256(b"");
        assert_eq!(empty[..4], [0xE3, 0xB0, 0xC4, 0x42]);
        assert_eq!(empty[28..], [0x78, 0x52, 0xB8, 0x55]);
        let abc = sha256(b"abc");
        assert_eq!(abc[..4], [0xBA, 0x78, 0x16, 0xBF]);
        assert_eq!(abc[28..], [0xF2, 0x00, 0x15, 0xAD]);
    }

    /// Test cases 1, 2 and 6 of RFC 4231.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        assert_eq!(
            hmac_sha256(&[0x0B; 20], b"Hi There").to_vec(),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?").to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // A 131-byte key, longer than the block: hashed first.
        assert_eq!(
            hmac_sha256(
                &[0xAA; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )
            .to_vec(),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    #[test]
    fn value_can_be_read_mid_stream() {
        let mut c = Crc32::new();
        c.update(b"1234");
        assert_eq!(c.value(), crc32(b"1234"));
        c.update(b"56789");
        assert_eq!(c.value(), 0xCBF4_3926);
        let mut s = Sha256::new();
        s.update(b"ab");
        assert_eq!(s.value(), sha256(b"ab"));
        s.update(b"c");
        assert_eq!(s.value(), sha256(b"abc"));
    }

    proptest! {
        #[test]
        fn streaming_any_split_equals_one_shot(
            data in prop::collection::vec(any::<u8>(), 0..2048),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let (mut a, mut b, mut c, mut s) =
                (Crc32::new(), Crc16CcittFalse::new(), Crc16Xmodem::new(), Sha256::new());
            let mut start = 0;
            for end in cuts.into_iter().chain([data.len()]) {
                let piece = &data[start..end];
                a.update(piece);
                b.update(piece);
                c.update(piece);
                s.update(piece);
                start = end;
            }
            prop_assert_eq!(a.value(), crc32(&data));
            prop_assert_eq!(b.value(), crc16_ccitt_false(&data));
            prop_assert_eq!(c.value(), crc16_xmodem(&data));
            prop_assert_eq!(s.value(), sha256(&data));
        }
    }
}
