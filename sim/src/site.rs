//! Site descriptions: the buses of a simulated GX and the batteries on each, read from
//! a TOML file such as `config/demo.toml`.
//!
//! ```toml
//! [[bus]]
//! name = "sim0"          # interface name the GX sees
//! bitrate = 500000       # bit/s; a standard CAN rate
//!
//! [[bus.battery]]
//! name = "house"         # unique in the site: logs and control handles use it
//! vendor = "voltara"     # the vendor whose BMS this is
//! manufacturer = "VOLTARA"
//! bms_name = "VX-48 Pack BMS"
//! product_code = 0x0B17
//! firmware = [0x04, 0x0F]
//! capacity_ah = 300
//! modules = 3
//! soc = 72.5
//! profile = { kind = "cycle", charge_amps = 60, discharge_amps = 45, low_soc = 40, high_soc = 90 }
//! ```
//!
//! A battery may name a BMS model library (see [`crate::model_library`]) that runs its
//! BMS instead of the model registered for its vendor:
//!
//! ```toml
//! model = "libacme_model.so"           # relative to the site file's folder
//! model_options = { secret = "demo" } # handed to the model as TOML text
//! ```
//!
//! Unknown keys are refused. Every error names the file, the line and the column of
//! the offending value.

mod running;
#[cfg(test)]
mod tests;

pub use running::{RunningBattery, RunningSite, StartError};

use crate::battery::config::{BatteryConfig, CurrentProfile, ExtremeCellIds, IdentityConfig};
use crate::model_library::ModelSource;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Largest site file read, in bytes: a site of a few buses is a few kilobytes.
pub const MAX_SITE_FILE: u64 = 1 << 20;

/// Standard classic CAN bit rates a simulated bus may run at.
pub use bmsfw_protocols::bit_timing::STANDARD_BITRATES;

/// A whole site: its buses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDescription {
    /// The CAN buses, `[[bus]]` tables.
    #[serde(rename = "bus", default)]
    pub buses: Vec<BusDescription>,
    /// The folder relative model library paths are resolved against: the site file's,
    /// or the working folder for a description parsed from text.
    #[serde(skip)]
    pub base: Option<PathBuf>,
}

/// One CAN bus and the batteries on it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusDescription {
    /// Interface name (`sim0`).
    pub name: Spanned<String>,
    /// Nominal bit rate, bit/s.
    pub bitrate: Spanned<u32>,
    /// The batteries, `[[bus.battery]]` tables.
    #[serde(rename = "battery", default)]
    pub batteries: Vec<BatteryDescription>,
}

/// How the current evolves, as written in a site file.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProfileDescription {
    /// `{ kind = "idle" }`.
    Idle,
    /// `{ kind = "constant", amps = -20 }` (positive = charging).
    Constant {
        /// Amperes.
        amps: f64,
    },
    /// `{ kind = "cycle", charge_amps, discharge_amps, low_soc, high_soc }`.
    Cycle {
        /// Charging current, A.
        charge_amps: f64,
        /// Discharging current, A.
        discharge_amps: f64,
        /// SOC where charging resumes, %.
        low_soc: f64,
        /// SOC where discharging starts, %.
        high_soc: f64,
    },
}

impl From<ProfileDescription> for CurrentProfile {
    fn from(p: ProfileDescription) -> CurrentProfile {
        match p {
            ProfileDescription::Idle => CurrentProfile::Idle,
            ProfileDescription::Constant { amps } => CurrentProfile::Constant { amps },
            ProfileDescription::Cycle {
                charge_amps,
                discharge_amps,
                low_soc,
                high_soc,
            } => CurrentProfile::Cycle {
                charge_amps,
                discharge_amps,
                low_soc,
                high_soc,
            },
        }
    }
}

