//! Serving model deployments on this node: the replicas placed here (their model
//! servers, probed for readiness) and the stable endpoints that clients call, in front
//! of the deployments' replicas.
//!
//! - [`runner`]: starts, probes, reports, drains and stops the serving replicas, and
//!   keeps a router per endpoint routed here;
//! - [`router`]: the HTTP reverse proxy of one endpoint, which splits traffic between
//!   the deployment's revisions by weight, drains replicas before they stop, and counts
//!   the load on each revision;
//! - `table`: its routing table, the choices and counts without any I/O;
//! - [`load`]: the load on each endpoint since the last heartbeat, for autoscaling.

pub mod load;
pub mod router;
pub mod runner;
mod table;
