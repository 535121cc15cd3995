//! Aurora `.bin` packages: a builder for tests and the demo, corruptions of them, and
//! the check the BMS runs on a received package before it activates it.
//!
//! Written from `PROTOCOL.md` alone, independently of the plugin's parser, so that the
//! two check each other. All multi-byte fields are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `AUFW` |
//! | 4 | 2 | header version, 1 |
//! | 6 | 2 | header length, 64 |
//! | 8 | 2 | product code |
//! | 10 | 2 | firmware version: major, minor |
//! | 12 | 2 | lowest bootloader version: major, minor |
//! | 14 | 2 | flags, 0 |
//! | 16 | 4 | image length |
//! | 20 | 4 | CRC-32 of the image |
//! | 24 | 32 | SHA-256 of the image |
//! | 56 | 4 | reserved, 0 |
//! | 60 | 4 | CRC-32 of bytes 0 to 59 |
//! | 64 | image length | the image |

use crate::protocol::SLOT_SIZE;
use bmsfw_protocols::checksum::{crc32, sha256};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

/// The first four bytes of every package.
pub const MAGIC: [u8; 4] = *b"AUFW";
/// The header version this BMS reads.
pub const HEADER_VERSION: u16 = 1;
/// Bytes before the image.
pub const HEADER_LEN: usize = 64;
/// The longest image: a whole slot minus the header.
pub const MAX_IMAGE_LEN: usize = SLOT_SIZE as usize - HEADER_LEN;

/// What goes into a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    /// Product code the package is for.
    pub product_code: u16,
    /// Firmware version `[major, minor]`.
    pub version: [u8; 2],
    /// Lowest bootloader version that may install it.
    pub min_bootloader: [u8; 2],
    /// The firmware image.
    pub image: Vec<u8>,
}

impl PackageSpec {
    /// A package of `version` for `product_code` with a pseudo-random image of
    /// `image_len` bytes (firmware looks random on the bus: about 4 stuff bits per frame)
    /// drawn from `seed`, installable by bootloader 2.0 and later.
    pub fn new(product_code: u16, version: [u8; 2], image_len: usize, seed: u64) -> PackageSpec {
        PackageSpec {
            product_code,
            version,
            min_bootloader: [2, 0],
            image: synthetic_image(image_len, seed),
        }
    }
}

/// `len` pseudo-random bytes drawn from `seed`.
pub fn synthetic_image(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut image = vec![0u8; len];
    rng.fill_bytes(&mut image);
    image
}

/// The header of `spec`, its own CRC included.
fn header(spec: &PackageSpec) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&HEADER_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h[8..10].copy_from_slice(&spec.product_code.to_le_bytes());
    h[10..12].copy_from_slice(&spec.version);
    h[12..14].copy_from_slice(&spec.min_bootloader);
    let len = u32::try_from(spec.image.len()).unwrap_or(u32::MAX);
    h[16..20].copy_from_slice(&len.to_le_bytes());
    h[20..24].copy_from_slice(&crc32(&spec.image).to_le_bytes());
    h[24..56].copy_from_slice(&sha256(&spec.image));
    seal(&mut h);
    h
}

/// Writes the header CRC of bytes 0 to 59 into bytes 60 to 63.
fn seal(h: &mut [u8]) {
    let crc = crc32(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The package file of `spec`.
pub fn build(spec: &PackageSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + spec.image.len());
    out.extend_from_slice(&header(spec));
    out.extend_from_slice(&spec.image);
    out
}

/// Ways to spoil a package, for tests of whoever reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The header's CRC-32 of the image is wrong (the header CRC still matches).
    ImageCrc,
    /// The header's SHA-256 of the image is wrong (the header CRC still matches).
    ImageSha,
    /// One image byte, at this offset in the image, is flipped; the header is intact,
    /// so both the CRC-32 and the SHA-256 no longer match.
    ImageByte {
        /// Offset in the image.
        offset: usize,
    },
    /// The header's own CRC is wrong.
    HeaderCrc,
    /// The file ends after `len` bytes.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
    /// The header names another product (the header CRC still matches).
    Product(u16),
    /// The magic is not `AUFW`.
    Magic,
    /// Another header version (the header CRC still matches).
    HeaderVersion(u16),
    /// Bytes follow the image.
    TrailingBytes(usize),
}

