//! Decisions about training jobs: submission (with an immediate placement attempt),
//! scheduling passes over the queue, cancellation.

use super::Emitter;
use crate::command::ReplicaExit;
use crate::command::{Command, CommandBody};
use crate::event::{EntityKey, EventPayload};
use crate::job::{self, JobPhase, JobState, ReplicaId, ReplicaPhase, RestartPolicy};
use crate::rejection::Rejection;
use crate::schedule::Capacity;
use crate::state::State;

pub(super) fn key(name: &str) -> EntityKey {
    EntityKey::new(crate::kinds::JOB, name)
}

/// Decide a job command; `None` when `cmd` is not one.
pub(super) fn decide(
    state: &State,
    cmd: &Command,
    out: &mut Emitter<'_>,
) -> Option<Result<(), Rejection>> {
    let r = match &cmd.body {
        CommandBody::SubmitJob { spec_json } => job::parse(spec_json)
            .map_err(|p| Rejection::InvalidArgument(p.join("; ")))
            .and_then(|doc| submit(state, doc, cmd.timestamp_ms, out)),
        CommandBody::ScheduleJobs => {
            let mut capacity = Capacity::of(state);
            for (name, j) in state.queue() {
                match capacity.place(j) {
                    Ok(placements) => {
                        out.emit(key(name), EventPayload::JobScheduled { placements })
                    }
                    Err(reason) if reason != j.reason && j.phase == JobPhase::Queued => {
                        out.emit(key(name), EventPayload::JobWaiting { reason })
                    }
                    Err(_) => {}
                }
            }
            Ok(())
        }
        CommandBody::CancelJob { name, reason } => match state.job(name) {
            None => Err(Rejection::NotFound(key(name).to_string())),
            Some(j) if j.phase.finished() => Err(Rejection::FailedPrecondition(format!(
                "{} already ended ({})",
                key(name),
                j.phase.name()
            ))),
            Some(_) => {
                let reason = if reason.is_empty() {
                    format!("cancelled by {}", cmd.actor)
                } else {
                    reason.clone()
                };
                out.emit(key(name), EventPayload::JobCancelled { reason });
                Ok(())
            }
        },
        CommandBody::SetQueueQuota { queue, gpus } => {
            if state.quotas().get(queue).copied() != *gpus {
                out.emit(
                    EntityKey::new(crate::kinds::QUEUE, queue.clone()),
                    EventPayload::QueueQuotaSet { gpus: *gpus },
                );
            }
            Ok(())
        }
        CommandBody::EnforceJobDeadline { name } => {
            if let Some(j) = state.job(name) {
                let past = j.deadline_ms().is_some_and(|d| cmd.timestamp_ms > d);
                if !j.phase.finished() && past {
                    out.emit(
                        key(name),
                        EventPayload::JobFailed {
                            reason: format!(
                                "DeadlineExceeded: active for more than {} s",
                                j.doc.spec.run_policy.active_deadline_seconds.unwrap_or(0)
                            ),
                        },
                    );
                }
            }
            Ok(())
        }
        CommandBody::ReportReplica {
            node,
            job,
            replica,
            attempt,
            pid,
            exit,
            token_digest,
        } => report_replica(
            state,
            node,
            job,
            replica,
            *attempt,
            *pid,
            *exit,
            token_digest,
            out,
        ),
        _ => return None,
    };
    Some(r)
}

/// Record a new job and try to place it at once.
pub(super) fn submit(
    state: &State,
    doc: job::JobDocument,
    timestamp_ms: i64,
    out: &mut Emitter<'_>,
) -> Result<(), Rejection> {
    let name = doc.metadata.name.clone();
    if state.job(&name).is_some_and(|j| !j.phase.finished()) {
        return Err(Rejection::AlreadyExists(key(&name).to_string()));
    }
    let normalized = serde_json::to_string(&doc)
        .map_err(|e| Rejection::InvalidArgument(format!("spec: {e}")))?;
    out.emit(
        key(&name),
        EventPayload::JobSubmitted {
            spec_json: normalized,
        },
    );
    let queued = JobState {
        doc,
        spec_json: String::new(),
        phase: JobPhase::Queued,
        reason: String::new(),
        placements: Vec::new(),
        submitted_ms: timestamp_ms,
        submitted_seq: 0,
        replicas: Default::default(),
        restarts: 0,
        conditions: Vec::new(),
    };
    match Capacity::of(state).place(&queued) {
        Ok(placements) => out.emit(key(&name), EventPayload::JobScheduled { placements }),
        Err(reason) => out.emit(key(&name), EventPayload::JobWaiting { reason }),
    }
    Ok(())
}

