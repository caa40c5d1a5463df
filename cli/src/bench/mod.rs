//! `cairn bench`: load generators and their reports. `append` measures durable
//! appends (against Cairn, or etcd with the `etcd` feature), `agents` simulated agents
//! at scale, `jobs` trivial jobs end to end on the cluster's agents; `summary` reduces
//! several `append` rounds to medians and ratios to etcd. Each takes its own `-o`.

mod agents;
mod append;
mod jobs;
mod proc;
mod serve;
mod summary;
mod timeline;

use clap::Subcommand;

use crate::ctx::Ctx;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Concurrent durable appends of a fixed-size payload; prints throughput, latency
    /// percentiles and each server's RSS.
    Append(append::AppendArgs),
    /// Simulated agents at scale: heartbeats, health changes, false `node_lost`, CPU.
    Agents(agents::AgentsArgs),
    /// Trivial jobs end to end on the cluster's agents: jobs per second, latency.
    Jobs(jobs::JobsArgs),
    /// Medians over rounds of `bench append -o json` files, and Cairn's ratio to etcd.
    Summary(summary::SummaryArgs),
    /// HTTP load on model servers or deployment endpoints: requests/s, latency, failures,
    /// and the latency a router adds over calling a replica directly.
    Serve(serve::ServeArgs),
}

pub async fn run(ctx: &mut Ctx, c: BenchCmd) -> anyhow::Result<()> {
    match c {
        BenchCmd::Append(args) => append::append(&ctx.cluster, args).await,
        BenchCmd::Summary(args) => summary::summary(args),
        BenchCmd::Jobs(args) => jobs::jobs(&mut ctx.cluster, args).await,
        BenchCmd::Agents(args) => agents::agents(&mut ctx.cluster, args).await,
        BenchCmd::Serve(args) => serve::serve(args).await,
    }
}

/// The median of `xs` (NaN for none).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}
