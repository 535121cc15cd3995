//! What a simulated battery is: its identity bytes, its pack, its behaviour over time.

use std::time::Duration;

/// Longest manufacturer name 0x35E carries.
pub const MANUFACTURER_MAX: usize = 8;
/// Longest BMS name 0x370 + 0x371 carry.
pub const BMS_NAME_MAX: usize = 16;
/// Longest serial number 0x380 + 0x381 carry.
pub const SERIAL_MAX: usize = 16;
/// Longest product name 0x382 carries.
pub const PRODUCT_NAME_MAX: usize = 8;

/// The identity a battery broadcasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// 0x35E, 1 to 8 printable ASCII characters.
    pub manufacturer: String,
    /// 0x370/0x371, 1 to 16 printable ASCII characters.
    pub bms_name: String,
    /// 0x35F bytes 0-1 (little-endian).
    pub product_code: u16,
    /// 0x35F bytes 2-3, sent as given (each vendor encodes its version differently).
    pub firmware: [u8; 2],
    /// 0x35F bytes 4-5 and 0x379: capacity of the whole pack in Ah.
    pub capacity_ah: u16,
    /// 0x35F bytes 6-7 when the vendor sends them (a hardware or second version).
    pub product_info_tail: Option<[u8; 2]>,
    /// 0x380/0x381 when sent, up to 16 printable ASCII characters.
    pub serial: Option<String>,
    /// 0x382 when sent, up to 8 printable ASCII characters.
    pub product_name: Option<String>,
}

/// How the battery's current evolves (positive = charging).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CurrentProfile {
    /// No current.
    Idle,
    /// A constant current, limited by the battery's own charge/discharge limits.
    Constant {
        /// Amperes, positive = charging.
        amps: f64,
    },
    /// Charge until `high_soc`, then discharge until `low_soc`, and again.
    Cycle {
        /// Charging current, amperes (> 0).
        charge_amps: f64,
        /// Discharging current, amperes (> 0, applied as a negative current).
        discharge_amps: f64,
        /// SOC at which charging starts again, percent (> 0).
        low_soc: f64,
        /// SOC at which discharging starts, percent (< 100).
        high_soc: f64,
    },
}

/// Whether the optional text frames 0x374-0x377 (ids of the extreme cells) are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExtremeCellIds {
    /// Not sent (the common case).
    #[default]
    NotSent,
    /// Sent once per second each.
    Sent,
}

/// Everything a simulated battery is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct BatteryConfig {
    /// What it broadcasts about itself.
    pub identity: IdentityConfig,
    /// Cells in series (16 for a 48 V LFP pack).
    pub cells_in_series: u8,
    /// Modules in parallel behind the one BMS (at least 1).
    pub modules: u16,
    /// State of charge at start, percent.
    pub initial_soc: f64,
    /// State of health, percent.
    pub soh: u8,
    /// Temperature at start, degC.
    pub temperature_c: f64,
    /// Ambient temperature the pack drifts towards, degC.
    pub ambient_c: f64,
    /// The current over time.
    pub profile: CurrentProfile,
    /// Largest charge current of the whole pack with every module online, A.
    pub max_charge_amps: f64,
    /// Largest discharge current of the whole pack with every module online, A.
    pub max_discharge_amps: f64,
    /// Whether 0x374-0x377 are sent.
    pub extreme_cell_ids: ExtremeCellIds,
    /// Shifts every frame's phase, so that several batteries do not send in lockstep.
    pub phase: Duration,
}

