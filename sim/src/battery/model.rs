//! The sans-IO model of one BMS-Can battery: physics, alarms, modules, identity, and
//! the broadcast schedule.

use super::alarms::{Alarm, AlarmSet, Level};
use super::config::{BatteryConfig, ConfigError, ExtremeCellIds};
use super::frames::{self, ForceCharge, RequestBits};
use super::pack::{Allowance, ChargePermission, Conduction, Pack};
use super::schedule::Schedule;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bms_can::FrameKind;

/// Whether the battery's BMS is powered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Broadcasting.
    On,
    /// Silent and carrying no current (a power cut or a BMS switched off).
    Off,
}

/// Whether a powered BMS broadcasts its telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telemetry {
    /// Broadcasting on schedule.
    Sending,
    /// Silent while the pack keeps conducting: a BMS restarting into new firmware keeps
    /// its contactors closed but sends nothing until its firmware runs again.
    Silent,
}

/// Whether one module of the pack is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Connected and sharing current.
    Online,
    /// Disconnected.
    Offline,
}

/// Whether the GX's keep-alive (0x305) has been heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GxPresence {
    /// Never heard.
    Unknown,
    /// Last heard at this time.
    Seen(Timestamp),
}

/// What the battery currently measures and reports, for tests and displays.
#[derive(Clone, Debug, PartialEq)]
pub struct BatterySnapshot {
    /// State of charge, percent.
    pub soc: f64,
    /// Pack voltage, volts.
    pub voltage: f64,
    /// Current, amperes, positive = charging.
    pub current: f64,
    /// Temperature, degC.
    pub temperature: f64,
    /// Charge current limit, amperes.
    pub charge_current_limit: f64,
    /// Discharge current limit, amperes.
    pub discharge_current_limit: f64,
    /// Modules online.
    pub modules_online: u16,
    /// Modules in the pack.
    pub modules_total: u16,
    /// Alarms raised.
    pub alarms: Vec<Alarm>,
    /// Warnings raised.
    pub warnings: Vec<Alarm>,
    /// The 0x35F bytes being sent.
    pub product_info: Vec<u8>,
    /// Power.
    pub power: PowerState,
    /// GX keep-alive.
    pub gx: GxPresence,
}

/// A simulated battery (sans-IO): ask [`poll_transmit`](BatteryModel::poll_transmit)
/// for frames until it returns `None`, then wait until
/// [`poll_timeout`](BatteryModel::poll_timeout). Every call takes the current time and
/// first advances the physics to it.
#[derive(Clone, Debug)]
pub struct BatteryModel {
    config: BatteryConfig,
    pack: Pack,
    alarms: AlarmSet,
    modules: Vec<ModuleState>,
    product_info: Vec<u8>,
    schedule: Schedule,
    power: PowerState,
    telemetry: Telemetry,
    gx: GxPresence,
    now: Timestamp,
}

impl BatteryModel {
    /// A powered battery at `now`, its first frames due within a second.
    pub fn new(config: BatteryConfig, now: Timestamp) -> Result<BatteryModel, ConfigError> {
        config.validate()?;
        let id = &config.identity;
        let mut product_info = id.product_code.to_le_bytes().to_vec();
        product_info.extend_from_slice(&id.firmware);
        product_info.extend_from_slice(&id.capacity_ah.to_le_bytes());
        if let Some(tail) = id.product_info_tail {
            product_info.extend_from_slice(&tail);
        }
        let mut frames = vec![
            FrameKind::Limits,
            FrameKind::StateOfCharge,
            FrameKind::Measurements,
            FrameKind::Protection,
            FrameKind::Alarms,
            FrameKind::Requests,
            FrameKind::Manufacturer,
            FrameKind::ProductInfo,
            FrameKind::BmsName1,
        ];
        if id.bms_name.len() > 8 {
            frames.push(FrameKind::BmsName2);
        }
        frames.extend([FrameKind::ModuleCounts, FrameKind::CellExtremes]);
        if config.extreme_cell_ids == ExtremeCellIds::Sent {
            frames.extend([
                FrameKind::MinCellVoltageId,
                FrameKind::MaxCellVoltageId,
                FrameKind::MinCellTemperatureId,
                FrameKind::MaxCellTemperatureId,
            ]);
        }
        frames.extend([FrameKind::Energy, FrameKind::InstalledCapacity]);
        if let Some(serial) = &id.serial {
            frames.push(FrameKind::Serial1);
            if serial.len() > 8 {
                frames.push(FrameKind::Serial2);
            }
        }
        if id.product_name.is_some() {
            frames.push(FrameKind::ProductName);
        }
        Ok(BatteryModel {
            pack: Pack::new(&config),
            alarms: AlarmSet::default(),
            modules: vec![ModuleState::Online; usize::from(config.modules)],
            product_info,
            schedule: Schedule::new(&frames, now, config.phase),
            power: PowerState::On,
            telemetry: Telemetry::Sending,
            gx: GxPresence::Unknown,
            now,
            config,
        })
    }

    /// The configuration the battery was built from.
    pub fn config(&self) -> &BatteryConfig {
        &self.config
    }

