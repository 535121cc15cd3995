//! A scenario of the campaign: one update of one vendor's battery, with faults at random
//! moments, all drawn from one seed and the scenario's number.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt;

/// The vendors whose plugin and simulated BMS ship with bmsfw, by their site name.
pub const VENDORS: &[&str] = &["aurora", "boreal", "coral", "template"];

/// Image sizes a scenario draws from, in KiB.
const IMAGE_KIB: &[usize] = &[4, 8, 16, 32, 48];

/// When a fault strikes: at a moment of the job, read from the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// While transferring, once the progress reaches this percentage.
    Transfer(u8),
    /// When the battery installs (erase, verification, activation).
    Installing,
    /// When the battery restarts into its new firmware.
    Restarting,
    /// When the engine verifies the version the battery runs.
    Verifying,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Transfer(p) => write!(f, "at {p} % of the transfer"),
            Trigger::Installing => f.write_str("while installing"),
            Trigger::Restarting => f.write_str("while restarting"),
            Trigger::Verifying => f.write_str("while verifying"),
        }
    }
}

/// One fault of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Each frame is lost for its receiver with this probability, in per mille, the
    /// whole run.
    Loss { permille: u16 },
    /// Frames are corrupted (error frames, retransmission) with a 30 % chance each for
    /// this long.
    Corruption { at: Trigger, millis: u32 },
    /// The GX's CAN controller goes bus-off and recovers after this long.
    BusOff { at: Trigger, millis: u32 },
    /// The BMS loses its power for this long (its RAM with it; the flash stays).
    PowerCut { at: Trigger, millis: u32 },
    /// The BMS sends nothing for this long.
    Silence { at: Trigger, millis: u32 },
    /// The state of charge falls below the gate's floor, until the job ends.
    LowCharge { at: Trigger },
    /// The battery raises an alarm, until the job ends.
    Alarm { at: Trigger },
    /// The temperature leaves the normal range, until the job ends.
    Heat { at: Trigger },
    /// The grid is lost: a backup-power event, until the job ends.
    BackupPower { at: Trigger },
    /// The plugin's session host is killed (SIGKILL).
    PluginCrash { at: Trigger },
}

impl Fault {
    /// The fault's class, a row of the campaign's table.
    pub fn class(&self) -> &'static str {
        match self {
            Fault::Loss { .. } => "frame loss",
            Fault::Corruption { .. } => "corruption burst",
            Fault::BusOff { .. } => "bus-off",
            Fault::PowerCut { .. } => "power cut",
            Fault::Silence { .. } => "BMS silent",
            Fault::LowCharge { .. } => "charge below floor",
            Fault::Alarm { .. } => "battery alarm",
            Fault::Heat { .. } => "temperature",
            Fault::BackupPower { .. } => "backup power",
            Fault::PluginCrash { .. } => "plugin crash",
        }
    }

    /// When it strikes (`None`: from the start).
    pub fn trigger(&self) -> Option<Trigger> {
        match *self {
            Fault::Loss { .. } => None,
            Fault::Corruption { at, .. }
            | Fault::BusOff { at, .. }
            | Fault::PowerCut { at, .. }
            | Fault::Silence { at, .. }
            | Fault::LowCharge { at }
            | Fault::Alarm { at }
            | Fault::Heat { at }
            | Fault::BackupPower { at }
            | Fault::PluginCrash { at } => Some(at),
        }
    }

    /// Whether it turns a gate that is checked all along the update red (and keeps it
    /// red until the job ends).
    pub fn holds_a_gate_red(&self) -> bool {
        matches!(
            self,
            Fault::LowCharge { .. }
                | Fault::Alarm { .. }
                | Fault::Heat { .. }
                | Fault::BackupPower { .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Loss { permille } => {
                write!(f, "frame loss {}.{} %", permille / 10, permille % 10)
            }
            Fault::Corruption { at, millis } => write!(f, "corruption burst of {millis} ms {at}"),
            Fault::BusOff { at, millis } => write!(f, "bus-off for {millis} ms {at}"),
            Fault::PowerCut { at, millis } => write!(f, "BMS power cut for {millis} ms {at}"),
            Fault::Silence { at, millis } => write!(f, "BMS silent for {millis} ms {at}"),
            Fault::LowCharge { at } => write!(f, "charge below the floor {at}"),
            Fault::Alarm { at } => write!(f, "battery alarm {at}"),
            Fault::Heat { at } => write!(f, "temperature out of range {at}"),
            Fault::BackupPower { at } => write!(f, "grid lost {at}"),
            Fault::PluginCrash { at } => write!(f, "plugin host killed {at}"),
        }
    }
}

