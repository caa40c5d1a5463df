//! `cairn`: the command-line client of a Cairn cluster.
//!
//! Every command talks gRPC to any member (`--endpoints`); writes and linearizable reads
//! reach the leader through it. Output is a table, or JSON/YAML with `-o`.

pub mod bench;
pub mod bench_agents;
pub mod bench_jobs;
pub mod bench_summary;
pub mod client;
mod commands;
mod jobs;
mod nodes;
pub mod output;
pub mod views;

use clap::{Parser, Subcommand};

pub use commands::run;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Query and operate a Cairn control plane"
)]
pub struct Cli {
    /// Members to talk to, comma-separated host:port.
    #[arg(
        long,
        global = true,
        env = "CAIRN_ENDPOINTS",
        default_value = "127.0.0.1:7420"
    )]
    pub endpoints: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: output::Format,
    /// How long a command keeps retrying while no member answers or a leader is elected.
    #[arg(long, global = true, env = "CAIRN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Who is asking (recorded as the actor of every change).
    #[arg(long, global = true, env = "CAIRN_ACTOR")]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The Raft cluster: status and membership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The event log.
    #[command(subcommand)]
    Events(EventsCmd),
    /// Namespaces.
    #[command(subcommand, alias = "namespace")]
    Ns(NsCmd),
    /// Operator notes on any entity.
    #[command(subcommand)]
    Note(NoteCmd),
    /// Read one entity, `kind/name`.
    Get {
        entity: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// GPU nodes: inventory, state, cordons and drains.
    #[command(subcommand)]
    Node(nodes::NodeCmd),
    /// GPUs across nodes: health and interconnect.
    #[command(subcommand)]
    Gpu(nodes::GpuCmd),
    /// Host-network port leases.
    #[command(subcommand)]
    Lease(nodes::LeaseCmd),
    /// Training jobs: submit, inspect, cancel, history.
    #[command(subcommand)]
    Job(jobs::JobCmd),
    /// Jobs on a schedule.
    #[command(subcommand)]
    Cron(jobs::CronCmd),
    /// Job queues and their GPU quotas.
    #[command(subcommand)]
    Queue(jobs::QueueCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, and each member's role, commit and applied index.
    Status,
    /// Add a server as a non-voting learner (it catches up from the leader).
    AddLearner { node_id: u64, address: String },
    /// Make a learner a voter.
    Promote { node_id: u64 },
    /// Remove a member.
    Remove { node_id: u64 },
}

#[derive(clap::Args, Clone, Default)]
pub struct ReadArgs {
    /// Serve the read from the answering member's own state (may be stale).
    #[arg(long)]
    pub stale: bool,
}

#[derive(clap::Args, Clone, Default)]
pub struct FilterArgs {
    /// `kind/name` of one entity, or a kind alone.
    #[arg(long)]
    pub entity: Option<String>,
    /// Event type (repeatable), e.g. `namespace_created`.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only events at or after: RFC 3339 time, or a duration ago (`10m`, `2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Only events with a greater sequence number.
    #[arg(long, default_value_t = 0)]
    pub after_seq: u64,
}

#[derive(Subcommand)]
pub enum EventsCmd {
    /// List events (oldest first).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events (0: all, paging through).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print matching events, then follow new ones (survives a leader change).
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Subcommand)]
pub enum NsCmd {
    Create {
        name: String,
        /// Label `key=value` (repeatable).
        #[arg(long = "label", short = 'l')]
        labels: Vec<String>,
    },
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    List {
        /// Include deleted namespaces.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Set (`key=value`) or remove (`key-`) labels.
    Label {
        name: String,
        changes: Vec<String>,
        /// Replace all labels with the given ones.
        #[arg(long)]
        replace: bool,
        /// Fail unless the namespace is at this revision.
        #[arg(long)]
        expect_revision: Option<u64>,
    },
    Delete {
        name: String,
        #[arg(long)]
        expect_revision: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum NoteCmd {
    /// Add a note to an entity: `cairn note add namespace/research "quota raised"`.
    Add {
        entity: String,
        text: String,
        #[arg(long)]
        expect_revision: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Concurrent durable appends of a fixed-size payload; prints throughput, latency
    /// percentiles and each server's RSS.
    Append(bench::AppendArgs),
    /// Simulated agents at scale: heartbeats, health changes, false `node_lost`, CPU.
    Agents(bench_agents::AgentsArgs),
    /// Trivial jobs end to end on the cluster's agents: jobs per second, latency.
    Jobs(bench_jobs::JobsArgs),
    /// Medians over rounds of `bench append -o json` files, and Cairn's ratio to etcd.
    Summary(bench_summary::SummaryArgs),
}