impl BatteryConfig {
    /// A 48 V LFP battery with the given identity, 25 degC, 80 % SOC, idle.
    pub fn new(identity: IdentityConfig) -> BatteryConfig {
        let capacity = f64::from(identity.capacity_ah);
        BatteryConfig {
            identity,
            cells_in_series: 16,
            modules: 1,
            initial_soc: 80.0,
            soh: 100,
            temperature_c: 25.0,
            ambient_c: 25.0,
            profile: CurrentProfile::Idle,
            max_charge_amps: capacity * 0.5,
            max_discharge_amps: capacity,
            extreme_cell_ids: ExtremeCellIds::NotSent,
            phase: Duration::ZERO,
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.identity;
        check_text("manufacturer", &id.manufacturer, 1, MANUFACTURER_MAX)?;
        check_text("bms_name", &id.bms_name, 1, BMS_NAME_MAX)?;
        if let Some(serial) = &id.serial {
            check_text("serial", serial, 1, SERIAL_MAX)?;
        }
        if let Some(name) = &id.product_name {
            check_text("product_name", name, 1, PRODUCT_NAME_MAX)?;
        }
        if id.capacity_ah == 0 {
            return Err(ConfigError::OutOfRange {
                field: "capacity_ah",
                value: 0.0,
                range: "1 to 65535 Ah",
            });
        }
        range(
            "cells_in_series",
            self.cells_in_series.into(),
            1.0,
            64.0,
            "1 to 64",
        )?;
        range("modules", self.modules.into(), 1.0, 255.0, "1 to 255")?;
        range("soc", self.initial_soc, 0.0, 100.0, "0 to 100 %")?;
        range("soh", self.soh.into(), 0.0, 100.0, "0 to 100 %")?;
        range(
            "temperature_c",
            self.temperature_c,
            -40.0,
            100.0,
            "-40 to 100 degC",
        )?;
        range("ambient_c", self.ambient_c, -40.0, 60.0, "-40 to 60 degC")?;
        range(
            "max_charge_amps",
            self.max_charge_amps,
            0.0,
            3000.0,
            "0 to 3000 A",
        )?;
        range(
            "max_discharge_amps",
            self.max_discharge_amps,
            0.0,
            3000.0,
            "0 to 3000 A",
        )?;
        match self.profile {
            CurrentProfile::Idle => {}
            CurrentProfile::Constant { amps } => {
                range("profile.amps", amps, -3000.0, 3000.0, "-3000 to 3000 A")?
            }
            CurrentProfile::Cycle {
                charge_amps,
                discharge_amps,
                low_soc,
                high_soc,
            } => {
                range(
                    "profile.charge_amps",
                    charge_amps,
                    0.1,
                    3000.0,
                    "0.1 to 3000 A",
                )?;
                range(
                    "profile.discharge_amps",
                    discharge_amps,
                    0.1,
                    3000.0,
                    "0.1 to 3000 A",
                )?;
                range("profile.low_soc", low_soc, 1.0, 98.0, "1 to 98 %")?;
                range(
                    "profile.high_soc",
                    high_soc,
                    low_soc + 1.0,
                    99.0,
                    "low_soc + 1 to 99 %",
                )?;
            }
        }
        Ok(())
    }
}

fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(ConfigError::NotAscii { field, found: c });
    }
    if !(min..=max).contains(&s.len()) {
        return Err(ConfigError::TextLength {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn range(
    field: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    range: &'static str,
) -> Result<(), ConfigError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value: v,
            range,
        })
    }
}

/// Why a battery configuration was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A text field holds a character outside printable ASCII.
    #[error("{field}: {found:?} is not printable ASCII")]
    NotAscii {
        /// The field.
        field: &'static str,
        /// The first offending character.
        found: char,
    },
    /// A text field is empty or longer than its frames carry.
    #[error("{field}: {len} characters, 1 to {max} allowed")]
    TextLength {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A number lies outside its range.
    #[error("{field}: {value} is outside {range}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A module index names no module of the pack.
    #[error("module {index} does not exist (the pack has {modules})")]
    NoSuchModule {
        /// The index given.
        index: u16,
        /// Modules in the pack.
        modules: u16,
    },
    /// 0x35F data must be 6 to 8 bytes.
    #[error("0x35F data of {len} bytes, 6 to 8 allowed")]
    ProductInfoLength {
        /// The length given.
        len: usize,
    },
}
