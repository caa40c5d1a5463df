//! Cron schedules of jobs (`kind: TrainingCron`).
//!
//! The leader proposes `Trigger` for the next due time; `decide` accepts a trigger only
//! for exactly the time that follows the last one it recorded, so a trigger proposed
//! twice (by an old and a new leader) starts one run, and a new leader that finds runs
//! due starts each of them in turn: a failover neither doubles nor skips a run. A run is
//! a job named `<cron>-<minute>`, submitted through the job aggregate.
//!
//! - [`expression`]: the five-field schedule, in UTC.
//! - [`spec`]: the document and its checks; the job document of a run.
//! - [`state`], [`command`], [`event`], [`decide`](decide()), [`evolve`](evolve()).

pub mod command;
mod decide;
pub mod event;
mod evolve;
pub mod expression;
pub mod spec;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::CronCommand;
pub use decide::{decide, live};
pub use event::CronEvent;
pub use evolve::evolve;
pub use expression::Schedule;
pub use spec::*;
pub use state::*;

pub const KIND: &str = "cron";