/// One scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The campaign's seed.
    pub seed: u64,
    /// Its number in the campaign.
    pub number: u64,
    /// The vendor of the battery.
    pub vendor: &'static str,
    /// The image size, in bytes.
    pub image_bytes: usize,
    /// The faults, in the order drawn.
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// Scenario `number` of the campaign of `seed`.
    pub fn draw(seed: u64, number: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let vendor = VENDORS[rng.random_range(0..VENDORS.len())];
        let image_bytes = IMAGE_KIB[rng.random_range(0..IMAGE_KIB.len())] * 1024;
        // One scenario in eight runs without faults: the baseline every fault is
        // measured against.
        let count = if rng.random_range(0..8) == 0 {
            0
        } else {
            rng.random_range(1..=3)
        };
        let faults = (0..count).map(|_| draw_fault(&mut rng)).collect();
        Scenario {
            seed,
            number,
            vendor,
            image_bytes,
            faults,
        }
    }

    /// The fault classes of the scenario ("no fault" when it has none).
    pub fn classes(&self) -> Vec<&'static str> {
        if self.faults.is_empty() {
            return vec!["no fault"];
        }
        let mut classes: Vec<&'static str> = self.faults.iter().map(Fault::class).collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario {} of seed {}: {}, {} KiB",
            self.number,
            self.seed,
            self.vendor,
            self.image_bytes / 1024
        )?;
        if self.faults.is_empty() {
            return f.write_str(", no fault");
        }
        for fault in &self.faults {
            write!(f, "; {fault}")?;
        }
        Ok(())
    }
}

fn draw_trigger(rng: &mut StdRng) -> Trigger {
    match rng.random_range(0..10) {
        0..=5 => Trigger::Transfer(rng.random_range(1..=99)),
        6 | 7 => Trigger::Installing,
        8 => Trigger::Restarting,
        _ => Trigger::Verifying,
    }
}

fn draw_fault(rng: &mut StdRng) -> Fault {
    let at = draw_trigger(rng);
    match rng.random_range(0..10) {
        0 => Fault::Loss {
            permille: rng.random_range(1..=50),
        },
        1 => Fault::Corruption {
            at,
            millis: rng.random_range(5..=200),
        },
        2 => Fault::BusOff {
            at,
            millis: rng.random_range(10..=2000),
        },
        3 => Fault::PowerCut {
            at,
            millis: rng.random_range(10..=5000),
        },
        4 => Fault::Silence {
            at,
            millis: rng.random_range(100..=8000),
        },
        5 => Fault::LowCharge { at },
        6 => Fault::Alarm { at },
        7 => Fault::Heat { at },
        8 => Fault::BackupPower { at },
        _ => Fault::PluginCrash { at },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_is_the_same_for_the_same_seed_and_number() {
        for n in 0..50 {
            assert_eq!(Scenario::draw(7, n), Scenario::draw(7, n));
        }
        let all: Vec<Scenario> = (0..200).map(|n| Scenario::draw(7, n)).collect();
        assert!(all.iter().any(|s| s.faults.is_empty()));
        for vendor in VENDORS {
            assert!(all.iter().any(|s| s.vendor == *vendor), "{vendor}");
        }
        let classes: std::collections::BTreeSet<&str> =
            all.iter().flat_map(|s| s.classes()).collect();
        assert_eq!(classes.len(), 11, "{classes:?}");
        assert_ne!(Scenario::draw(7, 1), Scenario::draw(8, 1));
    }
}
