//! Folding job events into the jobs, and into the nodes their placements hold.

use std::collections::BTreeSet;

use super::event::JobEvent;
use super::state::{JobPhase, JobState, Jobs, ReplicaPhase, ReplicaStatus};
use crate::entity::{At, EntityState};
use crate::node::{Nodes, PortLease};

/// The holder name of a job replica's port lease.
pub fn lease_holder(job: &str, replica: &impl std::fmt::Display) -> String {
    format!("job/{job}/{replica}")
}

/// Fold a job event into job `name` (and the nodes it holds) and its entity record.
pub fn evolve(
    jobs: &mut Jobs,
    nodes: &mut Nodes,
    e: &mut EntityState,
    name: &str,
    event: &JobEvent,
    at: At<'_>,
) {
    let ts = at.timestamp_ms;
    match event {
        JobEvent::Submitted { doc } => {
            e.created_ms = ts;
            e.deleted = false;
            e.labels = doc.metadata.labels.clone();
            jobs.insert(
                name.to_string(),
                JobState::queued(doc.as_ref().clone(), ts, at.sequence),
            );
        }
        JobEvent::Waiting { reason } => on(jobs, name, |j| {
            j.reason = reason.clone();
            j.condition("Queued", reason, ts);
        }),
        JobEvent::Scheduled { placements } => {
            let Some(j) = jobs.get_mut(name) else {
                return;
            };
            j.phase = JobPhase::Scheduled;
            j.reason = String::new();
            let on: BTreeSet<&str> = placements.iter().map(|p| p.node.as_str()).collect();
            let on = on.into_iter().collect::<Vec<_>>().join(", ");
            j.condition("Scheduled", &format!("on {on}"), ts);
            // A non-gang job may be placed in parts: placements add up.
            j.placements.extend(placements.iter().cloned());
            // Attempts continue across placements (a requeue counts as a restart), so a
            // late report about an earlier run never matches.
            let attempt = j.restarts;
            for p in placements {
                let status = ReplicaStatus {
                    attempt,
                    ..Default::default()
                };
                j.replicas.insert(p.replica.clone(), status);
            }
            let roles = &j.doc.spec.roles;
            for p in placements {
                let Some(n) = nodes.get_mut(&p.node) else {
                    continue;
                };
                for g in &p.gpus {
                    n.allocated_gpus.insert(g.clone(), name.to_string());
                }
                if let Some(r) = roles.get(&p.replica.role) {
                    n.allocated_cpu_millis += r.cpu_millis;
                    n.allocated_memory_mib += r.memory_mib;
                }
                for port in &p.ports {
                    let lease = PortLease {
                        holder: lease_holder(name, &p.replica),
                        expires_ms: i64::MAX,
                    };
                    n.leases.insert(*port, lease);
                }
            }
        }
        JobEvent::Cancelled { reason } => end(jobs, nodes, name, JobPhase::Cancelled, reason, ts),
        JobEvent::Failed { reason } => end(jobs, nodes, name, JobPhase::Failed, reason, ts),
        JobEvent::Succeeded => end(jobs, nodes, name, JobPhase::Succeeded, "", ts),
        JobEvent::Requeued { reason } => {
            end(jobs, nodes, name, JobPhase::Queued, reason, ts);
            on(jobs, name, |j| {
                j.placements.clear();
                j.replicas.clear();
                j.restarts += 1;
                j.condition("Restarting", reason, ts);
                j.condition("Queued", "", ts);
            });
        }
        JobEvent::Running => on(jobs, name, |j| {
            j.phase = JobPhase::Running;
            j.condition("Running", "every replica runs", ts);
        }),
        JobEvent::ReplicaStarted {
            replica,
            attempt,
            pid,
            ..
        } => on(jobs, name, |j| {
            if let Some(r) = j.replicas.get_mut(replica) {
                r.phase = ReplicaPhase::Running;
                r.attempt = *attempt;
                r.pid = *pid;
            }
            let restarted = j.conditions.last().is_some_and(|c| c.kind == "Restarting");
            let all = j
                .replicas
                .values()
                .all(|r| r.phase != ReplicaPhase::Pending);
            if restarted && all && j.phase == JobPhase::Running {
                j.condition("Running", &format!("{replica} restarted"), ts);
            }
        }),
        JobEvent::ReplicaExited {
            replica,
            exit_code,
            signal,
            outputs,
            ..
        } => on(jobs, name, |j| {
            if !outputs.is_empty() {
                j.outputs.insert(replica.clone(), outputs.clone());
            }
            if let Some(r) = j.replicas.get_mut(replica) {
                r.phase = if *exit_code == 0 && *signal == 0 {
                    ReplicaPhase::Succeeded
                } else {
                    ReplicaPhase::Failed
                };
                r.exit_code = *exit_code;
                r.signal = *signal;
                r.ended_ms = ts;
            }
        }),
        JobEvent::ReplicaRestarting {
            replica,
            attempt,
            reason,
        } => on(jobs, name, |j| {
            j.restarts += 1;
            j.condition("Restarting", &format!("{replica} {reason}"), ts);
            if let Some(r) = j.replicas.get_mut(replica) {
                r.phase = ReplicaPhase::Pending;
                r.attempt = *attempt;
                r.pid = 0;
            }
        }),
    }
}

/// Apply `f` to a submitted job (decide emits other events only about those).
fn on(jobs: &mut Jobs, name: &str, f: impl FnOnce(&mut JobState)) {
    if let Some(j) = jobs.get_mut(name) {
        f(j);
    }
}

/// A job ends (or goes back to the queue): its GPUs, CPU, memory and ports go back to
/// the nodes.
fn end(jobs: &mut Jobs, nodes: &mut Nodes, name: &str, phase: JobPhase, reason: &str, ts: i64) {
    let Some(j) = jobs.get_mut(name) else {
        return;
    };
    let roles = &j.doc.spec.roles;
    for p in &j.placements {
        let Some(n) = nodes.get_mut(&p.node) else {
            continue;
        };
        n.allocated_gpus.retain(|_, owner| owner != name);
        if let Some(r) = roles.get(&p.replica.role) {
            n.allocated_cpu_millis -= r.cpu_millis;
            n.allocated_memory_mib -= r.memory_mib;
        }
        let holder = lease_holder(name, &p.replica);
        n.leases.retain(|_, l| l.holder != holder);
    }
    j.phase = phase;
    j.reason = reason.to_string();
    if phase.finished() {
        j.condition(phase.name(), reason, ts);
    }
}
