//! Decisions about training jobs: submission (with an immediate placement attempt),
//! scheduling passes over the queue, cancellation, deadlines, the replicas' lifecycle as
//! their agents report it, and what a node's trouble does to the jobs on it.

use std::collections::BTreeSet;

use super::command::{JobCommand, ReplicaExit};
use super::event::JobEvent;
use super::placement;
use super::spec::{JobDocument, RestartPolicy};
use super::state::{queue, JobPhase, JobState, Jobs, Placement, ReplicaId, ReplicaPhase};
use super::KIND;
use crate::emit::Emit;
use crate::entity::Issued;
use crate::model::{self, Lineage, ModelEvent, Models, NewVersion, RunOutputs};
use crate::node::{self, Disruption, Nodes};
use crate::queue::Quotas;
use crate::rejection::Rejection;

/// What a job decision reads: the jobs, the nodes and quotas they are placed by, and
/// the models their runs register versions of.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub jobs: &'a Jobs,
    pub nodes: &'a Nodes,
    pub quotas: &'a Quotas,
    pub models: &'a Models,
}

fn not_found(name: &str) -> Rejection {
    Rejection::NotFound(format!("{KIND}/{name}"))
}

/// Decide a job command; a job that succeeds registers a version of the model it names.
pub fn decide<O>(
    ctx: Context<'_>,
    cmd: &JobCommand,
    issued: Issued<'_>,
    out: &mut O,
) -> Result<(), Rejection>
where
    O: Emit<JobEvent> + Emit<ModelEvent>,
{
    match cmd {
        JobCommand::Submit { doc } => submit(ctx, doc, issued.timestamp_ms, out),
        JobCommand::Schedule => {
            let mut capacity = placement::capacity(ctx.jobs, ctx.nodes, ctx.quotas);
            for (name, j) in queue(ctx.jobs) {
                match placement::place(&mut capacity, j) {
                    Ok(placements) => out.emit(name, JobEvent::Scheduled { placements }),
                    Err(reason) if reason != j.reason && j.phase == JobPhase::Queued => {
                        out.emit(name, JobEvent::Waiting { reason })
                    }
                    Err(_) => {}
                }
            }
            Ok(())
        }
        JobCommand::Cancel { name, reason } => match ctx.jobs.get(name) {
            None => Err(not_found(name)),
            Some(j) if j.phase.finished() => Err(Rejection::FailedPrecondition(format!(
                "{KIND}/{name} already ended ({})",
                j.phase.name()
            ))),
            Some(_) => {
                let reason = if reason.is_empty() {
                    format!("cancelled by {}", issued.actor)
                } else {
                    reason.clone()
                };
                out.emit(name, JobEvent::Cancelled { reason });
                Ok(())
            }
        },
        JobCommand::EnforceDeadline { name } => {
            if let Some(j) = ctx.jobs.get(name) {
                let past = j.deadline_ms().is_some_and(|d| issued.timestamp_ms > d);
                if !j.phase.finished() && past {
                    let reason = format!(
                        "DeadlineExceeded: active for more than {} s",
                        j.doc.spec.run_policy.active_deadline_seconds.unwrap_or(0)
                    );
                    out.emit(name, JobEvent::Failed { reason });
                }
            }
            Ok(())
        }
        JobCommand::ReportReplica {
            node,
            job,
            replica,
            attempt,
            pid,
            exit,
            outputs,
            token_digest,
        } => {
            node::authorise(ctx.nodes, node, token_digest)?;
            let j = ctx.jobs.get(job).ok_or_else(|| not_found(job))?;
            let report = Report {
                node,
                replica,
                attempt: *attempt,
                pid: *pid,
                exit: *exit,
                outputs,
            };
            report_replica(ctx.models, j, job, report, out);
            Ok(())
        }
    }
}

