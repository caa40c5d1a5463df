//! The Cairn control-plane server: an event-sourced state machine replicated with Raft.
//!
//! A request enters through [`api`] (tonic), becomes a command that the leader batches
//! and proposes through [`raft`] (openraft, with its log in sled), and is applied on
//! every member by the state machine in [`store`], which runs the pure domain core
//! (`cairn-domain`: `decide` then `evolve`) and stores the resulting events with their
//! indexes. [`convert`] is the only place that knows both the wire and domain types.
//! [`server::run`] wires it together; `main.rs` only parses flags.

pub mod api;
pub mod config;
pub mod convert;
pub mod raft;
pub mod server;
pub mod store;
