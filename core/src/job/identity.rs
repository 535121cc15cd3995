//! Who a job updates and which firmware versions it deals with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The battery a job updates, as its BMS identifies itself on BMS-Can.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatteryIdentity {
    /// Manufacturer name (BMS-Can 0x35E).
    pub manufacturer: String,
    /// Model or product name (0x35F product code, or the 0x381 family name).
    pub model: String,
    /// Serial number (0x380/0x381); the key of the battery's history.
    pub serial: String,
}

impl BatteryIdentity {
    /// Whether `id` names this battery: its serial number, exactly.
    pub fn matches(&self, id: &str) -> bool {
        self.serial == id
    }
}

impl fmt::Display for BatteryIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} #{}", self.manufacturer, self.model, self.serial)
    }
}

/// A firmware version as the bytes the battery reports and as its vendor decodes them.
///
/// The engine keeps both: the raw bytes are the truth (vendors disagree on how to render
/// them, see the manual's "hexadecimal encoding differences"), the display string is what
/// the vendor's plugin made of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The raw version bytes, stored as hex.
    #[serde(with = "hex")]
    pub raw: Vec<u8>,
    /// The vendor's rendering, e.g. `v4.15`.
    pub display: String,
}

impl fmt::Display for VersionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.display, hex::encode_upper(&self.raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keeps_raw_bytes_and_display() {
        let v = VersionInfo {
            raw: vec![0x04, 0x0F],
            display: "v4.15".into(),
        };
        assert_eq!(v.to_string(), "v4.15 [040F]");
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"raw":"040f","display":"v4.15"}"#);
        assert_eq!(serde_json::from_str::<VersionInfo>(&json).unwrap(), v);
        assert!(serde_json::from_str::<VersionInfo>(r#"{"raw":"0g","display":""}"#).is_err());
    }
}