fn default_modules() -> Spanned<u16> {
    Spanned::new(0..0, 1)
}
fn default_soh() -> Spanned<u8> {
    Spanned::new(0..0, 100)
}
fn default_cells() -> Spanned<u8> {
    Spanned::new(0..0, 16)
}
fn default_temperature() -> Spanned<f64> {
    Spanned::new(0..0, 25.0)
}
fn default_profile() -> Spanned<ProfileDescription> {
    Spanned::new(0..0, ProfileDescription::Idle)
}

/// Exactly two bytes: serde's fixed-size arrays would silently drop extra elements.
fn two_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 2], D::Error> {
    let v = Vec::<u8>::deserialize(d)?;
    <[u8; 2]>::try_from(v.as_slice())
        .map_err(|_| serde::de::Error::invalid_length(v.len(), &"exactly 2 bytes"))
}

fn two_bytes_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[u8; 2]>, D::Error> {
    two_bytes(d).map(Some)
}

/// One battery (one BMS, possibly with several modules behind it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryDescription {
    /// Unique name in the site.
    pub name: Spanned<String>,
    /// The vendor whose BMS this is.
    pub vendor: Spanned<String>,
    /// 0x35E text, 1 to 8 ASCII characters.
    pub manufacturer: Spanned<String>,
    /// 0x370/0x371 text, 1 to 16 ASCII characters.
    pub bms_name: Spanned<String>,
    /// 0x35F bytes 0-1.
    pub product_code: u16,
    /// 0x35F bytes 2-3, as sent.
    #[serde(deserialize_with = "two_bytes")]
    pub firmware: [u8; 2],
    /// 0x35F bytes 6-7, when the vendor sends them.
    #[serde(default, deserialize_with = "two_bytes_opt")]
    pub product_info_tail: Option<[u8; 2]>,
    /// Capacity of the whole pack, Ah.
    pub capacity_ah: Spanned<u16>,
    /// 0x380/0x381 text, when sent.
    #[serde(default)]
    pub serial: Option<Spanned<String>>,
    /// 0x382 text, when sent.
    #[serde(default)]
    pub product_name: Option<Spanned<String>>,
    /// Modules behind the BMS (default 1).
    #[serde(default = "default_modules")]
    pub modules: Spanned<u16>,
    /// Cells in series (default 16).
    #[serde(default = "default_cells")]
    pub cells_in_series: Spanned<u8>,
    /// SOC at start, %.
    pub soc: Spanned<f64>,
    /// SOH, % (default 100).
    #[serde(default = "default_soh")]
    pub soh: Spanned<u8>,
    /// Temperature at start, degC (default 25).
    #[serde(default = "default_temperature")]
    pub temperature_c: Spanned<f64>,
    /// Ambient temperature, degC (default: the start temperature).
    #[serde(default)]
    pub ambient_c: Option<Spanned<f64>>,
    /// Largest charge current, A (default 0.5 C).
    #[serde(default)]
    pub max_charge_amps: Option<Spanned<f64>>,
    /// Largest discharge current, A (default 1 C).
    #[serde(default)]
    pub max_discharge_amps: Option<Spanned<f64>>,
    /// Whether 0x374-0x377 are sent (default false).
    #[serde(default)]
    pub extreme_cell_ids: bool,
    /// The current over time (default idle).
    #[serde(default = "default_profile")]
    pub profile: Spanned<ProfileDescription>,
    /// A BMS model library (`bmsfw-sim-api`) that runs this battery's BMS instead of the
    /// model registered for its vendor; relative to the site file's folder.
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// Options handed to the model library as TOML text.
    #[serde(default)]
    pub model_options: Option<Spanned<toml::Table>>,
}

/// A battery of the site, ready to be built.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteBattery {
    /// The bus it is on.
    pub bus: String,
    /// Its name.
    pub name: String,
    /// Its vendor.
    pub vendor: String,
    /// Its configuration.
    pub config: BatteryConfig,
    /// The model library that runs its BMS, when the site names one.
    pub model: Option<ModelSource>,
}

