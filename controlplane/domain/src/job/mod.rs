//! Training jobs: the spec users write, a job's state in the fold, the commands and
//! events of its life, and what decides it — placement (through [`crate::schedule`]),
//! the replicas' lifecycle as agents report it, restarts, deadlines, and the reaction to
//! nodes failing under it.
//!
//! - [`spec`]: the document (`kind: TrainingJob`) and its checks.
//! - [`state`]: phases, placements, replica statuses, conditions; the queue order.
//! - [`command`], [`event`], [`decide`](decide()), [`evolve`](evolve()).

pub mod command;
mod decide;
pub mod event;
mod evolve;
mod placement;
pub mod spec;
pub mod state;
#[cfg(test)]
mod tests;

pub use crate::doc::{Metadata, API_VERSION};
pub use command::{JobCommand, ReplicaExit};
pub use decide::{decide, react, submit, Context};
pub use event::JobEvent;
pub use evolve::{evolve, lease_holder};
pub use spec::*;
pub use state::*;

pub const KIND: &str = "job";
