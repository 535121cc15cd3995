//! Package files: how a plugin reads them and what it reports about them.
// `#[sabi_trait]` (abi_stable 0.11) places trait impls inside a generated module.
#![allow(non_local_definitions)]
// `len` is the contract's name; the generated trait object has no `is_empty` to add.
#![allow(clippy::len_without_is_empty)]

use crate::error::ErrorCode;
use crate::version::FirmwareVersion;
use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, ROption, RResult, RSliceMut, RString, RVec},
};
use std::{fmt, io};

/// Why the engine could not read the package.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// What went wrong, from the engine.
    pub message: RString,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

/// The package file, provided by the engine and read in place.
///
/// Packages are streamed through this reader, never copied whole across the library
/// boundary, so a 4 MiB image costs the plugin only the buffers it reads into. Vendors
/// use it through [`PackageReader`].
#[sabi_trait]
pub trait PackageSource: Send + Sync {
    /// The package's size in bytes.
    fn len(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read, 0 at or past
    /// the end.
    #[sabi(last_prefix_field)]
    fn read_at(&self, offset: u64, buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError>;
}

/// The package source the engine hands to a plugin: an owned, boxed trait object.
pub type BoxedPackageSource = PackageSource_TO<'static, RBox<()>>;

/// A vendor's view of the package: random access through [`PackageReader::read_at`] and
/// [`PackageReader::read_exact_at`], or sequential through [`std::io::Read`] and
/// [`std::io::Seek`].
pub struct PackageReader {
    source: BoxedPackageSource,
    position: u64,
}

impl PackageReader {
    /// Wraps a package source; the cursor starts at offset 0.
    pub fn new(source: BoxedPackageSource) -> PackageReader {
        PackageReader {
            source,
            position: 0,
        }
    }

    /// The package's size in bytes.
    pub fn len(&self) -> u64 {
        self.source.len()
    }

    /// Reads up to `buf.len()` bytes at `offset` (the cursor does not move).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let asked = buf.len();
        let n = self
            .source
            .read_at(offset, RSliceMut::from_mut_slice(buf))
            .into_result()?;
        if n > asked {
            return Err(SourceError {
                message: RString::from(format!(
                    "package source claimed {n} bytes read into a {asked}-byte buffer"
                )),
            });
        }
        Ok(n)
    }

    /// Fills `buf` from `offset`, or fails when the package ends first (the cursor does
    /// not move).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset.saturating_add(done as u64);
            let n = self.read_at(at, &mut buf[done..])?;
            if n == 0 {
                return Err(SourceError {
                    message: RString::from(format!(
                        "package ends at byte {} but {} bytes were needed at offset {offset}",
                        self.len(),
                        buf.len()
                    )),
                });
            }
            done += n;
        }
        Ok(())
    }

    /// The cursor used by [`std::io::Read`] and [`std::io::Seek`].
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl fmt::Debug for PackageReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackageReader")
            .field("len", &self.len())
            .field("position", &self.position)
            .finish()
    }
}

impl io::Read for PackageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .read_at(self.position, buf)
            .map_err(|e| io::Error::other(e.message.into_string()))?;
        self.position = self.position.saturating_add(n as u64);
        Ok(n)
    }
}

impl io::Seek for PackageReader {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let target = match pos {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len().checked_add_signed(d),
            io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.position = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the package",
            )),
        }
    }
}

/// Whether the package carries a signature, and whether it verifies.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureStatus(pub u8);

impl SignatureStatus {
    /// The format has no signature, or this package carries none.
    pub const UNSIGNED: SignatureStatus = SignatureStatus(0);
    /// The signature verifies against the vendor's key.
    pub const VALID: SignatureStatus = SignatureStatus(1);
    /// The package carries a signature that does not verify.
    pub const INVALID: SignatureStatus = SignatureStatus(2);
}

