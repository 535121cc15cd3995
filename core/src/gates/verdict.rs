//! What a gate concluded, and the report of one evaluation of every gate.

use super::gate::Gate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// When the gates are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// The installer requested the update; the package is not on the GX yet, so the
    /// gates about the package's version are deferred.
    Request,
    /// Stage 1 ended; stage 2 starts if every gate passes.
    BeforeTransfer,
    /// Stage 2 runs; a red gate stops it.
    DuringTransfer,
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Moment::Request => "at the request",
            Moment::BeforeTransfer => "before the transfer",
            Moment::DuringTransfer => "during the update",
        })
    }
}

/// A gate's conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The condition holds.
    Pass,
    /// The condition does not hold: the update is refused or stopped.
    Fail,
    /// The gate is not applied for a declared window (the battery's silence while it
    /// restarts); the reason says why and until when.
    Suspended {
        /// Why, and until when.
        reason: String,
    },
    /// The gate cannot be decided yet (the package's version before stage 1 ends); it is
    /// decided right before the transfer.
    Deferred {
        /// What is missing.
        reason: String,
    },
}

/// One gate's verdict: the gate, its conclusion, what was measured and the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// The gate.
    pub gate: Gate,
    /// Its conclusion.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What was measured, with its unit (e.g. `42 %`).
    pub measured: String,
    /// The limit it was compared with (e.g. `at least 50 %`).
    pub limit: String,
}

impl GateVerdict {
    /// A verdict of `gate`.
    pub fn new(
        gate: Gate,
        outcome: Outcome,
        measured: impl Into<String>,
        limit: impl Into<String>,
    ) -> GateVerdict {
        GateVerdict {
            gate,
            outcome,
            measured: measured.into(),
            limit: limit.into(),
        }
    }

    /// The code a refusal by this gate carries.
    pub fn code(&self) -> u32 {
        self.gate.code()
    }

    /// Whether the gate refuses.
    pub fn is_fail(&self) -> bool {
        self.outcome == Outcome::Fail
    }
}

/// `723 state of charge: FAIL, measured 42 %, limit at least 50 %`.
impl fmt::Display for GateVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.code(), self.gate)?;
        match &self.outcome {
            Outcome::Pass => f.write_str("pass")?,
            Outcome::Fail => f.write_str("FAIL")?,
            Outcome::Suspended { reason } => write!(f, "suspended ({reason})")?,
            Outcome::Deferred { reason } => write!(f, "deferred ({reason})")?,
        }
        write!(f, ", measured {}, limit {}", self.measured, self.limit)
    }
}

/// One evaluation of every gate, in [`Gate::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    /// When it was evaluated.
    pub moment: Moment,
    /// One verdict per gate.
    pub verdicts: Vec<GateVerdict>,
}

impl GateReport {
    /// The verdicts that refuse.
    pub fn failures(&self) -> impl Iterator<Item = &GateVerdict> {
        self.verdicts.iter().filter(|v| v.is_fail())
    }

    /// The first refusing verdict (in [`Gate::ALL`] order): its code is the one the
    /// request or the job gets.
    pub fn first_failure(&self) -> Option<&GateVerdict> {
        self.failures().next()
    }

    /// Whether no gate refuses.
    pub fn is_green(&self) -> bool {
        self.first_failure().is_none()
    }

    /// The verdict of `gate`.
    pub fn verdict(&self, gate: Gate) -> Option<&GateVerdict> {
        self.verdicts.iter().find(|v| v.gate == gate)
    }

    /// The message of a refusal: every failing verdict, `; `-separated, naming the
    /// moment. Empty when every gate passes.
    pub fn refusal_message(&self) -> String {
        let failures: Vec<String> = self.failures().map(|v| v.to_string()).collect();
        if failures.is_empty() {
            return String::new();
        }
        format!(
            "safety gate refused {}: {}",
            self.moment,
            failures.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_gate_measurement_and_limit() {
        let report = GateReport {
            moment: Moment::Request,
            verdicts: vec![
                GateVerdict::new(Gate::VrmAccess, Outcome::Pass, "full", "full"),
                GateVerdict::new(Gate::StateOfCharge, Outcome::Fail, "42 %", "at least 50 %"),
                GateVerdict::new(
                    Gate::VersionChoice,
                    Outcome::Deferred {
                        reason: "package not inspected yet".into(),
                    },
                    "unknown",
                    "newer than v1.02",
                ),
            ],
        };
        assert!(!report.is_green());
        assert_eq!(report.first_failure().unwrap().code(), 723);
        assert_eq!(
            report.refusal_message(),
            "safety gate refused at the request: 723 state of charge: FAIL, measured 42 %, \
             limit at least 50 %"
        );
        let json = serde_json::to_string(&report.verdicts[2]).unwrap();
        assert!(json.contains(r#""outcome":"deferred""#), "{json}");
        let back: GateVerdict = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report.verdicts[2]);
    }
}
