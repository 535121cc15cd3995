//! The Acme BMS as a sans-IO model: BMS-Can telemetry from the simulator's battery
//! model, the UDS server of the flash sequence over ISO-TP, two firmware slots, restarts
//! with a telemetry gap, power cuts.

use crate::bootloader::{Bootloader, Fault, Flash, PackageCheck, ResetRequest};
use crate::package::{PackageSpec, VerifyError, build};
use crate::protocol::{
    CHECK_ROUTINE, ERASE_ROUTINE, MAX_BLOCK_LENGTH, PADDING, REQUEST_CAN_ID, RESPONSE_CAN_ID,
    SLOT_SIZE, TemplateTiming,
};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::{IsoTpConfig, Padding};
use bmsfw_protocols::uds::{FlashServer, ServerConfig, Session, TransferAck};
use bmsfw_sim::battery::{BatteryConfig, BatteryModel, ConfigError, PowerState, Telemetry};
use bmsfw_sim::flash::{BootOutcome, BootState, SlotId, TrialBoot};
use std::time::Duration;

/// What an Acme BMS is, beyond its BMS-Can identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Product code (0x35F bytes 0-1, and the product the BMS accepts packages for).
    pub product_code: u16,
    /// Version of the firmware in slot A at start, `[major, minor]`.
    pub firmware: [u8; 2],
    /// Image size of the firmware in slot A at start.
    pub initial_image_len: usize,
    /// How long the BMS takes for its work.
    pub timing: TemplateTiming,
}

impl TemplateConfig {
    /// A BMS of `product_code` running `firmware`, the times of `PROTOCOL.md`.
    pub fn new(product_code: u16, firmware: [u8; 2]) -> TemplateConfig {
        TemplateConfig {
            product_code,
            firmware,
            initial_image_len: 8 * 1024,
            timing: TemplateTiming::default(),
        }
    }
}

/// Why a BMS could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TemplateConfigError {
    /// The BMS-Can side is invalid.
    #[error(transparent)]
    Battery(#[from] ConfigError),
    /// The initial firmware package is invalid (an image of 0 bytes or above a slot).
    #[error("the initial firmware package: {0}")]
    Package(#[from] VerifyError),
}

/// Where the BMS is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The firmware runs: telemetry and UDS answers.
    Running,
    /// A reset was asked for: its answer goes out, then the BMS restarts.
    ShuttingDown,
    /// Restarting, silent until `until`.
    Restarting {
        /// When the firmware runs again.
        until: Timestamp,
    },
    /// No power.
    Off,
}

/// What tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateStatus {
    /// Where the BMS is.
    pub stage: Stage,
    /// Version of the firmware in the active slot.
    pub running_version: [u8; 2],
    /// The active slot.
    pub active_slot: SlotId,
    /// The boot record.
    pub boot_state: BootState,
    /// The UDS session.
    pub session: Session,
    /// Boots completed since the model was built (restarts and power-ups).
    pub boots: u32,
}

/// The simulated Acme BMS, sans-IO: feed it frames with
/// [`handle_frame`](Self::handle_frame), take its frames from
/// [`poll_transmit`](Self::poll_transmit) until `None`, and come back at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct TemplateBms {
    battery: BatteryModel,
    server: FlashServer<Bootloader>,
    stage: Stage,
    boots: u32,
}

/// The ISO-TP settings of the BMS's end: answers on 0x7ED, requests on 0x7E5, padding
/// 0xAA, messages up to one block.
pub fn isotp_config() -> IsoTpConfig {
    let mut c = IsoTpConfig::new(RESPONSE_CAN_ID, REQUEST_CAN_ID);
    c.padding = Padding::Fill(PADDING);
    c.max_message_len = MAX_BLOCK_LENGTH as u32;
    c
}

/// The UDS server settings of `PROTOCOL.md`.
pub fn server_config() -> ServerConfig {
    ServerConfig {
        p2: Duration::from_millis(50),
        p2_star: Duration::from_millis(2000),
        pending_interval: Duration::from_millis(1000),
        erase_routine: ERASE_ROUTINE,
        check_routine: CHECK_ROUTINE,
        max_key_attempts: 3,
        transfer_ack: TransferAck::CounterAndBytesReceived,
    }
}

