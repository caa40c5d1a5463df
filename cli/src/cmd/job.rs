//! `cairn job`: submit training jobs, see where they were placed and why they wait,
//! follow them, read their replicas' logs, cancel them.

use anyhow::{bail, Context};
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::client::Cluster;
use crate::ctx::{document, parse_label, Ctx, ReadArgs};
use crate::output::{emit, table, time, Format};
use crate::views::EventView;

#[derive(Subcommand)]
pub enum JobCmd {
    /// Submit a job document (YAML or JSON; `-` reads stdin).
    Submit {
        #[arg(long, short = 'f')]
        file: String,
    },
    /// One job: phase, reason, and where each replica runs.
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Jobs, in submission order.
    List {
        /// Only jobs in this phase (Queued, Scheduled, Cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with this label, key=value.
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    Cancel {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every event of a job, including why it was placed where.
    History { name: String },
    /// Follow a job as its replicas come up, until it ends.
    Watch { name: String },
    /// A replica's output, from the agent of the node that ran it (or, when that agent
    /// is out of reach, from the agent directory on this machine).
    Logs {
        name: String,
        #[arg(long, default_value = "master")]
        role: String,
        #[arg(long, default_value_t = 0)]
        index: u32,
        /// Keep printing what is appended.
        #[arg(long, short = 'f')]
        follow: bool,
        /// The agent's state directory on this machine (the fallback).
        #[arg(long, env = "CAIRN_AGENT_STATE_DIR", default_value = ".cairn/agent")]
        state_dir: std::path::PathBuf,
    },
}

async fn jobs(
    cluster: &mut Cluster,
    name: &str,
    read: &ReadArgs,
) -> anyhow::Result<Vec<pb::JobView>> {
    let req = pb::ListJobsRequest {
        name: name.to_string(),
        consistency: read.consistency(),
        node: String::new(),
    };
    Ok(cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.list_jobs(req).await }
        })
        .await?
        .jobs)
}

#[derive(Serialize)]
struct JobOut {
    name: String,
    phase: String,
    reason: String,
    framework: String,
    queue: String,
    priority: i64,
    replicas: u32,
    gpus: u32,
    submitted: String,
    updated: String,
    revision: u64,
    labels: std::collections::BTreeMap<String, String>,
    placements: Vec<pb::ReplicaPlacement>,
    conditions: Vec<pb::JobCondition>,
}

fn job_out(j: &pb::JobView) -> JobOut {
    let doc: serde_json::Value = serde_json::from_str(&j.spec_json).unwrap_or_default();
    let labels = doc["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    JobOut {
        name: j.name.clone(),
        phase: j.phase.clone(),
        reason: j.reason.clone(),
        framework: j.framework.clone(),
        queue: j.queue.clone(),
        priority: j.priority,
        replicas: j.replicas,
        gpus: j.gpus,
        submitted: time(j.submitted_ms),
        updated: time(j.updated_ms),
        revision: j.revision,
        labels,
        placements: j.placements.clone(),
        conditions: j.conditions.clone(),
    }
}

pub async fn run(ctx: &mut Ctx, c: JobCmd) -> anyhow::Result<()> {
    match c {
        JobCmd::Submit { file } => {
            let spec_json = document(&file)?;
            ctx.submit_and_print(Body::SubmitJob(pb::SubmitJob { spec_json }), None)
                .await
        }
        JobCmd::Get { name, read } => get(ctx, &name, &read).await,
        JobCmd::List {
            state,
            label,
            queue,
            read,
        } => list(ctx, state, label, queue, &read).await,
        JobCmd::Cancel { name, reason } => {
            ctx.submit_and_print(Body::CancelJob(pb::CancelJob { name, reason }), None)
                .await
        }
        JobCmd::Watch { name } => watch(&mut ctx.cluster, &name).await,
        JobCmd::Logs {
            name,
            role,
            index,
            follow,
            state_dir,
        } => logs(ctx, &name, &role, index, follow, &state_dir).await,
        JobCmd::History { name } => history(ctx, &name).await,
    }
}

async fn get(ctx: &mut Ctx, name: &str, read: &ReadArgs) -> anyhow::Result<()> {
    let found = jobs(&mut ctx.cluster, name, read).await?;
    let Some(j) = found.first() else {
        bail!("job/{name} not found");
    };
    let o = job_out(j);
    emit(ctx.format, &o, || {
        let mut t = table(&["REPLICA", "NODE", "GPUS", "PORTS", "SCORE"]);
        for p in &o.placements {
            t.add_row(vec![
                format!("{}-{}", p.role, p.index),
                p.node.clone(),
                p.gpus.join(","),
                p.ports
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                p.score.to_string(),
            ]);
        }
        t
    })?;
    if ctx.format == Format::Table {
        let mut t = table(&["CONDITION", "SINCE", "REASON"]);
        for c in &o.conditions {
            t.add_row(vec![c.kind.clone(), time(c.at_ms), c.reason.clone()]);
        }
        println!("{t}");
        println!(
            "job/{}: {} ({} replicas, {} GPUs, queue {}, priority {}){}",
            o.name,
            o.phase,
            o.replicas,
            o.gpus,
            o.queue,
            o.priority,
            if o.reason.is_empty() {
                String::new()
            } else {
                format!("\n  reason: {}", o.reason)
            }
        );
    }
    Ok(())
}

