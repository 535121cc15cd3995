//! A Taiga bank as a sans-IO model: several nodes on one bus, the speaker broadcasting
//! BMS-Can for all of them (`PROTOCOL.md`, "A bank on one bus").

use crate::dictionary::{Fault, NodeDictionary, NodeIdentity, ProgramState};
use crate::flash::{BootState, SlotId, with_image};
use crate::node::{BorealNode, NodeStage};
use crate::package::{PackageSpec, image};
use crate::protocol::{BorealTiming, CAPS_CURRENT, MAX_NODE};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::canopen::NodeId;
use bmsfw_sim::battery::{
    BatteryConfig, BatteryModel, ConfigError, ModuleState, PowerState, Telemetry,
};
use std::time::Duration;

/// One node of a bank, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node-id, 1 to 16.
    pub id: u8,
    /// Version of the firmware in slot A at start, BCD.
    pub firmware: [u8; 2],
    /// Bootloader version, BCD.
    pub bootloader: [u8; 2],
    /// Bootloader capabilities (0x2F10:02).
    pub caps: u8,
}

/// What a bank is, beyond its BMS-Can identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankConfig {
    /// Product code of every node.
    pub product: u16,
    /// The nodes.
    pub nodes: Vec<NodeConfig>,
    /// How long the nodes take for their work.
    pub timing: BorealTiming,
    /// Image size of the firmware in slot A at start.
    pub initial_image_len: usize,
    /// Seed of the initial images.
    pub seed: u64,
}

impl BankConfig {
    /// A bank of `count` nodes (ids 1 to `count`) of `product`, all running `firmware`,
    /// bootloader 1.30, the times of `PROTOCOL.md`.
    pub fn new(product: u16, firmware: [u8; 2], count: u8) -> BankConfig {
        BankConfig {
            product,
            nodes: (1..=count)
                .map(|id| NodeConfig {
                    id,
                    firmware,
                    bootloader: [0x01, 0x30],
                    caps: CAPS_CURRENT,
                })
                .collect(),
            timing: BorealTiming::default(),
            initial_image_len: 16 * 1024,
            seed: 0xB0EA_0001,
        }
    }

    /// The node with id `id`.
    pub fn node_mut(&mut self, id: u8) -> Option<&mut NodeConfig> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }
}

/// Why a bank could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BankConfigError {
    /// The BMS-Can side is invalid.
    #[error(transparent)]
    Battery(#[from] ConfigError),
    /// No node.
    #[error("a bank has at least one node")]
    NoNodes,
    /// A node-id outside 1 to 16, or twice.
    #[error("node-id {0} is outside 1 to {MAX_NODE} or used twice")]
    NodeId(u8),
    /// A node's initial firmware image is refused by its own check.
    #[error("node {node}: the initial firmware image fails the check with code {code}")]
    Firmware {
        /// The node.
        node: u8,
        /// The flash status code.
        code: u8,
    },
}

/// One node as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node-id.
    pub id: u8,
    /// Where it is.
    pub stage: NodeStage,
    /// Version of the firmware in the active slot.
    pub running_version: [u8; 2],
    /// The active slot.
    pub active_slot: SlotId,
    /// The boot record.
    pub boot_state: BootState,
    /// Where the program download stands.
    pub program: ProgramState,
    /// Bytes in the inactive slot.
    pub inactive_len: usize,
    /// Boots completed since the bank was built.
    pub boots: u32,
}

/// The simulated bank, sans-IO: feed it frames with [`handle_frame`](Self::handle_frame),
/// take its frames from [`poll_transmit`](Self::poll_transmit) until `None`, and come back
/// at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct BorealBank {
    battery: BatteryModel,
    nodes: Vec<BorealNode>,
    product: u16,
}

impl BorealBank {
    /// A powered bank at `now`, every node running its configured firmware from slot A.
    /// The BMS-Can identity comes from `battery`; its module count becomes the number of
    /// nodes and its 0x35F follows the nodes (product, lowest version, capacity,
    /// speaker, count).
    pub fn new(
        config: BankConfig,
        mut battery: BatteryConfig,
        now: Timestamp,
    ) -> Result<BorealBank, BankConfigError> {
        if config.nodes.is_empty() {
            return Err(BankConfigError::NoNodes);
        }
        let mut nodes = Vec::new();
        for (i, n) in config.nodes.iter().enumerate() {
            let id = NodeId::new(n.id)
                .filter(|id| id.get() <= MAX_NODE)
                .filter(|_| config.nodes[..i].iter().all(|m| m.id != n.id))
                .ok_or(BankConfigError::NodeId(n.id))?;
            let spec = PackageSpec {
                min_bootloader: [0x01, 0x00],
                ..PackageSpec::new(
                    config.product,
                    n.firmware,
                    config.initial_image_len,
                    config.seed ^ u64::from(n.id),
                )
            };
            let flash = with_image(&image(&spec), config.product, n.bootloader)
                .map_err(|code| BankConfigError::Firmware { node: n.id, code })?;
            let identity = NodeIdentity {
                product: config.product,
                bootloader: n.bootloader,
                caps: n.caps,
                revision: 3,
                serial: 0x2400_0000 + u32::from(n.id),
            };
            let dictionary = NodeDictionary::new(flash, identity, config.timing);
            // Heartbeats spread over the period, as independent nodes' do.
            let first = now + Duration::from_millis(100 + 53 * u64::from(n.id));
            nodes.push(BorealNode::new(id, dictionary, first));
        }
        nodes.sort_by_key(BorealNode::id);
        battery.modules = nodes.len() as u16;
        let mut bank = BorealBank {
            battery: BatteryModel::new(battery, now)?,
            nodes,
            product: config.product,
        };
        bank.sync(now);
        Ok(bank)
    }

