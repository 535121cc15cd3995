//! One Boreal BMS as a CANopen node: its SDO server, its heartbeat, its restarts and
//! power, sans-IO.

use crate::dictionary::{NodeDictionary, StartRequest};
use crate::flash::{BootOutcome, TrialBoot};
use crate::protocol::{HEARTBEAT_BASE, NMT_BOOT_UP, NMT_OPERATIONAL};
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use bmsfw_protocols::canopen::{NodeId, SdoChannel, SdoServer, SdoServerConfig};

/// Where a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStage {
    /// The firmware runs: heartbeats and SDO answers.
    Running,
    /// A start was confirmed: the confirmation goes out, then the node restarts.
    ShuttingDown,
    /// Restarting, silent until `until`.
    Restarting {
        /// When the firmware runs again (or the rollback begins).
        until: Timestamp,
        /// What the restart does then.
        step: RestartStep,
    },
    /// No power.
    Off,
}

/// What a restart does when its time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartStep {
    /// Boot: a pending image runs on trial.
    Boot,
    /// The image on trial did not start; the previous one boots.
    Rollback,
}

/// One node of a bank. Feed it frames with [`handle_frame`](Self::handle_frame), take its
/// frames from [`poll_transmit`](Self::poll_transmit) until `None`, come back at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct BorealNode {
    id: NodeId,
    server: SdoServer<NodeDictionary>,
    stage: NodeStage,
    next_heartbeat: Timestamp,
    boot_up_due: bool,
    boots: u32,
}

fn heartbeat_id(node: NodeId) -> CanId {
    match CanId::standard(HEARTBEAT_BASE + u16::from(node.get())) {
        Some(id) => id,
        None => unreachable!("0x700 + 127 is an 11-bit identifier"),
    }
}

impl BorealNode {
    /// A running node `id` over `dictionary`; its first heartbeat goes out at `first`.
    pub fn new(id: NodeId, dictionary: NodeDictionary, first: Timestamp) -> BorealNode {
        BorealNode {
            id,
            server: SdoServer::new(
                SdoChannel::for_node(id),
                SdoServerConfig::default(),
                dictionary,
            ),
            stage: NodeStage::Running,
            next_heartbeat: first,
            boot_up_due: false,
            boots: 0,
        }
    }

    /// The node-id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the node is.
    pub fn stage(&self) -> NodeStage {
        self.stage
    }

    /// Whether it answers (running or sending its last confirmation).
    pub fn is_up(&self) -> bool {
        matches!(self.stage, NodeStage::Running | NodeStage::ShuttingDown)
    }

    /// Boots completed since the node was built.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// The object dictionary (flash, identity).
    pub fn dictionary(&self) -> &NodeDictionary {
        self.server.dictionary()
    }

    /// The object dictionary, to arm faults.
    pub fn dictionary_mut(&mut self) -> &mut NodeDictionary {
        self.server.dictionary_mut()
    }

    /// Cuts the power at `now`: silent, RAM lost, flash kept.
    pub fn power_cut(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage == NodeStage::Off {
            return;
        }
        self.lose_ram();
        self.stage = NodeStage::Off;
    }

    /// Restores the power at `now`: the node boots.
    pub fn power_restore(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage == NodeStage::Off {
            self.begin_restart(now);
        }
    }

    /// Feeds a frame received at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.advance(now);
        if self.is_up() && frame.id() == self.server.channel().request {
            self.server.handle_frame(now, frame);
            self.note_start();
        }
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The next frame at `now`: the boot-up message, a due heartbeat, SDO answers.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if !self.is_up() {
            return None;
        }
        if std::mem::take(&mut self.boot_up_due) {
            return CanFrame::new(heartbeat_id(self.id), &[NMT_BOOT_UP]);
        }
        if now >= self.next_heartbeat {
            let period = self.dictionary().timing.heartbeat;
            // The next beat follows the schedule, not the late send.
            while self.next_heartbeat <= now {
                self.next_heartbeat = self.next_heartbeat + period;
            }
            return CanFrame::new(heartbeat_id(self.id), &[NMT_OPERATIONAL]);
        }
        match self.server.poll_transmit(now) {
            Some(frame) => Some(frame),
            None => {
                if self.stage == NodeStage::ShuttingDown {
                    self.begin_restart(now);
                }
                None
            }
        }
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.stage {
            NodeStage::Running | NodeStage::ShuttingDown => {
                let mut next = self.next_heartbeat;
                if let Some(t) = self.server.poll_timeout() {
                    next = next.min(t);
                }
                Some(next)
            }
            NodeStage::Restarting { until, .. } => Some(until),
            NodeStage::Off => None,
        }
    }

    fn advance(&mut self, now: Timestamp) {
        if let NodeStage::Restarting { until, step } = self.stage {
            if now < until {
                return;
            }
            self.finish_restart(until, step);
            if matches!(self.stage, NodeStage::Restarting { .. }) {
                return self.advance(now);
            }
        }
        if self.is_up() {
            self.server.handle_timeout(now);
            self.note_start();
        }
    }

    fn note_start(&mut self) {
        if self.stage == NodeStage::Running
            && self.server.dictionary().start == StartRequest::Requested
        {
            self.stage = NodeStage::ShuttingDown;
        }
    }

    fn lose_ram(&mut self) {
        self.server.restart();
        self.server.dictionary_mut().lose_ram();
        self.boot_up_due = false;
    }

    fn begin_restart(&mut self, now: Timestamp) {
        self.lose_ram();
        let restart = self.dictionary().timing.restart;
        self.stage = NodeStage::Restarting {
            until: now + restart,
            step: RestartStep::Boot,
        };
        tracing::debug!(node = %self.id, ?now, "boreal node: restarting");
    }

    fn finish_restart(&mut self, at: Timestamp, step: RestartStep) {
        let dict = self.server.dictionary_mut();
        if step == RestartStep::Boot {
            let trial = if std::mem::take(&mut dict.faults.fail_next_boot) {
                TrialBoot::Fails
            } else {
                TrialBoot::Starts
            };
            if dict.flash.boot(trial) == BootOutcome::RolledBack {
                tracing::debug!(node = %self.id, "boreal node: new firmware did not start");
                let rollback = dict.timing.rollback;
                self.stage = NodeStage::Restarting {
                    until: at + rollback,
                    step: RestartStep::Rollback,
                };
                return;
            }
        }
        self.boots += 1;
        self.boot_up_due = true;
        self.next_heartbeat = at + self.dictionary().timing.heartbeat;
        self.stage = NodeStage::Running;
        tracing::debug!(
            node = %self.id,
            version = ?self.dictionary().flash.running().version,
            "boreal node: firmware running"
        );
    }
}
