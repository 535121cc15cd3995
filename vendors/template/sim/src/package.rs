//! The `.acfw` package (`PROTOCOL.md`, "Package format"): the builder of sample files,
//! and the BMS's own check of a received package.

use crate::protocol::SLOT_SIZE;
use bmsfw_protocols::checksum::crc32;

/// Bytes before the image.
pub const HEADER_LEN: usize = 24;
/// The longest image: a slot minus the header.
pub const MAX_IMAGE_LEN: usize = SLOT_SIZE as usize - HEADER_LEN;

/// What a package holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    /// Product code.
    pub product_code: u16,
    /// Firmware version `[major, minor]`.
    pub version: [u8; 2],
    /// Image length.
    pub image_len: usize,
    /// Seed of the image's bytes.
    pub seed: u64,
}

impl PackageSpec {
    /// A package of `product_code` at `version` with an image of `image_len` bytes.
    pub fn new(product_code: u16, version: [u8; 2], image_len: usize, seed: u64) -> PackageSpec {
        PackageSpec {
            product_code,
            version,
            image_len,
            seed,
        }
    }
}

/// The image bytes of `spec`: a deterministic pseudo-random sequence of its seed.
pub fn image(spec: &PackageSpec) -> Vec<u8> {
    let mut x = spec.seed | 1;
    (0..spec.image_len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Builds the package of `spec`: the header, then the image.
pub fn build(spec: &PackageSpec) -> Vec<u8> {
    let image = image(spec);
    let mut p = Vec::with_capacity(HEADER_LEN + image.len());
    p.extend_from_slice(b"ACFW");
    p.extend_from_slice(&[1, 0]);
    p.extend_from_slice(&spec.product_code.to_le_bytes());
    p.extend_from_slice(&spec.version);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&(image.len() as u32).to_le_bytes());
    p.extend_from_slice(&crc32(&image).to_le_bytes());
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p.extend_from_slice(&image);
    p
}

/// A header as the BMS reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Product code.
    pub product_code: u16,
    /// Firmware version `[major, minor]`.
    pub version: [u8; 2],
    /// Image length.
    pub image_len: u32,
}

/// Why the BMS refuses a received package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Shorter than the header, another magic or format, a bad header CRC.
    #[error("the header is missing or damaged")]
    Header,
    /// The length is not the header's and the image's.
    #[error("the package is {len} bytes, the header announces {expected}")]
    Length {
        /// Bytes received.
        len: usize,
        /// Bytes the header announces.
        expected: usize,
    },
    /// The image's CRC-32 is not the header's.
    #[error("the image's CRC-32 does not match the header")]
    Crc,
}

/// The BMS's check of a received package: header, length, image CRC-32.
pub fn verify(package: &[u8]) -> Result<Header, VerifyError> {
    let h = package.get(..HEADER_LEN).ok_or(VerifyError::Header)?;
    let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    if h[0..4] != *b"ACFW" || h[4] != 1 || crc32(&h[..20]) != le32(20) {
        return Err(VerifyError::Header);
    }
    let image_len = le32(12);
    let expected = HEADER_LEN + image_len as usize;
    if package.len() != expected {
        return Err(VerifyError::Length {
            len: package.len(),
            expected,
        });
    }
    if crc32(&package[HEADER_LEN..]) != le32(16) {
        return Err(VerifyError::Crc);
    }
    Ok(Header {
        product_code: u16::from_le_bytes([h[6], h[7]]),
        version: [h[8], h[9]],
        image_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_package_verifies_and_any_damage_does_not() {
        let p = build(&PackageSpec::new(0xAC10, [1, 12], 5000, 7));
        assert_eq!(p.len(), 5024);
        let h = verify(&p).unwrap();
        assert_eq!(
            (h.product_code, h.version, h.image_len),
            (0xAC10, [1, 12], 5000)
        );
        let mut bad = p.clone();
        bad[3000] ^= 1;
        assert_eq!(verify(&bad), Err(VerifyError::Crc));
        assert_eq!(
            verify(&p[..4000]).unwrap_err(),
            VerifyError::Length {
                len: 4000,
                expected: 5024
            }
        );
        assert_eq!(verify(&p[..10]), Err(VerifyError::Header));
    }

    proptest::proptest! {
        #[test]
        fn the_check_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..100)) {
            let _ = verify(&bytes);
        }
    }
}
