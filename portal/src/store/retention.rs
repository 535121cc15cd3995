//! Which uploaded firmware files the portal keeps on disk.
//!
//! The rule, applied when the portal starts, after every upload and every hour:
//!
//! 1. **Never deleted:** a file waiting for Update (uploaded, Update not pressed yet), the
//!    file of an update that has not ended (its upload may still need it), and the file of
//!    the latest update of each battery (Retry sends it again).
//! 2. **Kept:** the files of the last `updates_per_battery` updates of each battery, and
//!    every file uploaded or used by an update within `keep_younger_than`.
//! 3. **Bounded:** while the kept files together exceed `max_total_bytes`, the one used
//!    longest ago that rule 1 does not protect is deleted.
//! 4. **Deleted:** every other file, a file on disk the database does not list (left by an
//!    interrupted write), and the row of a listed file that is missing from disk.
//!
//! Only the files go: update records, event logs and diagnostics stay, and an update whose
//! file was deleted still shows in the history (it cannot be retried).

use std::collections::BTreeSet;
use std::time::Duration;

/// The retention rule's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    /// The files of this many latest updates of each battery are kept.
    pub updates_per_battery: u32,
    /// Files uploaded or used within this time are kept.
    pub keep_younger_than: Duration,
    /// The kept files together stay below this (the protected ones excepted).
    pub max_total_bytes: u64,
}

impl Default for RetentionRule {
    /// The last 3 updates per battery, 30 days, 2 GiB.
    fn default() -> RetentionRule {
        RetentionRule {
            updates_per_battery: 3,
            keep_younger_than: Duration::from_secs(30 * 24 * 3600),
            max_total_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// One stored file as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// Its SHA-256 (hex), which is also its name on disk.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// When it was last uploaded or used by an update (ms since the epoch).
    pub last_used_at: u64,
}

/// What the rule decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The files to delete, by SHA-256.
    pub delete: BTreeSet<String>,
    /// Bytes of the files kept.
    pub kept_bytes: u64,
}

/// Applies `rule` at `now_ms` to `files`, given the `protected` ones (rule 1) and the
/// `recent` ones (the last updates of each battery, rule 2).
pub fn decide(
    rule: &RetentionRule,
    now_ms: u64,
    files: &[FileFacts],
    protected: &BTreeSet<String>,
    recent: &BTreeSet<String>,
) -> Verdict {
    let young_since = now_ms
        .saturating_sub(u64::try_from(rule.keep_younger_than.as_millis()).unwrap_or(u64::MAX));
    let mut delete = BTreeSet::new();
    let mut kept: Vec<&FileFacts> = Vec::new();
    for f in files {
        let keep = protected.contains(&f.sha256)
            || recent.contains(&f.sha256)
            || f.last_used_at >= young_since;
        if keep {
            kept.push(f);
        } else {
            delete.insert(f.sha256.clone());
        }
    }
    let mut total: u64 = kept.iter().map(|f| f.size).sum();
    if total > rule.max_total_bytes {
        let mut candidates: Vec<&FileFacts> = kept
            .iter()
            .copied()
            .filter(|f| !protected.contains(&f.sha256))
            .collect();
        candidates.sort_by(|a, b| {
            a.last_used_at
                .cmp(&b.last_used_at)
                .then_with(|| a.sha256.cmp(&b.sha256))
        });
        for f in candidates {
            if total <= rule.max_total_bytes {
                break;
            }
            total -= f.size;
            delete.insert(f.sha256.clone());
        }
    }
    Verdict {
        delete,
        kept_bytes: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    fn file(name: &str, size: u64, used: u64) -> FileFacts {
        FileFacts {
            sha256: name.into(),
            size,
            last_used_at: used,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn keeps_protected_recent_and_young_files_and_deletes_the_rest() {
        let rule = RetentionRule {
            updates_per_battery: 2,
            keep_younger_than: Duration::from_millis(10 * DAY),
            max_total_bytes: u64::MAX,
        };
        let now = 100 * DAY;
        let files = [
            file("pending", 10, 0),
            file("recent", 10, 0),
            file("young", 10, now - 9 * DAY),
            file("old", 10, now - 11 * DAY),
        ];
        let v = decide(&rule, now, &files, &set(&["pending"]), &set(&["recent"]));
        assert_eq!(v.delete, set(&["old"]));
        assert_eq!(v.kept_bytes, 30);
    }

    #[test]
    fn the_byte_bound_deletes_the_oldest_unprotected_first_and_never_a_protected_one() {
        let rule = RetentionRule {
            updates_per_battery: 3,
            keep_younger_than: Duration::from_millis(365 * DAY),
            max_total_bytes: 25,
        };
        let now = 10 * DAY;
        let files = [
            file("a", 10, 1),
            file("b", 10, 2),
            file("c", 10, 3),
            file("p", 10, 0),
        ];
        let v = decide(&rule, now, &files, &set(&["p"]), &set(&[]));
        assert_eq!(v.delete, set(&["a", "b"]));
        assert_eq!(v.kept_bytes, 20);
        // Protected files alone above the bound: all kept.
        let v = decide(&rule, now, &files, &set(&["a", "b", "c", "p"]), &set(&[]));
        assert!(v.delete.is_empty());
        assert_eq!(v.kept_bytes, 40);
    }
}
