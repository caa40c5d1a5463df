//! What an agent reports about its node: inventory (GPUs, memory, PCI bus, NUMA/CPU
//! affinity, MIG), pairwise interconnect, GPU health, and the node's limits.

use std::collections::{BTreeMap, BTreeSet};

use crate::validate;

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

/// Every problem with an inventory an agent registers.
pub fn inventory_problems(field: &str, inv: &NodeInventory, p: &mut Vec<String>) {
    validate::label_problems(&format!("{field}.labels"), &inv.labels, p);
    if inv.hostname.len() > 253 {
        p.push(format!("{field}.hostname: longer than 253 characters"));
    }
    if inv.gpus.len() > MAX_GPUS {
        p.push(format!(
            "{field}.gpus: {} GPUs, at most {}",
            inv.gpus.len(),
            MAX_GPUS
        ));
    }
    let (lo, hi) = (inv.port_range_start, inv.port_range_end);
    if lo == 0 || hi > 65535 || lo > hi {
        p.push(format!(
            "{field}.port_range: {lo}-{hi} is not a range within 1-65535"
        ));
    }
    let mut uuids = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for (i, g) in inv.gpus.iter().enumerate() {
        if g.uuid.is_empty() || g.uuid.len() > validate::MAX_ID_LEN {
            p.push(format!(
                "{field}.gpus[{i}].uuid: must be 1-{} bytes",
                validate::MAX_ID_LEN
            ));
        }
        if !uuids.insert(g.uuid.as_str()) {
            p.push(format!(
                "{field}.gpus[{i}].uuid: {:?} appears twice",
                g.uuid
            ));
        }
        if !indexes.insert(g.index) {
            p.push(format!(
                "{field}.gpus[{i}].index: {} appears twice",
                g.index
            ));
        }
    }
    for (i, l) in inv.links.iter().enumerate() {
        if l.a >= l.b || !indexes.contains(&l.a) || !indexes.contains(&l.b) {
            p.push(format!(
                "{field}.links[{i}]: {}-{} is not a pair of known GPU indexes a < b",
                l.a, l.b
            ));
        }
    }
}
