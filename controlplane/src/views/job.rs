//! Training jobs: phase, reason, placements, replicas, conditions.

use cairn_domain::job::{JobState, KIND};
use cairn_domain::{EntityKey, EntityState, State};
use cairn_proto as pb;

use crate::convert::ToPb;

fn view(name: &str, j: &JobState, e: Option<&EntityState>) -> pb::JobView {
    let replicas = j.replicas();
    pb::JobView {
        name: name.to_string(),
        phase: j.phase.name().into(),
        reason: j.reason.clone(),
        spec_json: j.doc.to_json(),
        placements: j.placements.iter().map(ToPb::to_pb).collect(),
        revision: e.map_or(0, |e| e.revision),
        submitted_ms: j.submitted_ms,
        updated_ms: e.map_or(0, |e| e.updated_ms),
        queue: j.doc.spec.scheduling.queue.clone(),
        priority: j.doc.spec.scheduling.priority,
        framework: format!("{:?}", j.doc.spec.framework).to_lowercase(),
        replicas: replicas.len() as u32,
        gpus: replicas.iter().map(|r| r.1.gpus.max(0) as u32).sum(),
        replica_status: j
            .replicas
            .iter()
            .map(|(id, r)| pb::ReplicaView {
                role: id.role.clone(),
                index: id.index,
                phase: r.phase.name().to_string(),
                attempt: r.attempt,
                pid: r.pid,
                exit_code: r.exit_code,
                signal: r.signal,
                ended_ms: r.ended_ms,
            })
            .collect(),
        restarts: j.restarts,
        dependencies: j
            .doc
            .spec
            .dependencies()
            .into_iter()
            .map(|(role, after)| pb::RoleDependency { role, after })
            .collect(),
        conditions: j
            .conditions
            .iter()
            .map(|c| pb::JobCondition {
                kind: c.kind.clone(),
                reason: c.reason.clone(),
                at_ms: c.at_ms,
            })
            .collect(),
    }
}

/// Jobs: the one named (empty: all), and with `node` only the placed, unfinished ones
/// with a replica there (what its agent runs).
pub fn jobs(state: &State, name: &str, node: &str) -> Vec<pb::JobView> {
    state
        .jobs()
        .iter()
        .filter(|(n, _)| name.is_empty() || *n == name)
        .filter(|(_, j)| {
            node.is_empty() || (j.phase.active() && j.placements.iter().any(|p| p.node == node))
        })
        .map(|(n, j)| view(n, j, state.entity(&EntityKey::new(KIND, n.clone()))))
        .collect()
}
