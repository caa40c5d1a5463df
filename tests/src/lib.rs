//! The harness that runs real Cairn processes: `cairn-server` members, each with its own
//! sled files, `cairn-agent`s with simulated GPUs and the `cairn` CLI, driven over real
//! gRPC. The integration tests (`tests/`) run clusters on loopback with it; the chaos
//! campaigns (`cairn-chaos`) run its servers inside simulated hosts.
//!
//! - [`server`]: one server process: configuration file, start (returning once it
//!   accepts connections), SIGKILL, SIGSTOP/SIGCONT, restart; optionally under a
//!   command prefix, with explicit addresses and data directory.
//! - [`cluster`]: a [`TestCluster`] of servers on loopback: leader, convergence.
//! - [`relay`]: a TCP relay in front of a member, to cut it off from its peers.
//! - [`agent`]: `cairn-agent` processes and the nodes they register.
//! - [`cli`]: the `cairn` CLI as a user runs it.
//! - [`client`]: gRPC clients (the one place tests and campaigns dial a member) and
//!   the reads made through them.
//! - [`commands`]: commands the tests submit.
//! - [`http`]: JSON over HTTP/1.1 (the MLflow-compatible API).
//! - [`wait`]: [`eventually`], waiting for a condition with a deadline.
//! - [`process`]: where the binaries are (and the example jobs); a child process with
//!   its log and signals.
//! - [`ports`]: loopback ports nothing else takes.

pub mod agent;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod http;
pub mod kube;
pub mod ports;
pub mod process;
pub mod relay;
pub mod server;
pub mod wait;

pub use agent::{nodes, wait_nodes, TestAgent};
pub use cli::{certs, cli, cli_json};
pub use client::{
    all_events, client, client_with_timeout, last_sequence, leader_seen_by, stored_events,
};
pub use cluster::{Settings, TestCluster};
pub use commands::{create_ns, note, note_text};
pub use http::{http_json, http_text, Scrape};
pub use kube::KubeApiServer;
pub use ports::free_port;
pub use process::{bin, example_jobs};
pub use relay::Relay;
pub use server::{Server, ServerSpec};
pub use wait::eventually;