/// `package` spoiled by `corruption`.
pub fn corrupt(package: &[u8], corruption: Corruption) -> Vec<u8> {
    let mut p = package.to_vec();
    let resealed = |p: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if p.len() >= HEADER_LEN {
            p[at..at + bytes.len()].copy_from_slice(bytes);
            seal(&mut p[..HEADER_LEN]);
        }
    };
    match corruption {
        Corruption::ImageCrc => {
            let wrong = p.get(20..24).map(|b| [!b[0], b[1], b[2], b[3]]);
            if let Some(wrong) = wrong {
                resealed(&mut p, 20, &wrong);
            }
        }
        Corruption::ImageSha => {
            let wrong = p.get(24).map(|b| !b);
            if let Some(wrong) = wrong {
                resealed(&mut p, 24, &[wrong]);
            }
        }
        Corruption::ImageByte { offset } => {
            if let Some(b) = p.get_mut(HEADER_LEN + offset) {
                *b ^= 0x01;
            }
        }
        Corruption::HeaderCrc => {
            if let Some(b) = p.get_mut(60) {
                *b ^= 0xFF;
            }
        }
        Corruption::Truncate { len } => p.truncate(len),
        Corruption::Product(code) => resealed(&mut p, 8, &code.to_le_bytes()),
        Corruption::Magic => {
            if let Some(b) = p.get_mut(0) {
                *b = b'X';
            }
        }
        Corruption::HeaderVersion(v) => resealed(&mut p, 4, &v.to_le_bytes()),
        Corruption::TrailingBytes(n) => p.extend(std::iter::repeat_n(0xFF, n)),
    }
    p
}

/// A header as the BMS reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Product code.
    pub product_code: u16,
    /// Firmware version `[major, minor]`.
    pub version: [u8; 2],
    /// Lowest bootloader version that may install it.
    pub min_bootloader: [u8; 2],
    /// Image length.
    pub image_len: u32,
    /// CRC-32 of the image.
    pub image_crc: u32,
    /// SHA-256 of the image.
    pub image_sha256: [u8; 32],
}

/// Why the BMS refuses a received package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The package is shorter than its header.
    #[error("{len} bytes is shorter than the 64-byte header")]
    Short {
        /// Bytes received.
        len: usize,
    },
    /// A header field is not what version 1 allows.
    #[error("header field at byte {offset} is invalid")]
    Header {
        /// Offset of the field.
        offset: usize,
    },
    /// The header's own CRC does not match.
    #[error("the header CRC does not match")]
    HeaderCrc,
    /// The header announces another length than what was received.
    #[error("the header announces {announced} image bytes, {received} were received")]
    Length {
        /// Image bytes the header announces.
        announced: u64,
        /// Image bytes received.
        received: u64,
    },
    /// The image's CRC-32 does not match the header.
    #[error("CRC-32 of the image is {computed:08X}, the header says {expected:08X}")]
    Crc {
        /// Computed.
        computed: u32,
        /// From the header.
        expected: u32,
    },
    /// The image's SHA-256 does not match the header.
    #[error("SHA-256 of the image does not match the header")]
    Sha,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks a received package the way the BMS does before activating it: the header,
