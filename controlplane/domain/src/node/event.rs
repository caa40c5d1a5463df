//! What happened to a node.

use super::inventory::{GpuHealth, NodeInventory};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Registered {
        inventory: NodeInventory,
        token_digest: Vec<u8>,
    },
    Lost {
        last_heartbeat_ms: i64,
        grace_ms: u64,
    },
    Recovered,
    GpuHealthChanged {
        health: GpuHealth,
    },
    /// `gpu_uuid` empty: the whole node.
    Cordoned {
        gpu_uuid: String,
        reason: String,
        drain: bool,
    },
    Uncordoned {
        gpu_uuid: String,
    },
    PortLeaseGranted {
        holder: String,
        ports: Vec<u32>,
        expires_ms: i64,
    },
    PortLeasesRenewed {
        expires_ms: i64,
    },
    /// `reason`: "released" or "expired".
    PortLeaseReleased {
        holder: String,
        ports: Vec<u32>,
        reason: String,
    },
    PortLeaseViolation {
        port: u32,
        holder: String,
        pid: u32,
        process: String,
    },
}

impl NodeEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeEvent::Registered { .. } => "node_registered",
            NodeEvent::Lost { .. } => "node_lost",
            NodeEvent::Recovered => "node_recovered",
            NodeEvent::GpuHealthChanged { .. } => "gpu_health_changed",
            NodeEvent::Cordoned { .. } => "node_cordoned",
            NodeEvent::Uncordoned { .. } => "node_uncordoned",
            NodeEvent::PortLeaseGranted { .. } => "port_lease_granted",
            NodeEvent::PortLeasesRenewed { .. } => "port_leases_renewed",
            NodeEvent::PortLeaseReleased { .. } => "port_lease_released",
            NodeEvent::PortLeaseViolation { .. } => "port_lease_violation",
        }
    }
}
