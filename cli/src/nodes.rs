//! `cairn node`, `cairn gpu` and `cairn lease`: the GPU nodes as the log tells them.

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::client::Cluster;
use crate::commands::{consistency, print_submitted, submit, Ctx};
use crate::output::{bytes, emit, table, time};
use crate::views::labels_line;
use crate::ReadArgs;

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

#[derive(Subcommand)]
pub enum GpuCmd {
    /// GPUs of every node (or one), with health and cordons.
    List {
        #[arg(long)]
        node: Option<String>,
        /// Only unhealthy GPUs.
        #[arg(long)]
        unhealthy: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// The interconnect matrix of a node, as `nvidia-smi topo -m` prints it.
    Topo {
        node: String,
        #[command(flatten)]
        read: ReadArgs,
    },
}

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

async fn nodes(
    cluster: &mut Cluster,
    name: Option<&str>,
    read: &ReadArgs,
) -> anyhow::Result<Vec<pb::NodeView>> {
    let req = pb::ListNodesRequest {
        name: name.unwrap_or_default().to_string(),
        consistency: consistency(read),
    };
    let r = cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.list_nodes(req).await }
        })
        .await?;
    Ok(r.nodes)
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

#[derive(Serialize, Clone)]
struct GpuOut {
    node: String,
    index: u32,
    uuid: String,
    name: String,
    pci_bus_id: String,
    memory_total_mib: u64,
    compute_capability: String,
    numa_node: i32,
    cpu_affinity: String,
    mig_enabled: bool,
    healthy: bool,
    reason: String,
    cordoned: bool,
}

fn gpus_of(n: &pb::NodeView) -> Vec<GpuOut> {
    let inv = n.inventory.clone().unwrap_or_default();
    inv.gpus
        .iter()
        .map(|g| {
            let h = n.health.iter().find(|h| h.uuid == g.uuid);
            GpuOut {
                node: n.name.clone(),
                index: g.index,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                memory_total_mib: g.memory_total_mib,
                compute_capability: g.compute_capability.clone(),
                numa_node: g.numa_node,
                cpu_affinity: g.cpu_affinity.clone(),
                mig_enabled: g.mig_enabled,
                healthy: h.is_none_or(|h| h.healthy),
                reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                cordoned: n.cordoned || n.cordoned_gpus.contains(&g.uuid),
            }
        })
        .collect()
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

pub async fn node_cmd(cluster: &mut Cluster, ctx: &Ctx, c: NodeCmd) -> anyhow::Result<()> {
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
            let all = nodes(cluster, None, &read).await?;
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
            let all = nodes(cluster, Some(&name), &read).await?;
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
            let r = submit(cluster, ctx, change(name, gpu, reason, false), None).await?;
            print_submitted(ctx, &r)
        }
        NodeCmd::Drain { name, reason } => {
            let r = submit(cluster, ctx, change(name, None, reason, true), None).await?;
            print_submitted(ctx, &r)
        }
        NodeCmd::Uncordon { name, gpu } => {
            let body = Body::UncordonNode(pb::UncordonNode {
                node: name,
                gpu_uuid: gpu.unwrap_or_default(),
            });
            let r = submit(cluster, ctx, body, None).await?;
            print_submitted(ctx, &r)
        }
    }
}

/// The `nvidia-smi topo -m` cell for a pair.
fn legend(l: &pb::GpuLink) -> &'static str {
    if l.nvlinks > 0 {
        return "NV";
    }
    match pb::PcieLevel::try_from(l.pcie) {
        Ok(pb::PcieLevel::SameBoard) => "BRD",
        Ok(pb::PcieLevel::SingleSwitch) => "PIX",
        Ok(pb::PcieLevel::MultipleSwitches) => "PXB",
        Ok(pb::PcieLevel::HostBridge) => "PHB",
        Ok(pb::PcieLevel::SameNuma) => "NODE",
        Ok(pb::PcieLevel::CrossSocket) => "SYS",
        _ => "?",
    }
}

