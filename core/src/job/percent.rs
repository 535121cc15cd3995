//! A progress percentage that cannot exceed 100.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Progress in whole percent, 0 to 100.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    /// 0 %.
    pub const ZERO: Percent = Percent(0);
    /// 100 %.
    pub const FULL: Percent = Percent(100);

    /// `value` percent, or `None` above 100.
    pub const fn new(value: u8) -> Option<Percent> {
        if value <= 100 {
            Some(Percent(value))
        } else {
            None
        }
    }

    /// `done` out of `total`, rounded down; an empty total counts as done.
    pub fn of(done: u64, total: u64) -> Percent {
        if total == 0 || done >= total {
            return Percent::FULL;
        }
        // done < total, so the quotient is below 100.
        Percent((u128::from(done) * 100 / u128::from(total)) as u8)
    }

    /// The number, 0 to 100.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// The error of a percentage above 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a percentage (0 to 100)")]
pub struct PercentOutOfRange(pub u8);

impl TryFrom<u8> for Percent {
    type Error = PercentOutOfRange;
    fn try_from(value: u8) -> Result<Percent, PercentOutOfRange> {
        Percent::new(value).ok_or(PercentOutOfRange(value))
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> u8 {
        p.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_rounds_down() {
        assert_eq!(Percent::new(101), None);
        assert_eq!(Percent::of(1, 3).get(), 33);
        assert_eq!(Percent::of(2, 3).get(), 66);
        assert_eq!(Percent::of(u64::MAX - 1, u64::MAX).get(), 99);
        assert_eq!(Percent::of(5, 0), Percent::FULL);
        assert!(serde_json::from_str::<Percent>("101").is_err());
        assert_eq!(serde_json::from_str::<Percent>("42").unwrap().get(), 42);
    }
}
