//! The Cairn control-plane server: an event-sourced state machine replicated with Raft.
//!
//! A request enters through a protocol adapter ([`api`]: gRPC), which reads it into the
//! application layer's terms ([`app`]): a write becomes a domain command that the
//! leader batches and proposes through [`raft`] (openraft); every member applies it in
//! [`store`], which runs the pure domain core (`cairn-domain`: `decide` then `evolve`)
//! and stores the resulting events with their indexes. Reads are served from the folded
//! state ([`views`]) or the event store. The leader's [`leader`] workers propose what
//! only it may (liveness, lease expiry, deadlines, cron runs, scheduling passes).
//! [`convert`] is the only place that knows both the wire and the domain types.
//! [`metrics`] is what a member measures (Prometheus, `/metrics`).
//! [`server::run`] wires a member together.
//!
//! Dependencies point one way: `api` → `app` → `store` → `raft`, `convert`; `leader` →
//! `app`; `views` and `convert` know only the domain and the wire types.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod convert;
pub mod leader;
pub mod metrics;
pub mod raft;
pub mod server;
pub mod store;
pub mod views;
