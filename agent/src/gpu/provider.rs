//! What every GPU provider reports: the node's inventory at start and an observation
//! of each GPU on every look, through the [`GpuProvider`] trait.

use std::time::Instant;

use cairn_proto as pb;

/// What a provider reports about the node's GPUs at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub gpus: Vec<pb::GpuInfo>,
    pub links: Vec<pb::GpuLink>,
    pub driver_version: String,
    pub cuda_version: String,
    /// "nvml" or "sim:<preset>".
    pub provider: String,
}

/// One look at one GPU: the raw facts health is judged from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub uuid: String,
    /// False when the GPU no longer answers or is missing from the device list.
    pub present: bool,
    /// The last critical XID and when it was seen.
    pub last_xid: Option<(u32, Instant)>,
    pub ecc_double_bit_volatile: u64,
    pub ecc_single_bit_volatile: u64,
    pub retired_pages_pending: bool,
    pub thermal_throttling: bool,
    pub power_throttling: bool,
    /// Telemetry, for display only.
    pub utilization_pct: u32,
    pub temperature_c: u32,
    pub power_mw: u32,
    pub memory_used_mib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("NVML is not available: {0}")]
    NvmlUnavailable(String),
    #[error("NVML call {call} failed: {message}")]
    Nvml { call: &'static str, message: String },
    #[error("simulated GPUs: {0}")]
    Sim(String),
}

/// A source of GPU facts.
pub trait GpuProvider: Send {
    fn inventory(&self) -> Result<Inventory, GpuError>;
    /// One observation per GPU of the inventory, in inventory order.
    fn observe(&mut self) -> Result<Vec<Observation>, GpuError>;
}
