//! A small real package format for the tests, and its inspector.
//!
//! A test package is `BMSFWTST` (8 bytes), the product name length (1 byte), the product
//! name, the two raw version bytes, then the image. The inspector parses it the way a vendor
//! plugin parses its own format and refuses anything else.

#![allow(dead_code)]

use bmsfw_core::job::VersionInfo;
use bmsfw_core::staging::{
    AcceptedPackage, InspectionFailure, PackageCandidate, PackageInspector, SignatureStatus,
};

pub const MAGIC: &[u8; 8] = b"BMSFWTST";

/// Builds a test package for `product` with version bytes `version` and `image_len` bytes
/// of image derived from `seed`.
pub fn build_package(product: &str, version: [u8; 2], image_len: usize, seed: u8) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(product.len() as u8);
    out.extend_from_slice(product.as_bytes());
    out.extend_from_slice(&version);
    out.extend((0..image_len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    out
}

/// Accepts test packages for one product.
pub struct TestInspector {
    pub product: String,
}

impl TestInspector {
    pub fn for_product(product: &str) -> TestInspector {
        TestInspector {
            product: product.into(),
        }
    }
}

impl PackageInspector for TestInspector {
    fn inspect(
        &self,
        candidate: &PackageCandidate<'_>,
    ) -> Result<AcceptedPackage, InspectionFailure> {
        let bytes = std::fs::read(candidate.path).map_err(|e| InspectionFailure {
            code: 706,
            message: e.to_string(),
        })?;
        let invalid = |message: &str| InspectionFailure {
            code: 760,
            message: message.into(),
        };
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| invalid("not a test package"))?;
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| invalid("truncated header"))?;
        if rest.len() < usize::from(len) + 2 {
            return Err(invalid("truncated header"));
        }
        let product = String::from_utf8_lossy(&rest[..usize::from(len)]).into_owned();
        if product != self.product {
            return Err(InspectionFailure {
                code: 761,
                message: format!("package for {product}, battery is {}", self.product),
            });
        }
        let raw = rest[usize::from(len)..usize::from(len) + 2].to_vec();
        Ok(AcceptedPackage {
            vendor: "test".into(),
            products: vec![product],
            version: VersionInfo {
                display: format!("v{}.{:02}", raw[0], raw[1]),
                raw,
            },
            signature: SignatureStatus::Unsigned,
            modules: Vec::new(),
        })
    }
}
