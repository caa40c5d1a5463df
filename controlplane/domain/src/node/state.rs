//! A node as the log tells it: its inventory, health, cordons, leases and what placed
//! jobs hold on it.

use std::collections::{BTreeMap, BTreeSet};

use super::inventory::{GpuHealth, NodeInventory};

/// GPU nodes, by name.
pub type Nodes = BTreeMap<String, NodeState>;

/// Ports leased to one holder on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLease {
    pub holder: String,
    pub expires_ms: i64,
}

/// A cordon on a whole node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cordon {
    pub reason: String,
    pub drain: bool,
}

/// A node as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub inventory: NodeInventory,
    pub token_digest: Vec<u8>,
    pub registered_ms: i64,
    pub lost: bool,
    pub cordon: Option<Cordon>,
    pub cordoned_gpus: BTreeSet<String>,
    /// Only GPUs whose health was ever reported unhealthy have an entry; none = healthy.
    pub health: BTreeMap<String, GpuHealth>,
    /// By port.
    pub leases: BTreeMap<u32, PortLease>,
    pub violations: u64,
    /// GPUs placed jobs hold: uuid → job name.
    pub allocated_gpus: BTreeMap<String, String>,
    pub allocated_cpu_millis: i64,
    pub allocated_memory_mib: i64,
}

impl NodeState {
    /// The current health of a GPU (healthy unless reported otherwise).
    pub fn gpu_health(&self, uuid: &str) -> GpuHealth {
        self.health.get(uuid).cloned().unwrap_or_else(|| GpuHealth {
            uuid: uuid.to_string(),
            healthy: true,
            reason: String::new(),
            xid: 0,
        })
    }

    /// Ports leased to `holder`, ascending.
    pub fn ports_of(&self, holder: &str) -> Vec<u32> {
        self.leases
            .iter()
            .filter(|(_, l)| l.holder == holder)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The lowest `count` ports of the range that are not leased, or how many are free.
    pub fn free_ports(&self, count: usize) -> Result<Vec<u32>, usize> {
        let mut free = Vec::with_capacity(count);
        let (lo, hi) = (
            self.inventory.port_range_start,
            self.inventory.port_range_end,
        );
        let mut leased = self.leases.range(lo..=hi).map(|(p, _)| *p).peekable();
        for port in lo..=hi {
            if leased.peek() == Some(&port) {
                leased.next();
                continue;
            }
            free.push(port);
            if free.len() == count {
                return Ok(free);
            }
        }
        Err(free.len())
    }
}
