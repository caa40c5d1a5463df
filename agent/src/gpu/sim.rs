//! Simulated GPUs: a topology from a preset or a JSON file, and faults injected at run
//! time through a control file the provider re-reads on every observation.
//!
//! Presets:
//! - `nvswitch-8`: 8 GPUs, every pair NV18 through NVSwitch, two NUMA nodes of four;
//! - `cube-mesh-8`: 8 GPUs in the hybrid cube-mesh of a DGX-1 (pairs with 1 or 2
//!   NVLinks, cross-socket pairs without NVLink are `SYS`);
//! - `pcie-4`: 4 GPUs without NVLink, two PCIe switches of two GPUs, one per socket.
//!
//! The fault file is JSON: `{"GPU-…": {"xid": 79}, "GPU-…": {"vanished": true}}`, with
//! the keys of [`Fault`]. A GPU missing from the file is fine; removing its entry
//! recovers it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use cairn_proto as pb;
use serde::{Deserialize, Serialize};

use super::provider::{GpuError, GpuProvider, Inventory, Observation};

pub const PRESETS: [&str; 3] = ["nvswitch-8", "cube-mesh-8", "pcie-4"];

/// A topology file: the GPUs and every pair's link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    pub gpu_model: String,
    pub memory_mib: u64,
    pub compute_capability: String,
    /// NUMA node of each GPU; the list's length is the GPU count.
    pub numa: Vec<i32>,
    /// CPU list of each NUMA node.
    pub numa_cpus: Vec<String>,
    /// `[a, b, nvlinks, "PIX"|"PXB"|"PHB"|"NODE"|"SYS"]` for pairs a < b; unlisted
    /// pairs are `SYS` without NVLink.
    pub links: Vec<(u32, u32, u32, String)>,
}

/// A fault injected into one simulated GPU.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    pub xid: Option<u32>,
    pub ecc_double_bit: u64,
    pub ecc_single_bit: u64,
    pub retired_pages_pending: bool,
    pub thermal_throttling: bool,
    pub power_throttling: bool,
    pub vanished: bool,
}

pub struct SimProvider {
    topology: Topology,
    /// A uuid prefix unique to this node, so simulated GPUs differ between nodes.
    uuid_seed: String,
    faults: Option<PathBuf>,
    /// When each injected XID was first seen (an XID is an event: it ages).
    xid_seen: BTreeMap<String, (u32, Instant)>,
}

fn pcie(level: &str) -> Result<pb::PcieLevel, GpuError> {
    Ok(match level {
        "BRD" => pb::PcieLevel::SameBoard,
        "PIX" => pb::PcieLevel::SingleSwitch,
        "PXB" => pb::PcieLevel::MultipleSwitches,
        "PHB" => pb::PcieLevel::HostBridge,
        "NODE" => pb::PcieLevel::SameNuma,
        "SYS" => pb::PcieLevel::CrossSocket,
        other => {
            return Err(GpuError::Sim(format!(
                "unknown PCIe level {other:?} (BRD, PIX, PXB, PHB, NODE, SYS)"
            )))
        }
    })
}

/// A built-in topology.
pub fn preset(name: &str) -> Option<Topology> {
    let two_sockets = vec!["0-31".to_string(), "32-63".to_string()];
    match name {
        "nvswitch-8" => {
            let mut links = Vec::new();
            for a in 0..8u32 {
                for b in a + 1..8 {
                    let level = if a / 4 == b / 4 { "NODE" } else { "SYS" };
                    links.push((a, b, 18, level.to_string()));
                }
            }
            Some(Topology {
                name: name.into(),
                gpu_model: "NVIDIA H100 80GB HBM3 (simulated)".into(),
                memory_mib: 81559,
                compute_capability: "9.0".into(),
                numa: vec![0, 0, 0, 0, 1, 1, 1, 1],
                numa_cpus: two_sockets,
                links,
            })
        }
        "cube-mesh-8" => {
            // The DGX-1 hybrid cube-mesh as `nvidia-smi topo -m` shows it.
            let nv: [(u32, u32, u32); 16] = [
                (0, 1, 1),
                (0, 2, 1),
                (0, 3, 2),
                (0, 4, 2),
                (1, 2, 2),
                (1, 3, 1),
                (1, 5, 2),
                (2, 3, 2),
                (2, 6, 1),
                (3, 7, 1),
                (4, 5, 1),
                (4, 6, 1),
                (4, 7, 2),
                (5, 6, 2),
                (5, 7, 1),
                (6, 7, 2),
            ];
            let mut links = Vec::new();
            for a in 0..8u32 {
                for b in a + 1..8 {
                    let n = nv
                        .iter()
                        .find(|(x, y, _)| *x == a && *y == b)
                        .map_or(0, |l| l.2);
                    let level = if a / 4 != b / 4 {
                        "SYS"
                    } else if a / 2 == b / 2 {
                        "PIX"
                    } else {
                        "PHB"
                    };
                    links.push((a, b, n, level.to_string()));
                }
            }
            Some(Topology {
                name: name.into(),
                gpu_model: "Tesla V100-SXM2-32GB (simulated)".into(),
                memory_mib: 32768,
                compute_capability: "7.0".into(),
                numa: vec![0, 0, 0, 0, 1, 1, 1, 1],
                numa_cpus: two_sockets,
                links,
            })
        }
        "pcie-4" => Some(Topology {
            name: name.into(),
            gpu_model: "NVIDIA L40S (simulated)".into(),
            memory_mib: 46068,
            compute_capability: "8.9".into(),
            numa: vec![0, 0, 1, 1],
            numa_cpus: two_sockets,
            links: vec![
                (0, 1, 0, "PIX".into()),
                (0, 2, 0, "SYS".into()),
                (0, 3, 0, "SYS".into()),
                (1, 2, 0, "SYS".into()),
                (1, 3, 0, "SYS".into()),
                (2, 3, 0, "PIX".into()),
            ],
        }),
        _ => None,
    }
}

