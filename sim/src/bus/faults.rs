//! Fault rules of the simulated bus: which frames are lost for a receiver, and which
//! transmissions are destroyed by an error frame.

use bmsfw_plugin_api::CanFrame;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::fmt;
use tokio::time::Instant;

/// One frame about to reach one receiver; what a drop rule decides on.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The frame.
    pub frame: &'a CanFrame,
    /// Name of the sending node.
    pub sender: &'a str,
    /// Name of the receiving node.
    pub receiver: &'a str,
    /// Sequence number of the frame on this bus (0 for the first frame carried).
    pub sequence: u64,
    /// End of the frame on the bus.
    pub at: Instant,
}

/// One transmission attempt; what a corruption rule decides on.
#[derive(Clone, Copy, Debug)]
pub struct Transmission<'a> {
    /// The frame.
    pub frame: &'a CanFrame,
    /// Name of the sending node.
    pub sender: &'a str,
    /// 0 for the first attempt of this frame, then 1, 2, ... for its automatic
    /// retransmissions.
    pub retransmission: u32,
    /// Sequence number of the attempt on this bus (every attempt, failed or not, counts).
    pub sequence: u64,
    /// Start of the attempt on the bus.
    pub at: Instant,
}

/// Why a fault rule could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultRuleError {
    /// The probability is not a number from 0 to 1.
    #[error("fault probability {0} is not between 0 and 1")]
    Probability(f64),
}

enum RuleKind<P: ?Sized> {
    Never,
    Probability { p: f64, rng: Xoshiro256PlusPlus },
    Predicate(Box<P>),
}

impl<P: ?Sized> RuleKind<P> {
    fn probability(p: f64, seed: u64) -> Result<RuleKind<P>, FaultRuleError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(FaultRuleError::Probability(p));
        }
        Ok(RuleKind::Probability {
            p,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        })
    }

    fn draw(&mut self, predicate: impl FnOnce(&mut P) -> bool) -> bool {
        match self {
            RuleKind::Never => false,
            RuleKind::Probability { p, rng } => rng.random_bool(*p),
            RuleKind::Predicate(f) => predicate(f),
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        match self {
            RuleKind::Never => write!(f, "{name}::Never"),
            RuleKind::Probability { p, .. } => write!(f, "{name}::Probability({p})"),
            RuleKind::Predicate(_) => write!(f, "{name}::Predicate"),
        }
    }
}

type DropPredicate = dyn for<'a> FnMut(&Delivery<'a>) -> bool + Send;
type CorruptPredicate = dyn for<'a> FnMut(&Transmission<'a>) -> bool + Send;

/// Which frames a receiver loses (its controller never sees them; the bus, the sender
/// and the other receivers are unaffected). Decided for each frame and each receiver.
///
/// Rules run on the bus task while it holds the bus state: a predicate must not call
/// back into the bus.
pub struct DropRule(RuleKind<DropPredicate>, LossReport);

/// Whether a receiver learns that it lost a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReport {
    /// It never learns (a frame filtered or discarded above the controller).
    Unreported,
    /// Its controller reports a receive overflow when the frame ends
    /// ([`bmsfw_can::candump::ErrorFrame::RX_OVERFLOW`]), as a controller whose receive
    /// buffer was full does.
    Overflow,
}

/// Which transmissions an error destroys. A destroyed transmission ends in an error
/// frame that every node sees; the sender's controller retransmits the frame
/// automatically. Decided for each transmission attempt.
///
/// Rules run on the bus task while it holds the bus state: a predicate must not call
/// back into the bus.
pub struct CorruptRule(RuleKind<CorruptPredicate>);

impl DropRule {
    /// A rule that never drops.
    pub fn never() -> DropRule {
        DropRule(RuleKind::Never, LossReport::Unreported)
    }

    /// Drops each frame for each receiver with probability `p`, drawn from a generator
    /// seeded with `seed` so a run is reproducible.
    pub fn probability(p: f64, seed: u64) -> Result<DropRule, FaultRuleError> {
        RuleKind::probability(p, seed).map(|kind| DropRule(kind, LossReport::Unreported))
    }

    /// Drops a frame for a receiver whenever `predicate` returns `true`.
    pub fn when(predicate: impl for<'a> FnMut(&Delivery<'a>) -> bool + Send + 'static) -> DropRule {
        DropRule(
            RuleKind::Predicate(Box::new(predicate)),
            LossReport::Unreported,
        )
    }

    /// The same rule, each lost frame reported to its receiver as `report` says.
    pub fn reported(self, report: LossReport) -> DropRule {
        DropRule(self.0, report)
    }

    /// How a receiver learns of the frames this rule drops.
    pub fn report(&self) -> LossReport {
        self.1
    }

    pub(crate) fn fires(&mut self, case: &Delivery<'_>) -> bool {
        self.0.draw(|f| f(case))
    }

    pub(crate) fn is_never(&self) -> bool {
        matches!(self.0, RuleKind::Never)
    }
}

impl CorruptRule {
    /// A rule that never corrupts.
    pub fn never() -> CorruptRule {
        CorruptRule(RuleKind::Never)
    }

    /// Corrupts each transmission attempt with probability `p`, drawn from a generator
    /// seeded with `seed` so a run is reproducible.
    pub fn probability(p: f64, seed: u64) -> Result<CorruptRule, FaultRuleError> {
        RuleKind::probability(p, seed).map(CorruptRule)
    }

    /// Corrupts a transmission attempt whenever `predicate` returns `true`.
    pub fn when(
        predicate: impl for<'a> FnMut(&Transmission<'a>) -> bool + Send + 'static,
    ) -> CorruptRule {
        CorruptRule(RuleKind::Predicate(Box::new(predicate)))
    }

    pub(crate) fn fires(&mut self, case: &Transmission<'_>) -> bool {
        self.0.draw(|f| f(case))
    }
}

impl fmt::Debug for DropRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, "DropRule")
    }
}

impl fmt::Debug for CorruptRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, "CorruptRule")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        assert_eq!(
            DropRule::probability(1.5, 0).unwrap_err(),
            FaultRuleError::Probability(1.5)
        );
        assert!(CorruptRule::probability(-0.1, 0).is_err());
        assert!(CorruptRule::probability(f64::NAN, 0).is_err());
    }

    #[test]
    fn seeded_rules_repeat_and_follow_the_probability() {
        let frame = CanFrame::new(CanId::standard(0x351).unwrap(), &[]).unwrap();
        let case = Delivery {
            frame: &frame,
            sender: "a",
            receiver: "b",
            sequence: 0,
            at: Instant::now(),
        };
        let run = |seed| {
            let mut rule = DropRule::probability(0.25, seed).unwrap();
            (0..10_000).map(|_| rule.fires(&case)).collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7), "the same seed gives the same decisions");
        assert_ne!(first, run(8));
        let hits = first.iter().filter(|&&b| b).count();
        assert!(
            (2300..2700).contains(&hits),
            "{hits} drops of 10000 at p = 0.25"
        );
        assert!(!DropRule::never().fires(&case));
        assert!(DropRule::probability(1.0, 1).unwrap().fires(&case));
        let mut by_receiver = DropRule::when(|d| d.receiver == "b");
        assert!(by_receiver.fires(&case));
    }
}