    /// The speaker: the node with the lowest id.
    pub fn speaker(&self) -> &BorealNode {
        &self.nodes[0]
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[BorealNode] {
        &self.nodes
    }

    /// Node `id`.
    pub fn node(&self, id: u8) -> Option<&BorealNode> {
        self.nodes.iter().find(|n| n.id().get() == id)
    }

    /// Where every node is.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|n| {
                let flash = n.dictionary().flash();
                NodeStatus {
                    id: n.id().get(),
                    stage: n.stage(),
                    running_version: flash.running().version,
                    active_slot: flash.active(),
                    boot_state: flash.boot_state(),
                    program: n.dictionary().program(),
                    inactive_len: flash.slot(flash.inactive()).data().len(),
                    boots: n.boots(),
                }
            })
            .collect()
    }

    /// The lowest version any node runs (what 0x35F shows).
    pub fn lowest_version(&self) -> [u8; 2] {
        self.nodes
            .iter()
            .map(|n| n.dictionary().flash().running().version)
            .min()
            .unwrap_or([0, 0])
    }

    /// The BMS-Can battery the speaker reports.
    pub fn battery(&self) -> &BatteryModel {
        &self.battery
    }

    /// The BMS-Can battery, to change its pack or alarms.
    pub fn battery_mut(&mut self) -> &mut BatteryModel {
        &mut self.battery
    }

    /// Arms a fault in node `id`; it fires once. Returns whether the node exists.
    pub fn inject(&mut self, id: u8, fault: Fault) -> bool {
        let Some(node) = self.nodes.iter_mut().find(|n| n.id().get() == id) else {
            return false;
        };
        let faults = &mut node.dictionary_mut().faults;
        match fault {
            Fault::FlipBitOnWrite { offset } => faults.flip_at = Some(offset),
            Fault::FailNextBoot => faults.fail_next_boot = true,
        }
        true
    }

    /// Cuts the power of the whole bank at `now`.
    pub fn power_cut(&mut self, now: Timestamp) {
        for n in &mut self.nodes {
            n.power_cut(now);
        }
        self.battery.set_power(now, PowerState::Off);
    }

    /// Restores the power at `now`: every node boots.
    pub fn power_restore(&mut self, now: Timestamp) {
        self.battery.set_power(now, PowerState::On);
        for n in &mut self.nodes {
            n.power_restore(now);
        }
        self.sync(now);
    }

    /// Feeds a frame received at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.battery.handle_frame(now, frame);
        for n in &mut self.nodes {
            n.handle_frame(now, frame);
        }
        self.sync(now);
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for n in &mut self.nodes {
            n.handle_timeout(now);
        }
        self.sync(now);
    }

    /// The next frame at `now`: due telemetry first (its identifiers are the lowest),
    /// then the nodes' answers and heartbeats.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.sync(now);
        if let Some(frame) = self.battery.poll_transmit(now) {
            return Some(frame);
        }
        for i in 0..self.nodes.len() {
            if let Some(frame) = self.nodes[i].poll_transmit(now) {
                self.sync(now);
                return Some(frame);
            }
        }
        self.sync(now);
        None
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        std::iter::once(self.battery.poll_timeout())
            .chain(self.nodes.iter().map(BorealNode::poll_timeout))
            .flatten()
            .min()
    }

    /// Makes the BMS-Can side follow the nodes: the speaker's telemetry, modules online,
    /// 0x35F.
    fn sync(&mut self, now: Timestamp) {
        let telemetry = if self.speaker().is_up() {
            Telemetry::Sending
        } else {
            Telemetry::Silent
        };
        if self.battery.telemetry() != telemetry {
            self.battery.set_telemetry(now, telemetry);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let state = if n.is_up() {
                ModuleState::Online
            } else {
                ModuleState::Offline
            };
            if self.battery.modules().get(i) != Some(&state) {
                // The index exists: the battery has one module per node.
                let _ = self.battery.set_module(now, i as u16, state);
            }
        }
        let capacity = self.battery.config().identity.capacity_ah;
        let mut info = self.product.to_le_bytes().to_vec();
        info.extend_from_slice(&self.lowest_version());
        info.extend_from_slice(&capacity.to_le_bytes());
        info.push(self.speaker().id().get());
        info.push(self.nodes.len() as u8);
        // Eight bytes: always accepted.
        let _ = self.battery.set_product_info(&info);
    }
}
