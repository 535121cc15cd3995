//! The version of this contract.

use abi_stable::StableAbi;
use std::fmt;

/// The version of the plugin contract this crate defines.
///
/// The engine refuses a plugin built against a different major version. Minor versions
/// only append (fields after the prefix of the root module, methods after the prefix of
/// the session trait), so a plugin built against `1.x` loads in any engine of major `1`.
pub const CONTRACT_VERSION: ContractVersion = ContractVersion { major: 1, minor: 0 };

/// `CONTRACT_VERSION` as the `major.minor.patch` string abi_stable stores in the library
/// header, where the engine reads it before it calls anything in the library.
pub(crate) const CONTRACT_VERSION_STRING: &str = "1.0.0";

/// A contract version: `major.minor`.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractVersion {
    /// Incremented when a change breaks plugins or engines built against the previous one.
    pub major: u16,
    /// Incremented when the contract grows in a way older plugins and engines tolerate.
    pub minor: u16,
}

impl ContractVersion {
    /// Whether a plugin built against `self` may be loaded by an engine built against
    /// `engine`: the majors must be equal.
    pub const fn is_compatible_with(self, engine: ContractVersion) -> bool {
        self.major == engine.major
    }
}

/// Prints `major.minor`.
impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_string_is_the_contract_version() {
        let parts: Vec<u16> = CONTRACT_VERSION_STRING
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts[..2], [CONTRACT_VERSION.major, CONTRACT_VERSION.minor]);
        // The crate version is the contract version, so abi_stable's own package-version
        // check agrees with the contract check.
        let crate_version: Vec<u16> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(crate_version[..2], parts[..2]);
    }

    #[test]
    fn only_the_major_decides_compatibility() {
        let v = |major, minor| ContractVersion { major, minor };
        assert!(v(1, 3).is_compatible_with(v(1, 0)));
        assert!(v(1, 0).is_compatible_with(v(1, 3)));
        assert!(!v(2, 0).is_compatible_with(v(1, 0)));
        assert!(!v(0, 9).is_compatible_with(v(1, 0)));
        assert_eq!(v(1, 2).to_string(), "1.2");
    }
}
