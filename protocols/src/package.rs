//! Hostile-file steps every binary package reader repeats: reading a fixed header,
//! checking that the file is exactly the header and the image it announces, streaming
//! the image through its digests, and turning a refused package into a session's
//! [`Failure`].
//!
//! The layout of a header (magic, fields, offsets) is the vendor's and stays in the
//! plugin; these take the numbers it read.

use crate::checksum::{Crc32, Sha256};
use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
use bmsfw_plugin_api::{
    ErrorCode, Failure, PackageError, PackageReader, PackageSource, PackageSource_TO, SourceError,
};

/// Bytes read at a time while streaming an image through its digests.
pub const CHUNK: usize = 64 * 1024;

/// The first `N` bytes of `package`, its header. A file shorter than the header is
/// `PACKAGE_INVALID` at the byte where it ends.
pub fn read_header<const N: usize>(package: &PackageReader) -> Result<[u8; N], PackageError> {
    let len = package.len();
    if len < N as u64 {
        return Err(invalid(
            len,
            format!("the file ends at byte {len}, inside the {N}-byte header"),
        ));
    }
    let mut header = [0u8; N];
    package.read_exact_at(0, &mut header)?;
    Ok(header)
}

/// Checks that a file of `file_len` bytes is exactly a header of `header_len` bytes and
/// the image of `image_len` bytes it announces, and that the image is 1 to
/// `max_image_len` bytes (a slot minus the header, say).
///
/// Each refusal is `PACKAGE_INVALID` at the byte it is about: a length outside the
/// range at `len_field` (the offset of the header's length field), a truncated file at
/// its end, trailing bytes where the image ends.
pub fn check_image_extent(
    file_len: u64,
    header_len: u64,
    image_len: u64,
    max_image_len: u64,
    len_field: u64,
) -> Result<(), PackageError> {
    if image_len == 0 || image_len > max_image_len {
        return Err(invalid(
            len_field,
            format!("image length {image_len} is outside 1 to {max_image_len} bytes"),
        ));
    }
    let end = header_len.saturating_add(image_len);
    if file_len < end {
        return Err(invalid(
            file_len,
            format!(
                "the file ends at byte {file_len}, but the header announces an image up to \
                 byte {end}: the file is truncated"
            ),
        ));
    }
    if file_len > end {
        return Err(invalid(
            end,
            format!(
                "{} bytes follow the image, which ends at byte {end}",
                file_len - end
            ),
        ));
    }
    Ok(())
}

/// The digests of a package whose image follows its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    /// CRC-32 of the image.
    pub image_crc32: u32,
    /// SHA-256 of the image.
    pub image_sha256: [u8; 32],
    /// SHA-256 of the header and the image: the bytes a session transfers when the
    /// package is sent whole.
    pub file_sha256: [u8; 32],
}

/// Streams the header (`header_len` bytes) and the image (`image_len` bytes after it)
/// of `package` through their digests, [`CHUNK`] bytes at a time: at most one chunk is
/// in memory.
pub fn digest_image(
    package: &PackageReader,
    header_len: u64,
    image_len: u64,
) -> Result<ImageDigests, PackageError> {
    let mut crc = Crc32::new();
    let mut image = Sha256::new();
    let mut file = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let end = header_len.saturating_add(image_len);
    let mut at = 0;
    while at < end {
        let want = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
        // A chunk never straddles the header's end: the image's digests start there.
        let want = if at < header_len {
            want.min(usize::try_from(header_len - at).unwrap_or(CHUNK))
        } else {
            want
        };
        package.read_exact_at(at, &mut buf[..want])?;
        file.update(&buf[..want]);
        if at >= header_len {
            crc.update(&buf[..want]);
            image.update(&buf[..want]);
        }
        at += want as u64;
    }
    Ok(ImageDigests {
        image_crc32: crc.value(),
        image_sha256: image.value(),
        file_sha256: file.value(),
    })
}

/// The failure a session reports for a package its reader refused: the reader's code,
/// and its message after the place ("at byte 12: ...").
pub fn refused(error: &PackageError) -> Failure {
    Failure::new(
        error.code,
        format!("at {}: {}", error.location, error.message.as_str()),
    )
}

/// Checks the package's `package` product code against the product code the battery
/// reported (`None` when it did not): another product is `PACKAGE_WRONG_PRODUCT`.
pub fn check_product(battery: Option<u16>, package: u16) -> Result<(), Failure> {
    match battery {
        Some(code) if code != package => Err(Failure::new(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            format!("the package is for product 0x{package:04X}, the battery is 0x{code:04X}"),
        )),
        _ => Ok(()),
    }
}

/// A reader over `bytes` in memory that hands out at most `max_read` bytes a read, as
/// a file read in pieces does: what a plugin's tests give its package reader, so that
/// they also prove it reads in loops (`usize::MAX` for whole reads).
pub fn memory_reader(bytes: Vec<u8>, max_read: usize) -> PackageReader {
    PackageReader::new(PackageSource_TO::from_value(
        MemorySource { bytes, max_read },
        TD_Opaque,
    ))
}

/// Bytes served at most `max_read` at a time.
struct MemorySource {
    bytes: Vec<u8>,
    max_read: usize,
}

impl PackageSource for MemorySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - start).min(self.max_read);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        RResult::ROk(n)
    }
}

fn invalid(offset: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_offset(ErrorCode::PACKAGE_INVALID, offset, message)
}

#[cfg(test)]
mod tests;