impl SimProvider {
    /// `topology`: a preset name, or the path of a topology JSON file.
    pub fn open(topology: &str, faults: Option<PathBuf>) -> Result<Self, GpuError> {
        let topology = match preset(topology) {
            Some(t) => t,
            None => {
                let text = std::fs::read_to_string(topology).map_err(|e| {
                    GpuError::Sim(format!(
                        "{topology:?} is neither a preset ({}) nor a readable topology file: {e}",
                        PRESETS.join(", ")
                    ))
                })?;
                serde_json::from_str(&text)
                    .map_err(|e| GpuError::Sim(format!("topology file {topology:?}: {e}")))?
            }
        };
        Ok(Self {
            topology,
            uuid_seed: "00000000".into(),
            faults,
            xid_seen: BTreeMap::new(),
        })
    }

    /// Give this node's GPUs their own UUIDs (derived from the node name).
    pub fn with_node_name(mut self, node: &str) -> Self {
        let h = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        self.uuid_seed = format!("{:08x}", h as u32);
        self
    }

    fn uuid(&self, i: usize) -> String {
        format!("GPU-{}-5151-4000-8000-{:012x}", self.uuid_seed, i)
    }

    fn read_faults(&self) -> Result<BTreeMap<String, Fault>, GpuError> {
        let Some(path) = &self.faults else {
            return Ok(BTreeMap::new());
        };
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim().is_empty() => Ok(BTreeMap::new()),
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| GpuError::Sim(format!("fault file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(GpuError::Sim(format!(
                "reading fault file {}: {e}",
                path.display()
            ))),
        }
    }
}

