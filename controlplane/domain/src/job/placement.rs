//! A job's replicas as a demand on the scheduler, and the answer as placements.

use std::collections::BTreeMap;

use super::state::{queue_usage, JobState, Jobs, Placement, ReplicaId};
use crate::node::Nodes;
use crate::queue::Quotas;
use crate::schedule::{Capacity, Demand, Need};

/// The capacity left for jobs: free GPUs of schedulable nodes, and each queue's quota
/// less what its active jobs hold.
pub fn capacity(jobs: &Jobs, nodes: &Nodes, quotas: &Quotas) -> Capacity {
    let used = queue_usage(jobs);
    let quota_left: BTreeMap<String, u32> = quotas
        .iter()
        .map(|(q, quota)| {
            let left = quota.saturating_sub(used.get(q).copied().unwrap_or(0));
            (q.clone(), left)
        })
        .collect();
    Capacity::new(nodes, quota_left)
}

/// Place the replicas of `job` not placed yet (all of them, except for a partly placed
/// non-gang job): all or none for a gang.
pub fn place(capacity: &mut Capacity, job: &JobState) -> Result<Vec<Placement>, String> {
    let spec = &job.doc.spec;
    let placed: std::collections::BTreeSet<&ReplicaId> =
        job.placements.iter().map(|p| &p.replica).collect();
    let replicas = job
        .replicas()
        .into_iter()
        .filter(|(id, _)| !placed.contains(id))
        .map(|(id, role)| {
            let need = Need {
                gpus: role.gpus.max(0) as usize,
                cpu_millis: role.cpu_millis,
                memory_mib: role.memory_mib,
            };
            (id, need)
        })
        .collect();
    let demand = Demand {
        queue: &spec.scheduling.queue,
        gang: spec.scheduling.gang,
        ports_per_replica: spec
            .host_network
            .as_ref()
            .map_or(0, |h| h.ports_per_replica.max(0) as usize),
        replicas,
    };
    let slots = capacity.place(demand)?;
    Ok(slots
        .into_iter()
        .map(|s| Placement {
            replica: s.replica,
            node: s.node,
            gpus: s.gpus,
            ports: s.ports,
            score: s.score,
        })
        .collect())
}