impl fmt::Debug for SignatureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SignatureStatus::UNSIGNED => f.write_str("UNSIGNED"),
            SignatureStatus::VALID => f.write_str("VALID"),
            SignatureStatus::INVALID => f.write_str("INVALID"),
            SignatureStatus(other) => write!(f, "SignatureStatus({other})"),
        }
    }
}

/// A product a package is meant for.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct TargetProduct {
    /// The manufacturer string the battery sends in 0x35E.
    pub manufacturer: RString,
    /// The product code of 0x35F bytes 0-1, when the package names one.
    pub product_code: ROption<u16>,
}

impl TargetProduct {
    /// A product by manufacturer and optional product code.
    pub fn new(manufacturer: impl Into<String>, product_code: Option<u16>) -> TargetProduct {
        TargetProduct {
            manufacturer: RString::from(manufacturer.into()),
            product_code: product_code.into(),
        }
    }
}

/// One image of a package meant for a module behind the BMS (packs that update their
/// modules one by one).
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ModuleImage {
    /// The module's index behind the BMS.
    pub index: u16,
    /// What kind of module or processor the image is for (e.g. `cell-board`).
    pub kind: RString,
    /// The image's firmware version.
    pub version: FirmwareVersion,
    /// The image's size in bytes.
    pub size: u64,
}

/// What a package contains, as the plugin read it.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// The products the package is meant for.
    pub targets: RVec<TargetProduct>,
    /// The firmware version the package installs.
    pub version: FirmwareVersion,
    /// The size of the firmware image a session transfers, in bytes.
    pub image_size: u64,
    /// SHA-256 of the firmware image a session transfers, as the plugin computed it.
    pub image_sha256: [u8; 32],
    /// Whether the package's signature verifies.
    pub signature: SignatureStatus,
    /// Per-module images; empty when the package holds one image for the BMS.
    pub modules: RVec<ModuleImage>,
}

/// How a [`Location`] points into a package.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocationKind(pub u8);

impl LocationKind {
    /// No particular place.
    pub const NONE: LocationKind = LocationKind(0);
    /// `Location::value` is a byte offset from the start of the file.
    pub const BYTE_OFFSET: LocationKind = LocationKind(1);
    /// `Location::value` is a 1-based line number (text formats such as Intel HEX).
    pub const LINE: LocationKind = LocationKind(2);
}

impl fmt::Debug for LocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LocationKind::NONE => f.write_str("NONE"),
            LocationKind::BYTE_OFFSET => f.write_str("BYTE_OFFSET"),
            LocationKind::LINE => f.write_str("LINE"),
            LocationKind(other) => write!(f, "LocationKind({other})"),
        }
    }
}

/// Where in a package a problem is.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// What `value` counts.
    pub kind: LocationKind,
    /// The byte offset or line number.
    pub value: u64,
}

impl Location {
    /// No particular place.
    pub const NONE: Location = Location {
        kind: LocationKind::NONE,
        value: 0,
    };

    /// A byte offset.
    pub const fn byte_offset(offset: u64) -> Location {
        Location {
            kind: LocationKind::BYTE_OFFSET,
            value: offset,
        }
    }

    /// A 1-based line number.
    pub const fn line(line: u64) -> Location {
        Location {
            kind: LocationKind::LINE,
            value: line,
        }
    }
}

/// Prints `byte 512`, `line 17`, or nothing.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LocationKind::BYTE_OFFSET => write!(f, "byte {}", self.value),
            LocationKind::LINE => write!(f, "line {}", self.value),
            _ => Ok(()),
        }
    }
}

/// Why a package was refused.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PackageError {
    /// Usually [`ErrorCode::PACKAGE_INVALID`], [`ErrorCode::PACKAGE_WRONG_PRODUCT`] or
    /// [`ErrorCode::SIGNATURE_INVALID`].
    pub code: ErrorCode,
    /// What is wrong, for the installer and the vendor's support.
    pub message: RString,
    /// Where in the file.
    pub location: Location,
}

