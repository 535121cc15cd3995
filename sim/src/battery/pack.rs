//! The physics of a simulated LFP pack: SOC integrates current, voltage follows SOC,
//! temperature drifts towards ambient and warms with I²R losses.
//!
//! Deliberately simple and deterministic (no noise): tests can predict every value.
//! Modules are in parallel behind one BMS: an offline module takes its share of the
//! capacity and of the current limits with it.

use super::config::{BatteryConfig, CurrentProfile};
use std::time::Duration;

/// Open-circuit voltage of one LFP cell against SOC (percent, volts), piecewise linear.
const OCV: [(f64, f64); 10] = [
    (0.0, 2.80),
    (5.0, 3.10),
    (10.0, 3.20),
    (20.0, 3.25),
    (40.0, 3.28),
    (60.0, 3.30),
    (80.0, 3.33),
    (90.0, 3.35),
    (95.0, 3.40),
    (100.0, 3.50),
];

/// Charge voltage limit per cell.
pub const CELL_CHARGE_VOLTS: f64 = 3.55;
/// Discharge voltage limit per cell.
pub const CELL_DISCHARGE_VOLTS: f64 = 3.0;
/// Internal resistance of one module's series string, per cell, ohms.
const CELL_RESISTANCE: f64 = 0.0015;
/// Thermal time constant towards ambient.
const THERMAL_TAU_S: f64 = 3600.0;
/// Heat capacity of one module, J/K.
const MODULE_HEAT_CAPACITY: f64 = 40_000.0;
/// Longest integration step.
const MAX_STEP: Duration = Duration::from_secs(1);

/// Open-circuit voltage of one cell at `soc` percent.
pub fn cell_ocv(soc: f64) -> f64 {
    let soc = soc.clamp(0.0, 100.0);
    for w in OCV.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if soc <= s1 {
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
        }
    }
    OCV[OCV.len() - 1].1
}

/// Direction of a cycling profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleDirection {
    /// Charging towards the high SOC.
    Charging,
    /// Discharging towards the low SOC.
    Discharging,
}

/// Whether the pack may carry current (the BMS's contactor or MOSFETs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduction {
    /// Current flows as the profile asks, within the limits.
    Allowed,
    /// No current (power cut, every module offline).
    Blocked,
}

/// The pack's physical state.
#[derive(Clone, Debug)]
pub struct Pack {
    cells: f64,
    capacity_ah: f64,
    modules_total: u16,
    modules_online: u16,
    soc: f64,
    temperature_c: f64,
    ambient_c: f64,
    current_a: f64,
    max_charge_a: f64,
    max_discharge_a: f64,
    profile: CurrentProfile,
    direction: CycleDirection,
    charged_wh: f64,
    discharged_wh: f64,
}

impl Pack {
    /// The pack described by `config` (which the caller has validated).
    pub fn new(config: &BatteryConfig) -> Pack {
        let mut pack = Pack {
            cells: f64::from(config.cells_in_series),
            capacity_ah: f64::from(config.identity.capacity_ah),
            modules_total: config.modules,
            modules_online: config.modules,
            soc: config.initial_soc,
            temperature_c: config.temperature_c,
            ambient_c: config.ambient_c,
            current_a: 0.0,
            max_charge_a: config.max_charge_amps,
            max_discharge_a: config.max_discharge_amps,
            profile: config.profile,
            direction: CycleDirection::Charging,
            charged_wh: 0.0,
            discharged_wh: 0.0,
        };
        pack.set_profile(config.profile);
        pack
    }

    /// Advances the pack by `dt`, in steps of at most one second.
    pub fn advance(&mut self, dt: Duration, conduction: Conduction, limits: ChargePermission) {
        let mut left = dt;
        while !left.is_zero() {
            let step = left.min(MAX_STEP);
            left -= step;
            self.step(step.as_secs_f64(), conduction, limits);
        }
    }

