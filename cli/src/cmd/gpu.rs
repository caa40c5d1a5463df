//! `cairn gpu`: the GPUs of every node, their health, and a node's interconnect.

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use serde::Serialize;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::{emit, table, Format};
use crate::views::{gpus_of, GpuOut};

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

pub async fn run(ctx: &mut Ctx, c: GpuCmd) -> anyhow::Result<()> {
    match c {
        GpuCmd::List {
            node,
            unhealthy,
            read,
        } => {
            let all = ctx.nodes(node.as_deref(), &read).await?;
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
            let all = ctx.nodes(Some(&node), &read).await?;
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
            if ctx.format == Format::Table {
                println!("Legend: X = self, NV# = # NVLinks, PIX = one PCIe switch, PXB = several switches, PHB = host bridge, NODE = same NUMA node, SYS = across sockets");
            }
            Ok(())
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
