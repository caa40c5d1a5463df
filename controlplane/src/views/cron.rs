//! Cron schedules: the schedule, the last and next run, the runs kept.

use cairn_domain::cron::{CronState, KIND};
use cairn_domain::{EntityKey, EntityState, State};
use cairn_proto as pb;

fn view(name: &str, c: &CronState, e: Option<&EntityState>) -> pb::CronView {
    let mut runs: Vec<pb::CronRun> = c
        .runs
        .iter()
        .map(|(job, t)| pb::CronRun {
            job: job.clone(),
            scheduled_ms: *t,
        })
        .collect();
    runs.sort_by_key(|r| r.scheduled_ms);
    pb::CronView {
        name: name.to_string(),
        schedule: c.doc.spec.schedule.clone(),
        suspend: c.doc.spec.suspend,
        concurrency_policy: format!("{:?}", c.doc.spec.concurrency_policy),
        last_scheduled_ms: c.last_scheduled_ms.unwrap_or(0),
        next_ms: if c.doc.spec.suspend {
            0
        } else {
            c.next_due().unwrap_or(0)
        },
        runs,
        spec_json: c.doc.to_json(),
        revision: e.map_or(0, |e| e.revision),
    }
}

/// The crons that exist, or the one named (empty: all).
pub fn crons(state: &State, name: &str) -> Vec<pb::CronView> {
    state
        .crons()
        .filter(|(n, _)| name.is_empty() || *n == name)
        .map(|(n, c)| view(n, c, state.entity(&EntityKey::new(KIND, n.clone()))))
        .collect()
}
