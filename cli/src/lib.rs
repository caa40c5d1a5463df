//! `cairn`: the command-line client of a Cairn cluster.
//!
//! Every command talks gRPC to any member (`--endpoints`); writes and linearizable reads
//! reach the leader through it. Output is a table, or JSON/YAML with `-o`.
//!
//! This file holds the global flags and names each noun; the nouns live in `cmd/` (one
//! file each) and the benchmarks in `bench/`. Every command gets a `ctx::Ctx`: the
//! cluster (`client`), the actor and the output format (`output`, `views`).

mod bench;
mod client;
mod cmd;
mod ctx;
mod output;
mod views;

use clap::{Parser, Subcommand};

use crate::cmd::{
    certs, cluster, cron, deploy, events, get, gpu, job, k8s, lease, lineage, model, node, note,
    ns, queue, token,
};

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
    /// Who is asking (recorded as the actor of every change; with TLS the member records
    /// the identity of the client certificate instead).
    #[arg(long, global = true, env = "CAIRN_ACTOR")]
    pub actor: Option<String>,
    /// The cluster CA (PEM): TLS, with --cert and --key (mutual) or --token.
    #[arg(long, global = true, env = "CAIRN_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), naming urn:cairn:user:<name>.
    #[arg(long, global = true, env = "CAIRN_CERT", requires_all = ["ca", "key"])]
    pub cert: Option<std::path::PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, global = true, env = "CAIRN_KEY", requires_all = ["ca", "cert"])]
    pub key: Option<std::path::PathBuf>,
    /// A bearer token (`cairn token create`) instead of a client certificate.
    #[arg(
        long,
        global = true,
        env = "CAIRN_TOKEN",
        hide_env_values = true,
        requires = "ca"
    )]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The Raft cluster: status and membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// The event log.
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// Namespaces.
    #[command(subcommand, alias = "namespace")]
    Ns(ns::NsCmd),
    /// Operator notes on any entity.
    #[command(subcommand)]
    Note(note::NoteCmd),
    /// Read one entity, `kind/name`.
    Get(get::GetArgs),
    /// GPU nodes: inventory, state, cordons and drains.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// GPUs across nodes: health and interconnect.
    #[command(subcommand)]
    Gpu(gpu::GpuCmd),
    /// Host-network port leases.
    #[command(subcommand)]
    Lease(lease::LeaseCmd),
    /// Training jobs: submit, inspect, cancel, history.
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Jobs on a schedule.
    #[command(subcommand)]
    Cron(cron::CronCmd),
    /// Job queues and their GPU quotas.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// The model registry: models, versions, stages, aliases and their history.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Where a model version came from (job, nodes, GPUs, code), or what a job produced.
    Lineage(lineage::LineageArgs),
    /// Model deployments: revisions, replicas, traffic, rollouts, rollbacks.
    #[command(subcommand)]
    Deploy(deploy::DeployCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Development certificates: a CA and the certificates of members, agents and users.
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// Bearer tokens: create, list, revoke (admins).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// The Kubernetes projection: its lag and objects, and a full resync.
    #[command(subcommand)]
    K8s(k8s::K8sCmd),
}

/// Run one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = match (cli.ca, cli.cert, cli.key) {
        (Some(ca), Some(cert), Some(key)) => Some(cairn_proto::tls::TlsFiles { ca, cert, key }),
        (Some(ca), None, None) => Some(cairn_proto::tls::TlsFiles::ca_only(ca)),
        _ => None,
    };
    let mut ctx = ctx::Ctx::new(
        &cli.endpoints,
        cli.timeout,
        cli.output,
        cli.actor,
        tls,
        cli.token,
    )?;
    let ctx = &mut ctx;
    match cli.command {
        Command::Cluster(c) => cluster::run(ctx, c).await,
        Command::Events(c) => events::run(ctx, c).await,
        Command::Ns(c) => ns::run(ctx, c).await,
        Command::Note(c) => note::run(ctx, c).await,
        Command::Get(c) => get::run(ctx, c).await,
        Command::Node(c) => node::run(ctx, c).await,
        Command::Gpu(c) => gpu::run(ctx, c).await,
        Command::Lease(c) => lease::run(ctx, c).await,
        Command::Job(c) => job::run(ctx, c).await,
        Command::Cron(c) => cron::run(ctx, c).await,
        Command::Queue(c) => queue::run(ctx, c).await,
        Command::Model(c) => model::run(ctx, c).await,
        Command::Lineage(c) => lineage::run(ctx, c).await,
        Command::Deploy(c) => deploy::run(ctx, c).await,
        Command::Bench(c) => bench::run(ctx, c).await,
        Command::Certs(c) => certs::run(c),
        Command::Token(c) => token::run(ctx, c).await,
        Command::K8s(c) => k8s::run(ctx, c).await,
    }
}
