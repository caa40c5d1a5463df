//! GPU nodes: what their agents report (inventory, interconnect, health), what operators
//! decide (cordons, drains), what the leader observes (lost, recovered), and the
//! host-network port leases allocated on them.
//!
//! Everything here is part of the fold of the log: a node's view is rebuilt from its
//! events. Heartbeats are not events; the leader turns silence into `MarkLost`.
//!
//! - [`inventory`]: what an agent reports, and its checks.
//! - [`state`]: a node as the log tells it.
//! - [`command`], [`event`], [`decide`](decide()), [`evolve`](evolve()).
//!
//! What a node's trouble means for the jobs on it is not decided here: [`decide`](decide())
//! returns [`Disruption`]s, and the job aggregate reacts to them.

pub mod command;
mod decide;
pub mod event;
mod evolve;
pub mod inventory;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::NodeCommand;
pub use decide::{authorise, decide, registered, Disruption};
pub use event::NodeEvent;
pub use evolve::evolve;
pub use inventory::*;
pub use state::{Cordon, NodeState, Nodes, PortLease};

pub const KIND: &str = "node";
