//! The Cairn node agent (`cairn-agent`).
//!
//! On every GPU node the agent will report the node's GPUs, their interconnect and
//! health, heartbeat to the control plane, run the workload replicas assigned to the
//! node, and enforce host-network port leases. This version only carries the binary's
//! command line; it refuses to start rather than pretend to work.

/// What this version of the agent can do.
pub const STATUS: &str =
    "GPU inventory, heartbeats, replica execution and port leases are not implemented in this version";