impl PackageError {
    /// An error with no particular location.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> PackageError {
        PackageError {
            code,
            message: RString::from(message.into()),
            location: Location::NONE,
        }
    }

    /// An error at a byte offset.
    pub fn at_offset(code: ErrorCode, offset: u64, message: impl Into<String>) -> PackageError {
        PackageError {
            location: Location::byte_offset(offset),
            ..PackageError::new(code, message)
        }
    }

    /// An error at a 1-based line.
    pub fn at_line(code: ErrorCode, line: u64, message: impl Into<String>) -> PackageError {
        PackageError {
            location: Location::line(line),
            ..PackageError::new(code, message)
        }
    }
}

/// A read error becomes [`ErrorCode::PACKAGE_INVALID`] with the engine's message.
impl From<SourceError> for PackageError {
    fn from(e: SourceError) -> PackageError {
        PackageError::new(
            ErrorCode::PACKAGE_INVALID,
            format!("reading the package failed: {}", e.message),
        )
    }
}

/// Prints `code at location: message`.
impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.kind == LocationKind::NONE {
            write!(f, "{}: {}", self.code, self.message)
        } else {
            write!(f, "{} at {}: {}", self.code, self.location, self.message)
        }
    }
}

impl std::error::Error for PackageError {}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::sabi_trait::TD_Opaque;
    use std::io::{Read, Seek, SeekFrom};

    struct Bytes(Vec<u8>, usize);

    impl PackageSource for Bytes {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(self.0.len());
            // At most `self.1` bytes per call, to exercise the callers' loops.
            let n = buf.len().min(self.0.len() - start).min(self.1);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            RResult::ROk(n)
        }
    }

    fn reader(data: &[u8], chunk: usize) -> PackageReader {
        PackageReader::new(PackageSource_TO::from_value(
            Bytes(data.to_vec(), chunk),
            TD_Opaque,
        ))
    }

    #[test]
    fn reader_streams_across_short_reads() {
        let data: Vec<u8> = (0..=255).collect();
        let mut r = reader(&data, 7);
        let mut buf = [0u8; 20];
        r.read_exact_at(100, &mut buf).unwrap();
        assert_eq!(buf[0], 100);
        assert_eq!(buf[19], 119);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        r.seek(SeekFrom::End(-3)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, [253, 254, 255]);
        assert!(r.seek(SeekFrom::Current(-1000)).is_err());
    }

    #[test]
    fn reading_past_the_end_names_the_sizes() {
        let r = reader(&[1, 2, 3], 8);
        let mut buf = [0u8; 4];
        let e = r.read_exact_at(1, &mut buf).unwrap_err();
        assert!(e.message.contains("ends at byte 3"), "{e}");
        assert_eq!(r.read_at(10, &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_source_overstating_its_read_is_an_error() {
        struct Liar;
        impl PackageSource for Liar {
            fn len(&self) -> u64 {
                10
            }
            fn read_at(&self, _: u64, buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
                RResult::ROk(buf.len() + 1)
            }
        }
        let r = PackageReader::new(PackageSource_TO::from_value(Liar, TD_Opaque));
        let mut buf = [0u8; 4];
        assert!(r.read_at(0, &mut buf).is_err());
    }

    #[test]
    fn package_errors_print_their_location() {
        let e = PackageError::at_line(ErrorCode::PACKAGE_INVALID, 17, "bad checksum");
        assert_eq!(
            e.to_string(),
            "760 PACKAGE_INVALID at line 17: bad checksum"
        );
        let e = PackageError::at_offset(ErrorCode::SIGNATURE_INVALID, 512, "bad signature");
        assert_eq!(
            e.to_string(),
            "762 SIGNATURE_INVALID at byte 512: bad signature"
        );
        let e = PackageError::new(ErrorCode::PACKAGE_WRONG_PRODUCT, "for model 0x1235");
        assert_eq!(e.to_string(), "761 PACKAGE_WRONG_PRODUCT: for model 0x1235");
    }
}
