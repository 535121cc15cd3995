//! Stage 1 asks a loaded plugin about a stored package through `PluginInspector`.

mod plugins_common;

use bmsfw_core::plugin::{PluginInspector, Sha256Digest};
use bmsfw_core::staging::{PackageCandidate, PackageInspector, SignatureStatus};
use plugins_common::{Approve, install, loader};

fn spkg(product: u16, image: &[u8]) -> Vec<u8> {
    let mut p = b"SPKG".to_vec();
    p.extend_from_slice(&product.to_le_bytes());
    p.extend_from_slice(&[1, 7]);
    p.extend_from_slice(image);
    p
}

#[test]
fn a_plugin_accepts_its_package_and_refuses_others_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let p = install(dir.path(), "panicking", "libpanicking.so");
    let loader = loader(&[
        Approve::new(&a, "com.example.alpha"),
        Approve::new(&p, "com.example.panicking"),
    ]);
    let alpha = PluginInspector::new(loader.load_file(&a).unwrap().plugin);
    let panicking = PluginInspector::new(loader.load_file(&p).unwrap().plugin);

    let inspect = |inspector: &PluginInspector, bytes: &[u8], size: u64| {
        let path = dir.path().join("package.spkg");
        std::fs::write(&path, bytes).unwrap();
        inspector.inspect(&PackageCandidate {
            path: &path,
            file_name: "package.spkg",
            size,
            sha256: Sha256Digest::of(bytes),
        })
    };

    let good = spkg(0x0A01, &[9; 64]);
    let accepted = inspect(&alpha, &good, good.len() as u64).unwrap();
    assert_eq!(accepted.vendor, "com.example.alpha");
    assert_eq!(accepted.products, vec!["ALPHA 0x0a01".to_owned()]);
    assert_eq!(accepted.version.display, "v1.07");
    assert_eq!(accepted.version.raw, vec![1, 7]);
    assert_eq!(accepted.signature, SignatureStatus::Unsigned);

    let wrong = spkg(0x0B02, &[9; 64]);
    let e = inspect(&alpha, &wrong, wrong.len() as u64).unwrap_err();
    assert_eq!(e.code, 761);
    assert!(e.message.ends_with("(at byte 4)"), "{e}");

    let e = inspect(&alpha, b"JUNK", 4).unwrap_err();
    assert_eq!(e.code, 760);

    let e = inspect(&alpha, &good, good.len() as u64 + 1).unwrap_err();
    assert_eq!(e.code, 709, "{e}");

    let e = inspect(&panicking, b"PANIC!", 6).unwrap_err();
    assert_eq!(e.code, 754, "{e}");
}
