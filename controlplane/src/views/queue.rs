//! Job queues: a queue is every name a job or a quota uses; each shows its quota, the
//! GPUs its active jobs hold, and how many jobs wait and run.

use std::collections::BTreeMap;

use cairn_domain::job::JobPhase;
use cairn_domain::State;
use cairn_proto as pb;

pub fn queues(state: &State) -> Vec<pb::QueueView> {
    let used = state.queue_usage();
    let mut queues: BTreeMap<String, pb::QueueView> = BTreeMap::new();
    let view = |name: &str| pb::QueueView {
        name: name.to_string(),
        ..Default::default()
    };
    for (q, quota) in state.quotas() {
        queues
            .entry(q.clone())
            .or_insert_with(|| view(q))
            .quota_gpus = Some(*quota);
    }
    for j in state.jobs().values() {
        let q = &j.doc.spec.scheduling.queue;
        let v = queues.entry(q.clone()).or_insert_with(|| view(q));
        if j.phase == JobPhase::Queued {
            v.queued_jobs += 1;
        } else if j.phase.active() {
            v.active_jobs += 1;
        }
    }
    for (q, v) in queues.iter_mut() {
        v.used_gpus = used.get(q).copied().unwrap_or(0);
    }
    queues.into_values().collect()
}
