//! `cairn deploy`: model deployments — apply a spec, roll out another version, pause,
//! resume, promote a canary, roll back, scale, delete; see revisions, replicas, traffic
//! and the stable endpoint; and every step of every rollout, with who and when.

use anyhow::{bail, Context};
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::ctx::{document, Ctx, ReadArgs};
use crate::output::{emit, table, time, Format};
use crate::views::EventView;

#[derive(Subcommand)]
pub enum DeployCmd {
    /// Create or change a deployment from a `ModelDeployment` document (YAML or JSON;
    /// `-` reads stdin): a new model version or template rolls out as a new revision.
    Apply {
        #[arg(long, short = 'f')]
        file: String,
    },
    /// Roll out another model version (or follow another alias) with the same spec.
    Rollout {
        name: String,
        #[arg(long, conflicts_with = "alias")]
        version: Option<u64>,
        #[arg(long)]
        alias: Option<String>,
    },
    /// Deployments: model, ready replicas, traffic, endpoint, what they do now.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// One deployment: its revisions, replicas, traffic and endpoint URLs.
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Stop moving traffic and replicas until resumed.
    Pause {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        name: String,
    },
    /// Skip the canary steps left: the new revision takes the traffic as it can.
    Promote {
        name: String,
    },
    /// Back to the revision serving before the rollout under way (or the last one).
    Rollback {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Scale {
        name: String,
        replicas: u32,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Delete {
        name: String,
    },
    /// Every event of a deployment: revisions, placements, readiness, traffic moves.
    History {
        name: String,
    },
    /// Follow a deployment's events, resuming after a reconnect.
    Watch {
        name: String,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
    },
}

pub async fn run(ctx: &mut Ctx, c: DeployCmd) -> anyhow::Result<()> {
    match c {
        DeployCmd::Apply { file } => {
            let spec_json = document(&file)?;
            let body = Body::ApplyDeployment(pb::ApplyDeployment { spec_json });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Rollout {
            name,
            version,
            alias,
        } => {
            let d = one(ctx, &name, &ReadArgs::default()).await?;
            let mut spec: serde_json::Value =
                serde_json::from_str(&d.spec_json).context("the deployment's spec")?;
            let model = &mut spec["spec"]["model"];
            match (version, alias) {
                (Some(v), _) => {
                    model["version"] = v.into();
                    model["alias"] = serde_json::Value::Null;
                }
                (None, Some(a)) => {
                    model["alias"] = a.into();
                    model["version"] = serde_json::Value::Null;
                }
                (None, None) => bail!("--version N or --alias NAME"),
            }
            let body = Body::ApplyDeployment(pb::ApplyDeployment {
                spec_json: spec.to_string(),
            });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::List { read } => list(ctx, &read).await,
        DeployCmd::Get { name, read } => get(ctx, &name, &read).await,
        DeployCmd::Pause { name, reason } => {
            let body = Body::PauseDeployment(pb::PauseDeployment { name, reason });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Resume { name } => {
            let body = Body::ResumeDeployment(pb::ResumeDeployment { name });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Promote { name } => {
            let body = Body::PromoteDeployment(pb::PromoteDeployment { name });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Rollback { name, reason } => {
            let body = Body::RollbackDeployment(pb::RollbackDeployment { name, reason });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Scale {
            name,
            replicas,
            reason,
        } => {
            let body = Body::ScaleDeployment(pb::ScaleDeployment {
                name,
                replicas,
                reason,
                load: None,
            });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::Delete { name } => {
            let body = Body::DeleteDeployment(pb::DeleteDeployment { name });
            ctx.submit_and_print(body, None).await
        }
        DeployCmd::History { name } => history(ctx, &name).await,
        DeployCmd::Watch { name, after_seq } => {
            ctx.follow_entity("deployment", name, after_seq).await
        }
    }
}

/// The deployment `name` (empty: all), deleted ones only when asked.
pub(crate) async fn deployments(
    ctx: &mut Ctx,
    name: &str,
    include_deleted: bool,
    read: &ReadArgs,
) -> anyhow::Result<Vec<pb::DeploymentView>> {
    let req = pb::ListDeploymentsRequest {
        name: name.to_string(),
        include_deleted,
        consistency: read.consistency(),
    };
    let r = ctx
        .cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.list_deployments(req).await }
        })
        .await?;
    Ok(r.deployments)
}

async fn one(ctx: &mut Ctx, name: &str, read: &ReadArgs) -> anyhow::Result<pb::DeploymentView> {
    deployments(ctx, name, false, read)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("deployment/{name} not found"))
}

/// A deployment as the CLI shows it.
#[derive(Serialize)]
struct DeploymentOut {
    name: String,
    model: String,
    replicas: u32,
    ready: u32,
    /// Revision → percent.
    traffic: std::collections::BTreeMap<u32, u32>,
    port: u32,
    urls: Vec<String>,
    status: String,
    revisions: Vec<RevisionOut>,
}

#[derive(Serialize)]
struct RevisionOut {
    revision: u32,
    model_version: u64,
    model_uri: String,
    weight: u32,
    created: String,
    replicas: Vec<ReplicaOut>,
}

#[derive(Serialize)]
struct ReplicaOut {
    index: u32,
    node: String,
    port: u32,
    gpus: Vec<String>,
    phase: String,
    attempt: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    doomed: String,
}

fn model_of(spec_json: &str) -> String {
    let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
    let m = &spec["spec"]["model"];
    let name = m["name"].as_str().unwrap_or("?");
    match (m["version"].as_u64(), m["alias"].as_str()) {
        (Some(v), _) => format!("{name}:{v}"),
        (None, Some(a)) => format!("{name}@{a}"),
        (None, None) => name.to_string(),
    }
}

fn status(d: &pb::DeploymentView) -> String {
    let mut s = match &d.rollout {
        Some(r) => match r.step {
            Some(step) => format!("rolling out r{} (canary step {})", r.target, step + 1),
            None => format!("rolling out r{}", r.target),
        },
        None if d.weights.is_empty() => "starting".into(),
        None => "serving".into(),
    };
    if let Some(p) = &d.paused {
        s.push_str(&format!("; paused: {p}"));
    }
    if !d.waiting.is_empty() {
        s.push_str(&format!("; waiting: {}", d.waiting));
    }
    s
}

fn out(
    d: &pb::DeploymentView,
    addresses: &std::collections::BTreeMap<String, String>,
) -> DeploymentOut {
    let ready = d
        .revisions
        .iter()
        .filter(|r| d.weights.get(&r.revision).is_some_and(|w| *w > 0))
        .flat_map(|r| &r.replicas)
        .filter(|x| x.phase == "Ready")
        .count() as u32;
    DeploymentOut {
        name: d.name.clone(),
        model: model_of(&d.spec_json),
        replicas: d.replicas,
        ready,
        traffic: d.weights.clone(),
        port: d.port,
        urls: d
            .routed_on
            .iter()
            .map(|(n, port)| {
                let host = addresses.get(n).filter(|a| !a.is_empty()).unwrap_or(n);
                format!("http://{host}:{port}")
            })
            .collect(),
        status: status(d),
        revisions: d
            .revisions
            .iter()
            .map(|r| RevisionOut {
                revision: r.revision,
                model_version: r.model_version,
                model_uri: r.model_uri.clone(),
                weight: d.weights.get(&r.revision).copied().unwrap_or(0),
                created: time(r.created_ms),
                replicas: r
                    .replicas
                    .iter()
                    .map(|x| ReplicaOut {
                        index: x.index,
                        node: x.node.clone(),
                        port: x.port,
                        gpus: x.gpus.clone(),
                        phase: x.phase.clone(),
                        attempt: x.attempt,
                        doomed: x.doomed.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

async fn addresses(
    ctx: &mut Ctx,
    read: &ReadArgs,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    Ok(ctx
        .nodes(None, read)
        .await?
        .into_iter()
        .map(|n| {
            let addr = n.inventory.map(|i| i.address).unwrap_or_default();
            (n.name, addr)
        })
        .collect())
}

fn traffic(t: &std::collections::BTreeMap<u32, u32>) -> String {
    t.iter()
        .map(|(r, w)| format!("r{r} {w}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list(ctx: &mut Ctx, read: &ReadArgs) -> anyhow::Result<()> {
    let all = deployments(ctx, "", false, read).await?;
    let addresses = addresses(ctx, read).await?;
    let outs: Vec<DeploymentOut> = all.iter().map(|d| out(d, &addresses)).collect();
    emit(ctx.format, &outs, || {
        let mut t = table(&["NAME", "MODEL", "READY", "TRAFFIC", "PORT", "STATUS"]);
        for o in &outs {
            t.add_row(vec![
                o.name.clone(),
                o.model.clone(),
                format!("{}/{}", o.ready, o.replicas),
                traffic(&o.traffic),
                o.port.to_string(),
                o.status.clone(),
            ]);
        }
        t
    })
}

async fn get(ctx: &mut Ctx, name: &str, read: &ReadArgs) -> anyhow::Result<()> {
    let d = one(ctx, name, read).await?;
    let addresses = addresses(ctx, read).await?;
    let o = out(&d, &addresses);
    emit(ctx.format, &o, || {
        let mut t = table(&[
            "REVISION", "VERSION", "WEIGHT", "REPLICA", "NODE", "PORT", "PHASE", "ATTEMPT",
        ]);
        for r in &o.revisions {
            if r.replicas.is_empty() {
                t.add_row(vec![
                    format!("r{}", r.revision),
                    r.model_version.to_string(),
                    format!("{}%", r.weight),
                    "-".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
            for x in &r.replicas {
                let phase = if x.doomed.is_empty() {
                    x.phase.clone()
                } else {
                    format!("{} (doomed: {})", x.phase, x.doomed)
                };
                t.add_row(vec![
                    format!("r{}", r.revision),
                    r.model_version.to_string(),
                    format!("{}%", r.weight),
                    x.index.to_string(),
                    x.node.clone(),
                    x.port.to_string(),
                    phase,
                    x.attempt.to_string(),
                ]);
            }
        }
        t
    })?;
    if ctx.format == Format::Table {
        println!(
            "deployment/{}: {} — {}/{} ready, traffic {}; {}",
            o.name,
            o.model,
            o.ready,
            o.replicas,
            traffic(&o.traffic),
            o.status
        );
        for url in &o.urls {
            println!("  {url}");
        }
    }
    Ok(())
}

async fn history(ctx: &mut Ctx, name: &str) -> anyhow::Result<()> {
    let events = ctx
        .events_of("deployment", name, &ReadArgs::default())
        .await?;
    if events.is_empty() {
        bail!("deployment/{name} has no history");
    }
    let views: Vec<EventView> = events.iter().map(EventView::from).collect();
    emit(ctx.format, &views, || {
        let mut t = table(&["SEQ", "TIME", "TYPE", "ACTOR", "WHAT"]);
        for (e, v) in events.iter().zip(&views) {
            t.add_row(vec![
                v.sequence.to_string(),
                v.time.clone(),
                v.kind.trim_start_matches("deployment_").to_string(),
                v.actor.clone(),
                explain(e),
            ]);
        }
        t
    })
}

/// One line on what an event did.
fn explain(e: &pb::Event) -> String {
    use pb::event::Payload as P;
    match &e.payload {
        Some(P::DeploymentApplied(x)) => format!("spec applied: {}", model_of(&x.spec_json)),
        Some(P::DeploymentRevisionCreated(x)) => format!(
            "revision r{}: version {} ({}): {}",
            x.revision, x.model_version, x.model_uri, x.reason
        ),
        Some(P::DeploymentRouted(x)) => format!("port {} on {}", x.port, x.nodes.join(", ")),
        Some(P::DeploymentReplicasPlaced(x)) => x
            .placements
            .iter()
            .map(|p| {
                format!(
                    "r{}-{} → {}:{} [{}]",
                    x.revision,
                    p.index,
                    p.node,
                    p.port,
                    p.gpus.join(",")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(P::DeploymentReplicaStarted(x)) => {
            format!(
                "r{}-{} started (attempt {}, pid {})",
                x.revision, x.index, x.attempt, x.pid
            )
        }
        Some(P::DeploymentReplicaReady(x)) => format!("r{}-{} ready", x.revision, x.index),
        Some(P::DeploymentReplicaNotReady(x)) => {
            format!("r{}-{} not ready: {}", x.revision, x.index, x.reason)
        }
        Some(P::DeploymentReplicaRestarting(x)) => format!(
            "r{}-{} restarts as attempt {}: {}",
            x.revision, x.index, x.attempt, x.reason
        ),
        Some(P::DeploymentReplicaDoomed(x)) => {
            format!("r{}-{} to be replaced: {}", x.revision, x.index, x.reason)
        }
        Some(P::DeploymentReplicasRemoved(x)) => format!(
            "r{} replicas {:?} removed: {}",
            x.revision, x.indexes, x.reason
        ),
        Some(P::DeploymentTrafficShifted(x)) => {
            format!("traffic {} ({})", traffic(&x.weights), x.reason)
        }
        Some(P::DeploymentCanaryStep(x)) => format!("canary step {}", x.step + 1),
        Some(P::DeploymentRolloutCompleted(x)) => format!("r{} serves everything", x.revision),
        Some(P::DeploymentRollbackStarted(x)) => format!("rollback to r{}: {}", x.to, x.reason),
        Some(P::DeploymentPromoted(_)) => "promoted".into(),
        Some(P::DeploymentPaused(x)) => format!("paused: {}", x.reason),
        Some(P::DeploymentResumed(_)) => "resumed".into(),
        Some(P::DeploymentWaiting(x)) if x.reason.is_empty() => "no longer waiting".into(),
        Some(P::DeploymentWaiting(x)) => format!("waiting: {}", x.reason),
        Some(P::DeploymentScaled(x)) => match &x.load {
            Some(l) => format!(
                "{} replicas: {} ({:.2} requests in flight over {} ready, target {} each)",
                x.replicas,
                x.reason,
                l.in_flight_milli as f64 / 1000.0,
                l.ready,
                l.target_in_flight
            ),
            None if x.reason.is_empty() => format!("{} replicas", x.replicas),
            None => format!("{} replicas: {}", x.replicas, x.reason),
        },
        Some(P::DeploymentDeleted(_)) => "deleted".into(),
        Some(p) => format!("{p:?}"),
        None => String::new(),
    }
}
