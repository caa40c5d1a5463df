//! The pure domain core of Cairn.
//!
//! Every change of cluster state is a [`Command`] that went through Raft. On every replica,
//! in log order, the state machine runs [`decide`] against the current [`State`] and, when
//! the command is accepted, folds each resulting [`Event`] into the state with
//! [`State::evolve`]. Both are plain synchronous functions of their inputs: no clock, no
//! randomness, no environment, no I/O. The leader stamps time into the command before it
//! proposes it, and the log position travels in as a [`Position`]. That is what keeps the
//! replicas identical.
//!
//! A [`Rejection`] is a deterministic outcome (every replica rejects the same command the
//! same way), returned to the caller and never written to the log of events.
//!
//! The crate is organised by aggregate: one folder per concept ([`namespace`],
//! [`member`], [`node`], [`queue`], [`job`], [`cron`], [`model`]), each with its spec, commands,
//! events, `decide` and `evolve`, and its tests. Below them sit the leaf modules every
//! aggregate may use ([`validate`], [`doc`], [`entity`], [`emit`], [`rejection`]) and
//! placement ([`schedule`]); above them [`core`] holds the envelopes, the state and the
//! exhaustive dispatch. An aggregate uses only those below it (a cron starts jobs; jobs
//! are placed on nodes and register model versions); nothing uses the core but the
//! crate's users.
//!
//! Deliberately absent: storage, indexes and the wire format. The control plane persists
//! events, builds the query indexes and converts to and from protobuf at its edge.

pub mod core;
pub mod cron;
pub mod deployment;
pub mod doc;
pub mod emit;
pub mod entity;
pub mod job;
pub mod member;
pub mod model;
pub mod namespace;
pub mod node;
pub mod projection;
pub mod queue;
mod rejection;
pub mod role;
pub mod schedule;
#[cfg(test)]
mod testkit;
pub mod token;
pub mod validate;

pub use crate::core::{authz, decide, kinds, Command, CommandBody, Event, EventPayload, State};
pub use entity::{EntityKey, EntityState, Position};
pub use member::{MemberRecord, RaftMembers};
pub use rejection::Rejection;
