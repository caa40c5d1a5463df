//! GPUs behind one trait: the real ones through NVML, or simulated ones for machines
//! without a GPU and for tests. Both report the same inventory, topology and
//! observations; one [`HealthPolicy`] turns observations into health verdicts.

pub mod nvml;
mod provider;
pub mod sim;

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_proto as pb;

pub use provider::{GpuError, GpuProvider, Inventory, Observation};

/// XIDs caused by the application, not the hardware (NVIDIA's device plugin skips them).
pub const APPLICATION_XIDS: [u32; 6] = [13, 31, 43, 45, 68, 109];

/// How observations become health.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// XIDs that do not make a GPU unhealthy.
    pub ignored_xids: BTreeSet<u32>,
    /// A GPU unhealthy by an XID recovers after this long without another one.
    pub xid_recovery: Duration,
    /// Whether hardware throttling makes a GPU unhealthy.
    pub throttling_is_unhealthy: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            ignored_xids: APPLICATION_XIDS.into_iter().collect(),
            xid_recovery: Duration::from_secs(300),
            throttling_is_unhealthy: true,
        }
    }
}

impl HealthPolicy {
    pub fn judge(&self, o: &Observation) -> pb::GpuHealth {
        let unhealthy = |reason: String, xid: u32| pb::GpuHealth {
            uuid: o.uuid.clone(),
            healthy: false,
            reason,
            xid,
        };
        if !o.present {
            return unhealthy("vanished: the GPU fell off the bus".into(), 0);
        }
        if let Some((xid, at)) = o.last_xid {
            if !self.ignored_xids.contains(&xid) && at.elapsed() < self.xid_recovery {
                return unhealthy(format!("xid {xid}"), xid);
            }
        }
        if o.ecc_double_bit_volatile > 0 {
            return unhealthy(
                format!(
                    "ecc: {} uncorrectable (double-bit) errors",
                    o.ecc_double_bit_volatile
                ),
                0,
            );
        }
        if o.retired_pages_pending {
            return unhealthy("retired pages pending: the GPU needs a reset".into(), 0);
        }
        if self.throttling_is_unhealthy && o.thermal_throttling {
            return unhealthy("thermal throttling".into(), 0);
        }
        if self.throttling_is_unhealthy && o.power_throttling {
            return unhealthy("power brake throttling".into(), 0);
        }
        pb::GpuHealth {
            uuid: o.uuid.clone(),
            healthy: true,
            reason: String::new(),
            xid: 0,
        }
    }
}

/// Which provider to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderChoice {
    Nvml,
    /// A preset name or a topology file.
    Sim {
        topology: String,
    },
    /// NVML when it loads, else the given simulated topology.
    NvmlOrSim {
        topology: String,
    },
}

/// Open the chosen provider for node `node`. `faults` is the control file simulated
/// GPUs read their injected faults from.
pub fn open(
    choice: &ProviderChoice,
    faults: Option<std::path::PathBuf>,
    node: &str,
) -> Result<Box<dyn GpuProvider>, GpuError> {
    // Simulated GPUs get UUIDs of their own on every node.
    let sim = |topology: &str| -> Result<Box<dyn GpuProvider>, GpuError> {
        Ok(Box::new(
            sim::SimProvider::open(topology, faults.clone())?.with_node_name(node),
        ))
    };
    match choice {
        ProviderChoice::Nvml => Ok(Box::new(nvml::NvmlProvider::open()?)),
        ProviderChoice::Sim { topology } => sim(topology),
        ProviderChoice::NvmlOrSim { topology } => match nvml::NvmlProvider::open() {
            Ok(p) => Ok(Box::new(p)),
            Err(e) => {
                tracing::info!(reason = %e, topology, "NVML did not load; using simulated GPUs");
                sim(topology)
            }
        },
    }
}

/// What a provider reports, as JSON: provider, driver and CUDA versions, every GPU, every
/// pair's link, and each GPU's health and telemetry now.
pub fn inspect(
    choice: &ProviderChoice,
    faults: Option<std::path::PathBuf>,
    node: &str,
    policy: &HealthPolicy,
) -> Result<String, GpuError> {
    let mut p = open(choice, faults, node)?;
    let inv = p.inventory()?;
    let observed = p.observe()?;
    let health: Vec<serde_json::Value> = observed
        .iter()
        .map(|o| {
            serde_json::json!({
                "health": policy.judge(o),
                "utilization_pct": o.utilization_pct,
                "temperature_c": o.temperature_c,
                "power_mw": o.power_mw,
                "memory_used_mib": o.memory_used_mib,
                "ecc_single_bit_volatile": o.ecc_single_bit_volatile,
                "ecc_double_bit_volatile": o.ecc_double_bit_volatile,
            })
        })
        .collect();
    let out = serde_json::json!({
        "provider": inv.provider,
        "driver_version": inv.driver_version,
        "cuda_version": inv.cuda_version,
        "gpus": inv.gpus,
        "links": inv.links,
        "observations": health,
    });
    serde_json::to_string_pretty(&out).map_err(|e| GpuError::Sim(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn seen(uuid: &str) -> Observation {
        Observation {
            uuid: uuid.into(),
            present: true,
            ..Observation::default()
        }
    }

    #[test]
    fn application_xids_do_not_make_a_gpu_unhealthy() {
        let p = HealthPolicy::default();
        for xid in APPLICATION_XIDS {
            let o = Observation {
                last_xid: Some((xid, Instant::now())),
                ..seen("g")
            };
            assert!(p.judge(&o).healthy, "xid {xid}");
        }
        let o = Observation {
            last_xid: Some((79, Instant::now())),
            ..seen("g")
        };
        let h = p.judge(&o);
        assert!(!h.healthy);
        assert_eq!((h.xid, h.reason.as_str()), (79, "xid 79"));
    }

    #[test]
    fn an_xid_ages_out_and_the_gpu_recovers() {
        let p = HealthPolicy {
            xid_recovery: Duration::from_millis(1),
            ..HealthPolicy::default()
        };
        let o = Observation {
            last_xid: Some((48, Instant::now() - Duration::from_millis(5))),
            ..seen("g")
        };
        assert!(p.judge(&o).healthy);
    }

    #[test]
    fn the_ignore_list_is_configurable() {
        let p = HealthPolicy {
            ignored_xids: BTreeSet::from([79]),
            ..HealthPolicy::default()
        };
        let o = |xid| Observation {
            last_xid: Some((xid, Instant::now())),
            ..seen("g")
        };
        assert!(p.judge(&o(79)).healthy);
        assert!(!p.judge(&o(13)).healthy);
    }

    #[test]
    fn vanished_ecc_and_throttling_are_unhealthy() {
        let p = HealthPolicy::default();
        let vanished = Observation {
            present: false,
            ..seen("g")
        };
        assert!(p.judge(&vanished).reason.starts_with("vanished"));
        let ecc = Observation {
            ecc_double_bit_volatile: 2,
            ..seen("g")
        };
        assert!(p.judge(&ecc).reason.contains("double-bit"));
        let hot = Observation {
            thermal_throttling: true,
            ..seen("g")
        };
        assert_eq!(p.judge(&hot).reason, "thermal throttling");
        assert!(p.judge(&seen("g")).healthy);
    }
}
