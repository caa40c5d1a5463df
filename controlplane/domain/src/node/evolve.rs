//! Folding node events into the nodes.

use super::event::NodeEvent;
use super::inventory::NodeInventory;
use super::state::{Cordon, NodeState, Nodes, PortLease};
use crate::entity::{At, EntityState};

/// Fold a node event into node `name` and its entity record.
pub fn evolve(nodes: &mut Nodes, e: &mut EntityState, name: &str, event: &NodeEvent, at: At<'_>) {
    match event {
        NodeEvent::Registered {
            inventory,
            token_digest,
        } => register(nodes, e, name, inventory, token_digest, at),
        NodeEvent::Lost { .. } => on(nodes, name, |n| n.lost = true),
        NodeEvent::Recovered => on(nodes, name, |n| n.lost = false),
        NodeEvent::GpuHealthChanged { health } => on(nodes, name, |n| {
            if health.healthy {
                n.health.remove(&health.uuid);
            } else {
                n.health.insert(health.uuid.clone(), health.clone());
            }
        }),
        NodeEvent::Cordoned {
            gpu_uuid,
            reason,
            drain,
        } => on(nodes, name, |n| {
            if gpu_uuid.is_empty() {
                n.cordon = Some(Cordon {
                    reason: reason.clone(),
                    drain: *drain,
                });
            } else {
                n.cordoned_gpus.insert(gpu_uuid.clone());
            }
        }),
        NodeEvent::Uncordoned { gpu_uuid } => on(nodes, name, |n| {
            if gpu_uuid.is_empty() {
                n.cordon = None;
            } else {
                n.cordoned_gpus.remove(gpu_uuid);
            }
        }),
        NodeEvent::PortLeaseGranted {
            holder,
            ports,
            expires_ms,
        } => on(nodes, name, |n| {
            for p in ports {
                let lease = PortLease {
                    holder: holder.clone(),
                    expires_ms: *expires_ms,
                };
                n.leases.insert(*p, lease);
            }
        }),
        NodeEvent::PortLeasesRenewed { expires_ms } => on(nodes, name, |n| {
            for l in n.leases.values_mut() {
                l.expires_ms = *expires_ms;
            }
        }),
        NodeEvent::PortLeaseReleased { holder, ports, .. } => on(nodes, name, |n| {
            for p in ports {
                if n.leases.get(p).is_some_and(|l| l.holder == *holder) {
                    n.leases.remove(p);
                }
            }
        }),
        NodeEvent::PortLeaseViolation { .. } => on(nodes, name, |n| n.violations += 1),
    }
}

/// Apply `f` to a registered node (decide emits other events only about those).
fn on(nodes: &mut Nodes, name: &str, f: impl FnOnce(&mut NodeState)) {
    if let Some(n) = nodes.get_mut(name) {
        f(n);
    }
}

fn register(
    nodes: &mut Nodes,
    e: &mut EntityState,
    name: &str,
    inventory: &NodeInventory,
    token_digest: &[u8],
    at: At<'_>,
) {
    if e.created_ms == 0 {
        e.created_ms = at.timestamp_ms;
    }
    e.labels = inventory.labels.clone();
    let registered_ms = e.created_ms;
    let n = nodes.entry(name.to_string()).or_insert_with(|| NodeState {
        inventory: inventory.clone(),
        token_digest: token_digest.to_vec(),
        registered_ms,
        lost: false,
        cordon: None,
        cordoned_gpus: Default::default(),
        health: Default::default(),
        leases: Default::default(),
        violations: 0,
        allocated_gpus: Default::default(),
        allocated_cpu_millis: 0,
        allocated_memory_mib: 0,
    });
    n.inventory = inventory.clone();
    n.token_digest = token_digest.to_vec();
}
