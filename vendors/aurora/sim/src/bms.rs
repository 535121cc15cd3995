//! The Aurora PowerCore BMS as a sans-IO model: BMS-Can telemetry from the simulator's
//! battery model, the UDS server of the flash sequence over ISO-TP, two firmware slots,
//! restarts with a telemetry gap, power cuts.

use crate::bootloader::{Bootloader, Fault, ResetRequest};
use crate::flash::{BootOutcome, BootState, Flash, SlotId, TrialBoot, with_package};
use crate::key::SECRET;
use crate::package::{PackageSpec, VerifyError, build};
use crate::protocol::{
    AuroraTiming, CHECK_ROUTINE, ERASE_ROUTINE, MAX_BLOCK_LENGTH, PADDING, REQUEST_CAN_ID,
    RESPONSE_CAN_ID,
};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::{IsoTpConfig, Padding};
use bmsfw_protocols::uds::{FlashServer, ServerConfig, Session, TransferAck};
use bmsfw_sim::battery::{BatteryConfig, BatteryModel, ConfigError, PowerState, Telemetry};
use std::time::Duration;

/// What an Aurora BMS is, beyond its BMS-Can identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuroraConfig {
    /// Product code (0x35F bytes 0-1, and the product the BMS accepts packages for).
    pub product_code: u16,
    /// Version of the firmware in slot A at start, `[major, minor]`.
    pub firmware: [u8; 2],
    /// Bootloader version, `[major, minor]`; below 2.0 it takes no updates over CAN.
    pub bootloader: [u8; 2],
    /// Image size of the firmware in slot A at start.
    pub initial_image_len: usize,
    /// How long the BMS takes for its work.
    pub timing: AuroraTiming,
    /// The security-access secret.
    pub secret: Vec<u8>,
    /// Seed of the BMS's randomness (security seeds, the initial image).
    pub seed: u64,
}

impl AuroraConfig {
    /// A BMS of `product_code` running `firmware`, bootloader 2.3, the times of
    /// `PROTOCOL.md`.
    pub fn new(product_code: u16, firmware: [u8; 2]) -> AuroraConfig {
        AuroraConfig {
            product_code,
            firmware,
            bootloader: [2, 3],
            initial_image_len: 16 * 1024,
            timing: AuroraTiming::default(),
            secret: SECRET.to_vec(),
            seed: 0x5EED_A0A0,
        }
    }
}

/// Why a BMS could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuroraConfigError {
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
        /// When the firmware runs again (or the rollback begins).
        until: Timestamp,
        /// Whether a package on trial is to be booted, or the rollback is under way.
        step: RestartStep,
    },
    /// No power.
    Off,
}

/// What a restart does when its time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartStep {
    /// Boot: a pending package runs on trial.
    Boot,
    /// The package on trial did not start; the previous one boots.
    Rollback,
}

/// What tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuroraStatus {
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
    /// Bytes in the inactive slot.
    pub inactive_len: usize,
    /// Boots completed since the model was built (restarts and power-ups).
    pub boots: u32,
}

/// The simulated Aurora BMS, sans-IO: feed it frames with
/// [`handle_frame`](Self::handle_frame), take its frames from
/// [`poll_transmit`](Self::poll_transmit) until `None`, and come back at
/// [`poll_timeout`](Self::poll_timeout) (calling [`handle_timeout`](Self::handle_timeout)).
#[derive(Debug)]
pub struct AuroraBms {
    battery: BatteryModel,
    server: FlashServer<Bootloader>,
    stage: Stage,
    /// Last UDS frame received or sent, for the S3 session timeout.
    last_uds: Timestamp,
    boots: u32,
}

/// The ISO-TP settings of the BMS's end: answers on 0x7EA, requests on 0x7E2, padding
/// 0xCC, block size 0 and STmin 0 asked of the GX, messages up to one block.
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
        p2_star: Duration::from_millis(5000),
        pending_interval: Duration::from_millis(2000),
        erase_routine: ERASE_ROUTINE,
        check_routine: CHECK_ROUTINE,
        max_key_attempts: 3,
        transfer_ack: TransferAck::CounterAndBytesReceived,
    }
}

impl AuroraBms {
    /// A powered BMS at `now` running `config.firmware` from slot A. The battery's 0x35F
    /// firmware bytes follow the running firmware, whatever `battery` says.
    pub fn new(
        config: AuroraConfig,
        battery: BatteryConfig,
        now: Timestamp,
    ) -> Result<AuroraBms, AuroraConfigError> {
        let spec = PackageSpec::new(
            config.product_code,
            config.firmware,
            config.initial_image_len,
            config.seed,
        );
        let flash = with_package(&build(&spec))?;
        let mut battery = BatteryModel::new(battery, now)?;
        battery.set_firmware_bytes(flash.running().version);
        let bootloader = Bootloader::new(
            flash,
            config.product_code,
            config.bootloader,
            config.timing,
            config.secret,
            config.seed.rotate_left(17),
        );
        Ok(AuroraBms {
            battery,
            server: FlashServer::new(isotp_config(), server_config(), bootloader),
            stage: Stage::Running,
            last_uds: now,
            boots: 0,
        })
    }

