//! Model deployments: revisions and their replicas, the traffic weights, the rollout,
//! the stable endpoint.

use cairn_domain::deployment::{DeploymentState, KIND};
use cairn_domain::{EntityKey, State};
use cairn_proto as pb;

/// Deployments: the one named (empty: all), deleted ones only when asked.
pub fn deployments(state: &State, name: &str, include_deleted: bool) -> Vec<pb::DeploymentView> {
    state
        .deployments()
        .iter()
        .filter(|(n, d)| (name.is_empty() || *n == name) && (include_deleted || !d.deleted))
        .map(|(n, d)| deployment(n, d, state.revision(&EntityKey::new(KIND, n.clone()))))
        .collect()
}

fn deployment(name: &str, d: &DeploymentState, revision: u64) -> pb::DeploymentView {
    let revisions = d
        .revisions
        .iter()
        .map(|(n, r)| {
            let template = serde_json::json!({
                "template": r.template,
                "readinessProbe": r.probe,
            });
            pb::RevisionView {
                revision: *n,
                model_version: r.model_version,
                model_uri: r.model_uri.clone(),
                template_json: template.to_string(),
                created_ms: r.created_ms,
                replicas: r
                    .replicas
                    .iter()
                    .map(|(i, x)| pb::ServingReplicaView {
                        index: *i,
                        node: x.node.clone(),
                        gpus: x.gpus.clone(),
                        port: x.port,
                        attempt: x.attempt,
                        phase: x.phase.name().to_string(),
                        pid: x.pid,
                        started_ms: x.started_ms,
                        doomed: x.doomed.clone().unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    pb::DeploymentView {
        name: name.to_string(),
        spec_json: d.doc.to_json(),
        replicas: d.replicas,
        weights: d.weights.clone(),
        port: d.port,
        routed_on: d.routed_on.clone(),
        waiting: d.waiting.clone(),
        paused: d.paused.clone(),
        rollout: d.rollout.as_ref().map(|r| pb::RolloutView {
            target: r.target,
            step: r.step,
            step_since_ms: r.step_since_ms,
            promoted: r.promoted,
            reason: r.reason.clone(),
        }),
        revisions,
        revision,
        created_ms: d.created_ms,
        deleted: d.deleted,
    }
}
