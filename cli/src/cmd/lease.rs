//! `cairn lease`: host-network port leases of the nodes: list, acquire, release.

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::{emit, table, time};

#[derive(Subcommand)]
pub enum LeaseCmd {
    /// Port leases of every node (or one).
    List {
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// The ports one holder leases on a node.
    Get {
        node: String,
        holder: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Lease free ports of a node's range to a holder.
    Acquire {
        node: String,
        holder: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Lifetime unless the node's agent renews it.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Release a holder's ports on a node.
    Release { node: String, holder: String },
}

#[derive(Serialize)]
struct LeaseOut {
    node: String,
    port: u32,
    holder: String,
    expires: String,
}

pub async fn run(ctx: &mut Ctx, c: LeaseCmd) -> anyhow::Result<()> {
    let format = ctx.format;
    let print = |leases: Vec<LeaseOut>| {
        emit(format, &leases, || {
            let mut t = table(&["NODE", "PORT", "HOLDER", "EXPIRES"]);
            for l in &leases {
                t.add_row(vec![
                    l.node.clone(),
                    l.port.to_string(),
                    l.holder.clone(),
                    l.expires.clone(),
                ]);
            }
            t
        })
    };
    let leases_of = |all: &[pb::NodeView], holder: Option<&str>| -> Vec<LeaseOut> {
        all.iter()
            .flat_map(|n| {
                n.leases.iter().map(|l| LeaseOut {
                    node: n.name.clone(),
                    port: l.port,
                    holder: l.holder.clone(),
                    expires: time(l.expires_ms),
                })
            })
            .filter(|l| holder.is_none_or(|h| h == l.holder))
            .collect()
    };
    match c {
        LeaseCmd::List { node, read } => {
            let all = ctx.nodes(node.as_deref(), &read).await?;
            print(leases_of(&all, None))
        }
        LeaseCmd::Get { node, holder, read } => {
            let all = ctx.nodes(Some(&node), &read).await?;
            let found = leases_of(&all, Some(&holder));
            if found.is_empty() {
                bail!("{holder} holds no ports on node/{node}");
            }
            print(found)
        }
        LeaseCmd::Acquire {
            node,
            holder,
            count,
            ttl,
        } => {
            let body = Body::AcquirePortLeases(pb::AcquirePortLeases {
                node,
                holder,
                count,
                ttl_ms: ttl.as_millis() as u64,
            });
            ctx.submit_and_print(body, None).await
        }
        LeaseCmd::Release { node, holder } => {
            let body = Body::ReleasePortLeases(pb::ReleasePortLeases { node, holder });
            ctx.submit_and_print(body, None).await
        }
    }
}