pub async fn gpu_cmd(cluster: &mut Cluster, ctx: &Ctx, c: GpuCmd) -> anyhow::Result<()> {
    match c {
        GpuCmd::List {
            node,
            unhealthy,
            read,
        } => {
            let all = nodes(cluster, node.as_deref(), &read).await?;
            let gpus: Vec<GpuOut> = all
                .iter()
                .flat_map(gpus_of)
                .filter(|g| !unhealthy || !g.healthy)
                .collect();
            emit(ctx.format, &gpus, || {
                let mut t = table(&[
                    "NODE", "GPU", "UUID", "MODEL", "MEMORY", "NUMA", "HEALTH", "CORDONED",
                ]);
                for g in &gpus {
                    let health = if g.healthy {
                        "healthy".to_string()
                    } else {
                        format!("unhealthy: {}", g.reason)
                    };
                    t.add_row(vec![
                        g.node.clone(),
                        g.index.to_string(),
                        g.uuid.clone(),
                        g.name.clone(),
                        format!("{} MiB", g.memory_total_mib),
                        g.numa_node.to_string(),
                        health,
                        if g.cordoned { "yes" } else { "" }.to_string(),
                    ]);
                }
                t
            })
        }
        GpuCmd::Topo { node, read } => {
            let all = nodes(cluster, Some(&node), &read).await?;
            let Some(n) = all.first() else {
                bail!("node/{node} not found");
            };
            let inv = n.inventory.clone().unwrap_or_default();
            let count = inv.gpus.len();
            let cell = |a: usize, b: usize| -> String {
                if a == b {
                    return "X".into();
                }
                let (lo, hi) = (a.min(b) as u32, a.max(b) as u32);
                match inv.links.iter().find(|l| l.a == lo && l.b == hi) {
                    Some(l) if l.nvlinks > 0 => format!("NV{}", l.nvlinks),
                    Some(l) => legend(l).to_string(),
                    None => "?".into(),
                }
            };
            let matrix: Vec<Vec<String>> = (0..count)
                .map(|a| (0..count).map(|b| cell(a, b)).collect())
                .collect();
            #[derive(Serialize)]
            struct Topo<'a> {
                node: &'a str,
                gpus: Vec<String>,
                matrix: &'a [Vec<String>],
                numa: Vec<i32>,
                cpu_affinity: Vec<String>,
            }
            let out = Topo {
                node: &n.name,
                gpus: inv.gpus.iter().map(|g| format!("GPU{}", g.index)).collect(),
                matrix: &matrix,
                numa: inv.gpus.iter().map(|g| g.numa_node).collect(),
                cpu_affinity: inv.gpus.iter().map(|g| g.cpu_affinity.clone()).collect(),
            };
            emit(ctx.format, &out, || {
                let mut header: Vec<String> = vec![String::new()];
                header.extend(out.gpus.iter().cloned());
                header.push("CPU Affinity".into());
                header.push("NUMA Affinity".into());
                let refs: Vec<&str> = header.iter().map(String::as_str).collect();
                let mut t = table(&refs);
                for (a, row) in matrix.iter().enumerate() {
                    let mut cells = vec![out.gpus[a].clone()];
                    cells.extend(row.iter().cloned());
                    cells.push(out.cpu_affinity[a].clone());
                    cells.push(out.numa[a].to_string());
                    t.add_row(cells);
                }
                t
            })?;
            if ctx.format == crate::output::Format::Table {
                println!("Legend: X = self, NV# = # NVLinks, PIX = one PCIe switch, PXB = several switches, PHB = host bridge, NODE = same NUMA node, SYS = across sockets");
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct LeaseOut {
    node: String,
    port: u32,
    holder: String,
    expires: String,
}

pub async fn lease_cmd(cluster: &mut Cluster, ctx: &Ctx, c: LeaseCmd) -> anyhow::Result<()> {
    let print = |leases: Vec<LeaseOut>| {
        emit(ctx.format, &leases, || {
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
            let all = nodes(cluster, node.as_deref(), &read).await?;
            print(leases_of(&all, None))
        }
        LeaseCmd::Get { node, holder, read } => {
            let all = nodes(cluster, Some(&node), &read).await?;
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
            let r = submit(cluster, ctx, body, None).await?;
            print_submitted(ctx, &r)
        }
        LeaseCmd::Release { node, holder } => {
            let body = Body::ReleasePortLeases(pb::ReleasePortLeases { node, holder });
            let r = submit(cluster, ctx, body, None).await?;
            print_submitted(ctx, &r)
        }
    }
}
