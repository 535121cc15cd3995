//! Reading a Boreal package (`PROTOCOL.md`, "Package format"): an Intel HEX file whose
//! records fill the application area from 0x08010000, with a descriptor at offset 0x200
//! of the image and a CRC-32 in its last four bytes.
//!
//! The file is untrusted: every line is checked, each error names its line, and the
//! image is streamed through the checksums in 64 KiB chunks, never held whole.

use crate::hex::{self, HexMap, ImageReader};
use crate::protocol::{
    APP_START, DESCRIPTOR_LEN, DESCRIPTOR_MAGIC, DESCRIPTOR_OFFSET, DESCRIPTOR_VERSION,
    MANUFACTURER, MAX_IMAGE_LEN, TRAILER_LEN, product_name,
};
use crate::version::Bcd;
use bmsfw_plugin_api::{
    ErrorCode, PackageError, PackageInfo, PackageReader, SignatureStatus, TargetProduct,
};
use bmsfw_protocols::checksum::{Crc32, Sha256};

/// Bytes read at a time while checksumming the image.
const CHUNK: usize = 64 * 1024;
/// The shortest image: the descriptor and the trailer must fit.
const MIN_IMAGE_LEN: u32 = DESCRIPTOR_OFFSET + DESCRIPTOR_LEN + TRAILER_LEN;

/// What the descriptor says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Product code.
    pub product_code: u16,
    /// Firmware version.
    pub version: Bcd,
    /// Lowest bootloader that may install it.
    pub min_bootloader: Bcd,
    /// Image length from 0x08010000, trailer included.
    pub image_len: u32,
}

/// A checked package: what it holds and how to read its image.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The descriptor's content.
    pub info: ImageInfo,
    /// The image, streamed from the file.
    pub image: ImageReader,
    /// The image's SHA-256.
    pub sha256: [u8; 32],
    /// The image's CRC-32 (trailer included), as the bootloader reports it in 0x1F56.
    pub crc32: u32,
}

fn invalid(line: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_line(ErrorCode::PACKAGE_INVALID, line, message)
}

/// Reads the descriptor's fields, naming the descriptor's line in errors.
fn descriptor(map: &HexMap) -> Result<ImageInfo, PackageError> {
    let at = APP_START + DESCRIPTOR_OFFSET;
    let Some(d) = map.descriptor else {
        return Err(PackageError::new(
            ErrorCode::PACKAGE_INVALID,
            format!(
                "no image descriptor: the file does not write all of 0x{at:08X}-0x{:08X}; \
                 this is not a Boreal image",
                at + DESCRIPTOR_LEN - 1
            ),
        ));
    };
    let (b, line) = (d.bytes, d.line);
    if b[0..4] != DESCRIPTOR_MAGIC {
        return Err(invalid(
            line,
            format!(
                "the descriptor at 0x{at:08X} starts {:02X?}, not \"BRLF\": this is not a \
                 Boreal image",
                &b[0..4]
            ),
        ));
    }
    if b[4] != DESCRIPTOR_VERSION || b[5] != 0 {
        return Err(invalid(
            line,
            format!(
                "descriptor version {} with flags {:#04X}: this plugin reads version 1 \
                 without flags",
                b[4], b[5]
            ),
        ));
    }
    let product_code = u16::from_le_bytes([b[6], b[7]]);
    if product_name(product_code).is_none() {
        return Err(PackageError::at_line(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            line,
            format!(
                "the image is for product code 0x{product_code:04X}, which is not a Boreal \
                 Taiga (0xB205, 0xB210)"
            ),
        ));
    }
    let version = Bcd::new([b[8], b[9]]).ok_or_else(|| {
        invalid(
            line,
            format!("the firmware version {:02X} {:02X} is not BCD", b[8], b[9]),
        )
    })?;
    let min_bootloader = Bcd::new([b[10], b[11]]).ok_or_else(|| {
        invalid(
            line,
            format!(
                "the lowest bootloader {:02X} {:02X} is not BCD",
                b[10], b[11]
            ),
        )
    })?;
    let image_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    if !(MIN_IMAGE_LEN..=MAX_IMAGE_LEN).contains(&image_len) {
        return Err(invalid(
            line,
            format!(
                "the descriptor's image length {image_len} is outside {MIN_IMAGE_LEN} to \
                 {MAX_IMAGE_LEN} bytes"
            ),
        ));
    }
    Ok(ImageInfo {
        product_code,
        version,
        min_bootloader,
        image_len,
    })
}

/// Checks the whole package: every line, the image's extent and gaps, the descriptor,
/// then the image's CRC-32 trailer, streamed.
pub fn check(package: &PackageReader) -> Result<Checked, PackageError> {
    let map = hex::scan(package)?;
    let Some(((lowest, lowest_line), (highest, highest_line))) = map.extent() else {
        return Err(PackageError::new(
            ErrorCode::PACKAGE_INVALID,
            "the file holds no data records",
        ));
    };
    if lowest != APP_START {
        return Err(invalid(
            lowest_line,
            format!(
                "the lowest address written is 0x{lowest:08X}; the image must begin at \
                 0x{APP_START:08X} with its vector table"
            ),
        ));
    }
    let info = descriptor(&map)?;
    let image_end = APP_START + info.image_len;
    if highest != image_end {
        return Err(invalid(
            highest_line,
            format!(
                "the records end at 0x{highest:08X} but the descriptor announces an image of \
                 {} bytes, ending at 0x{image_end:08X}",
                info.image_len
            ),
        ));
    }
    let trailer_at = image_end - TRAILER_LEN;
    if !map.covers(trailer_at, image_end) {
        return Err(invalid(
            highest_line,
            format!(
                "the CRC-32 trailer at 0x{trailer_at:08X}-0x{:08X} is not all written",
                image_end - 1
            ),
        ));
    }
    if let Some((entry, line)) = map.entry {
        if !(APP_START..image_end).contains(&entry) {
            return Err(invalid(
                line,
                format!("the entry point 0x{entry:08X} lies outside the image"),
            ));
        }
    }
    let mut image = ImageReader::new(&map, APP_START, info.image_len);
    let mut crc = Crc32::new();
    let mut whole = Crc32::new();
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let body = info.image_len - TRAILER_LEN;
    let mut at = 0u32;
    while at < body {
        let n = (body - at).min(CHUNK as u32) as usize;
        image.read(package, u64::from(at), &mut buf[..n])?;
        crc.update(&buf[..n]);
        whole.update(&buf[..n]);
        sha.update(&buf[..n]);
        at += n as u32;
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    image.read(package, u64::from(body), &mut trailer)?;
    whole.update(&trailer);
    sha.update(&trailer);
    let stored = u32::from_le_bytes(trailer);
    let computed = crc.value();
    if stored != computed {
        return Err(invalid(
            map.line_of(package, trailer_at).unwrap_or(highest_line),
            format!(
                "the image's CRC-32 is {computed:08X} but its trailer says {stored:08X}: the \
                 file is damaged; obtain a new copy from Boreal"
            ),
        ));
    }
    Ok(Checked {
        info,
        image,
        sha256: sha.value(),
        crc32: whole.value(),
    })
}

/// Checks the package and says what it contains.
pub fn inspect(package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
    let checked = check(package)?;
    let info = checked.info;
    Ok(PackageInfo {
        targets: vec![TargetProduct::new(MANUFACTURER, Some(info.product_code))].into(),
        version: info.version.firmware_version(),
        image_size: u64::from(info.image_len),
        image_sha256: checked.sha256,
        signature: SignatureStatus::UNSIGNED,
        modules: Default::default(),
    })
}

#[cfg(test)]
mod tests;