    fn step(&mut self, dt: f64, conduction: Conduction, permission: ChargePermission) {
        if let CurrentProfile::Cycle {
            low_soc, high_soc, ..
        } = self.profile
        {
            if self.direction == CycleDirection::Charging && self.soc >= high_soc {
                self.direction = CycleDirection::Discharging;
            } else if self.direction == CycleDirection::Discharging && self.soc <= low_soc {
                self.direction = CycleDirection::Charging;
            }
        }
        let wanted = match self.profile {
            CurrentProfile::Idle => 0.0,
            CurrentProfile::Constant { amps } => amps,
            CurrentProfile::Cycle {
                charge_amps,
                discharge_amps,
                ..
            } => match self.direction {
                CycleDirection::Charging => charge_amps,
                CycleDirection::Discharging => -discharge_amps,
            },
        };
        let ccl = match permission.charge {
            Allowance::Allowed => self.charge_current_limit(),
            Allowance::Forbidden => 0.0,
        };
        let dcl = match permission.discharge {
            Allowance::Allowed => self.discharge_current_limit(),
            Allowance::Forbidden => 0.0,
        };
        self.current_a = match conduction {
            Conduction::Blocked => 0.0,
            Conduction::Allowed if self.modules_online == 0 => 0.0,
            Conduction::Allowed => wanted.clamp(-dcl, ccl),
        };
        let capacity = self.online_capacity_ah();
        if capacity > 0.0 {
            let delta = self.current_a * dt / 3600.0 / capacity * 100.0;
            self.soc = (self.soc + delta).clamp(0.0, 100.0);
        }
        let power_w = self.voltage() * self.current_a;
        if power_w >= 0.0 {
            self.charged_wh += power_w * dt / 3600.0;
        } else {
            self.discharged_wh -= power_w * dt / 3600.0;
        }
        let heat_capacity = MODULE_HEAT_CAPACITY * f64::from(self.modules_total.max(1));
        let losses_w = self.current_a * self.current_a * self.resistance();
        let d_temp = (self.ambient_c - self.temperature_c) / THERMAL_TAU_S * dt
            + losses_w * dt / heat_capacity;
        self.temperature_c += d_temp;
    }

    fn online_capacity_ah(&self) -> f64 {
        self.capacity_ah * f64::from(self.modules_online) / f64::from(self.modules_total.max(1))
    }

    fn online_share(&self) -> f64 {
        f64::from(self.modules_online) / f64::from(self.modules_total.max(1))
    }

    fn resistance(&self) -> f64 {
        self.cells * CELL_RESISTANCE / f64::from(self.modules_online.max(1))
    }

    /// Charge current limit: the online modules' share of the maximum, tapering to zero
    /// between 95 % and 100 % SOC, zero below 0 degC and above 45 degC.
    pub fn charge_current_limit(&self) -> f64 {
        if !(0.0..=45.0).contains(&self.temperature_c) {
            return 0.0;
        }
        let taper = ((100.0 - self.soc) / 5.0).clamp(0.0, 1.0);
        self.max_charge_a * self.online_share() * taper
    }

    /// Discharge current limit: the online modules' share of the maximum, tapering to
    /// zero between 10 % and 0 % SOC, zero below -20 degC and above 55 degC.
    pub fn discharge_current_limit(&self) -> f64 {
        if !(-20.0..=55.0).contains(&self.temperature_c) {
            return 0.0;
        }
        let taper = (self.soc / 10.0).clamp(0.0, 1.0);
        self.max_discharge_a * self.online_share() * taper
    }

    /// Charge voltage limit of the pack, volts.
    pub fn charge_voltage_limit(&self) -> f64 {
        self.cells * CELL_CHARGE_VOLTS
    }

    /// Discharge voltage limit of the pack, volts.
    pub fn discharge_voltage_limit(&self) -> f64 {
        self.cells * CELL_DISCHARGE_VOLTS
    }

    /// Terminal voltage: open-circuit voltage plus the drop over the internal resistance.
    pub fn voltage(&self) -> f64 {
        self.cells * cell_ocv(self.soc) + self.current_a * self.resistance()
    }

    /// Average cell voltage, volts.
    pub fn cell_voltage(&self) -> f64 {
        self.voltage() / self.cells
    }

    /// State of charge, percent.
    pub fn soc(&self) -> f64 {
        self.soc
    }

