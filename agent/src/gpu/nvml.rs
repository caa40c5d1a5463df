//! Real GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time by nvml-wrapper).
//!
//! Critical XID events arrive on an event set that a dedicated blocking thread waits on;
//! the thread records the last XID per GPU for [`NvmlProvider::observe`] to read. A GPU
//! that stops answering, or a device count lower than at start, is reported vanished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_proto as pb;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, TemperatureSensor, TopologyLevel,
};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::provider::{GpuError, GpuProvider, Inventory, Observation};

/// Most NVLinks one GPU has (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINKS: u32 = 18;

type XidLog = Arc<Mutex<HashMap<String, (u32, Instant)>>>;

pub struct NvmlProvider {
    nvml: Arc<Nvml>,
    /// UUIDs in index order, as found at start.
    uuids: Vec<String>,
    xids: XidLog,
}

fn nvml_err(call: &'static str) -> impl Fn(NvmlError) -> GpuError {
    move |e| GpuError::Nvml {
        call,
        message: e.to_string(),
    }
}

fn pcie_level(t: TopologyLevel) -> pb::PcieLevel {
    match t {
        TopologyLevel::Internal => pb::PcieLevel::SameBoard,
        TopologyLevel::Single => pb::PcieLevel::SingleSwitch,
        TopologyLevel::Multiple => pb::PcieLevel::MultipleSwitches,
        TopologyLevel::HostBridge => pb::PcieLevel::HostBridge,
        TopologyLevel::Node => pb::PcieLevel::SameNuma,
        TopologyLevel::System => pb::PcieLevel::CrossSocket,
    }
}

/// A CPU affinity bitmask as a CPU list ("0-31,64-95").
fn cpu_list(mask: &[std::os::raw::c_ulong]) -> String {
    let bits = std::mem::size_of::<std::os::raw::c_ulong>() * 8;
    let cpus: Vec<usize> = mask
        .iter()
        .enumerate()
        .flat_map(|(w, word)| {
            (0..bits)
                .filter(move |b| word >> b & 1 == 1)
                .map(move |b| w * bits + b)
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        out.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    out.join(",")
}

impl NvmlProvider {
    /// Load NVML and start watching for critical XIDs.
    pub fn open() -> Result<Self, GpuError> {
        let nvml = Nvml::init().map_err(|e| GpuError::NvmlUnavailable(e.to_string()))?;
        let nvml = Arc::new(nvml);
        let count = nvml.device_count().map_err(nvml_err("device_count"))?;
        let mut uuids = Vec::new();
        for i in 0..count {
            let d = nvml
                .device_by_index(i)
                .map_err(nvml_err("device_by_index"))?;
            uuids.push(d.uuid().map_err(nvml_err("uuid"))?);
        }
        let xids: XidLog = Arc::default();
        spawn_xid_watcher(nvml.clone(), xids.clone());
        Ok(Self { nvml, uuids, xids })
    }

    fn gpu_info(&self, index: u32, d: &Device<'_>) -> Result<pb::GpuInfo, GpuError> {
        let cc = d
            .cuda_compute_capability()
            .map(|c| format!("{}.{}", c.major, c.minor))
            .unwrap_or_default();
        let mig = d.mig_mode().map(|m| m.current == 1).unwrap_or(false);
        let cpus_needed = std::thread::available_parallelism().map_or(1024, |n| n.get().max(1024));
        let words = cpus_needed.div_ceil(std::mem::size_of::<std::os::raw::c_ulong>() * 8);
        Ok(pb::GpuInfo {
            index,
            uuid: d.uuid().map_err(nvml_err("uuid"))?,
            name: d.name().map_err(nvml_err("name"))?,
            pci_bus_id: d.pci_info().map_err(nvml_err("pci_info"))?.bus_id,
            memory_total_mib: d.memory_info().map_err(nvml_err("memory_info"))?.total >> 20,
            compute_capability: cc,
            numa_node: d.numa_node_id().map_or(-1, |n| n as i32),
            cpu_affinity: d
                .cpu_affinity(words)
                .map(|m| cpu_list(&m))
                .unwrap_or_default(),
            mig_enabled: mig,
            mig_instances: if mig {
                d.mig_device_count().unwrap_or(0)
            } else {
                0
            },
        })
    }

    /// NVLinks from `d` to each peer, by the peer's PCI bus id.
    fn nvlink_peers(d: &Device<'_>) -> HashMap<String, u32> {
        let mut peers = HashMap::new();
        for link in 0..MAX_NVLINKS {
            let l = d.link_wrapper_for(link);
            if !matches!(l.is_active(), Ok(true)) {
                continue;
            }
            if let Ok(remote) = l.remote_pci_info() {
                *peers.entry(remote.bus_id.to_uppercase()).or_insert(0) += 1;
            }
        }
        peers
    }
}

/// An event set watching the critical XIDs of the GPUs with these indexes.
fn register<'n>(nvml: &'n Nvml, indexes: &[u32]) -> Result<nvml_wrapper::EventSet<'n>, NvmlError> {
    let mut set = nvml.create_event_set()?;
    for i in indexes {
        let d = nvml.device_by_index(*i)?;
        set = d
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|e| e.error)?;
    }
    Ok(set)
}

