//! Reading a Coral bundle (`PROTOCOL.md` section 7): header, signed manifest, images.
//!
//! The file is untrusted. The signature is verified before anything the manifest says is
//! believed; each error names the field and its byte offset; images are streamed through
//! SHA-256 in 64 KiB chunks, never held whole.

use crate::key;
use crate::protocol::{
    MANUFACTURER, MAX_BUNDLE_LEN, MAX_IMAGES, MAX_MASTER_IMAGE, MAX_MODULE_IMAGE, product_name,
};
use crate::version::Version24;
use bmsfw_plugin_api::{
    ErrorCode, ModuleImage, PackageError, PackageInfo, PackageReader, SignatureStatus,
    TargetProduct,
};
use bmsfw_protocols::checksum::{Sha256, sha256};
use bmsfw_protocols::signature::Signature;

/// The magic of bytes 0-3.
pub const MAGIC: [u8; 4] = *b"CRLB";
/// The format version this plugin reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the manifest.
pub const HEADER_LEN: u64 = 8;
/// Bytes of the manifest before its entries.
pub const MANIFEST_HEAD: usize = 8;
/// Bytes of one image entry.
pub const ENTRY_LEN: usize = 48;
/// Bytes of the signature.
pub const SIGNATURE_LEN: u64 = 64;
/// Bytes read at a time while hashing images.
const CHUNK: usize = 64 * 1024;

/// What an image is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The master BMS.
    Master,
    /// Every module of this hardware revision.
    Module,
}

/// One image of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// Its place in the manifest (0 is the master image).
    pub entry: u8,
    /// What it is for.
    pub target: Target,
    /// The hardware revision it is for.
    pub hw_revision: u8,
    /// Its version.
    pub version: Version24,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// Its SHA-256, as signed.
    pub sha256: [u8; 32],
}

impl ImageEntry {
    /// `master image (hardware revision 2)` or `module image for hardware revision 3`.
    pub fn describe(&self) -> String {
        match self.target {
            Target::Master => format!("the master image (hardware revision {})", self.hw_revision),
            Target::Module => format!(
                "the module image for hardware revision {}",
                self.hw_revision
            ),
        }
    }
}

/// A bundle whose header and manifest are read and whose signature verifies (its images
/// are not read: see [`inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The product it is for.
    pub product_code: u16,
    /// The bundle's version (the master image's).
    pub version: Version24,
    /// The images, the master's first.
    pub images: Vec<ImageEntry>,
    /// SHA-256 of the manifest: names the bundle's content.
    pub manifest_sha256: [u8; 32],
    /// The file's length.
    pub len: u64,
    /// The key it is signed with.
    pub key_name: &'static str,
}

impl Bundle {
    /// The master image.
    pub fn master(&self) -> &ImageEntry {
        &self.images[0]
    }

    /// The image for modules of hardware revision `hw`.
    pub fn module_image(&self, hw: u8) -> Option<&ImageEntry> {
        self.images
            .iter()
            .skip(1)
            .find(|i| i.hw_revision == hw && i.target == Target::Module)
    }
}