    /// Where the BMS is, its slots and its session.
    pub fn status(&self) -> AuroraStatus {
        let flash = &self.server.backend().flash;
        AuroraStatus {
            stage: self.stage,
            running_version: flash.running().version,
            active_slot: flash.active(),
            boot_state: flash.boot_state(),
            session: self.server.session(),
            inactive_len: flash.slot(flash.inactive()).data().len(),
            boots: self.boots,
        }
    }

    /// The flash: both slots and the boot record.
    pub fn flash(&self) -> &Flash {
        &self.server.backend().flash
    }

    /// The BMS-Can battery behind the BMS.
    pub fn battery(&self) -> &BatteryModel {
        &self.battery
    }

    /// The BMS-Can battery, to change its pack or alarms. Cut and restore power with
    /// [`power_cut`](Self::power_cut) and [`power_restore`](Self::power_restore), not
    /// on the battery: the BMS's RAM goes with it.
    pub fn battery_mut(&mut self) -> &mut BatteryModel {
        &mut self.battery
    }

    /// Arms a fault; it fires once.
    pub fn inject(&mut self, fault: Fault) {
        self.server.backend_mut().arm(fault);
    }

    /// Cuts the power at `now`: the BMS goes silent and loses its RAM (the session, a
    /// download, an activation whose boot record was not written yet); the flash stays.
    pub fn power_cut(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage == Stage::Off {
            return;
        }
        self.server.restart();
        self.server.backend_mut().lose_ram();
        self.battery.set_power(now, PowerState::Off);
        self.stage = Stage::Off;
        tracing::debug!(?now, "aurora BMS: power cut");
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
        if self.stage != Stage::Running && self.stage != Stage::ShuttingDown {
            return;
        }
        if frame.id() == REQUEST_CAN_ID {
            self.last_uds = now;
            self.server.backend_mut().now = now;
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

    /// The next frame to send at `now`: due telemetry first (its identifiers are the
    /// lower ones), then UDS.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if let Some(frame) = self.battery.poll_transmit(now) {
            return Some(frame);
        }
        if !matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            return None;
        }
        self.server.backend_mut().now = now;
        match self.server.poll_transmit(now) {
            Some(frame) => {
                self.last_uds = now;
                Some(frame)
            }
            None => {
                if self.stage == Stage::ShuttingDown {
                    self.begin_restart(now);
                }
                None
            }
        }
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.battery.poll_timeout();
        let mut consider = |t: Option<Timestamp>| {
            next = match (next, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        match self.stage {
            Stage::Running | Stage::ShuttingDown => {
                consider(self.server.poll_timeout());
                consider(self.server.backend().poll_timeout());
                if self.server.session() != Session::Default {
                    consider(Some(self.last_uds + self.server.backend().timing.s3));
                }
            }
            Stage::Restarting { until, .. } => consider(Some(until)),
            Stage::Off => {}
        }
        next
    }

    /// Brings everything up to `now`: restarts that end, activations whose boot record
    /// is written, the server's timers, the session timeout.
    fn advance(&mut self, now: Timestamp) {
        if let Stage::Restarting { until, step } = self.stage {
            if now < until {
                return;
            }
            self.finish_restart(until, step);
            if matches!(self.stage, Stage::Restarting { .. }) {
                return self.advance(now);
            }
        }
        if !matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            return;
        }
        self.server.backend_mut().advance(now);
        self.server.handle_timeout(now);
        self.note_reset();
        let s3 = self.server.backend().timing.s3;
        if self.server.session() != Session::Default && now >= self.last_uds + s3 {
            tracing::debug!("aurora BMS: no request for S3, back to the default session");
            // Suppressed positive response: nothing is sent.
            self.server.handle_request(now, &[0x10, 0x81]);
            self.server.backend_mut().lose_ram();
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
        let restart = self.server.backend().timing.restart;
        self.stage = Stage::Restarting {
            until: now + restart,
            step: RestartStep::Boot,
        };
        tracing::debug!(?now, "aurora BMS: restarting");
    }

    fn finish_restart(&mut self, at: Timestamp, step: RestartStep) {
        let bootloader = self.server.backend_mut();
        if step == RestartStep::Boot {
            let trial = if std::mem::take(&mut bootloader.faults.fail_next_boot) {
                TrialBoot::Fails
            } else {
                TrialBoot::Starts
            };
            if bootloader.flash.boot(trial) == BootOutcome::RolledBack {
                tracing::debug!("aurora BMS: new firmware did not start, rolling back");
                let rollback = bootloader.timing.rollback;
                self.stage = Stage::Restarting {
                    until: at + rollback,
                    step: RestartStep::Rollback,
                };
                return;
            }
        }
        let version = bootloader.flash.running().version;
        self.battery.set_firmware_bytes(version);
        self.battery.set_telemetry(at, Telemetry::Sending);
        self.last_uds = at;
        self.boots += 1;
        self.stage = Stage::Running;
        tracing::debug!(?version, "aurora BMS: firmware running");
    }
}