/// Record a new job and try to place it at once.
pub fn submit(
    ctx: Context<'_>,
    doc: &JobDocument,
    timestamp_ms: i64,
    out: &mut impl Emit<JobEvent>,
) -> Result<(), Rejection> {
    let name = &doc.metadata.name;
    if ctx.jobs.get(name).is_some_and(|j| !j.phase.finished()) {
        return Err(Rejection::AlreadyExists(format!("{KIND}/{name}")));
    }
    out.emit(
        name,
        JobEvent::Submitted {
            doc: Box::new(doc.clone()),
        },
    );
    let queued = JobState::queued(doc.clone(), timestamp_ms, 0);
    match placement::place(
        &mut placement::capacity(ctx.jobs, ctx.nodes, ctx.quotas),
        &queued,
    ) {
        Ok(placements) => out.emit(name, JobEvent::Scheduled { placements }),
        Err(reason) => out.emit(name, JobEvent::Waiting { reason }),
    }
    Ok(())
}

/// One agent report about a replica.
struct Report<'a> {
    node: &'a str,
    replica: &'a ReplicaId,
    attempt: u32,
    pid: u32,
    exit: Option<ReplicaExit>,
    outputs: &'a RunOutputs,
}

/// An agent's report about a replica it runs. Reports about an older attempt, or about a
/// job that already ended, change nothing (they may arrive late, or twice).
fn report_replica<O>(models: &Models, j: &JobState, name: &str, r: Report<'_>, out: &mut O)
where
    O: Emit<JobEvent> + Emit<ModelEvent>,
{
    let Report {
        node,
        replica,
        attempt,
        pid,
        exit,
        outputs,
    } = r;
    if !j
        .placements
        .iter()
        .any(|p| p.replica == *replica && p.node == node)
    {
        // Stale (the job moved) or wrong: either way it changes nothing.
        return;
    }
    let Some(status) = j.replicas.get(replica) else {
        return;
    };
    if !j.phase.active() || attempt != status.attempt {
        return;
    }
    match exit {
        None => {
            if status.phase != ReplicaPhase::Pending {
                return;
            }
            out.emit(
                name,
                JobEvent::ReplicaStarted {
                    replica: replica.clone(),
                    attempt,
                    node: node.to_string(),
                    pid,
                },
            );
            let others_running = j
                .replicas
                .iter()
                .filter(|(id, _)| *id != replica)
                .all(|(_, r)| r.phase != ReplicaPhase::Pending);
            let all_placed = j.placements.len() == j.replicas().len();
            if j.phase == JobPhase::Scheduled && others_running && all_placed {
                out.emit(name, JobEvent::Running);
            }
        }
        Some(x) => {
            if !matches!(status.phase, ReplicaPhase::Running | ReplicaPhase::Pending) {
                return;
            }
            out.emit(
                name,
                JobEvent::ReplicaExited {
                    replica: replica.clone(),
                    attempt,
                    exit_code: x.code,
                    signal: x.signal,
                    oom: x.oom,
                    outputs: outputs.clone(),
                },
            );
            if exited(j, name, replica, attempt, x, out) {
                register_model(models, j, name, outputs, out);
            }
        }
    }
}

/// What follows a replica's exit: success, a restart, or failure. True when the job
/// succeeded.
fn exited(
    j: &JobState,
    name: &str,
    replica: &ReplicaId,
    attempt: u32,
    x: ReplicaExit,
    out: &mut impl Emit<JobEvent>,
) -> bool {
    let ok = x.code == 0 && x.signal == 0;
    // What the job looks like once this exit is folded in.
    let mut after = j.clone();
    if let Some(r) = after.replicas.get_mut(replica) {
        r.phase = if ok {
            ReplicaPhase::Succeeded
        } else {
            ReplicaPhase::Failed
        };
    }
    if ok && after.succeeded() {
        out.emit(name, JobEvent::Succeeded);
        return true;
    }
    let Some(role) = j.doc.spec.roles.get(&replica.role) else {
        return false;
    };
    let retry = match role.restart_policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => !ok,
        RestartPolicy::Always => true,
        // 1-127: the program failed (permanent); 128-255: killed by a signal or an OOM
        // (retryable).
        RestartPolicy::ExitCode => !ok && (x.signal != 0 || x.oom || x.code >= 128),
    };
    if ok && !retry {
        return false;
    }
    let limit = j.doc.spec.run_policy.backoff_limit;
    let event = if !retry {
        JobEvent::Failed {
            reason: format!(
                "{replica} exited with {}; restart policy {:?}",
                describe(x),
                role.restart_policy
            ),
        }
    } else if i64::from(j.restarts) >= limit {
        JobEvent::Failed {
            reason: format!(
                "{replica} exited with {}; backoff limit {limit} reached",
                describe(x)
            ),
        }
    } else {
        JobEvent::ReplicaRestarting {
            replica: replica.clone(),
            attempt: attempt + 1,
            reason: format!("exited with {}", describe(x)),
        }
    };
    out.emit(name, event);
    false
}

