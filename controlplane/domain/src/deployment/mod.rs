//! Model deployments: a model version (or whatever an alias points at) served by
//! replicas on the agents, as numbered revisions. Readiness is probed by the agents and
//! reported; traffic is split between revisions by weight and moved only to ready
//! capacity; rollouts (rolling or canary), promotion and rollback are events.
//!
//! - [`spec`]: the document (`kind: ModelDeployment`) and its checks.
//! - [`state`]: revisions, replicas, weights, the rollout, the endpoint.
//! - [`command`], [`event`], [`decide`](decide()) with the rollout policy ([`plan`]),
//!   [`evolve`](evolve()).

pub mod command;
mod decide;
pub mod event;
mod evolve;
pub mod spec;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::{DeploymentCommand, ServingReport};
pub use decide::{decide, plan, react, Context};
pub use event::{DeploymentEvent, ScaleLoad, ServingPlacement};
pub use evolve::evolve;
pub use spec::*;
pub use state::*;

pub const KIND: &str = "deployment";