impl GpuProvider for SimProvider {
    fn inventory(&self) -> Result<Inventory, GpuError> {
        let t = &self.topology;
        let mut gpus = Vec::new();
        for (i, numa) in t.numa.iter().enumerate() {
            gpus.push(pb::GpuInfo {
                index: i as u32,
                uuid: self.uuid(i),
                name: t.gpu_model.clone(),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + i * 0x10),
                memory_total_mib: t.memory_mib,
                compute_capability: t.compute_capability.clone(),
                numa_node: *numa,
                cpu_affinity: t.numa_cpus.get(*numa as usize).cloned().unwrap_or_default(),
                mig_enabled: false,
                mig_instances: 0,
            });
        }
        let n = gpus.len() as u32;
        let mut links = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let (nvlinks, level) = match t.links.iter().find(|l| l.0 == a && l.1 == b) {
                    Some(l) => (l.2, pcie(&l.3)?),
                    None => (0, pb::PcieLevel::CrossSocket),
                };
                links.push(pb::GpuLink {
                    a,
                    b,
                    nvlinks,
                    pcie: level as i32,
                });
            }
        }
        Ok(Inventory {
            gpus,
            links,
            driver_version: "sim".into(),
            cuda_version: "sim".into(),
            provider: format!("sim:{}", t.name),
        })
    }

    fn observe(&mut self) -> Result<Vec<Observation>, GpuError> {
        let faults = self.read_faults()?;
        let mut out = Vec::new();
        for i in 0..self.topology.numa.len() {
            let uuid = self.uuid(i);
            let f = faults.get(&uuid).cloned().unwrap_or_default();
            let last_xid = match f.xid {
                Some(x) => {
                    let seen = self
                        .xid_seen
                        .entry(uuid.clone())
                        .and_modify(|s| {
                            if s.0 != x {
                                *s = (x, Instant::now())
                            }
                        })
                        .or_insert((x, Instant::now()));
                    Some(*seen)
                }
                None => {
                    self.xid_seen.remove(&uuid);
                    None
                }
            };
            out.push(Observation {
                uuid,
                present: !f.vanished,
                last_xid,
                ecc_double_bit_volatile: f.ecc_double_bit,
                ecc_single_bit_volatile: f.ecc_single_bit,
                retired_pages_pending: f.retired_pages_pending,
                thermal_throttling: f.thermal_throttling,
                power_throttling: f.power_throttling,
                utilization_pct: 0,
                temperature_c: 35,
                power_mw: 70_000,
                memory_used_mib: 0,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::HealthPolicy;

    fn inventory(preset: &str) -> Inventory {
        SimProvider::open(preset, None)
            .expect("preset")
            .inventory()
            .expect("inventory")
    }

    fn link(inv: &Inventory, a: u32, b: u32) -> &pb::GpuLink {
        inv.links
            .iter()
            .find(|l| l.a == a.min(b) && l.b == a.max(b))
            .expect("every pair has a link")
    }

    #[test]
    fn nvswitch_node_links_every_pair_with_nv18() {
        let inv = inventory("nvswitch-8");
        assert_eq!(inv.gpus.len(), 8);
        assert_eq!(inv.links.len(), 28);
        assert!(inv.links.iter().all(|l| l.nvlinks == 18));
        let numa: Vec<i32> = inv.gpus.iter().map(|g| g.numa_node).collect();
        assert_eq!(numa, [0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn cube_mesh_has_single_and_double_links_and_sys_pairs() {
        let inv = inventory("cube-mesh-8");
        assert_eq!(link(&inv, 0, 3).nvlinks, 2);
        assert_eq!(link(&inv, 0, 1).nvlinks, 1);
        assert_eq!(link(&inv, 0, 4).nvlinks, 2, "a cross-socket NVLink pair");
        let sys = link(&inv, 0, 5);
        assert_eq!(
            (sys.nvlinks, sys.pcie),
            (0, pb::PcieLevel::CrossSocket as i32)
        );
        // Every GPU has exactly four NVLink neighbours, six links in all.
        for g in 0..8 {
            let links: Vec<_> = inv
                .links
                .iter()
                .filter(|l| (l.a == g || l.b == g) && l.nvlinks > 0)
                .collect();
            assert_eq!(links.len(), 4, "gpu {g}");
            assert_eq!(links.iter().map(|l| l.nvlinks).sum::<u32>(), 6, "gpu {g}");
        }
    }

    #[test]
    fn pcie_node_has_two_switches_on_two_sockets() {
        let inv = inventory("pcie-4");
        assert!(inv.links.iter().all(|l| l.nvlinks == 0));
        assert_eq!(link(&inv, 0, 1).pcie, pb::PcieLevel::SingleSwitch as i32);
        assert_eq!(link(&inv, 2, 3).pcie, pb::PcieLevel::SingleSwitch as i32);
        assert_eq!(link(&inv, 1, 2).pcie, pb::PcieLevel::CrossSocket as i32);
    }

    #[test]
    fn topology_files_load_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.json");
        let t = preset("pcie-4").expect("preset");
        std::fs::write(&path, serde_json::to_string(&t).expect("json")).expect("write");
        let loaded = SimProvider::open(path.to_str().expect("utf-8"), None).expect("loads");
        assert_eq!(loaded.inventory().expect("inventory").gpus.len(), 4);
        std::fs::write(&path, r#"{"name": "x", "gpus": 3}"#).expect("write");
        let err = SimProvider::open(path.to_str().expect("utf-8"), None)
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("topology file"), "{err}");
    }

    #[test]
    fn injected_faults_show_and_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = dir.path().join("faults.json");
        let mut p = SimProvider::open("pcie-4", Some(faults.clone()))
            .expect("preset")
            .with_node_name("n1");
        let policy = HealthPolicy::default();
        let uuid = p.inventory().expect("inventory").gpus[2].uuid.clone();
        let judge = |p: &mut SimProvider| -> Vec<pb::GpuHealth> {
            p.observe()
                .expect("observe")
                .iter()
                .map(|o| policy.judge(o))
                .collect()
        };
        assert!(judge(&mut p).iter().all(|h| h.healthy));
        std::fs::write(&faults, format!(r#"{{"{uuid}": {{"xid": 79}}}}"#)).expect("write");
        let h = judge(&mut p);
        assert_eq!(h.iter().filter(|h| !h.healthy).count(), 1);
        assert_eq!((h[2].healthy, h[2].xid), (false, 79));
        std::fs::write(&faults, format!(r#"{{"{uuid}": {{"vanished": true}}}}"#)).expect("write");
        assert!(judge(&mut p)[2].reason.starts_with("vanished"));
        std::fs::write(&faults, "{}").expect("write");
        assert!(judge(&mut p).iter().all(|h| h.healthy), "recovered");
        std::fs::write(&faults, "not json").expect("write");
        assert!(p.observe().is_err());
    }

    #[test]
    fn uuids_differ_between_nodes() {
        let a = SimProvider::open("pcie-4", None)
            .expect("p")
            .with_node_name("a");
        let b = SimProvider::open("pcie-4", None)
            .expect("p")
            .with_node_name("b");
        assert_ne!(
            a.inventory().expect("i").gpus[0].uuid,
            b.inventory().expect("i").gpus[0].uuid
        );
    }
}
