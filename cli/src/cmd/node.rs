//! `cairn node`: GPU nodes as the log tells them (inventory, state, leases), and
//! cordons and drains.

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::{bytes, emit, table, time};
use crate::views::{gpus_of, labels_line, GpuOut};

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Every node: state, GPUs (healthy/total), cordon, leases.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// One node in full.
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Stop scheduling on a node (or, with --gpu, on one of its GPUs).
    Cordon {
        name: String,
        #[arg(long)]
        gpu: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume scheduling on a node (or one GPU).
    Uncordon {
        name: String,
        #[arg(long)]
        gpu: Option<String>,
    },
    /// Cordon a node and ask what runs there to stop.
    Drain {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// A node as `-o json|yaml` shows it.
#[derive(Serialize)]
struct NodeOut {
    name: String,
    state: String,
    cordoned: bool,
    draining: bool,
    cordon_reason: String,
    hostname: String,
    labels: std::collections::BTreeMap<String, String>,
    cpu_millis: u64,
    memory_bytes: u64,
    gpu_provider: String,
    driver_version: String,
    cuda_version: String,
    port_range: String,
    gpus: Vec<GpuOut>,
    links: Vec<pb::GpuLink>,
    leases: Vec<pb::PortLease>,
    violations: u64,
    revision: u64,
    registered: String,
    updated: String,
}

fn node_out(n: &pb::NodeView) -> NodeOut {
    let inv = n.inventory.clone().unwrap_or_default();
    NodeOut {
        name: n.name.clone(),
        state: n.state.clone(),
        cordoned: n.cordoned,
        draining: n.draining,
        cordon_reason: n.cordon_reason.clone(),
        hostname: inv.hostname.clone(),
        labels: inv.labels.clone(),
        cpu_millis: inv.cpu_millis,
        memory_bytes: inv.memory_bytes,
        gpu_provider: inv.gpu_provider.clone(),
        driver_version: inv.driver_version.clone(),
        cuda_version: inv.cuda_version.clone(),
        port_range: format!("{}-{}", inv.port_range_start, inv.port_range_end),
        gpus: gpus_of(n),
        links: inv.links.clone(),
        leases: n.leases.clone(),
        violations: n.violations,
        revision: n.revision,
        registered: time(n.registered_ms),
        updated: time(n.updated_ms),
    }
}

fn status_word(n: &pb::NodeView) -> String {
    let mut s = n.state.clone();
    if n.draining {
        s.push_str(",draining");
    } else if n.cordoned {
        s.push_str(",cordoned");
    }
    s
}

pub async fn run(ctx: &mut Ctx, c: NodeCmd) -> anyhow::Result<()> {
    let change = |node: String, gpu: Option<String>, reason: String, drain: bool| {
        Body::CordonNode(pb::CordonNode {
            node,
            gpu_uuid: gpu.unwrap_or_default(),
            reason,
            drain,
        })
    };
    match c {
        NodeCmd::List { read } => {
            let all = ctx.nodes(None, &read).await?;
            let out: Vec<NodeOut> = all.iter().map(node_out).collect();
            emit(ctx.format, &out, || {
                let mut t = table(&[
                    "NAME", "STATE", "GPUS", "PROVIDER", "LEASES", "LABELS", "UPDATED",
                ]);
                for (n, o) in all.iter().zip(&out) {
                    let healthy = o.gpus.iter().filter(|g| g.healthy).count();
                    t.add_row(vec![
                        n.name.clone(),
                        status_word(n),
                        format!("{healthy}/{} healthy", o.gpus.len()),
                        o.gpu_provider.clone(),
                        n.leases.len().to_string(),
                        labels_line(&o.labels),
                        o.updated.clone(),
                    ]);
                }
                t
            })
        }
        NodeCmd::Get { name, read } => {
            let all = ctx.nodes(Some(&name), &read).await?;
            let Some(n) = all.first() else {
                bail!("node/{name} not found");
            };
            let o = node_out(n);
            emit(ctx.format, &o, || {
                let mut t = table(&["FIELD", "VALUE"]);
                let rows = [
                    ("name", o.name.clone()),
                    ("state", status_word(n)),
                    ("cordon reason", o.cordon_reason.clone()),
                    ("hostname", o.hostname.clone()),
                    ("labels", labels_line(&o.labels)),
                    ("cpu", format!("{} cores", o.cpu_millis / 1000)),
                    ("memory", bytes(o.memory_bytes)),
                    ("gpus", o.gpus.len().to_string()),
                    ("gpu provider", o.gpu_provider.clone()),
                    (
                        "driver / cuda",
                        format!("{} / {}", o.driver_version, o.cuda_version),
                    ),
                    ("port range", o.port_range.clone()),
                    ("leased ports", o.leases.len().to_string()),
                    ("lease violations", o.violations.to_string()),
                    ("revision", o.revision.to_string()),
                    ("registered", o.registered.clone()),
                    ("updated", o.updated.clone()),
                ];
                for (k, v) in rows {
                    t.add_row(vec![k.to_string(), v]);
                }
                t
            })
        }
        NodeCmd::Cordon { name, gpu, reason } => {
            ctx.submit_and_print(change(name, gpu, reason, false), None)
                .await
        }
        NodeCmd::Drain { name, reason } => {
            ctx.submit_and_print(change(name, None, reason, true), None)
                .await
        }
        NodeCmd::Uncordon { name, gpu } => {
            let body = Body::UncordonNode(pb::UncordonNode {
                node: name,
                gpu_uuid: gpu.unwrap_or_default(),
            });
            ctx.submit_and_print(body, None).await
        }
    }
}
