//! Decisions about cron schedules: creation, deletion, and each due run.

use super::Emitter;
use crate::command::{Command, CommandBody};
use crate::cron::{self, ConcurrencyPolicy};
use crate::event::{EntityKey, EventPayload};
use crate::rejection::Rejection;
use crate::state::State;

fn key(name: &str) -> EntityKey {
    EntityKey::new(crate::kinds::CRON, name)
}

/// Decide a cron command; `None` when `cmd` is not one.
pub(super) fn decide(
    state: &State,
    cmd: &Command,
    out: &mut Emitter<'_>,
) -> Option<Result<(), Rejection>> {
    let r = match &cmd.body {
        CommandBody::SubmitCron { spec_json } => cron::parse(spec_json)
            .map_err(|p| Rejection::InvalidArgument(p.join("; ")))
            .and_then(|doc| {
                let normalized = serde_json::to_string(&doc)
                    .map_err(|e| Rejection::InvalidArgument(format!("spec: {e}")))?;
                let unchanged = state.cron(&doc.metadata.name).is_some_and(|c| c.doc == doc);
                if !unchanged {
                    out.emit(
                        key(&doc.metadata.name),
                        EventPayload::CronSubmitted {
                            spec_json: normalized,
                        },
                    );
                }
                Ok(())
            }),
        CommandBody::DeleteCron { name } => match state.cron(name) {
            None => Err(Rejection::NotFound(key(name).to_string())),
            Some(_) => {
                out.emit(key(name), EventPayload::CronDeleted);
                Ok(())
            }
        },
        CommandBody::TriggerCron { name, scheduled_ms } => {
            trigger(state, cmd, name, *scheduled_ms, out)
        }
        _ => return None,
    };
    Some(r)
}

/// The run of `name` due at `scheduled_ms`. Only the very next due time is accepted:
/// a repeated or early trigger changes nothing.
fn trigger(
    state: &State,
    cmd: &Command,
    name: &str,
    scheduled_ms: i64,
    out: &mut Emitter<'_>,
) -> Result<(), Rejection> {
    let Some(c) = state.cron(name) else {
        return Ok(());
    };
    if c.doc.spec.suspend || c.next_due() != Some(scheduled_ms) || scheduled_ms > cmd.timestamp_ms {
        return Ok(());
    }
    let skip = |reason: String, out: &mut Emitter<'_>| {
        out.emit(
            key(name),
            EventPayload::CronSkipped {
                scheduled_ms,
                reason,
            },
        );
    };
    if let Some(deadline) = c.doc.spec.deadline_seconds {
        let late_ms = cmd.timestamp_ms - scheduled_ms;
        if late_ms > deadline * 1000 {
            skip(
                format!(
                    "{} s late, past its deadline of {deadline} s",
                    late_ms / 1000
                ),
                out,
            );
            return Ok(());
        }
    }
    let active: Vec<&String> = c
        .runs
        .keys()
        .filter(|j| state.job(j).is_some_and(|j| !j.phase.finished()))
        .collect();
    match c.doc.spec.concurrency_policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            skip(format!("{} is still active (Forbid)", active[0]), out);
            return Ok(());
        }
        ConcurrencyPolicy::Replace => {
            for j in active {
                out.emit(
                    super::jobs::key(j),
                    EventPayload::JobCancelled {
                        reason: format!("replaced by the next run of cron/{name}"),
                    },
                );
            }
        }
        _ => {}
    }
    let doc = cron::run_document(&c.doc, scheduled_ms);
    let job = doc.metadata.name.clone();
    if state.job(&job).is_some() {
        // The name is taken (a job of that name was submitted by hand): skip this run.
        skip(format!("job/{job} already exists"), out);
        return Ok(());
    }
    out.emit(
        key(name),
        EventPayload::CronTriggered {
            scheduled_ms,
            job: job.clone(),
        },
    );
    super::jobs::submit(state, doc, cmd.timestamp_ms, out)
}
