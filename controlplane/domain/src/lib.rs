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
//! Deliberately absent: storage, indexes and the wire format. The control plane persists
//! events, builds the query indexes and converts to and from protobuf at its edge.

mod command;
pub mod cron;
mod decide;
mod event;
pub mod job;
pub mod node;
mod rejection;
pub mod schedule;
mod state;
pub mod validate;

pub use command::{Command, CommandBody, ReplicaExit};
pub use decide::decide;
pub use event::{EntityKey, Event, EventPayload, Position};
pub use rejection::Rejection;
pub use state::{EntityState, MemberRecord, RaftMembers, State};

/// Entity kinds the domain knows.
pub mod kinds {
    pub const NAMESPACE: &str = "namespace";
    pub const MEMBER: &str = "member";
    pub const NODE: &str = "node";
    pub const JOB: &str = "job";
    pub const CRON: &str = "cron";
    pub const QUEUE: &str = "queue";
    pub const ALL: &[&str] = &[NAMESPACE, MEMBER, NODE, JOB, CRON, QUEUE];
}