fn invalid(offset: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_offset(ErrorCode::PACKAGE_INVALID, offset, message)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn v24(b: &[u8], at: usize) -> Version24 {
    Version24::from_be([b[at], b[at + 1], b[at + 2]])
}

fn read(
    package: &PackageReader,
    offset: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, PackageError> {
    let file = package.len();
    let end = offset + len as u64;
    if file < end {
        return Err(invalid(
            file,
            format!(
                "the file ends at byte {file}, inside {what} (bytes {offset} to {})",
                end - 1
            ),
        ));
    }
    let mut buf = vec![0u8; len];
    package.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

/// Reads the header and the manifest, verifies the signature, then checks what the
/// manifest says and that the file is exactly the images it lists.
pub fn read_bundle(package: &PackageReader) -> Result<Bundle, PackageError> {
    let h = read(package, 0, HEADER_LEN as usize, "the 8-byte header")?;
    if h[0..4] != MAGIC {
        return Err(invalid(
            0,
            format!(
                "magic is {:02X?}, not \"CRLB\": this is not a Coral bundle",
                &h[0..4]
            ),
        ));
    }
    if h[4] != FORMAT_VERSION {
        return Err(invalid(
            4,
            format!(
                "format version {} is not supported (this plugin reads 1)",
                h[4]
            ),
        ));
    }
    let manifest_len = usize::from(le16(&h, 6));
    let longest = MANIFEST_HEAD + ENTRY_LEN * usize::from(MAX_IMAGES);
    if manifest_len < MANIFEST_HEAD + ENTRY_LEN
        || manifest_len > longest
        || (manifest_len - MANIFEST_HEAD) % ENTRY_LEN != 0
    {
        return Err(invalid(
            6,
            format!("manifest length {manifest_len} is not 8 + 48 x (1 to {MAX_IMAGES} images)"),
        ));
    }
    let Some((trusted, public)) = key::key(h[5]) else {
        return Err(PackageError::at_offset(
            ErrorCode::SIGNATURE_INVALID,
            5,
            format!(
                "the bundle is signed with key id 0x{:02X}, which this plugin does not trust",
                h[5]
            ),
        ));
    };
    let m = read(package, HEADER_LEN, manifest_len, "the manifest")?;
    let sig_at = HEADER_LEN + manifest_len as u64;
    let sig = read(package, sig_at, SIGNATURE_LEN as usize, "the signature")?;
    let mut signed = h.clone();
    signed.extend_from_slice(&m);
    let signature = Signature::from_bytes(&sig.try_into().unwrap_or([0; 64]));
    if public.verify(&signed, &signature).is_err() {
        return Err(PackageError::at_offset(
            ErrorCode::SIGNATURE_INVALID,
            sig_at,
            format!(
                "the signature does not verify with {}: the bundle was altered or is not \
                 from Coral",
                trusted.name
            ),
        ));
    }
    // From here on the manifest is Coral's own: its checks guard against Coral's
    // mistakes and a future format, not against tampering.
    let at = |field: usize| HEADER_LEN + field as u64;
    let product_code = le16(&m, 0);
    if product_name(product_code).is_none() {
        return Err(PackageError::at_offset(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            at(0),
            format!(
                "the bundle is for product code 0x{product_code:04X}, which is not a Coral \
                 ReefStack (0xC0A1, 0xC0A2)"
            ),
        ));
    }
    let version = v24(&m, 2);
    let count = m[5];
    if count == 0
        || count > MAX_IMAGES
        || manifest_len != MANIFEST_HEAD + ENTRY_LEN * usize::from(count)
    {
        return Err(invalid(
            at(5),
            format!("the manifest counts {count} images but is {manifest_len} bytes long"),
        ));
    }
    if le16(&m, 6) != 0 {
        return Err(invalid(at(6), "reserved manifest bytes 6-7 must be 0"));
    }
    let mut images = Vec::with_capacity(usize::from(count));
    let mut offset = sig_at + SIGNATURE_LEN;
    for i in 0..count {
        let e = MANIFEST_HEAD + ENTRY_LEN * usize::from(i);
        let target = match m[e] {
            0 => Target::Master,
            1 => Target::Module,
            other => {
                return Err(invalid(
                    at(e),
                    format!("image {i} has target {other}; 0 (master) and 1 (module) are defined"),
                ));
            }
        };
        if (i == 0) != (target == Target::Master) {
            return Err(invalid(
                at(e),
                format!("image {i}: the master image is entry 0, and only entry 0"),
            ));
        }
        let hw_revision = m[e + 1];
        if hw_revision == 0 {
            return Err(invalid(
                at(e + 1),
                format!("image {i} has hardware revision 0"),
            ));
        }
        if m[e + 5..e + 8] != [0; 3] || le32(&m, e + 12) != 0 {
            return Err(invalid(
                at(e + 5),
                format!("image {i}: reserved bytes must be 0"),
            ));
        }
        let len = u64::from(le32(&m, e + 8));
        let limit = match target {
            Target::Master => MAX_MASTER_IMAGE,
            Target::Module => MAX_MODULE_IMAGE,
        };
        if len == 0 || len > limit {
            return Err(invalid(
                at(e + 8),
                format!("image {i} is {len} bytes; images of its kind are 1 to {limit} bytes"),
            ));
        }
        if let Some(previous) = images.last().filter(|_| i >= 2) {
            let previous: &ImageEntry = previous;
            if hw_revision <= previous.hw_revision {
                return Err(invalid(
                    at(e + 1),
                    format!(
                        "image {i} is for hardware revision {hw_revision}, after revision {}: \
                         module revisions must increase",
                        previous.hw_revision
                    ),
                ));
            }
        }
        let image_version = v24(&m, e + 2);
        if i == 0 && image_version != version {
            return Err(invalid(
                at(e + 2),
                format!("the master image is {image_version}, the bundle says {version}"),
            ));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&m[e + 16..e + 48]);
        images.push(ImageEntry {
            entry: i,
            target,
            hw_revision,
            version: image_version,
            offset,
            len,
            sha256: digest,
        });
        offset += len;
    }
    let file = package.len();
    if offset > MAX_BUNDLE_LEN {
        return Err(invalid(
            offset.min(file),
            format!("the images end at byte {offset}: a bundle is at most {MAX_BUNDLE_LEN} bytes"),
        ));
    }
    if file < offset {
        return Err(invalid(
            file,
            format!(
                "the file ends at byte {file}, but the manifest lists images up to byte \
                 {offset}: the file is truncated"
            ),
        ));
    }
    if file > offset {
        return Err(invalid(
            offset,
            format!(
                "{} bytes follow the last image, which ends at byte {offset}",
                file - offset
            ),
        ));
    }
    Ok(Bundle {
        product_code,
        version,
        images,
        manifest_sha256: sha256(&m),
        len: file,
        key_name: trusted.name,
    })
}

/// Reads bytes `start..end` of the package a chunk of at most `buf.len()` bytes at a time,
/// handing each to `take`. The chunks are counted before the first read, so the loop ends
/// whatever happens inside it.
fn stream(
    package: &PackageReader,
    start: u64,
    end: u64,
    buf: &mut [u8],
    mut take: impl FnMut(&[u8]),
) -> Result<(), PackageError> {
    for at in (start..end).step_by(buf.len()) {
        let n = usize::try_from(end - at)
            .unwrap_or(buf.len())
            .min(buf.len());
        package.read_exact_at(at, &mut buf[..n])?;
        take(&buf[..n]);
    }
    Ok(())
}

/// Checks the whole bundle and says what it contains: the signed manifest, then every
/// image against its SHA-256, streamed.
pub fn inspect(package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
    let bundle = read_bundle(package)?;
    let mut whole = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    stream(package, 0, bundle.master().offset, &mut buf, |chunk| {
        whole.update(chunk)
    })?;
    for image in &bundle.images {
        let mut sha = Sha256::new();
        let end = image.offset + image.len;
        stream(package, image.offset, end, &mut buf, |chunk| {
            sha.update(chunk);
            whole.update(chunk);
        })?;
        if sha.value() != image.sha256 {
            return Err(PackageError::at_offset(
                ErrorCode::SIGNATURE_INVALID,
                image.offset,
                format!(
                    "image {} ({}, bytes {} to {}) does not match the SHA-256 the signed \
                     manifest gives it: the bundle was altered after signing",
                    image.entry,
                    image.describe(),
                    image.offset,
                    end - 1
                ),
            ));
        }
    }
    let modules = bundle
        .images
        .iter()
        .map(|i| ModuleImage {
            index: u16::from(i.entry),
            kind: match i.target {
                Target::Master => format!("master, hardware revision {}", i.hw_revision),
                Target::Module => format!("module, hardware revision {}", i.hw_revision),
            }
            .into(),
            version: i.version.firmware_version(),
            size: i.len,
        })
        .collect::<Vec<_>>();
    Ok(PackageInfo {
        targets: vec![TargetProduct::new(MANUFACTURER, Some(bundle.product_code))].into(),
        // The bundle's full version, build included: 0x35F shows its major and minor, the
        // session reads the master's build over the protocol (`running_version`), so a
        // build-only change is newer.
        version: bundle.version.firmware_version(),
        image_size: bundle.len,
        image_sha256: whole.value(),
        signature: SignatureStatus::VALID,
        modules: modules.into(),
    })
}

#[cfg(test)]
mod tests;
