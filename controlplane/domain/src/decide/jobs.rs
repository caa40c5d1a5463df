//! Decisions about training jobs: submission (with an immediate placement attempt),
//! scheduling passes over the queue, cancellation.

use super::Emitter;
use crate::command::{Command, CommandBody};
use crate::event::{EntityKey, EventPayload};
use crate::job::{self, JobPhase, JobState};
use crate::rejection::Rejection;
use crate::schedule::Capacity;
use crate::state::State;

fn key(name: &str) -> EntityKey {
    EntityKey::new(crate::kinds::JOB, name)
}

/// Decide a job command; `None` when `cmd` is not one.
pub(super) fn decide(
    state: &State,
    cmd: &Command,
    out: &mut Emitter<'_>,
) -> Option<Result<(), Rejection>> {
    let r = match &cmd.body {
        CommandBody::SubmitJob { spec_json } => (|| {
            let doc =
                job::parse(spec_json).map_err(|p| Rejection::InvalidArgument(p.join("; ")))?;
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
                phase: JobPhase::Queued,
                reason: String::new(),
                placements: Vec::new(),
                submitted_ms: cmd.timestamp_ms,
                submitted_seq: 0,
            };
            match Capacity::of(state).place(&queued) {
                Ok(placements) => out.emit(key(&name), EventPayload::JobScheduled { placements }),
                Err(reason) => out.emit(key(&name), EventPayload::JobWaiting { reason }),
            }
            Ok(())
        })(),
        CommandBody::ScheduleJobs => {
            let mut capacity = Capacity::of(state);
            for (name, j) in state.queue() {
                match capacity.place(j) {
                    Ok(placements) => {
                        out.emit(key(name), EventPayload::JobScheduled { placements })
                    }
                    Err(reason) if reason != j.reason => {
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
        _ => return None,
    };
    Some(r)
}
