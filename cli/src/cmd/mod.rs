//! The user commands, one file per noun. Each file holds its noun's clap enum (its
//! verbs, flags and help text; for `get`, which has no verbs, its arguments) and
//! `run(ctx, cmd)`, which does the work. What several nouns share lives in `crate::ctx`
//! (and the output shapes in `crate::views`), so a command file uses no other one.
//!
//! - `certs`: development certificates (no cluster needed). `token`: bearer tokens.
//! - `cluster`: Raft status and membership. `events`: list and tail the event log.
//! - `ns`: namespaces. `note`: notes on any entity. `get`: any one entity, `kind/name`.
//! - `node`: nodes, cordons and drains. `gpu`: GPUs, health, interconnect.
//!   `lease`: host-network port leases.
//! - `job`: training jobs, their placement, logs and history. `cron`: jobs on a
//!   schedule. `queue`: job queues and GPU quotas.
//! - `model`: the model registry and its history. `lineage`: where a version came
//!   from, or what a job produced. `deploy`: model deployments and their rollouts.
//! - `k8s`: the Kubernetes projection's status, and a full resync.
//!
//! A new noun gets a file here, an entry above and a `pub mod` line below, and a
//! variant in `crate::Command` with its line in `crate::run`.

pub mod certs;
pub mod cluster;
pub mod cron;
pub mod deploy;
pub mod events;
pub mod get;
pub mod gpu;
pub mod job;
pub mod k8s;
pub mod lease;
pub mod lineage;
pub mod model;
pub mod node;
pub mod note;
pub mod ns;
pub mod queue;
pub mod token;
