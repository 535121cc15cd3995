//! The ground truth of a simulated battery: what its flash really holds, read from the
//! vendor's model, whatever the battery says on the bus.
//!
//! Each unit of the battery (a BMS, a node of a bank) is read as a fingerprint of what it
//! would boot: the package in the active slot (Aurora, the template), the image in the active slot of
//! each node (Boreal), the version the master runs (Coral, whose model keeps no image
//! bytes for the running firmware). The campaign compares it with the fingerprint before
//! the update and with the one the package installs.

use bmsfw_sim::registry::VendorControls;
use std::sync::Arc;

/// What each unit would boot, by the unit's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truth {
    /// (unit, fingerprint of what it would boot).
    pub units: Vec<(String, Vec<u8>)>,
    /// Whether the BMS (every unit) runs its firmware now, rather than being off,
    /// restarting or in its bootloader.
    pub running: bool,
}

/// Reads the truth of a battery of `vendor` from its model's controls.
pub fn read(vendor: &str, controls: &VendorControls) -> Option<Truth> {
    match vendor {
        "aurora" => {
            let h = Arc::clone(controls)
                .downcast::<aurora_sim::AuroraHandle>()
                .ok()?;
            let status = h.status();
            Some(Truth {
                units: vec![("bms".into(), h.slot_package(status.active_slot))],
                running: matches!(status.stage, aurora_sim::Stage::Running),
            })
        }
        "boreal" => {
            let h = Arc::clone(controls)
                .downcast::<boreal_sim::BankHandle>()
                .ok()?;
            let nodes = h.status();
            Some(Truth {
                running: nodes
                    .iter()
                    .all(|n| matches!(n.stage, boreal_sim::node::NodeStage::Running)),
                units: nodes
                    .iter()
                    .map(|n| (format!("node {}", n.id), h.slot_image(n.id, n.active_slot)))
                    .collect(),
            })
        }
        "template" => {
            let h = Arc::clone(controls)
                .downcast::<template_sim::TemplateHandle>()
                .ok()?;
            let status = h.status();
            Some(Truth {
                units: vec![("bms".into(), h.slot_package(status.active_slot))],
                running: matches!(status.stage, template_sim::Stage::Running),
            })
        }
        "coral" => {
            let h = Arc::clone(controls)
                .downcast::<coral_sim::CoralHandle>()
                .ok()?;
            let status = h.status();
            Some(Truth {
                units: vec![("master".into(), status.running_version.to_vec())],
                running: matches!(status.stage, coral_sim::Stage::Running),
            })
        }
        _ => None,
    }
}