    /// Sets the state of charge, percent (clamped to 0..=100).
    pub fn set_soc(&mut self, soc: f64) {
        if soc.is_finite() {
            self.soc = soc.clamp(0.0, 100.0);
        }
    }

    /// Current in amperes, positive = charging.
    pub fn current(&self) -> f64 {
        self.current_a
    }

    /// Pack temperature, degC.
    pub fn temperature(&self) -> f64 {
        self.temperature_c
    }

    /// Sets the pack temperature, degC; it drifts back towards ambient from there.
    pub fn set_temperature(&mut self, celsius: f64) {
        if celsius.is_finite() {
            self.temperature_c = celsius;
        }
    }

    /// Sets the ambient temperature, degC.
    pub fn set_ambient(&mut self, celsius: f64) {
        if celsius.is_finite() {
            self.ambient_c = celsius;
        }
    }

    /// Replaces the current profile; a cycle starts charging below its high SOC.
    pub fn set_profile(&mut self, profile: CurrentProfile) {
        self.profile = profile;
        if let CurrentProfile::Cycle { high_soc, .. } = profile {
            self.direction = if self.soc < high_soc {
                CycleDirection::Charging
            } else {
                CycleDirection::Discharging
            };
        }
    }

    /// Direction of the cycling profile (meaningless for other profiles).
    pub fn direction(&self) -> CycleDirection {
        self.direction
    }

    /// Modules in the pack.
    pub fn modules_total(&self) -> u16 {
        self.modules_total
    }

    /// Modules currently online.
    pub fn modules_online(&self) -> u16 {
        self.modules_online
    }

    /// Sets how many modules are online (at most the pack's total).
    pub fn set_modules_online(&mut self, online: u16) {
        self.modules_online = online.min(self.modules_total);
    }

    /// Energy charged since start, Wh.
    pub fn charged_wh(&self) -> f64 {
        self.charged_wh
    }

    /// Energy discharged since start, Wh.
    pub fn discharged_wh(&self) -> f64 {
        self.discharged_wh
    }
}

/// Whether the BMS allows a direction of current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowance {
    /// The limit applies.
    Allowed,
    /// The limit is zero.
    Forbidden,
}

/// What the BMS's alarms allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargePermission {
    /// Charging.
    pub charge: Allowance,
    /// Discharging.
    pub discharge: Allowance,
}

