//! Serving a model deployment on this node: the stable endpoint that clients call, in
//! front of the deployment's replicas.
//!
//! - [`router`]: the HTTP reverse proxy of one endpoint, which splits traffic between
//!   the deployment's revisions by weight, drains replicas before they stop, and counts
//!   the load on each revision;
//! - `table`: its routing table, the choices and counts without any I/O.

pub mod router;
mod table;
