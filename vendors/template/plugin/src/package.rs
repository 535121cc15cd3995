//! Reading an Acme `.acfw` package (`PROTOCOL.md`, "Package format"): a 24-byte
//! little-endian header, then the image.
//!
//! The file is hostile until proven otherwise: every field is checked, each error names
//! the field and its byte offset, and the image is streamed through the checksums in
//! 64 KiB chunks, never held whole.

use crate::protocol::{MANUFACTURER, SLOT_SIZE, product_name};
use crate::version;
use bmsfw_plugin_api::{
    ErrorCode, PackageError, PackageInfo, PackageReader, SignatureStatus, TargetProduct,
};
use bmsfw_protocols::checksum::crc32;
use bmsfw_protocols::package;

/// Bytes before the image.
pub const HEADER_LEN: u64 = 24;
/// The magic of bytes 0-3.
pub const MAGIC: [u8; 4] = *b"ACFW";
/// The header format this plugin reads (byte 4).
pub const FORMAT: u8 = 1;
/// The longest image: a slot minus the header.
pub const MAX_IMAGE_LEN: u64 = SLOT_SIZE - HEADER_LEN;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Product code (bytes 6-7).
    pub product_code: u16,
    /// Firmware version `[major, minor]` (bytes 8-9).
    pub version: [u8; 2],
    /// Image length (bytes 12-15).
    pub image_len: u64,
    /// CRC-32 of the image (bytes 16-19).
    pub image_crc: u32,
}

fn invalid(offset: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_offset(ErrorCode::PACKAGE_INVALID, offset, message)
}

fn le16(h: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

fn le32(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// Reads and checks the header, and that the file is exactly the header and the image
/// it announces. The image itself is not read.
pub fn read_header(package: &PackageReader) -> Result<Header, PackageError> {
    let h: [u8; HEADER_LEN as usize] = package::read_header(package)?;
    if h[0..4] != MAGIC {
        return Err(invalid(
            0,
            format!(
                "magic is {:02X?}, not \"ACFW\": this is not an Acme package",
                &h[0..4]
            ),
        ));
    }
    if h[4] != FORMAT {
        return Err(invalid(
            4,
            format!(
                "header format {} is not supported (this plugin reads {FORMAT})",
                h[4]
            ),
        ));
    }
    let stored = le32(&h, 20);
    let computed = crc32(&h[..20]);
    if stored != computed {
        return Err(invalid(
            20,
            format!(
                "header CRC-32 is {stored:08X}, bytes 0-19 give {computed:08X}: the header \
                 is damaged"
            ),
        ));
    }
    if h[5] != 0 || le16(&h, 10) != 0 {
        let at = if h[5] != 0 { 5 } else { 10 };
        return Err(invalid(at, format!("reserved byte {at} is not 0")));
    }
    let product_code = le16(&h, 6);
    if product_name(product_code).is_none() {
        return Err(PackageError::at_offset(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            6,
            format!("the package is for product code 0x{product_code:04X}, not an Acme battery"),
        ));
    }
    let image_len = u64::from(le32(&h, 12));
    package::check_image_extent(package.len(), HEADER_LEN, image_len, MAX_IMAGE_LEN, 12)?;
    Ok(Header {
        product_code,
        version: [h[8], h[9]],
        image_len,
        image_crc: le32(&h, 16),
    })
}

/// Checks the whole package and says what it contains: the header, then the image's
/// CRC-32, streamed. The SHA-256 reported is the whole file's, the bytes a session
/// transfers.
pub fn inspect(package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
    let header = read_header(package)?;
    let digests = package::digest_image(package, HEADER_LEN, header.image_len)?;
    let computed = digests.image_crc32;
    if computed != header.image_crc {
        return Err(invalid(
            16,
            format!(
                "the image's CRC-32 is {computed:08X}, the header says {:08X}: the file is \
                 damaged; obtain a new copy from Acme",
                header.image_crc
            ),
        ));
    }
    let version =
        version::decode(&header.version).map_err(|f| invalid(8, f.message.into_string()))?;
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
