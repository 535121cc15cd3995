//! The checks of a conformance run and their verdicts.

use std::fmt;

/// What a conformance run checks. Every row of the report names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The library opens and passes the loader's contract, layout and identity checks.
    Load,
    /// The sample package is accepted, a battery matches it and a session starts: what
    /// the session scenarios need.
    Setup,
    /// No entry point panics or breaks the contract (both reach the engine as
    /// `PLUGIN_FAULT`).
    NoPanic,
    /// Every frame the plugin sends is on an identifier it declared.
    DeclaredIds,
    /// The plugin's own frames, sent as fast as it hands them out, stay within the bus
    /// budget it is given.
    BusBudget,
    /// The session ends (Done or Failed) within the limits the engine's watchdog derives
    /// from the plugin's declared timeouts; an aborted session ends Failed (`ABORTED`)
    /// within the engine's abort grace period.
    TerminalState,
    /// The plugin, answered by the replayed BMS of a recorded update of the same
    /// package, sends the recorded frames and completes the update again (Done).
    Replay,
    /// Every truncated and random package is rejected by `inspect_package`, before
    /// anything is sent to a battery.
    BadPackages,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 8] = [
        Check::Load,
        Check::Setup,
        Check::NoPanic,
        Check::DeclaredIds,
        Check::BusBudget,
        Check::TerminalState,
        Check::Replay,
        Check::BadPackages,
    ];

    /// The check's name in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Load => "load",
            Check::Setup => "setup",
            Check::NoPanic => "no-panic",
            Check::DeclaredIds => "declared-ids",
            Check::BusBudget => "bus-budget",
            Check::TerminalState => "terminal-state",
            Check::Replay => "replay",
            Check::BadPackages => "bad-packages",
        }
    }

    /// What passing the check means, for the report's legend and the documentation.
    pub const fn meaning(self) -> &'static str {
        match self {
            Check::Load => {
                "the library opens and passes the loader's contract, layout and identity checks"
            }
            Check::Setup => {
                "the sample package is accepted, a battery matches it and a session starts"
            }
            Check::NoPanic => {
                "no entry point panics, crashes, hangs past its deadline, exceeds a limit, makes a \
                 forbidden call or breaks the contract (754, 747)"
            }
            Check::DeclaredIds => "every frame sent is on an identifier the plugin declared",
            Check::BusBudget => {
                "the plugin's own frames stay within the bus budget while nothing moves forward"
            }
            Check::TerminalState => {
                "the session ends within the limits of its declared timeouts; an abort ends it Failed (ABORTED)"
            }
            Check::Replay => {
                "replayed against a recorded update of the same package, the plugin sends the recorded frames and reaches Done"
            }
            Check::BadPackages => {
                "every truncated and random package is rejected before anything is sent"
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of one check in one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The check held; the text says what was observed.
    Passed(String),
    /// The check failed; the text says how.
    Failed(String),
    /// The check could not run; the text says why. Never counted as passed.
    Skipped(String),
}

impl Verdict {
    /// The word in the report's result column.
    pub const fn word(&self) -> &'static str {
        match self {
            Verdict::Passed(_) => "PASS",
            Verdict::Failed(_) => "FAIL",
            Verdict::Skipped(_) => "SKIP",
        }
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Passed(d) | Verdict::Failed(d) | Verdict::Skipped(d) => d,
        }
    }

    /// Whether the check failed.
    pub const fn is_failure(&self) -> bool {
        matches!(self, Verdict::Failed(_))
    }
}

/// One row of the report: a check, the scenario it ran in, its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The check.
    pub check: Check,
    /// The scenario, in words.
    pub scenario: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl Row {
    /// A row of `check` in `scenario`.
    pub fn new(check: Check, scenario: impl Into<String>, verdict: Verdict) -> Row {
        Row {
            check,
            scenario: scenario.into(),
            verdict,
        }
    }
}