impl TemplateBms {
    /// A powered BMS at `now` running `config.firmware` from slot A. The battery's 0x35F
    /// firmware bytes follow the running firmware, whatever `battery` says.
    pub fn new(
        config: TemplateConfig,
        battery: BatteryConfig,
        now: Timestamp,
    ) -> Result<TemplateBms, TemplateConfigError> {
        let spec = PackageSpec::new(
            config.product_code,
            config.firmware,
            config.initial_image_len,
            u64::from(config.product_code),
        );
        let flash = Flash::new(PackageCheck, SLOT_SIZE, &build(&spec))?;
        let mut battery = BatteryModel::new(battery, now)?;
        battery.set_firmware_bytes(flash.running().version);
        let bootloader = Bootloader::new(flash, config.product_code, config.timing);
        Ok(TemplateBms {
            battery,
            server: FlashServer::new(isotp_config(), server_config(), bootloader),
            stage: Stage::Running,
            boots: 0,
        })
    }

    /// Where the BMS is, its slots and its session.
    pub fn status(&self) -> TemplateStatus {
        let flash = &self.server.backend().flash;
        TemplateStatus {
            stage: self.stage,
            running_version: flash.running().version,
            active_slot: flash.active(),
            boot_state: flash.boot_state(),
            session: self.server.session(),
            boots: self.boots,
        }
    }

    /// The flash: both slots and the boot record.
    pub fn flash(&self) -> &Flash {
        &self.server.backend().flash
    }

    /// The BMS-Can battery, to change its pack or alarms. Cut and restore power with
    /// [`power_cut`](Self::power_cut) and [`power_restore`](Self::power_restore).
    pub fn battery_mut(&mut self) -> &mut BatteryModel {
        &mut self.battery
    }

    /// Arms a fault; it fires once.
    pub fn inject(&mut self, fault: Fault) {
        let bootloader = self.server.backend_mut();
        match fault {
            Fault::FlipBitOnWrite { offset } => bootloader.download.flip_bit_on_write(offset),
            Fault::FailNextBoot => bootloader.fail_next_boot = true,
        }
    }

    /// Cuts the power at `now`: the BMS goes silent and loses its RAM (the session, a
    /// download under way); the flash stays.
    pub fn power_cut(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage == Stage::Off {
            return;
        }
        self.server.restart();
        self.server.backend_mut().lose_ram();
        self.battery.set_power(now, PowerState::Off);
        self.stage = Stage::Off;
    }

    /// Restores the power at `now`: the BMS boots (silent for the restart time).
    pub fn power_restore(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage != Stage::Off {
            return;
        }
        self.battery.set_power(now, PowerState::On);
        self.begin_restart(now);
    }

    /// Feeds a frame received at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.advance(now);
        if !matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            return;
        }
        if frame.id() == REQUEST_CAN_ID {
            self.server.handle_frame(now, frame);
            self.note_reset();
        } else {
            self.battery.handle_frame(now, frame);
        }
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The next frame to send at `now`: due telemetry first, then UDS.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if let Some(frame) = self.battery.poll_transmit(now) {
            return Some(frame);
        }
        if !matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            return None;
        }
        let frame = self.server.poll_transmit(now);
        if frame.is_none() && self.stage == Stage::ShuttingDown {
            // The reset's answer is out: restart now.
            self.begin_restart(now);
        }
        frame
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match self.stage {
            Stage::Running | Stage::ShuttingDown => self.server.poll_timeout(),
            Stage::Restarting { until } => Some(until),
            Stage::Off => None,
        };
        [self.battery.poll_timeout(), own]
            .into_iter()
            .flatten()
            .min()
    }

    /// Brings everything up to `now`: a restart that ends, the server's timers.
    fn advance(&mut self, now: Timestamp) {
        if let Stage::Restarting { until } = self.stage {
            if now < until {
                return;
            }
            self.finish_restart(until);
        }
        if matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            self.server.handle_timeout(now);
            self.note_reset();
        }
    }

    fn note_reset(&mut self) {
        if self.stage == Stage::Running && self.server.backend().reset == ResetRequest::Requested {
            self.stage = Stage::ShuttingDown;
        }
    }

    fn begin_restart(&mut self, now: Timestamp) {
        self.server.restart();
        self.server.backend_mut().lose_ram();
        self.battery.set_telemetry(now, Telemetry::Silent);
        let until = now + self.server.backend().timing.restart;
        self.stage = Stage::Restarting { until };
    }

    fn finish_restart(&mut self, at: Timestamp) {
        let bootloader = self.server.backend_mut();
        let trial = if std::mem::take(&mut bootloader.fail_next_boot) {
            TrialBoot::Fails
        } else {
            TrialBoot::Starts
        };
        if bootloader.flash.boot(trial) == BootOutcome::RolledBack {
            tracing::debug!("acme BMS: new firmware did not start, back to the previous one");
        }
        let version = bootloader.flash.running().version;
        self.battery.set_firmware_bytes(version);
        self.battery.set_telemetry(at, Telemetry::Sending);
        self.boots += 1;
        self.stage = Stage::Running;
    }
}
