//! Commands about nodes: what agents report, what operators decide, what the leader
//! observes, and port leases.

use super::inventory::{self, GpuHealth, NodeInventory, MAX_GPUS, MAX_LEASE_TTL_MS};
use crate::validate::{self, MAX_ID_LEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCommand {
    /// An agent registers its node. `token_digest` is the SHA-256 of the token the
    /// request carried, set by the server's edge.
    Register {
        node: String,
        inventory: Box<NodeInventory>,
        token_digest: Vec<u8>,
    },
    /// An agent's full view of its GPUs' health.
    ReportGpuHealth {
        node: String,
        gpus: Vec<GpuHealth>,
        token_digest: Vec<u8>,
    },
    /// The leader heard nothing from the node for longer than `grace_ms`.
    MarkLost {
        node: String,
        last_heartbeat_ms: i64,
        grace_ms: u64,
    },
    MarkRecovered {
        node: String,
    },
    /// Cordon the node (`gpu_uuid` None) or one GPU.
    Cordon {
        node: String,
        gpu_uuid: Option<String>,
        reason: String,
        drain: bool,
    },
    Uncordon {
        node: String,
        gpu_uuid: Option<String>,
    },
    AcquirePortLeases {
        node: String,
        holder: String,
        count: u32,
        ttl_ms: u64,
    },
    RenewPortLeases {
        node: String,
        ttl_ms: u64,
        token_digest: Vec<u8>,
    },
    ReleasePortLeases {
        node: String,
        holder: String,
    },
    /// Release every lease that expired before the command's timestamp.
    ExpirePortLeases,
    ReportPortViolation {
        node: String,
        port: u32,
        pid: u32,
        process: String,
        token_digest: Vec<u8>,
    },
}

impl NodeCommand {
    /// The node the command is about, if it has a single target.
    pub fn target(&self) -> Option<&str> {
        match self {
            NodeCommand::Register { node, .. }
            | NodeCommand::ReportGpuHealth { node, .. }
            | NodeCommand::MarkLost { node, .. }
            | NodeCommand::MarkRecovered { node }
            | NodeCommand::Cordon { node, .. }
            | NodeCommand::Uncordon { node, .. }
            | NodeCommand::AcquirePortLeases { node, .. }
            | NodeCommand::RenewPortLeases { node, .. }
            | NodeCommand::ReleasePortLeases { node, .. }
            | NodeCommand::ReportPortViolation { node, .. } => Some(node),
            NodeCommand::ExpirePortLeases => None,
        }
    }

    /// Commands only the leader proposes; clients may not submit them.
    pub fn leader_only(&self) -> bool {
        match self {
            NodeCommand::MarkLost { .. }
            | NodeCommand::MarkRecovered { .. }
            | NodeCommand::ExpirePortLeases => true,
            NodeCommand::Register { .. }
            | NodeCommand::ReportGpuHealth { .. }
            | NodeCommand::Cordon { .. }
            | NodeCommand::Uncordon { .. }
            | NodeCommand::AcquirePortLeases { .. }
            | NodeCommand::RenewPortLeases { .. }
            | NodeCommand::ReleasePortLeases { .. }
            | NodeCommand::ReportPortViolation { .. } => false,
        }
    }

    /// Every problem with the command's fields.
    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            NodeCommand::Register {
                node, inventory, ..
            } => {
                validate::node_name_problems("register_node.node", node, p);
                inventory::inventory_problems("register_node.inventory", inventory, p);
            }
            NodeCommand::ReportGpuHealth { node, gpus, .. } => {
                validate::node_name_problems("report_gpu_health.node", node, p);
                if gpus.len() > MAX_GPUS {
                    p.push(format!(
                        "report_gpu_health.gpus: {} entries, at most {MAX_GPUS}",
                        gpus.len()
                    ));
                }
                for (i, g) in gpus.iter().enumerate() {
                    validate::short_text_problems(
                        &format!("report_gpu_health.gpus[{i}].reason"),
                        &g.reason,
                        p,
                    );
                }
            }
            NodeCommand::MarkLost { node, .. } | NodeCommand::MarkRecovered { node } => {
                validate::node_name_problems("node", node, p)
            }
            NodeCommand::Cordon { node, reason, .. } => {
                validate::node_name_problems("cordon_node.node", node, p);
                validate::short_text_problems("cordon_node.reason", reason, p);
            }
            NodeCommand::Uncordon { node, .. } => {
                validate::node_name_problems("uncordon_node.node", node, p)
            }
            NodeCommand::AcquirePortLeases {
                node,
                holder,
                count,
                ttl_ms,
            } => {
                validate::node_name_problems("acquire_port_leases.node", node, p);
                validate::holder_problems("acquire_port_leases.holder", holder, p);
                if *count == 0 || *count > inventory::MAX_PORTS_PER_LEASE {
                    p.push(format!(
                        "acquire_port_leases.count: must be 1..={}",
                        inventory::MAX_PORTS_PER_LEASE
                    ));
                }
                if *ttl_ms > MAX_LEASE_TTL_MS {
                    p.push(format!(
                        "acquire_port_leases.ttl_ms: at most {MAX_LEASE_TTL_MS}"
                    ));
                }
            }
            NodeCommand::RenewPortLeases { node, ttl_ms, .. } => {
                validate::node_name_problems("renew_port_leases.node", node, p);
                if *ttl_ms > MAX_LEASE_TTL_MS {
                    p.push(format!(
                        "renew_port_leases.ttl_ms: at most {MAX_LEASE_TTL_MS}"
                    ));
                }
            }
            NodeCommand::ReleasePortLeases { node, holder } => {
                validate::node_name_problems("release_port_leases.node", node, p);
                validate::holder_problems("release_port_leases.holder", holder, p);
            }
            NodeCommand::ExpirePortLeases => {}
            NodeCommand::ReportPortViolation {
                node,
                port,
                process,
                ..
            } => {
                validate::node_name_problems("report_port_violation.node", node, p);
                if *port == 0 || *port > 65535 {
                    p.push("report_port_violation.port: must be 1..=65535".into());
                }
                if process.len() > MAX_ID_LEN {
                    p.push(format!(
                        "report_port_violation.process: longer than {MAX_ID_LEN} bytes"
                    ));
                }
            }
        }
    }
}