    /// The broadcast schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Advances the physics to `now` (time never runs backwards: an earlier `now` is
    /// ignored).
    pub fn advance(&mut self, now: Timestamp) {
        if now <= self.now {
            return;
        }
        let dt = now.saturating_duration_since(self.now);
        let conduction = match self.power {
            PowerState::On => Conduction::Allowed,
            PowerState::Off => Conduction::Blocked,
        };
        self.pack.advance(dt, conduction, self.permission());
        self.now = now;
    }

    fn permission(&self) -> ChargePermission {
        let allow = |blocked: bool| {
            if blocked {
                Allowance::Forbidden
            } else {
                Allowance::Allowed
            }
        };
        ChargePermission {
            charge: allow(self.alarms.blocks_charging()),
            discharge: allow(self.alarms.blocks_discharging()),
        }
    }

    /// The next frame due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if self.power == PowerState::Off || self.telemetry == Telemetry::Silent {
            return None;
        }
        let due = self.schedule.pop_due(now)?;
        Some(self.encode(due))
    }

    /// When the next frame is due; `None` while powered off or silent.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.power, self.telemetry) {
            (PowerState::On, Telemetry::Sending) => self.schedule.next_due(),
            _ => None,
        }
    }

    /// Notes a frame received from the bus at `now` (the GX keep-alive is recorded;
    /// everything else is ignored, as a BMS-Can battery does).
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if !frame.id().is_extended() && frame.id().raw() == 0x305 {
            self.gx = GxPresence::Seen(now);
        }
    }

    fn encode(&self, frame: FrameKind) -> CanFrame {
        let p = &self.pack;
        let id = &self.config.identity;
        let permission = self.permission();
        let ccl = match permission.charge {
            Allowance::Allowed => p.charge_current_limit(),
            Allowance::Forbidden => 0.0,
        };
        let dcl = match permission.discharge {
            Allowance::Allowed => p.discharge_current_limit(),
            Allowance::Forbidden => 0.0,
        };
        let online = p.modules_online();
        let cell = p.cell_voltage();
        match frame {
            FrameKind::Limits => frames::limits(
                p.charge_voltage_limit(),
                ccl,
                dcl,
                p.discharge_voltage_limit(),
            ),
            FrameKind::StateOfCharge => frames::state_of_charge(p.soc(), self.config.soh),
            FrameKind::Measurements => {
                frames::measurements(p.voltage(), p.current(), p.temperature())
            }
            FrameKind::Protection => {
                let (protection, warning) = self.alarms.encode_0x359();
                frames::protection(protection, warning, online)
            }
            FrameKind::Alarms => frames::alarms(self.alarms.status_0x35a()),
            FrameKind::Requests => frames::requests(RequestBits {
                charge: if ccl > 0.0 {
                    Allowance::Allowed
                } else {
                    Allowance::Forbidden
                },
                discharge: if dcl > 0.0 {
                    Allowance::Allowed
                } else {
                    Allowance::Forbidden
                },
                force_charge: if p.soc() < 5.0 {
                    ForceCharge::Requested
                } else {
                    ForceCharge::NotRequested
                },
            }),
            FrameKind::Manufacturer => {
                frames::text(FrameKind::Manufacturer, id.manufacturer.as_bytes())
            }
            FrameKind::ProductInfo => frames::product_info(&self.product_info),
            FrameKind::BmsName1 => frames::text(FrameKind::BmsName1, half(&id.bms_name, 0)),
            FrameKind::BmsName2 => frames::text(FrameKind::BmsName2, half(&id.bms_name, 1)),
            FrameKind::ModuleCounts => frames::module_counts(
                online,
                if ccl > 0.0 { 0 } else { online },
                if dcl > 0.0 { 0 } else { online },
                p.modules_total() - online,
            ),
            FrameKind::CellExtremes => frames::cell_extremes(
                cell - 0.005,
                cell + 0.005,
                p.temperature() - 1.0,
                p.temperature() + 1.0,
            ),
            FrameKind::MinCellVoltageId => frames::text(FrameKind::MinCellVoltageId, b"M01C03"),
            FrameKind::MaxCellVoltageId => frames::text(FrameKind::MaxCellVoltageId, b"M01C11"),
            FrameKind::MinCellTemperatureId => {
                frames::text(FrameKind::MinCellTemperatureId, b"M01T01")
            }
            FrameKind::MaxCellTemperatureId => {
                frames::text(FrameKind::MaxCellTemperatureId, b"M01T02")
            }
            FrameKind::Energy => frames::energy(p.charged_wh(), p.discharged_wh()),
            FrameKind::InstalledCapacity => frames::installed_capacity(id.capacity_ah),
            FrameKind::Serial1 => frames::text(
                FrameKind::Serial1,
                half(id.serial.as_deref().unwrap_or(""), 0),
            ),
            FrameKind::Serial2 => frames::text(
                FrameKind::Serial2,
                half(id.serial.as_deref().unwrap_or(""), 1),
            ),
            FrameKind::ProductName => frames::text(
                FrameKind::ProductName,
                id.product_name.as_deref().unwrap_or("").as_bytes(),
            ),
        }
    }

    /// What the battery measures and reports at its last `now`.
    pub fn snapshot(&self) -> BatterySnapshot {
        let permission = self.permission();
        BatterySnapshot {
            soc: self.pack.soc(),
            voltage: self.pack.voltage(),
            current: self.pack.current(),
            temperature: self.pack.temperature(),
            charge_current_limit: match permission.charge {
                Allowance::Allowed => self.pack.charge_current_limit(),
                Allowance::Forbidden => 0.0,
            },
            discharge_current_limit: match permission.discharge {
                Allowance::Allowed => self.pack.discharge_current_limit(),
                Allowance::Forbidden => 0.0,
            },
            modules_online: self.pack.modules_online(),
            modules_total: self.pack.modules_total(),
            alarms: self.alarms.active(Level::Alarm),
            warnings: self.alarms.active(Level::Warning),
            product_info: self.product_info.clone(),
            power: self.power,
            gx: self.gx,
        }
    }

    /// Sets the state of charge (percent, clamped to 0..=100) at `now`.
    pub fn set_soc(&mut self, now: Timestamp, soc: f64) {
        self.advance(now);
        self.pack.set_soc(soc);
    }

    /// Sets the pack temperature at `now`; it drifts back towards ambient.
    pub fn set_temperature(&mut self, now: Timestamp, celsius: f64) {
        self.advance(now);
        self.pack.set_temperature(celsius);
    }

    /// Sets the ambient temperature at `now`.
    pub fn set_ambient(&mut self, now: Timestamp, celsius: f64) {
        self.advance(now);
        self.pack.set_ambient(celsius);
    }

    /// Replaces the current profile at `now`.
    pub fn set_profile(&mut self, now: Timestamp, profile: super::config::CurrentProfile) {
        self.advance(now);
        self.pack.set_profile(profile);
    }

    /// Raises `alarm` at `level` from `now` on.
    pub fn raise(&mut self, now: Timestamp, level: Level, alarm: Alarm) {
        self.advance(now);
        self.alarms.raise(level, alarm);
    }

    /// Clears `alarm` at `level` from `now` on.
    pub fn clear(&mut self, now: Timestamp, level: Level, alarm: Alarm) {
        self.advance(now);
        self.alarms.clear(level, alarm);
    }

    /// Clears every alarm and warning from `now` on.
    pub fn clear_all_alarms(&mut self, now: Timestamp) {
        self.advance(now);
        self.alarms.clear_all();
    }

    /// Replaces the firmware bytes of 0x35F (bytes 2-3), as after an update.
    pub fn set_firmware_bytes(&mut self, firmware: [u8; 2]) {
        self.product_info[2..4].copy_from_slice(&firmware);
    }

    /// Replaces every byte of 0x35F (6 to 8 bytes).
    pub fn set_product_info(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        if !(6..=8).contains(&bytes.len()) {
            return Err(ConfigError::ProductInfoLength { len: bytes.len() });
        }
        self.product_info = bytes.to_vec();
        Ok(())
    }

    /// Takes module `index` (0-based) offline or brings it back at `now`.
    pub fn set_module(
        &mut self,
        now: Timestamp,
        index: u16,
        state: ModuleState,
    ) -> Result<(), ConfigError> {
        let modules = self.modules.len() as u16;
        if index >= modules {
            return Err(ConfigError::NoSuchModule { index, modules });
        }
        self.advance(now);
        self.modules[usize::from(index)] = state;
        let online = self
            .modules
            .iter()
            .filter(|&&m| m == ModuleState::Online)
            .count() as u16;
        self.pack.set_modules_online(online);
        Ok(())
    }

    /// The state of each module.
    pub fn modules(&self) -> &[ModuleState] {
        &self.modules
    }

    /// Cuts or restores power at `now`. Restoring restarts the broadcast schedule as a
    /// booting BMS does (first frames within a second).
    pub fn set_power(&mut self, now: Timestamp, power: PowerState) {
        self.advance(now);
        if self.power == PowerState::Off && power == PowerState::On {
            self.schedule.restart(now);
        }
        self.power = power;
    }

    /// Whether the BMS is powered.
    pub fn power(&self) -> PowerState {
        self.power
    }

    /// Silences the telemetry or resumes it at `now`; the pack's physics go on either
    /// way. Resuming restarts the broadcast schedule as a booting BMS does (first frames
    /// within a second).
    pub fn set_telemetry(&mut self, now: Timestamp, telemetry: Telemetry) {
        self.advance(now);
        if self.telemetry == Telemetry::Silent && telemetry == Telemetry::Sending {
            self.schedule.restart(now);
        }
        self.telemetry = telemetry;
    }

    /// Whether the telemetry is being sent (when powered).
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry
    }
}

/// Bytes `8 * part .. 8 * part + 8` of `text` (empty when past its end).
fn half(text: &str, part: usize) -> &[u8] {
    let b = text.as_bytes();
    b.get(8 * part..b.len().min(8 * part + 8))
        .unwrap_or_default()
}
