//! Wall-clock time as the journal and the event log record it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC), as stored in the journal and the event log.
///
/// Callers hand it in (`now`), so the state machines never read a clock themselves and tests
/// choose their own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The system clock, now. A clock before 1970 reads as the epoch.
    pub fn now() -> UnixMillis {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        UnixMillis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.0))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-01-20T08:15:00.000Z`.
impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime formats years up to 9999; later instants only come from hostile files.
        const YEAR_10000_MS: u64 = 253_402_300_800_000;
        if self.0 >= YEAR_10000_MS {
            return write!(f, "+{}ms", self.0);
        }
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_utc() {
        assert_eq!(UnixMillis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_768_896_900_123).to_string(),
            "2026-01-20T08:15:00.123Z"
        );
        assert_eq!(UnixMillis(u64::MAX).to_string(), format!("+{}ms", u64::MAX));
    }
}
