//! Folding cron events into the crons.

use std::collections::BTreeMap;

use super::event::CronEvent;
use super::expression::Schedule;
use super::state::{CronState, Crons};
use crate::entity::{At, EntityState};

/// Fold a cron event into cron `name` and its entity record.
pub fn evolve(crons: &mut Crons, e: &mut EntityState, name: &str, event: &CronEvent, at: At<'_>) {
    match event {
        CronEvent::Submitted { doc } => {
            e.labels = doc.metadata.labels.clone();
            // A schedule this build cannot read (the log holds it as accepted) leaves
            // the cron without runs rather than folding a different history.
            let schedule = Schedule::parse(&doc.spec.schedule).ok();
            match crons.get_mut(name).filter(|c| !c.deleted) {
                // A replaced spec keeps its place in time and its runs.
                Some(c) => {
                    c.doc = doc.as_ref().clone();
                    c.schedule = schedule;
                }
                None => {
                    e.created_ms = at.timestamp_ms;
                    e.deleted = false;
                    let cron = CronState {
                        doc: doc.as_ref().clone(),
                        schedule,
                        created_ms: at.timestamp_ms,
                        last_scheduled_ms: None,
                        runs: BTreeMap::new(),
                        deleted: false,
                    };
                    crons.insert(name.to_string(), cron);
                }
            }
        }
        CronEvent::Deleted => {
            e.deleted = true;
            if let Some(c) = crons.get_mut(name) {
                c.deleted = true;
            }
        }
        CronEvent::Triggered { scheduled_ms, job } => {
            let Some(c) = crons.get_mut(name) else {
                return;
            };
            c.last_scheduled_ms = Some(*scheduled_ms);
            c.runs.insert(job.clone(), *scheduled_ms);
            // Keep the newest `historyLimit` runs in the cron's view (the jobs and their
            // events stay in the log).
            let limit = c.doc.spec.history_limit.max(1) as usize;
            while c.runs.len() > limit {
                let oldest = c
                    .runs
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(n, _)| n.clone());
                match oldest {
                    Some(n) => c.runs.remove(&n),
                    None => break,
                };
            }
        }
        CronEvent::Skipped { scheduled_ms, .. } => {
            if let Some(c) = crons.get_mut(name) {
                c.last_scheduled_ms = Some(*scheduled_ms);
            }
        }
    }
}
