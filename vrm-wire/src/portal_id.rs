//! The VRM portal id of a GX device: the second segment of every topic.

use crate::error::{WireError, clip};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest portal id accepted.
pub const MAX_PORTAL_ID: usize = 64;

/// A GX device's VRM portal id (on a real GX, 12 hex digits of its MAC address): 1 to 64
/// ASCII letters, digits, `_` or `-`, so it can never smuggle a topic separator or wildcard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortalId(String);

impl PortalId {
    /// Checks `id`.
    pub fn new(id: &str) -> Result<PortalId, WireError> {
        if id.is_empty() || id.len() > MAX_PORTAL_ID {
            return Err(WireError::field(
                "portal id",
                format!("must be 1 to {MAX_PORTAL_ID} characters, is {}", id.len()),
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(WireError::field(
                "portal id",
                format!(
                    "{:?} contains {c:?}; only letters, digits, _ and - are allowed",
                    clip(id, 64)
                ),
            ));
        }
        Ok(PortalId(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PortalId {
    type Err = WireError;
    fn from_str(s: &str) -> Result<PortalId, WireError> {
        PortalId::new(s)
    }
}

impl TryFrom<String> for PortalId {
    type Error = WireError;
    fn try_from(s: String) -> Result<PortalId, WireError> {
        PortalId::new(&s)
    }
}

impl From<PortalId> for String {
    fn from(id: PortalId) -> String {
        id.0
    }
}

impl fmt::Display for PortalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_gx_ids_and_refuses_separators_and_wildcards() {
        assert_eq!(
            PortalId::new("c0619ab1e2f3").unwrap().as_str(),
            "c0619ab1e2f3"
        );
        assert!(PortalId::new("site_1-b").is_ok());
        for bad in ["", "a/b", "+", "#", "a b", "é", &"x".repeat(65)] {
            assert!(PortalId::new(bad).is_err(), "{bad:?}");
        }
    }
}
