//! Reading an Aurora `.bin` package (`PROTOCOL.md`, "Package format"): a 64-byte
//! little-endian header, then the image.
//!
//! The file is untrusted: every field is checked, each error names the field and its
//! byte offset, and the image is streamed through the checksums in 64 KiB chunks, never
//! held whole.

use crate::protocol::{MANUFACTURER, SLOT_SIZE, product_name};
use crate::version;
use bmsfw_plugin_api::{
    ErrorCode, PackageError, PackageInfo, PackageReader, SignatureStatus, TargetProduct,
};
use bmsfw_protocols::checksum::crc32;
use bmsfw_protocols::package;

/// Bytes before the image.
pub const HEADER_LEN: u64 = 64;
/// The magic of bytes 0-3.
const MAGIC: [u8; 4] = *b"AUFW";
/// The header version this plugin reads.
const HEADER_VERSION: u16 = 1;
/// The longest image: a slot minus the header.
const MAX_IMAGE_LEN: u64 = SLOT_SIZE - HEADER_LEN;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Product code (bytes 8-9).
    pub product_code: u16,
    /// Firmware version (bytes 10-11).
    pub version: [u8; 2],
    /// Lowest bootloader that may install it (bytes 12-13).
    pub min_bootloader: [u8; 2],
    /// Image length (bytes 16-19).
    pub image_len: u64,
    /// CRC-32 of the image (bytes 20-23).
    pub image_crc: u32,
    /// SHA-256 of the image (bytes 24-55).
    pub image_sha256: [u8; 32],
}

fn invalid(offset: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_offset(ErrorCode::PACKAGE_INVALID, offset, message)
}

fn le16(h: &[u8; 64], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

fn le32(h: &[u8; 64], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// Reads and checks the header, and that the file is exactly the header and the image it
/// announces. The image itself is not read.
pub fn read_header(package: &PackageReader) -> Result<Header, PackageError> {
    let h: [u8; HEADER_LEN as usize] = package::read_header(package)?;
    if h[0..4] != MAGIC {
        return Err(invalid(
            0,
            format!(
                "magic is {:02X?}, not \"AUFW\": this is not an Aurora package",
                &h[0..4]
            ),
        ));
    }
    let header_version = le16(&h, 4);
    if header_version != HEADER_VERSION {
        return Err(invalid(
            4,
            format!("header version {header_version} is not supported (this plugin reads 1)"),
        ));
    }
    let header_len = le16(&h, 6);
    if u64::from(header_len) != HEADER_LEN {
        return Err(invalid(
            6,
            format!("header length {header_len}, version 1 headers are 64 bytes"),
        ));
    }
    let stored = le32(&h, 60);
    let computed = crc32(&h[..60]);
    if stored != computed {
        return Err(invalid(
            60,
            format!(
                "header CRC-32 is {stored:08X}, bytes 0-59 give {computed:08X}: the header is damaged"
            ),
        ));
    }
    let flags = le16(&h, 14);
    if flags != 0 {
        return Err(invalid(
            14,
            format!("flags are {flags:#06X}, version 1 defines none"),
        ));
    }
    let reserved = le32(&h, 56);
    if reserved != 0 {
        return Err(invalid(
            56,
            format!("reserved bytes 56-59 are {reserved:#010X}, they must be 0"),
        ));
    }
    let product_code = le16(&h, 8);
    if product_name(product_code).is_none() {
        return Err(PackageError::at_offset(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            8,
            format!(
                "the package is for product code 0x{product_code:04X}, which is not an Aurora \
                 PowerCore (0xA510, 0xA520, 0xA530)"
            ),
        ));
    }
    let image_len = u64::from(le32(&h, 16));
    package::check_image_extent(package.len(), HEADER_LEN, image_len, MAX_IMAGE_LEN, 16)?;
    let mut image_sha256 = [0u8; 32];
    image_sha256.copy_from_slice(&h[24..56]);
    Ok(Header {
        product_code,
        version: [h[10], h[11]],
        min_bootloader: [h[12], h[13]],
        image_len,
        image_crc: le32(&h, 20),
        image_sha256,
    })
}

/// Checks the whole package and says what it contains: the header, then the image's
/// CRC-32 and SHA-256, streamed.
pub fn inspect(package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
    let header = read_header(package)?;
    let digests = package::digest_image(package, HEADER_LEN, header.image_len)?;
    let computed = digests.image_crc32;
    if computed != header.image_crc {
        return Err(invalid(
            20,
            format!(
                "the image's CRC-32 is {computed:08X}, the header says {:08X}: the file is \
                 damaged; obtain a new copy from Aurora",
                header.image_crc
            ),
        ));
    }
    if digests.image_sha256 != header.image_sha256 {
        return Err(invalid(
            24,
            "the image's SHA-256 does not match the header: the file is damaged; obtain a new \
             copy from Aurora",
        ));
    }
    let version =
        version::decode(&header.version).map_err(|f| invalid(10, f.message.into_string()))?;
    Ok(PackageInfo {
        targets: vec![TargetProduct::new(MANUFACTURER, Some(header.product_code))].into(),
        version,
        image_size: package.len(),
        image_sha256: digests.file_sha256,
        signature: SignatureStatus::UNSIGNED,
        modules: Default::default(),
    })
}

#[cfg(test)]
mod tests;