/// the length, then the CRC-32 and the SHA-256 of the image.
pub fn verify(package: &[u8]) -> Result<Header, VerifyError> {
    if package.len() < HEADER_LEN {
        return Err(VerifyError::Short { len: package.len() });
    }
    let h = &package[..HEADER_LEN];
    if h[0..4] != MAGIC {
        return Err(VerifyError::Header { offset: 0 });
    }
    if le16(h, 4) != HEADER_VERSION {
        return Err(VerifyError::Header { offset: 4 });
    }
    if usize::from(le16(h, 6)) != HEADER_LEN {
        return Err(VerifyError::Header { offset: 6 });
    }
    if crc32(&h[..60]) != le32(h, 60) {
        return Err(VerifyError::HeaderCrc);
    }
    if le16(h, 14) != 0 {
        return Err(VerifyError::Header { offset: 14 });
    }
    if le32(h, 56) != 0 {
        return Err(VerifyError::Header { offset: 56 });
    }
    let header = Header {
        product_code: le16(h, 8),
        version: [h[10], h[11]],
        min_bootloader: [h[12], h[13]],
        image_len: le32(h, 16),
        image_crc: le32(h, 20),
        image_sha256: h[24..56].try_into().unwrap_or([0; 32]),
    };
    let image = &package[HEADER_LEN..];
    if header.image_len == 0 || image.len() as u64 != u64::from(header.image_len) {
        return Err(VerifyError::Length {
            announced: header.image_len.into(),
            received: image.len() as u64,
        });
    }
    let computed = crc32(image);
    if computed != header.image_crc {
        return Err(VerifyError::Crc {
            computed,
            expected: header.image_crc,
        });
    }
    if sha256(image) != header.image_sha256 {
        return Err(VerifyError::Sha);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (PackageSpec, Vec<u8>) {
        let spec = PackageSpec::new(0xA520, [4, 16], 1000, 7);
        let p = build(&spec);
        (spec, p)
    }

    #[test]
    fn a_built_package_has_the_documented_layout_and_verifies() {
        let (spec, p) = sample();
        assert_eq!(p.len(), 1064);
        assert_eq!(&p[0..4], b"AUFW");
        assert_eq!(p[4..8], [1, 0, 64, 0]);
        assert_eq!(p[8..10], [0x20, 0xA5], "product code little-endian");
        assert_eq!(p[10..14], [4, 16, 2, 0]);
        assert_eq!(p[14..16], [0, 0]);
        assert_eq!(p[16..20], 1000u32.to_le_bytes());
        assert_eq!(p[20..24], crc32(&spec.image).to_le_bytes());
        assert_eq!(p[24..56], sha256(&spec.image));
        assert_eq!(p[56..60], [0; 4]);
        assert_eq!(p[60..64], crc32(&p[..60]).to_le_bytes());
        assert_eq!(&p[64..], &spec.image[..]);
        let h = verify(&p).unwrap();
        assert_eq!(h.product_code, 0xA520);
        assert_eq!(h.version, [4, 16]);
        assert_eq!(h.image_len, 1000);
        assert_eq!(
            spec.image,
            synthetic_image(1000, 7),
            "images repeat by seed"
        );
        assert_ne!(spec.image, synthetic_image(1000, 8));
    }

    #[test]
    fn each_corruption_is_caught_by_the_check_it_targets() {
        let (_, p) = sample();
        let check = |c| verify(&corrupt(&p, c));
        assert!(matches!(
            check(Corruption::ImageCrc),
            Err(VerifyError::Crc { .. })
        ));
        assert_eq!(check(Corruption::ImageSha), Err(VerifyError::Sha));
        assert!(matches!(
            check(Corruption::ImageByte { offset: 999 }),
            Err(VerifyError::Crc { .. })
        ));
        assert_eq!(check(Corruption::HeaderCrc), Err(VerifyError::HeaderCrc));
        assert_eq!(
            check(Corruption::Truncate { len: 1063 }),
            Err(VerifyError::Length {
                announced: 1000,
                received: 999
            })
        );
        assert_eq!(
            check(Corruption::Truncate { len: 10 }),
            Err(VerifyError::Short { len: 10 })
        );
        assert_eq!(
            check(Corruption::Magic),
            Err(VerifyError::Header { offset: 0 })
        );
        assert_eq!(
            check(Corruption::HeaderVersion(2)),
            Err(VerifyError::Header { offset: 4 })
        );
        assert!(matches!(
            check(Corruption::TrailingBytes(3)),
            Err(VerifyError::Length { .. })
        ));
        // Another product still verifies: the BMS compares the product itself.
        let other = verify(&corrupt(&p, Corruption::Product(0xA510))).unwrap();
        assert_eq!(other.product_code, 0xA510);
        // Corrupting past the end changes nothing rather than panicking.
        assert_eq!(corrupt(&p, Corruption::ImageByte { offset: 5000 }), p);
        assert_eq!(corrupt(&[1, 2], Corruption::Product(1)), vec![1, 2]);
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = verify(&bytes);
        }
    }
}