/// An agent's report about a replica it runs. Reports about an older attempt, or about a
/// job that already ended, change nothing (they may arrive late, or twice).
#[allow(clippy::too_many_arguments)]
fn report_replica(
    state: &State,
    node: &str,
    name: &str,
    replica: &ReplicaId,
    attempt: u32,
    pid: u32,
    exit: Option<ReplicaExit>,
    token_digest: &[u8],
    out: &mut Emitter<'_>,
) -> Result<(), Rejection> {
    let n = state
        .node(node)
        .ok_or_else(|| Rejection::NotFound(format!("node/{node}")))?;
    if n.token_digest != token_digest {
        return Err(Rejection::PermissionDenied(format!(
            "node/{node} is registered with another agent token"
        )));
    }
    let j = state
        .job(name)
        .ok_or_else(|| Rejection::NotFound(key(name).to_string()))?;
    if !j
        .placements
        .iter()
        .any(|p| p.replica == *replica && p.node == node)
    {
        // Stale (the job moved) or wrong: either way it changes nothing.
        return Ok(());
    }
    let Some(status) = j.replicas.get(replica) else {
        return Ok(());
    };
    if !j.phase.active() || attempt != status.attempt {
        return Ok(());
    }
    match exit {
        None => {
            if status.phase != ReplicaPhase::Pending {
                return Ok(());
            }
            out.emit(
                key(name),
                EventPayload::ReplicaStarted {
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
                out.emit(key(name), EventPayload::JobRunning);
            }
        }
        Some(x) => {
            if !matches!(status.phase, ReplicaPhase::Running | ReplicaPhase::Pending) {
                return Ok(());
            }
            out.emit(
                key(name),
                EventPayload::ReplicaExited {
                    replica: replica.clone(),
                    attempt,
                    exit_code: x.code,
                    signal: x.signal,
                    oom: x.oom,
                },
            );
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
                out.emit(key(name), EventPayload::JobSucceeded);
                return Ok(());
            }
            let role = &j.doc.spec.roles[&replica.role];
            let retry = match role.restart_policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => !ok,
                RestartPolicy::Always => true,
                // 1-127: the program failed (permanent); 128-255: killed by a signal or
                // an OOM (retryable).
                RestartPolicy::ExitCode => !ok && (x.signal != 0 || x.oom || x.code >= 128),
            };
            if ok && !retry {
                return Ok(());
            }
            if !retry {
                out.emit(
                    key(name),
                    EventPayload::JobFailed {
                        reason: format!(
                            "{replica} exited with {}; restart policy {:?}",
                            describe(x),
                            role.restart_policy
                        ),
                    },
                );
            } else if i64::from(j.restarts) >= j.doc.spec.run_policy.backoff_limit {
                out.emit(
                    key(name),
                    EventPayload::JobFailed {
                        reason: format!(
                            "{replica} exited with {}; backoff limit {} reached",
                            describe(x),
                            j.doc.spec.run_policy.backoff_limit
                        ),
                    },
                );
            } else {
                out.emit(
                    key(name),
                    EventPayload::ReplicaRestarting {
                        replica: replica.clone(),
                        attempt: attempt + 1,
                        reason: format!("exited with {}", describe(x)),
                    },
                );
            }
        }
    }
    Ok(())
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

/// Active jobs with a replica on `node` (on GPU `gpu` when given) go back to the queue:
/// their replicas stop and they are placed again, which counts as a restart. Past the
/// backoff limit, or when a hit replica's restart policy is Never, they fail instead.
pub(super) fn requeue_jobs_on(
    state: &State,
    node: &str,
    gpu: Option<&str>,
    reason: &str,
    out: &mut Emitter<'_>,
) {
    for (name, j) in state.jobs() {
        let hit: Vec<&crate::job::Placement> = j
            .placements
            .iter()
            .filter(|p| p.node == node && gpu.is_none_or(|g| p.gpus.iter().any(|x| x == g)))
            .collect();
        if !j.phase.active() || hit.is_empty() {
            continue;
        }
        // A replica that must not restart takes the job down with it.
        let never = hit.iter().find(|p| {
            j.doc
                .spec
                .roles
                .get(&p.replica.role)
                .map(|r| r.restart_policy)
                == Some(RestartPolicy::Never)
        });
        if let Some(p) = never {
            out.emit(
                key(name),
                EventPayload::JobFailed {
                    reason: format!("{reason}; {} has restart policy Never", p.replica),
                },
            );
        } else if i64::from(j.restarts) >= j.doc.spec.run_policy.backoff_limit {
            out.emit(
                key(name),
                EventPayload::JobFailed {
                    reason: format!(
                        "{reason}; backoff limit {} reached",
                        j.doc.spec.run_policy.backoff_limit
                    ),
                },
            );
        } else {
            out.emit(
                key(name),
                EventPayload::JobRequeued {
                    reason: reason.to_string(),
                },
            );
        }
    }
}