/// Wait for critical XID events on every GPU, recording the last one per GPU.
fn spawn_xid_watcher(nvml: Arc<Nvml>, xids: XidLog) {
    std::thread::Builder::new()
        .name("nvml-xid".into())
        .spawn(move || {
            // A failed registration consumes the set: rebuild it with the GPUs that
            // registered before (e.g. a GPU that does not support events is skipped).
            let count = nvml.device_count().unwrap_or(0);
            let mut watched: Vec<u32> = Vec::new();
            let mut set = None;
            for i in 0..count {
                let mut candidate = watched.clone();
                candidate.push(i);
                match register(&nvml, &candidate) {
                    Ok(s) => {
                        set = Some(s);
                        watched = candidate;
                    }
                    Err(e) => tracing::warn!(gpu = i, error = %e, "cannot watch this GPU's XIDs"),
                }
            }
            let Some(set) = set.or_else(|| register(&nvml, &[]).ok()) else {
                tracing::warn!("NVML events unavailable; XIDs will not be seen");
                return;
            };
            loop {
                match set.wait(1000) {
                    Ok(ev) => {
                        let xid = match ev.event_data {
                            Some(XidError::Value(v)) => v as u32,
                            _ => 0,
                        };
                        if let Ok(uuid) = ev.device.uuid() {
                            tracing::warn!(gpu = %uuid, xid, "critical XID");
                            xids.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(uuid, (xid, Instant::now()));
                        }
                    }
                    Err(NvmlError::Timeout) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting for NVML events failed; XID watch stops");
                        return;
                    }
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot start the XID watcher"));
}

impl GpuProvider for NvmlProvider {
    fn inventory(&self) -> Result<Inventory, GpuError> {
        let n = &self.nvml;
        let mut gpus = Vec::new();
        let mut devices = Vec::new();
        for i in 0..self.uuids.len() as u32 {
            let d = n.device_by_index(i).map_err(nvml_err("device_by_index"))?;
            gpus.push(self.gpu_info(i, &d)?);
            devices.push(d);
        }
        let mut links = Vec::new();
        for (a, da) in devices.iter().enumerate() {
            let peers = Self::nvlink_peers(da);
            for (b, gb) in gpus.iter().enumerate().skip(a + 1) {
                let bus = gb.pci_bus_id.to_uppercase();
                let nvlinks = peers.get(&bus).copied().unwrap_or(0);
                let other = n
                    .device_by_index(b as u32)
                    .map_err(nvml_err("device_by_index"))?;
                let level = da
                    .topology_common_ancestor(other)
                    .map(pcie_level)
                    .unwrap_or(pb::PcieLevel::Unspecified);
                links.push(pb::GpuLink {
                    a: a as u32,
                    b: b as u32,
                    nvlinks,
                    pcie: level as i32,
                });
            }
        }
        let cuda = n
            .sys_cuda_driver_version()
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10))
            .unwrap_or_default();
        Ok(Inventory {
            gpus,
            links,
            driver_version: n.sys_driver_version().unwrap_or_default(),
            cuda_version: cuda,
            provider: "nvml".into(),
        })
    }

    fn observe(&mut self) -> Result<Vec<Observation>, GpuError> {
        let n = &self.nvml;
        let count = n.device_count().unwrap_or(0) as usize;
        let xids = self.xids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        for (i, uuid) in self.uuids.iter().enumerate() {
            let mut o = Observation {
                uuid: uuid.clone(),
                last_xid: xids.get(uuid).copied(),
                ..Observation::default()
            };
            // A lower device count, or a device that no longer answers: fell off the bus.
            let device = if i < count {
                n.device_by_index(i as u32).ok()
            } else {
                None
            };
            let Some(d) = device.filter(|d| d.uuid().is_ok_and(|u| u == *uuid)) else {
                out.push(o);
                continue;
            };
            o.present = !matches!(
                d.temperature(TemperatureSensor::Gpu),
                Err(NvmlError::GpuLost)
            );
            o.ecc_double_bit_volatile = d
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                .unwrap_or(0);
            o.ecc_single_bit_volatile = d
                .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
                .unwrap_or(0);
            o.retired_pages_pending = d.are_pages_pending_retired().unwrap_or(false);
            if let Ok(r) = d.current_throttle_reasons() {
                o.thermal_throttling = r.intersects(
                    ThrottleReasons::HW_THERMAL_SLOWDOWN | ThrottleReasons::SW_THERMAL_SLOWDOWN,
                );
                o.power_throttling = r.contains(ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN);
            }
            o.utilization_pct = d.utilization_rates().map_or(0, |u| u.gpu);
            o.temperature_c = d.temperature(TemperatureSensor::Gpu).unwrap_or(0);
            o.power_mw = d.power_usage().unwrap_or(0);
            o.memory_used_mib = d.memory_info().map_or(0, |m| m.used >> 20);
            out.push(o);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_masks_become_lists() {
        assert_eq!(cpu_list(&[0b1111]), "0-3");
        assert_eq!(cpu_list(&[0b1011_0001]), "0,4-5,7");
        assert_eq!(cpu_list(&[0, 1]), "64");
        assert_eq!(cpu_list(&[]), "");
    }

    #[test]
    fn without_the_library_opening_fails_cleanly() {
        // This machine may or may not have a GPU; either way, no panic and a clear error.
        match NvmlProvider::open() {
            Ok(p) => assert_eq!(p.inventory().expect("inventory").provider, "nvml"),
            Err(e) => assert!(e.to_string().contains("NVML is not available"), "{e}"),
        }
    }
}
