//! The nodes or modules an `update` command installs: `"targets": [2, 3]`.
//!
//! A battery with several BMS nodes on the bus (a bank), or a BMS with modules behind it (a
//! pack), may be updated in part. The list names node ids or module numbers, as the
//! battery's update plugin numbers them; the field left out means every one. The list is
//! refused, never trimmed, when it is empty, longer than [`MAX_UPDATE_TARGETS`], names a
//! number twice, or a number outside 1 to [`MAX_MODULE_INDEX`].

use crate::limits::{MAX_MODULE_INDEX, MAX_UPDATE_TARGETS};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A checked, non-empty list of node ids or module numbers, in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u16>", into = "Vec<u16>")]
pub struct TargetList(Vec<u16>);

impl TargetList {
    /// Checks `ids` (any order) and sorts them.
    pub fn new(ids: Vec<u16>) -> Result<TargetList, String> {
        if ids.is_empty() {
            return Err(
                "names no node or module: leave `targets` out to update every one".to_owned(),
            );
        }
        if ids.len() > MAX_UPDATE_TARGETS {
            return Err(format!(
                "names {} nodes or modules, at most {MAX_UPDATE_TARGETS}",
                ids.len()
            ));
        }
        if let Some(bad) = ids.iter().find(|n| !(1..=MAX_MODULE_INDEX).contains(*n)) {
            return Err(format!(
                "names {bad}: node ids and module numbers are 1 to {MAX_MODULE_INDEX}"
            ));
        }
        let mut sorted = ids;
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("names {} twice", w[0]));
        }
        Ok(TargetList(sorted))
    }

    /// The numbers, ascending.
    pub fn ids(&self) -> &[u16] {
        &self.0
    }
}

impl TryFrom<Vec<u16>> for TargetList {
    type Error = String;
    fn try_from(ids: Vec<u16>) -> Result<TargetList, String> {
        TargetList::new(ids)
    }
}

impl From<TargetList> for Vec<u16> {
    fn from(t: TargetList) -> Vec<u16> {
        t.0
    }
}

/// Prints `2, 3`.
impl fmt::Display for TargetList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_hostile_ones_refused_with_the_reason() {
        assert_eq!(TargetList::new(vec![3, 1]).unwrap().ids(), &[1, 3]);
        assert_eq!(TargetList::new(vec![7]).unwrap().to_string(), "7");
        let cases: [(Vec<u16>, &str); 5] = [
            (vec![], "names no node"),
            (vec![2, 5, 2], "names 2 twice"),
            (vec![0], "names 0"),
            (vec![256], "names 256"),
            ((1..=33).collect(), "names 33 nodes or modules, at most 32"),
        ];
        for (ids, expected) in cases {
            let e = TargetList::new(ids.clone()).unwrap_err();
            assert!(e.contains(expected), "{ids:?}: {e}");
        }
        let json: TargetList = serde_json::from_str("[4, 2]").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "[2,4]");
        assert!(serde_json::from_str::<TargetList>("[70000]").is_err());
        assert!(serde_json::from_str::<TargetList>("[-1]").is_err());
        assert!(serde_json::from_str::<TargetList>("\"2\"").is_err());
    }
}