impl ChargePermission {
    /// Both directions allowed.
    pub const ALL: ChargePermission = ChargePermission {
        charge: Allowance::Allowed,
        discharge: Allowance::Allowed,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::config::IdentityConfig;

    fn config(profile: CurrentProfile) -> BatteryConfig {
        let mut c = BatteryConfig::new(IdentityConfig {
            manufacturer: "TEST".into(),
            bms_name: "PACK".into(),
            product_code: 1,
            firmware: [1, 0],
            capacity_ah: 100,
            product_info_tail: None,
            serial: None,
            product_name: None,
        });
        c.profile = profile;
        c.initial_soc = 50.0;
        c
    }

    #[test]
    fn ocv_is_monotonic_and_bounded() {
        let mut last = 0.0;
        for s in 0..=1000 {
            let v = cell_ocv(f64::from(s) / 10.0);
            assert!(v >= last, "OCV falls at {s}");
            last = v;
        }
        assert_eq!(cell_ocv(-5.0), 2.80);
        assert_eq!(cell_ocv(150.0), 3.50);
        assert!((cell_ocv(50.0) - 3.29).abs() < 1e-9);
    }

    #[test]
    fn soc_integrates_current() {
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: 20.0 }));
        pack.advance(
            Duration::from_secs(1800),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        // 20 A for 30 min = 10 Ah = 10 % of 100 Ah.
        assert!((pack.soc() - 60.0).abs() < 1e-6, "{}", pack.soc());
        assert!((pack.charged_wh() - 10.0 * 16.0 * 3.29).abs() < 20.0);
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: -50.0 }));
        pack.advance(
            Duration::from_secs(1800),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!((pack.soc() - 25.0).abs() < 1e-6, "{}", pack.soc());
        assert_eq!(pack.current(), -50.0);
    }

    #[test]
    fn voltage_follows_soc_and_current() {
        let mut pack = Pack::new(&config(CurrentProfile::Idle));
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        let rest = pack.voltage();
        assert!((rest - 16.0 * 3.29).abs() < 1e-9);
        pack.set_profile(CurrentProfile::Constant { amps: 40.0 });
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!(
            pack.voltage() > rest,
            "charging raises the terminal voltage"
        );
        pack.set_profile(CurrentProfile::Constant { amps: -40.0 });
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!(pack.voltage() < rest, "discharging lowers it");
    }

    #[test]
    fn charging_tapers_and_never_passes_full() {
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: 50.0 }));
        pack.set_soc(94.0);
        pack.advance(
            Duration::from_secs(6 * 3600),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!(pack.soc() <= 100.0 && pack.soc() > 99.0, "{}", pack.soc());
        assert!(
            pack.current() < 5.0,
            "current tapers near full: {}",
            pack.current()
        );
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: -100.0 }));
        pack.set_soc(5.0);
        pack.advance(
            Duration::from_secs(6 * 3600),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!(pack.soc() >= 0.0 && pack.soc() < 1.0, "{}", pack.soc());
    }

    #[test]
    fn a_cycle_turns_at_its_bounds() {
        let mut pack = Pack::new(&config(CurrentProfile::Cycle {
            charge_amps: 50.0,
            discharge_amps: 50.0,
            low_soc: 40.0,
            high_soc: 60.0,
        }));
        let (mut lo, mut hi) = (100.0f64, 0.0f64);
        let mut turns = 0;
        let mut dir = pack.direction();
        for _ in 0..(4 * 3600) {
            pack.advance(
                Duration::from_secs(1),
                Conduction::Allowed,
                ChargePermission::ALL,
            );
            lo = lo.min(pack.soc());
            hi = hi.max(pack.soc());
            if pack.direction() != dir {
                turns += 1;
                dir = pack.direction();
            }
        }
        assert!(turns >= 3, "{turns}");
        assert!(lo > 39.0 && hi < 61.0, "{lo}..{hi}");
    }

    #[test]
    fn temperature_drifts_to_ambient_and_blocks_charging_when_cold() {
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: 2.0 }));
        pack.set_temperature(-5.0);
        assert_eq!(pack.charge_current_limit(), 0.0);
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert_eq!(pack.current(), 0.0);
        pack.advance(
            Duration::from_secs(4 * 3600),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!(
            (pack.temperature() - 25.0).abs() < 1.0,
            "{}",
            pack.temperature()
        );
        assert_eq!(pack.current(), 2.0);
    }

    #[test]
    fn offline_modules_take_their_share() {
        let mut c = config(CurrentProfile::Constant { amps: -400.0 });
        c.modules = 4;
        c.max_discharge_amps = 200.0;
        let mut pack = Pack::new(&c);
        pack.set_modules_online(2);
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert_eq!(pack.current(), -100.0);
        // 100 A out of the 50 Ah that remain online for 6 min: -20 %.
        pack.advance(
            Duration::from_secs(359),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert!((pack.soc() - 30.0).abs() < 1e-6, "{}", pack.soc());
        pack.set_modules_online(0);
        pack.advance(
            Duration::from_secs(1),
            Conduction::Allowed,
            ChargePermission::ALL,
        );
        assert_eq!(pack.current(), 0.0);
        pack.set_modules_online(9);
        assert_eq!(pack.modules_online(), 4);
    }

    #[test]
    fn blocked_conduction_and_forbidden_directions_stop_current() {
        let mut pack = Pack::new(&config(CurrentProfile::Constant { amps: 10.0 }));
        pack.advance(
            Duration::from_secs(1),
            Conduction::Blocked,
            ChargePermission::ALL,
        );
        assert_eq!(pack.current(), 0.0);
        let no_charge = ChargePermission {
            charge: Allowance::Forbidden,
            discharge: Allowance::Allowed,
        };
        pack.advance(Duration::from_secs(1), Conduction::Allowed, no_charge);
        assert_eq!(pack.current(), 0.0);
    }
}
