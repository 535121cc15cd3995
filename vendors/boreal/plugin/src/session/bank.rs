//! The nodes of a bank as a session sees them: which to update, in which order, and where
//! each stands.

use crate::version::Bcd;
use bmsfw_plugin_api::{ErrorCode, Failure, ModuleProgress, ModuleState, SessionOptions};
use bmsfw_protocols::canopen::NodeId;
use std::fmt::Write as _;

use crate::protocol::{FIRST_NODE, LAST_NODE};

/// Which nodes a session updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every Boreal node of the bank, found by their heartbeats; nodes that already run
    /// the package's version are left alone.
    Bank,
    /// These nodes, each updated even when it runs the package's version already; the
    /// bank's other nodes are found and identified too, and left alone.
    Named(Vec<NodeId>),
}

impl Selection {
    /// The selection of the engine's options: `node_id` and `modules` name node ids;
    /// neither means the whole bank.
    pub fn from_options(options: &SessionOptions) -> Result<Selection, Failure> {
        let mut ids: Vec<u16> = options.modules.iter().copied().collect();
        if let Some(id) = options.node_id.into_option() {
            ids.push(u16::from(id));
        }
        if ids.is_empty() {
            return Ok(Selection::Bank);
        }
        ids.sort_unstable();
        ids.dedup();
        let nodes = ids
            .iter()
            .map(|&id| {
                u8::try_from(id)
                    .ok()
                    .filter(|id| (FIRST_NODE..=LAST_NODE).contains(id))
                    .and_then(NodeId::new)
                    .ok_or_else(|| {
                        Failure::new(
                            ErrorCode::TRANSFER_FAILED,
                            format!(
                                "the update names node {id}; Boreal node ids are {FIRST_NODE} \
                                 to {LAST_NODE}"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection::Named(nodes))
    }
}

impl Selection {
    /// Whether node `id` is named (`false` for the whole bank).
    pub fn names(&self, id: NodeId) -> bool {
        matches!(self, Selection::Named(ids) if ids.contains(&id))
    }
}

/// What a node said about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// 0x1018:01.
    pub vendor: Option<u32>,
    /// 0x1018:02.
    pub product: Option<u32>,
    /// 0x100A.
    pub version: Option<Bcd>,
    /// 0x2F10:01.
    pub bootloader: Option<Bcd>,
    /// 0x2F10:02.
    pub caps: Option<u8>,
}

/// One node of the session.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its node-id.
    pub id: NodeId,
    /// What it said about itself.
    pub identity: Identity,
    /// Where its update stands.
    pub state: ModuleState,
    /// Image bytes it confirmed.
    pub acknowledged: u64,
}

impl Node {
    /// A node not asked anything yet.
    pub fn new(id: NodeId) -> Node {
        Node {
            id,
            identity: Identity::default(),
            state: ModuleState::PENDING,
            acknowledged: 0,
        }
    }

    /// The node in the contract's form.
    pub fn progress(&self) -> ModuleProgress {
        ModuleProgress {
            index: u16::from(self.id.get()),
            state: self.state,
            version: self.identity.version.map(Bcd::firmware_version).into(),
        }
    }
}

/// `node 1 done (2.15), node 3 pending (2.10)`: the nodes other than `except`.
pub fn summary(nodes: &[Node], except: NodeId) -> String {
    let mut out = String::new();
    for n in nodes.iter().filter(|n| n.id != except) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let state = n.state.name().unwrap_or("unknown").to_ascii_lowercase();
        let _ = write!(out, "{} {state}", n.id);
        if let Some(v) = n.identity.version {
            let _ = write!(out, " ({v})");
        }
    }
    out
}

/// `node 1: 2.15, node 2: 2.10`.
pub fn versions(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| match n.identity.version {
            Some(v) => format!("{}: {v}", n.id),
            None => format!("{}: unknown", n.id),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::abi_stable::std_types::{ROption, RVec};

    fn id(n: u8) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn options_name_nodes_or_the_whole_bank() {
        assert_eq!(
            Selection::from_options(&SessionOptions::default()).unwrap(),
            Selection::Bank
        );
        let options = SessionOptions {
            node_id: ROption::RSome(4),
            modules: RVec::from(vec![2, 4]),
        };
        assert_eq!(
            Selection::from_options(&options).unwrap(),
            Selection::Named(vec![id(2), id(4)])
        );
        for bad in [0u16, 17, 300] {
            let options = SessionOptions {
                node_id: ROption::RNone,
                modules: RVec::from(vec![bad]),
            };
            let e = Selection::from_options(&options).unwrap_err();
            assert!(e.message.contains(&format!("node {bad}")), "{e}");
        }
    }

    #[test]
    fn summaries_name_each_other_node_with_its_state_and_version() {
        let mut a = Node::new(id(1));
        a.state = ModuleState::DONE;
        a.identity.version = Some(Bcd([0x02, 0x15]));
        let b = Node::new(id(2));
        let mut c = Node::new(id(3));
        c.identity.version = Some(Bcd([0x02, 0x10]));
        let nodes = [a, b, c];
        assert_eq!(
            summary(&nodes, id(2)),
            "node 1 done (2.15), node 3 pending (2.10)"
        );
        assert_eq!(
            versions(&nodes),
            "node 1: 2.15, node 2: unknown, node 3: 2.10"
        );
        let p = nodes[0].progress();
        assert_eq!((p.index, p.state), (1, ModuleState::DONE));
        assert_eq!(p.version.into_option().unwrap().display.as_str(), "2.15");
    }
}