/// Why a site description was refused.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The description is malformed or inconsistent.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// The file (or `<site>` for text).
        origin: String,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before
        .get(line_start..)
        .map_or(1, |s| s.chars().count() + 1);
    (line, column)
}

struct Origin<'a> {
    name: &'a str,
    text: &'a str,
}

impl Origin<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> SiteError {
        let (line, column) = line_column(self.text, span.start);
        SiteError::Invalid {
            origin: self.name.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl SiteDescription {
    /// Reads and checks the site file at `path`.
    pub fn load(path: &Path) -> Result<SiteDescription, SiteError> {
        use std::io::Read;
        let read_error = |source| SiteError::Read {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_SITE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_SITE_FILE {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_SITE_FILE} bytes"),
            )));
        }
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            let byte = e.as_bytes().get(valid).copied().unwrap_or(0);
            Origin {
                name: &origin,
                text: &text,
            }
            .error(
                valid..valid,
                format!("the file is not UTF-8 text (byte 0x{byte:02X})"),
            )
        })?;
        let mut site = SiteDescription::parse(&text, &origin)?;
        site.base = path.parent().map(Path::to_path_buf);
        Ok(site)
    }

    /// Parses and checks a site description; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<SiteDescription, SiteError> {
        let origin = Origin { name: origin, text };
        let site: SiteDescription = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            origin.error(span, e.message().trim_end().to_owned())
        })?;
        site.check(&origin)?;
        Ok(site)
    }

    fn check(&self, origin: &Origin<'_>) -> Result<(), SiteError> {
        if self.buses.is_empty() {
            return Err(origin.error(0..0, "the site has no [[bus]]"));
        }
        let mut bus_names = BTreeSet::new();
        let mut battery_names = BTreeSet::new();
        for bus in &self.buses {
            let name = bus.name.get_ref();
            if name.is_empty()
                || name.len() > 15
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(origin.error(
                    bus.name.span(),
                    format!("bus name {name:?}: 1 to 15 letters, digits, '-' or '_'"),
                ));
            }
            if !bus_names.insert(name.clone()) {
                return Err(
                    origin.error(bus.name.span(), format!("bus {name:?} is described twice"))
                );
            }
            let rate = *bus.bitrate.get_ref();
            if !STANDARD_BITRATES.contains(&rate) {
                return Err(origin.error(
                    bus.bitrate.span(),
                    format!("bit rate {rate} is not a standard CAN rate ({STANDARD_BITRATES:?})"),
                ));
            }
            for battery in &bus.batteries {
                let bname = battery.name.get_ref();
                if bname.is_empty() {
                    return Err(origin.error(battery.name.span(), "battery name is empty"));
                }
                if !battery_names.insert(bname.clone()) {
                    return Err(origin.error(
                        battery.name.span(),
                        format!("battery {bname:?} is described twice"),
                    ));
                }
                if battery.vendor.get_ref().is_empty() {
                    return Err(origin.error(battery.vendor.span(), "vendor is empty"));
                }
                if let Some(model) = &battery.model {
                    if model.get_ref().is_empty() {
                        return Err(origin.error(model.span(), "model is empty"));
                    }
                } else if let Some(options) = &battery.model_options {
                    return Err(origin.error(
                        options.span(),
                        format!("battery {bname:?}: model_options without a model"),
                    ));
                }
                let config = battery.config(0);
                if let Err(e) = config.validate() {
                    let span = battery.span_of(config_field(&e));
                    return Err(origin.error(span, format!("battery {bname:?}: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Every battery with its bus and configuration, in file order. Batteries on one
    /// bus get phases 37 ms apart so that they do not send in lockstep.
    pub fn batteries(&self) -> Vec<SiteBattery> {
        self.buses
            .iter()
            .flat_map(|bus| {
                bus.batteries.iter().enumerate().map(|(i, b)| SiteBattery {
                    bus: bus.name.get_ref().clone(),
                    name: b.name.get_ref().clone(),
                    vendor: b.vendor.get_ref().clone(),
                    config: b.config(i),
                    model: b.model.as_ref().map(|m| ModelSource {
                        path: match &self.base {
                            Some(base) => base.join(m.get_ref()),
                            None => PathBuf::from(m.get_ref()),
                        },
                        options: b
                            .model_options
                            .as_ref()
                            .map(|o| o.get_ref().to_string())
                            .unwrap_or_default(),
                    }),
                })
            })
            .collect()
    }
}

fn config_field(e: &crate::battery::ConfigError) -> &'static str {
    use crate::battery::ConfigError as E;
    match e {
        E::NotAscii { field, .. } | E::TextLength { field, .. } | E::OutOfRange { field, .. } => {
            field
        }
        E::NoSuchModule { .. } => "modules",
        E::ProductInfoLength { .. } => "product_info_tail",
    }
}

impl BatteryDescription {
    fn config(&self, index_on_bus: usize) -> BatteryConfig {
        let mut config = BatteryConfig::new(IdentityConfig {
            manufacturer: self.manufacturer.get_ref().clone(),
            bms_name: self.bms_name.get_ref().clone(),
            product_code: self.product_code,
            firmware: self.firmware,
            capacity_ah: *self.capacity_ah.get_ref(),
            product_info_tail: self.product_info_tail,
            serial: self.serial.as_ref().map(|s| s.get_ref().clone()),
            product_name: self.product_name.as_ref().map(|s| s.get_ref().clone()),
        });
        config.cells_in_series = *self.cells_in_series.get_ref();
        config.modules = *self.modules.get_ref();
        config.initial_soc = *self.soc.get_ref();
        config.soh = *self.soh.get_ref();
        config.temperature_c = *self.temperature_c.get_ref();
        config.ambient_c = self
            .ambient_c
            .as_ref()
            .map_or(config.temperature_c, |a| *a.get_ref());
        if let Some(a) = &self.max_charge_amps {
            config.max_charge_amps = *a.get_ref();
        }
        if let Some(a) = &self.max_discharge_amps {
            config.max_discharge_amps = *a.get_ref();
        }
        config.extreme_cell_ids = if self.extreme_cell_ids {
            ExtremeCellIds::Sent
        } else {
            ExtremeCellIds::NotSent
        };
        config.profile = (*self.profile.get_ref()).into();
        config.phase = Duration::from_millis(37 * index_on_bus as u64);
        config
    }

    /// The span of the value behind a configuration field's name (the battery's name
    /// when the field was left at its default).
    fn span_of(&self, field: &str) -> Range<usize> {
        let span = match field {
            "manufacturer" => self.manufacturer.span(),
            "bms_name" => self.bms_name.span(),
            "capacity_ah" => self.capacity_ah.span(),
            "serial" => self.serial.as_ref().map_or(0..0, |s| s.span()),
            "product_name" => self.product_name.as_ref().map_or(0..0, |s| s.span()),
            "modules" => self.modules.span(),
            "cells_in_series" => self.cells_in_series.span(),
            "soc" => self.soc.span(),
            "soh" => self.soh.span(),
            "temperature_c" => self.temperature_c.span(),
            // Defaults derive from another field: point at that one.
            "ambient_c" => self
                .ambient_c
                .as_ref()
                .map_or(self.temperature_c.span(), |s| s.span()),
            "max_charge_amps" => self
                .max_charge_amps
                .as_ref()
                .map_or(self.capacity_ah.span(), |s| s.span()),
            "max_discharge_amps" => self
                .max_discharge_amps
                .as_ref()
                .map_or(self.capacity_ah.span(), |s| s.span()),
            f if f.starts_with("profile") => self.profile.span(),
            _ => 0..0,
        };
        if span == (0..0) {
            self.name.span()
        } else {
            span
        }
    }
}
