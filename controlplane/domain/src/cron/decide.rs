//! Decisions about cron schedules: creation, deletion, and each due run. A run is a job:
//! the cron emits the job's events through the job aggregate.

use super::command::CronCommand;
use super::event::CronEvent;
use super::spec::{run_document, ConcurrencyPolicy};
use super::state::{CronState, Crons};
use super::KIND;
use crate::emit::Emit;
use crate::entity::Issued;
use crate::job::{self, JobEvent};
use crate::rejection::Rejection;

/// A cron that exists now (not deleted).
pub fn live<'a>(crons: &'a Crons, name: &str) -> Option<&'a CronState> {
    crons.get(name).filter(|c| !c.deleted)
}

/// Decide a cron command; a due run also submits (and may cancel) jobs.
pub fn decide<O>(
    crons: &Crons,
    jobs: job::Context<'_>,
    cmd: &CronCommand,
    issued: Issued<'_>,
    out: &mut O,
) -> Result<(), Rejection>
where
    O: Emit<CronEvent> + Emit<JobEvent>,
{
    match cmd {
        CronCommand::Submit { doc } => {
            let unchanged = live(crons, &doc.metadata.name).is_some_and(|c| c.doc == **doc);
            if !unchanged {
                let submitted = CronEvent::Submitted { doc: doc.clone() };
                out.emit(&doc.metadata.name, submitted);
            }
            Ok(())
        }
        CronCommand::Delete { name } => match live(crons, name) {
            None => Err(Rejection::NotFound(format!("{KIND}/{name}"))),
            Some(_) => {
                out.emit(name, CronEvent::Deleted);
                Ok(())
            }
        },
        CronCommand::Trigger { name, scheduled_ms } => {
            trigger(crons, jobs, name, *scheduled_ms, issued, out)
        }
    }
}

/// The run of `name` due at `scheduled_ms`. Only the very next due time is accepted:
/// a repeated or early trigger changes nothing.
fn trigger<O>(
    crons: &Crons,
    jobs: job::Context<'_>,
    name: &str,
    scheduled_ms: i64,
    issued: Issued<'_>,
    out: &mut O,
) -> Result<(), Rejection>
where
    O: Emit<CronEvent> + Emit<JobEvent>,
{
    let Some(c) = live(crons, name) else {
        return Ok(());
    };
    let now = issued.timestamp_ms;
    if c.doc.spec.suspend || c.next_due() != Some(scheduled_ms) || scheduled_ms > now {
        return Ok(());
    }
    let skip = |reason: String, out: &mut O| {
        let skipped = CronEvent::Skipped {
            scheduled_ms,
            reason,
        };
        out.emit(name, skipped);
    };
    if let Some(deadline) = c.doc.spec.deadline_seconds {
        let late_ms = now - scheduled_ms;
        if late_ms > deadline * 1000 {
            let late = late_ms / 1000;
            skip(
                format!("{late} s late, past its deadline of {deadline} s"),
                out,
            );
            return Ok(());
        }
    }
    let active: Vec<&String> = c
        .runs
        .keys()
        .filter(|j| jobs.jobs.get(*j).is_some_and(|j| !j.phase.finished()))
        .collect();
    match c.doc.spec.concurrency_policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            skip(format!("{} is still active (Forbid)", active[0]), out);
            return Ok(());
        }
        ConcurrencyPolicy::Replace => {
            for j in active {
                let reason = format!("replaced by the next run of {KIND}/{name}");
                out.emit(j, JobEvent::Cancelled { reason });
            }
        }
        ConcurrencyPolicy::Allow | ConcurrencyPolicy::Forbid => {}
    }
    let doc = run_document(&c.doc, scheduled_ms);
    let run = doc.metadata.name.clone();
    if jobs.jobs.contains_key(&run) {
        // The name is taken (a job of that name was submitted by hand): skip this run.
        skip(format!("{}/{run} already exists", job::KIND), out);
        return Ok(());
    }
    let triggered = CronEvent::Triggered {
        scheduled_ms,
        job: run,
    };
    out.emit(name, triggered);
    job::submit(jobs, &doc, now, out)
}
