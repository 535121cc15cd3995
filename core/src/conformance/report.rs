//! The report of a conformance run: the rows and the pass/fail table.

use super::check::{Check, Row, Verdict};
use std::fmt::Write as _;

/// Counts of a report's verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows passed.
    pub passed: usize,
    /// Rows failed.
    pub failed: usize,
    /// Rows skipped.
    pub skipped: usize,
}

/// Everything a conformance run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The rows, in the order the checks ran.
    pub rows: Vec<Row>,
}

impl Report {
    /// Adds a row.
    pub fn push(&mut self, check: Check, scenario: impl Into<String>, verdict: Verdict) {
        self.rows.push(Row::new(check, scenario, verdict));
    }

    /// Whether no row failed (skipped rows are not failures, and not passes either).
    pub fn passed(&self) -> bool {
        !self.rows.iter().any(|r| r.verdict.is_failure())
    }

    /// The rows that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict.is_failure())
    }

    /// How many rows passed, failed and were skipped.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for r in &self.rows {
            match r.verdict {
                Verdict::Passed(_) => t.passed += 1,
                Verdict::Failed(_) => t.failed += 1,
                Verdict::Skipped(_) => t.skipped += 1,
            }
        }
        t
    }

    /// The table: one line per row, columns `check`, `scenario`, `result`, `detail`,
    /// then a summary line.
    pub fn table(&self) -> String {
        let check_w = self
            .rows
            .iter()
            .map(|r| r.check.name().len())
            .chain(["check".len()])
            .max()
            .unwrap_or(5);
        let scenario_w = self
            .rows
            .iter()
            .map(|r| r.scenario.chars().count())
            .chain(["scenario".len()])
            .max()
            .unwrap_or(8);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<check_w$}  {:<scenario_w$}  {:<6}  detail",
            "check", "scenario", "result"
        );
        let _ = writeln!(
            out,
            "{}  {}  {}  {}",
            "-".repeat(check_w),
            "-".repeat(scenario_w),
            "-".repeat(6),
            "-".repeat(6)
        );
        for r in &self.rows {
            let detail: String = r
                .verdict
                .detail()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(
                out,
                "{:<check_w$}  {:<scenario_w$}  {:<6}  {detail}",
                r.check.name(),
                r.scenario,
                r.verdict.word()
            );
        }
        let t = self.tally();
        let _ = writeln!(
            out,
            "\n{} checks: {} passed, {} failed, {} skipped: {}",
            self.rows.len(),
            t.passed,
            t.failed,
            t.skipped,
            match (t.failed, t.skipped) {
                (0, 0) => "CONFORMS",
                (0, _) => "CONFORMS in what was checked; skipped checks did not run",
                _ => "DOES NOT CONFORM",
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_not_a_pass_and_a_failure_fails_the_report() {
        let mut r = Report::default();
        r.push(Check::NoPanic, "silence", Verdict::Passed("ok".into()));
        r.push(
            Check::BadPackages,
            "truncated packages",
            Verdict::Skipped("no package".into()),
        );
        assert!(r.passed());
        let t = r.tally();
        assert_eq!((t.passed, t.failed, t.skipped), (1, 0, 1));
        let table = r.table();
        assert!(table.contains("SKIP"), "{table}");
        assert!(table.contains("skipped checks did not run"), "{table}");
        r.push(
            Check::DeclaredIds,
            "garbage frames",
            Verdict::Failed("sent 351".into()),
        );
        assert!(!r.passed());
        let table = r.table();
        let line = table
            .lines()
            .find(|l| l.starts_with("declared-ids"))
            .expect("a row for the failed check");
        assert!(
            line.contains("garbage frames") && line.contains("FAIL") && line.contains("sent 351")
        );
        assert!(table.contains("DOES NOT CONFORM"));
    }
}
