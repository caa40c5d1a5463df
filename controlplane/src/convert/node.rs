//! Node values: inventory, GPU health, the PCIe level of a link.

use cairn_domain::node::{GpuHealth, GpuInfo, GpuLink, NodeInventory, PcieLevel};
use cairn_proto as pb;

use super::{FromPb, Malformed, ToPb};

impl ToPb for GpuHealth {
    type Pb = pb::GpuHealth;
    fn to_pb(&self) -> pb::GpuHealth {
        pb::GpuHealth {
            uuid: self.uuid.clone(),
            healthy: self.healthy,
            reason: self.reason.clone(),
            xid: self.xid,
        }
    }
}

impl FromPb for GpuHealth {
    type Pb = pb::GpuHealth;
    fn from_pb(h: &pb::GpuHealth) -> Result<Self, Malformed> {
        Ok(GpuHealth {
            uuid: h.uuid.clone(),
            healthy: h.healthy,
            reason: h.reason.clone(),
            xid: h.xid,
        })
    }
}

impl ToPb for PcieLevel {
    type Pb = pb::PcieLevel;
    fn to_pb(&self) -> pb::PcieLevel {
        match self {
            PcieLevel::Unknown => pb::PcieLevel::Unspecified,
            PcieLevel::SameBoard => pb::PcieLevel::SameBoard,
            PcieLevel::SingleSwitch => pb::PcieLevel::SingleSwitch,
            PcieLevel::MultipleSwitches => pb::PcieLevel::MultipleSwitches,
            PcieLevel::HostBridge => pb::PcieLevel::HostBridge,
            PcieLevel::SameNuma => pb::PcieLevel::SameNuma,
            PcieLevel::CrossSocket => pb::PcieLevel::CrossSocket,
        }
    }
}

impl FromPb for PcieLevel {
    type Pb = pb::PcieLevel;
    fn from_pb(l: &pb::PcieLevel) -> Result<Self, Malformed> {
        Ok(match l {
            pb::PcieLevel::Unspecified => PcieLevel::Unknown,
            pb::PcieLevel::SameBoard => PcieLevel::SameBoard,
            pb::PcieLevel::SingleSwitch => PcieLevel::SingleSwitch,
            pb::PcieLevel::MultipleSwitches => PcieLevel::MultipleSwitches,
            pb::PcieLevel::HostBridge => PcieLevel::HostBridge,
            pb::PcieLevel::SameNuma => PcieLevel::SameNuma,
            pb::PcieLevel::CrossSocket => PcieLevel::CrossSocket,
        })
    }
}

impl ToPb for NodeInventory {
    type Pb = pb::NodeInventory;
    fn to_pb(&self) -> pb::NodeInventory {
        pb::NodeInventory {
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
            gpus: self
                .gpus
                .iter()
                .map(|g| pb::GpuInfo {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    pci_bus_id: g.pci_bus_id.clone(),
                    memory_total_mib: g.memory_total_mib,
                    compute_capability: g.compute_capability.clone(),
                    numa_node: g.numa_node,
                    cpu_affinity: g.cpu_affinity.clone(),
                    mig_enabled: g.mig_enabled,
                    mig_instances: g.mig_instances,
                })
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| pb::GpuLink {
                    a: l.a,
                    b: l.b,
                    nvlinks: l.nvlinks,
                    pcie: l.pcie.to_pb() as i32,
                })
                .collect(),
            port_range_start: self.port_range_start,
            port_range_end: self.port_range_end,
            driver_version: self.driver_version.clone(),
            cuda_version: self.cuda_version.clone(),
            gpu_provider: self.gpu_provider.clone(),
            address: self.address.clone(),
            agent_endpoint: self.agent_endpoint.clone(),
        }
    }
}

impl FromPb for NodeInventory {
    type Pb = pb::NodeInventory;
    /// Every link's PCIe level must be one the schema knows.
    fn from_pb(inv: &pb::NodeInventory) -> Result<Self, Malformed> {
        let mut problems = Vec::new();
        let mut links = Vec::with_capacity(inv.links.len());
        for (i, l) in inv.links.iter().enumerate() {
            match pb::PcieLevel::try_from(l.pcie) {
                Ok(level) => links.push(GpuLink {
                    a: l.a,
                    b: l.b,
                    nvlinks: l.nvlinks,
                    pcie: PcieLevel::from_pb(&level)?,
                }),
                Err(_) => problems.push(format!("links[{i}].pcie: unknown PCIe level {}", l.pcie)),
            }
        }
        if !problems.is_empty() {
            return Err(Malformed(problems));
        }
        Ok(NodeInventory {
            hostname: inv.hostname.clone(),
            labels: inv.labels.clone(),
            cpu_millis: inv.cpu_millis,
            memory_bytes: inv.memory_bytes,
            gpus: inv
                .gpus
                .iter()
                .map(|g| GpuInfo {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    pci_bus_id: g.pci_bus_id.clone(),
                    memory_total_mib: g.memory_total_mib,
                    compute_capability: g.compute_capability.clone(),
                    numa_node: g.numa_node,
                    cpu_affinity: g.cpu_affinity.clone(),
                    mig_enabled: g.mig_enabled,
                    mig_instances: g.mig_instances,
                })
                .collect(),
            links,
            port_range_start: inv.port_range_start,
            port_range_end: inv.port_range_end,
            driver_version: inv.driver_version.clone(),
            cuda_version: inv.cuda_version.clone(),
            gpu_provider: inv.gpu_provider.clone(),
            address: inv.address.clone(),
            agent_endpoint: inv.agent_endpoint.clone(),
        })
    }
}

/// A required inventory; its problems are prefixed with `field`.
pub(super) fn inventory(
    inv: Option<&pb::NodeInventory>,
    field: &str,
) -> Result<NodeInventory, Malformed> {
    let Some(inv) = inv else {
        return Err(Malformed::one(format!("{field}: required")));
    };
    NodeInventory::from_pb(inv)
        .map_err(|m| Malformed(m.0.into_iter().map(|p| format!("{field}.{p}")).collect()))
}
