//! Read models: what the API serves, computed from the folded state. Each takes the
//! state (and the request's filters) and returns wire views; none changes anything.

mod cron;
mod deployment;
mod entity;
mod job;
mod model;
mod node;
mod queue;

pub use cron::crons;
pub use deployment::deployments;
pub use entity::{entities, entity};
pub use job::jobs;
pub use model::{model, models, models_where};
pub use node::nodes;
pub use queue::queues;
