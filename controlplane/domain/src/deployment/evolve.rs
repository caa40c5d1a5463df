//! Folding deployment events into the deployments, and into the nodes their replicas and
//! endpoints hold (GPUs, CPU, memory, ports).

use super::event::DeploymentEvent;
use super::state::{
    endpoint_holder, replica_holder, DeploymentState, Deployments, Revision, Rollout, ServingPhase,
    ServingReplica,
};
use crate::entity::{At, EntityState};
use crate::node::{Nodes, PortLease};

/// Fold a deployment event into deployment `name`, the nodes it holds, and its entity.
pub fn evolve(
    deployments: &mut Deployments,
    nodes: &mut Nodes,
    e: &mut EntityState,
    name: &str,
    event: &DeploymentEvent,
    at: At<'_>,
) {
    let ts = at.timestamp_ms;
    if let DeploymentEvent::Applied { doc } = event {
        e.created(at);
        e.labels = doc.metadata.labels.clone();
        match deployments.get_mut(name).filter(|d| !d.deleted) {
            Some(d) => d.doc = doc.as_ref().clone(),
            None => {
                let d = DeploymentState {
                    doc: doc.as_ref().clone(),
                    created_ms: ts,
                    replicas: doc.spec.replicas.max(1) as u32,
                    revisions: Default::default(),
                    weights: Default::default(),
                    rollout: None,
                    port: 0,
                    routed_on: Default::default(),
                    waiting: String::new(),
                    paused: None,
                    deleted: false,
                };
                deployments.insert(name.to_string(), d);
            }
        }
        return;
    }
    let Some(d) = deployments.get_mut(name) else {
        return;
    };
    match event {
        DeploymentEvent::Applied { .. } => {}
        DeploymentEvent::RevisionCreated {
            revision,
            model_version,
            model_uri,
            reason,
        } => {
            let serving = d.revisions.values().any(|r| !r.replicas.is_empty())
                || d.weights.values().any(|w| *w > 0);
            let r = Revision {
                model_version: *model_version,
                model_uri: model_uri.clone(),
                template: d.doc.spec.template.clone(),
                probe: d.doc.spec.readiness_probe.clone(),
                created_ms: ts,
                replicas: Default::default(),
                next_index: 0,
            };
            d.revisions.insert(*revision, r);
            d.rollout = serving.then(|| Rollout {
                target: *revision,
                step: None,
                step_since_ms: ts,
                promoted: false,
                reason: reason.clone(),
            });
        }
        DeploymentEvent::Routed { port, nodes: on } => {
            if d.port == 0 {
                d.port = *port;
            }
            for n in on {
                if let Some(node) = nodes.get_mut(n) {
                    let lease = PortLease {
                        holder: endpoint_holder(name),
                        expires_ms: i64::MAX,
                    };
                    node.leases.insert(*port, lease);
                }
                d.routed_on.insert(n.clone(), *port);
            }
        }
        DeploymentEvent::ReplicasPlaced {
            revision,
            placements,
        } => {
            let Some(r) = d.revisions.get_mut(revision) else {
                return;
            };
            for p in placements {
                let holder = replica_holder(name, *revision, p.index);
                if let Some(n) = nodes.get_mut(&p.node) {
                    for g in &p.gpus {
                        n.allocated_gpus.insert(g.clone(), holder.clone());
                    }
                    n.allocated_cpu_millis += r.template.cpu_millis;
                    n.allocated_memory_mib += r.template.memory_mib;
                    let lease = PortLease {
                        holder,
                        expires_ms: i64::MAX,
                    };
                    n.leases.insert(p.port, lease);
                }
                let replica = ServingReplica {
                    node: p.node.clone(),
                    gpus: p.gpus.clone(),
                    port: p.port,
                    attempt: 0,
                    phase: ServingPhase::Pending,
                    pid: 0,
                    started_ms: ts,
                    doomed: None,
                };
                r.replicas.insert(p.index, replica);
                r.next_index = r.next_index.max(p.index + 1);
            }
        }
        DeploymentEvent::ReplicaStarted {
            revision,
            index,
            attempt,
            pid,
        } => on(d, *revision, *index, |x| {
            x.phase = ServingPhase::Starting;
            x.attempt = *attempt;
            x.pid = *pid;
            x.started_ms = ts;
        }),
        DeploymentEvent::ReplicaReady { revision, index } => {
            on(d, *revision, *index, |x| x.phase = ServingPhase::Ready)
        }
        DeploymentEvent::ReplicaNotReady {
            revision, index, ..
        } => on(d, *revision, *index, |x| x.phase = ServingPhase::NotReady),
        DeploymentEvent::ReplicaRestarting {
            revision,
            index,
            attempt,
            ..
        } => on(d, *revision, *index, |x| {
            x.phase = ServingPhase::Pending;
            x.attempt = *attempt;
            x.pid = 0;
        }),
        DeploymentEvent::ReplicaDoomed {
            revision,
            index,
            reason,
        } => on(d, *revision, *index, |x| x.doomed = Some(reason.clone())),
        DeploymentEvent::ReplicasRemoved {
            revision, indexes, ..
        } => {
            let Some(r) = d.revisions.get_mut(revision) else {
                return;
            };
            for i in indexes {
                if let Some(x) = r.replicas.remove(i) {
                    release(nodes, &replica_holder(name, *revision, *i), &x, r);
                }
            }
        }
        DeploymentEvent::TrafficShifted { weights, .. } => {
            d.weights = weights
                .iter()
                .filter(|(_, w)| **w > 0)
                .map(|(r, w)| (*r, *w))
                .collect();
        }
        DeploymentEvent::CanaryStep { step } => {
            if let Some(r) = d.rollout.as_mut() {
                r.step = Some(*step);
                r.step_since_ms = ts;
            }
        }
        DeploymentEvent::RolloutCompleted { .. } => d.rollout = None,
        DeploymentEvent::RollbackStarted { to, reason } => {
            d.rollout = Some(Rollout {
                target: *to,
                step: None,
                step_since_ms: ts,
                promoted: true,
                reason: reason.clone(),
            });
        }
        DeploymentEvent::Promoted => {
            if let Some(r) = d.rollout.as_mut() {
                r.promoted = true;
            }
        }
        DeploymentEvent::Paused { reason } => d.paused = Some(reason.clone()),
        DeploymentEvent::Resumed => d.paused = None,
        DeploymentEvent::Waiting { reason } => d.waiting = reason.clone(),
        DeploymentEvent::Scaled { replicas, .. } => d.replicas = *replicas,
        DeploymentEvent::Deleted => {
            e.deleted = true;
            d.deleted = true;
            d.rollout = None;
            d.weights.clear();
            for (rev, r) in std::mem::take(&mut d.revisions) {
                for (i, x) in &r.replicas {
                    release(nodes, &replica_holder(name, rev, *i), x, &r);
                }
            }
            let endpoint = endpoint_holder(name);
            for n in d.routed_on.keys() {
                if let Some(node) = nodes.get_mut(n) {
                    node.leases.retain(|_, l| l.holder != endpoint);
                }
            }
            d.routed_on.clear();
        }
    }
}

fn on(d: &mut DeploymentState, revision: u32, index: u32, f: impl FnOnce(&mut ServingReplica)) {
    if let Some(x) = d
        .revisions
        .get_mut(&revision)
        .and_then(|r| r.replicas.get_mut(&index))
    {
        f(x);
    }
}

/// A replica's GPUs, CPU, memory and port go back to its node.
fn release(nodes: &mut Nodes, holder: &str, x: &ServingReplica, r: &Revision) {
    if let Some(n) = nodes.get_mut(&x.node) {
        n.allocated_gpus.retain(|_, owner| owner != holder);
        n.allocated_cpu_millis -= r.template.cpu_millis;
        n.allocated_memory_mib -= r.template.memory_mib;
        n.leases.retain(|_, l| l.holder != holder);
    }
}
