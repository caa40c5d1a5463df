//! GPU nodes: what their agents report (inventory, interconnect, health), what operators
//! decide (cordons, drains), what the leader observes (lost, recovered), and the
//! host-network port leases allocated on them.
//!
//! Everything here is part of the fold of the log: a node's view is rebuilt from its
//! events. Heartbeats are not events; the leader turns silence into `NodeLost`.

use std::collections::{BTreeMap, BTreeSet};

/// One GPU as the agent found it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_mib: u64,
    pub compute_capability: String,
    /// -1 when unknown.
    pub numa_node: i32,
    pub cpu_affinity: String,
    pub mig_enabled: bool,
    pub mig_instances: u32,
}

/// How two GPUs reach each other over PCIe, nearest first (`nvidia-smi topo -m` legend).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum PcieLevel {
    #[default]
    Unknown,
    /// Two GPUs on one board.
    SameBoard,
    /// `PIX`: through one PCIe switch.
    SingleSwitch,
    /// `PXB`: through several PCIe switches, not the host bridge.
    MultipleSwitches,
    /// `PHB`: through a PCIe host bridge.
    HostBridge,
    /// `NODE`: across host bridges within one NUMA node.
    SameNuma,
    /// `SYS`: across the inter-socket link.
    CrossSocket,
}

impl PcieLevel {
    /// The `nvidia-smi topo -m` abbreviation.
    pub fn legend(self) -> &'static str {
        match self {
            PcieLevel::Unknown => "?",
            PcieLevel::SameBoard => "BRD",
            PcieLevel::SingleSwitch => "PIX",
            PcieLevel::MultipleSwitches => "PXB",
            PcieLevel::HostBridge => "PHB",
            PcieLevel::SameNuma => "NODE",
            PcieLevel::CrossSocket => "SYS",
        }
    }
}

/// The interconnect between the GPUs with indexes `a < b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuLink {
    pub a: u32,
    pub b: u32,
    /// Active NVLinks between the two (0: none).
    pub nvlinks: u32,
    pub pcie: PcieLevel,
}

impl GpuLink {
    /// The `nvidia-smi topo -m` cell: `NV#` when NVLinked, else the PCIe level.
    pub fn legend(&self) -> String {
        if self.nvlinks > 0 {
            format!("NV{}", self.nvlinks)
        } else {
            self.pcie.legend().to_string()
        }
    }
}

/// What an agent registers for its node.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInventory {
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuInfo>,
    pub links: Vec<GpuLink>,
    /// Host-network ports leases come from, inclusive.
    pub port_range_start: u32,
    pub port_range_end: u32,
    pub driver_version: String,
    pub cuda_version: String,
    pub gpu_provider: String,
    /// Where the node's replicas are reached.
    pub address: String,
    /// host:port of the agent's log service.
    pub agent_endpoint: String,
}

impl NodeInventory {
    pub fn gpu(&self, uuid: &str) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.uuid == uuid)
    }

    pub fn link(&self, a: u32, b: u32) -> Option<&GpuLink> {
        let (a, b) = (a.min(b), a.max(b));
        self.links.iter().find(|l| l.a == a && l.b == b)
    }
}

/// One GPU's health.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuHealth {
    pub uuid: String,
    pub healthy: bool,
    pub reason: String,
    /// The XID behind an unhealthy verdict (0: not an XID).
    pub xid: u32,
}

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

/// Default port range leases come from.
pub const DEFAULT_PORT_RANGE: (u32, u32) = (20000, 29999);
/// Lease lifetime when the request names none.
pub const DEFAULT_LEASE_TTL_MS: u64 = 60_000;
/// Longest lease lifetime.
pub const MAX_LEASE_TTL_MS: u64 = 24 * 3600 * 1000;
/// Most ports one holder leases at once.
pub const MAX_PORTS_PER_LEASE: u32 = 64;
/// Most GPUs on one node.
pub const MAX_GPUS: usize = 64;
