//! The Cairn node agent (`cairn-agent`): the control plane's eyes and hands on a GPU node.
//!
//! It reports the node's GPUs, their interconnect and health (through NVML, or simulated
//! GPUs), heartbeats to the leader, and enforces the host-network port leases the control
//! plane allocates on the node. Everything it learns becomes a command; only changes
//! become events (a heartbeat is not one).
//!
//! - [`gpu`]: the provider trait, NVML and simulated GPUs, the health policy;
//! - [`ports`]: holding leased ports and naming processes that take them;
//! - [`replicas`]: running the job replicas placed on the node, with their wiring;
//! - [`serving`]: the stable endpoint of a model deployment, a weighted reverse proxy
//!   in front of its replicas;
//! - [`control`]: the connection to the control plane (leader hints, node token);
//! - [`logs`]: the agent's own service, serving the replicas' logs;
//! - [`metrics`]: what it measures, on `/metrics`;
//! - [`agent`]: the loop that ties them together.

pub mod agent;
pub mod control;
pub mod gpu;
pub mod logs;
pub mod metrics;
pub mod ports;
pub mod replicas;
pub mod serving;

#[cfg(test)]
mod test_support;