async fn list(
    ctx: &mut Ctx,
    state: Option<String>,
    label: Option<String>,
    queue: Option<String>,
    read: &ReadArgs,
) -> anyhow::Result<()> {
    let label = label.as_deref().map(parse_label).transpose()?;
    let all: Vec<JobOut> = jobs(&mut ctx.cluster, "", read)
        .await?
        .iter()
        .map(job_out)
        .filter(|j| {
            state
                .as_ref()
                .is_none_or(|s| j.phase.eq_ignore_ascii_case(s))
        })
        .filter(|j| queue.as_ref().is_none_or(|q| j.queue == *q))
        .filter(|j| {
            label
                .as_ref()
                .is_none_or(|(k, v)| j.labels.get(k) == Some(v))
        })
        .collect();
    emit(ctx.format, &all, || {
        let mut t = table(&[
            "NAME",
            "PHASE",
            "FRAMEWORK",
            "REPLICAS",
            "GPUS",
            "QUEUE",
            "PRIORITY",
            "SUBMITTED",
            "REASON",
        ]);
        for j in &all {
            t.add_row(vec![
                j.name.clone(),
                j.phase.clone(),
                j.framework.clone(),
                j.replicas.to_string(),
                j.gpus.to_string(),
                j.queue.clone(),
                j.priority.to_string(),
                j.submitted.clone(),
                j.reason.clone(),
            ]);
        }
        t
    })
}

/// A replica's log from its node's agent (through a member) or, when that is out of
/// reach, from this machine's agent directory.
async fn logs(
    ctx: &mut Ctx,
    name: &str,
    role: &str,
    index: u32,
    follow: bool,
    state_dir: &std::path::Path,
) -> anyhow::Result<()> {
    match remote_logs(&mut ctx.cluster, name, role, index, follow).await {
        Ok(()) => Ok(()),
        Err(remote) => {
            // The node's agent is out of reach of the members: this machine may be the node.
            let path = state_dir
                .join("replicas")
                .join("logs")
                .join(name)
                .join(format!("{role}-{index}.log"));
            if path.exists() {
                local_logs(&path, follow).await
            } else {
                Err(remote)
            }
        }
    }
}

async fn history(ctx: &mut Ctx, name: &str) -> anyhow::Result<()> {
    let filter = pb::EventFilter {
        entity: Some(pb::EntityRef {
            kind: "job".into(),
            name: name.to_string(),
        }),
        ..Default::default()
    };
    let r = ctx
        .cluster
        .call(|mut c| {
            let filter = filter.clone();
            async move {
                c.list_events(pb::ListEventsRequest {
                    filter: Some(filter),
                    limit: 10_000,
                    ..Default::default()
                })
                .await
            }
        })
        .await?;
    if r.events.is_empty() {
        bail!("job/{name} has no history");
    }
    let views: Vec<EventView> = r.events.iter().map(EventView::from).collect();
    emit(ctx.format, &views, || {
        let mut t = table(&["SEQ", "TIME", "TYPE", "ACTOR", "WHAT"]);
        for (e, v) in r.events.iter().zip(&views) {
            t.add_row(vec![
                v.sequence.to_string(),
                v.time.clone(),
                v.kind.clone(),
                v.actor.clone(),
                explain(e),
            ]);
        }
        t
    })
}

async fn watch(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} replicas running  {msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress style: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("job/{name}"));
    loop {
        let found = jobs(cluster, name, &ReadArgs { stale: true }).await?;
        let Some(j) = found.first() else {
            bail!("job/{name} not found");
        };
        let running = j
            .replica_status
            .iter()
            .filter(|r| r.phase == "Running" || r.phase == "Succeeded")
            .count();
        bar.set_length(u64::from(j.replicas));
        bar.set_position(running as u64);
        let mut msg = j.phase.clone();
        if !j.reason.is_empty() {
            msg.push_str(": ");
            msg.push_str(&j.reason);
        }
        if j.restarts > 0 {
            msg.push_str(&format!(" ({} restarts)", j.restarts));
        }
        bar.set_message(msg.clone());
        bar.tick();
        if matches!(j.phase.as_str(), "Succeeded" | "Failed" | "Cancelled") {
            bar.finish_with_message(msg.clone());
            println!("job/{name}: {msg}");
            return if j.phase == "Succeeded" {
                Ok(())
            } else {
                Err(anyhow::anyhow!("job/{name} {}", j.phase))
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A replica's log, which a member reads from the agent of the node that ran it.
async fn remote_logs(
    cluster: &mut Cluster,
    name: &str,
    role: &str,
    index: u32,
    follow: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let req = pb::ReadLogRequest {
        job: name.to_string(),
        role: role.to_string(),
        index,
        follow,
    };
    let mut stream = cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.read_replica_log(req).await }
        })
        .await?;
    while let Some(chunk) = stream.message().await? {
        std::io::stdout().write_all(&chunk.data)?;
    }
    Ok(())
}

/// A replica's log file on this machine.
async fn local_logs(path: &std::path::Path, follow: bool) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::File::open(path).with_context(|| {
        format!(
            "no log at {} (logs stay on the node that ran the replica; --state-dir names the agent's directory)",
            path.display()
        )
    })?;
    let mut buf = Vec::new();
    let mut pos = 0u64;
    loop {
        f.seek(SeekFrom::Start(pos))?;
        buf.clear();
        pos += f.read_to_end(&mut buf)? as u64;
        std::io::stdout().write_all(&buf)?;
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// One line on what a job event says.
fn explain(e: &pb::Event) -> String {
    use pb::event::Payload as P;
    match &e.payload {
        Some(P::JobSubmitted(_)) => "submitted".into(),
        Some(P::JobWaiting(w)) => format!("waiting: {}", w.reason),
        Some(P::JobScheduled(s)) => s
            .placements
            .iter()
            .map(|p| {
                format!(
                    "{}-{} → {} [{}] score {}",
                    p.role,
                    p.index,
                    p.node,
                    p.gpus.join(","),
                    p.score
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(P::JobCancelled(c)) => format!("cancelled: {}", c.reason),
        Some(P::NoteAdded(n)) => format!("note: {}", n.text),
        _ => String::new(),
    }
}