/// A job that succeeded and names a model registers a version of it (the model is
/// created if needed): its source, where it was trained (job, nodes, GPUs, code) and
/// what its runs wrote — the reporting replica's outputs first, then the others'.
fn register_model(
    models: &Models,
    j: &JobState,
    name: &str,
    outputs: &RunOutputs,
    out: &mut impl Emit<ModelEvent>,
) {
    let Some(m) = &j.doc.spec.model else {
        return;
    };
    let outputs = j.outputs.values().fold(outputs.clone(), |all, o| all.or(o));
    let mut nodes: Vec<String> = j.placements.iter().map(|p| p.node.clone()).collect();
    nodes.dedup();
    let gpus = j.placements.iter().flat_map(|p| p.gpus.clone()).collect();
    let code = match &j.doc.spec.code_sync {
        Some(c) => match (&c.git, &c.directory) {
            (Some(g), _) => match &g.reference {
                Some(r) => format!("git {}@{r}", g.repository),
                None => format!("git {}", g.repository),
            },
            (None, Some(d)) => format!("dir {d}"),
            (None, None) => String::new(),
        },
        None => String::new(),
    };
    let source = if m.path.is_empty() {
        format!("cairn://{}/{name}", super::KIND)
    } else {
        m.path.clone()
    };
    let first_node = nodes.first().cloned().unwrap_or_default();
    let new = NewVersion {
        storage_location: model::values::storage_location(&source, &first_node),
        source,
        run_id: name.to_string(),
        description: m.description.clone(),
        lineage: Some(Lineage {
            job: name.to_string(),
            nodes,
            gpus,
            code,
        }),
        outputs,
        ..NewVersion::default()
    };
    // With `create_model` the registration cannot be refused.
    let _ = model::register(models, &m.name, new, true, out);
}

fn describe(x: ReplicaExit) -> String {
    if x.oom {
        "an out-of-memory kill".into()
    } else if x.signal != 0 {
        format!("signal {}", x.signal)
    } else {
        format!("code {}", x.code)
    }
}

/// Active jobs with a replica where a disruption hit go back to the queue: their
/// replicas stop and they are placed again, which counts as a restart. Past the backoff
/// limit, or when a hit replica's restart policy is Never, they fail instead. A job hit
/// by several disruptions of one command reacts once, to the first.
pub fn react(jobs: &Jobs, disruptions: &[Disruption], out: &mut impl Emit<JobEvent>) {
    let mut done = BTreeSet::new();
    for d in disruptions {
        for (name, j) in jobs {
            let hit: Vec<&Placement> = j
                .placements
                .iter()
                .filter(|p| {
                    p.node == d.node
                        && d.gpu
                            .as_deref()
                            .is_none_or(|g| p.gpus.iter().any(|x| x == g))
                })
                .collect();
            if !j.phase.active() || hit.is_empty() || !done.insert(name) {
                continue;
            }
            out.emit(name, requeue_or_fail(j, &hit, &d.reason));
        }
    }
}

fn requeue_or_fail(j: &JobState, hit: &[&Placement], reason: &str) -> JobEvent {
    // A replica that must not restart takes the job down with it.
    let never = hit.iter().find(|p| {
        j.doc
            .spec
            .roles
            .get(&p.replica.role)
            .map(|r| r.restart_policy)
            == Some(RestartPolicy::Never)
    });
    let limit = j.doc.spec.run_policy.backoff_limit;
    if let Some(p) = never {
        JobEvent::Failed {
            reason: format!("{reason}; {} has restart policy Never", p.replica),
        }
    } else if i64::from(j.restarts) >= limit {
        JobEvent::Failed {
            reason: format!("{reason}; backoff limit {limit} reached"),
        }
    } else {
        JobEvent::Requeued {
            reason: reason.to_string(),
        }
    }
}
