//! GPU nodes: inventory, state, cordons, health, leases.

use cairn_domain::node::{NodeState, KIND};
use cairn_domain::{EntityKey, EntityState, State};
use cairn_proto as pb;

use crate::convert::ToPb;

fn view(name: &str, n: &NodeState, e: Option<&EntityState>) -> pb::NodeView {
    pb::NodeView {
        name: name.to_string(),
        inventory: Some(n.inventory.to_pb()),
        state: if n.lost { "lost" } else { "ready" }.into(),
        cordoned: n.cordon.is_some(),
        draining: n.cordon.as_ref().is_some_and(|c| c.drain),
        cordon_reason: n
            .cordon
            .as_ref()
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
        health: n
            .inventory
            .gpus
            .iter()
            .map(|g| n.gpu_health(&g.uuid).to_pb())
            .collect(),
        cordoned_gpus: n.cordoned_gpus.iter().cloned().collect(),
        leases: n
            .leases
            .iter()
            .map(|(port, l)| pb::PortLease {
                port: *port,
                holder: l.holder.clone(),
                expires_ms: l.expires_ms,
            })
            .collect(),
        revision: e.map_or(0, |e| e.revision),
        registered_ms: n.registered_ms,
        updated_ms: e.map_or(0, |e| e.updated_ms),
        violations: n.violations,
    }
}

/// Every node, or the one named (empty: all).
pub fn nodes(state: &State, name: &str) -> Vec<pb::NodeView> {
    state
        .nodes()
        .iter()
        .filter(|(n, _)| name.is_empty() || *n == name)
        .map(|(n, node)| view(n, node, state.entity(&EntityKey::new(KIND, n.clone()))))
        .collect()
}
