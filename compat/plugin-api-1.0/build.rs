//! abi_stable records the package that defines each type: this pinned copy must carry
//! the contract crate's name (its version, 1.0.0, is this package's own).
fn main() {
    println!("cargo:rustc-env=CARGO_PKG_NAME=bmsfw-plugin-api");
}
