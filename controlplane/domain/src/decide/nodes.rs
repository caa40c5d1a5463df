//! Decisions about nodes, GPUs and port leases.

use std::collections::BTreeMap;

use super::Emitter;
use crate::command::{Command, CommandBody};
use crate::event::{EntityKey, EventPayload};
use crate::node::{self, NodeState};
use crate::rejection::Rejection;
use crate::state::State;

fn key(node: &str) -> EntityKey {
    EntityKey::new(crate::kinds::NODE, node)
}

fn registered<'a>(state: &'a State, node: &str) -> Result<&'a NodeState, Rejection> {
    state
        .node(node)
        .ok_or_else(|| Rejection::NotFound(key(node).to_string()))
}

/// A report about a node is accepted only from the agent holding its token.
fn authorised<'a>(
    state: &'a State,
    node: &str,
    token_digest: &[u8],
) -> Result<&'a NodeState, Rejection> {
    let n = registered(state, node)?;
    if n.token_digest != token_digest {
        return Err(Rejection::PermissionDenied(format!(
            "node/{node} is registered with another agent token; an agent may only report about its own node"
        )));
    }
    Ok(n)
}

/// Decide a node command; `None` when `cmd` is not one.
pub(super) fn decide(
    state: &State,
    cmd: &Command,
    out: &mut Emitter<'_>,
) -> Option<Result<(), Rejection>> {
    let r = match &cmd.body {
        CommandBody::RegisterNode {
            node,
            inventory,
            token_digest,
        } => register(state, node, inventory, token_digest, out),
        CommandBody::ReportGpuHealth {
            node,
            gpus,
            token_digest,
        } => (|| {
            let n = authorised(state, node, token_digest)?;
            for g in gpus {
                if n.inventory.gpu(&g.uuid).is_none() {
                    return Err(Rejection::InvalidArgument(format!(
                        "report_gpu_health: node/{node} has no GPU {:?}",
                        g.uuid
                    )));
                }
            }
            for g in gpus {
                let now = n.gpu_health(&g.uuid);
                let changed = if g.healthy {
                    !now.healthy
                } else {
                    now.healthy || now.reason != g.reason || now.xid != g.xid
                };
                if changed {
                    let mut health = g.clone();
                    if health.healthy && health.reason.is_empty() {
                        health.reason = format!("recovered from: {}", now.reason);
                    }
                    out.emit(key(node), EventPayload::GpuHealthChanged { health });
                }
            }
            // Jobs running on a GPU that just failed are placed again elsewhere.
            let failed: Vec<(&str, &str)> = gpus
                .iter()
                .filter(|g| !g.healthy && n.gpu_health(&g.uuid).healthy)
                .map(|g| (g.uuid.as_str(), g.reason.as_str()))
                .collect();
            for (uuid, why) in failed {
                super::jobs::requeue_jobs_on(
                    state,
                    node,
                    Some(uuid),
                    &format!("GPU {uuid} on node/{node} became unhealthy ({why})"),
                    out,
                );
            }
            Ok(())
        })(),
        CommandBody::MarkNodeLost {
            node,
            last_heartbeat_ms,
            grace_ms,
        } => registered(state, node).map(|n| {
            if !n.lost {
                out.emit(
                    key(node),
                    EventPayload::NodeLost {
                        last_heartbeat_ms: *last_heartbeat_ms,
                        grace_ms: *grace_ms,
                    },
                );
                super::jobs::requeue_jobs_on(
                    state,
                    node,
                    None,
                    &format!("node/{node} was lost"),
                    out,
                );
            }
        }),
        CommandBody::MarkNodeRecovered { node } => registered(state, node).map(|n| {
            if n.lost {
                out.emit(key(node), EventPayload::NodeRecovered);
            }
        }),
        CommandBody::CordonNode {
            node,
            gpu_uuid,
            reason,
            drain,
        } => (|| {
            let n = registered(state, node)?;
            match gpu_uuid {
                Some(uuid) => {
                    if n.inventory.gpu(uuid).is_none() {
                        return Err(Rejection::NotFound(format!("gpu {uuid} on node/{node}")));
                    }
                    if !n.cordoned_gpus.contains(uuid) {
                        out.emit(
                            key(node),
                            EventPayload::NodeCordoned {
                                gpu_uuid: uuid.clone(),
                                reason: reason.clone(),
                                drain: *drain,
                            },
                        );
                    }
                }
                None => {
                    let same = n.cordon.as_ref().is_some_and(|c| c.drain == *drain);
                    if !same {
                        out.emit(
                            key(node),
                            EventPayload::NodeCordoned {
                                gpu_uuid: String::new(),
                                reason: reason.clone(),
                                drain: *drain,
                            },
                        );
                        if *drain {
                            super::jobs::requeue_jobs_on(
                                state,
                                node,
                                None,
                                &format!("node/{node} is drained"),
                                out,
                            );
                        }
                    }
                }
            }
            Ok(())
        })(),
        CommandBody::UncordonNode { node, gpu_uuid } => (|| {
            let n = registered(state, node)?;
            let cordoned = match gpu_uuid {
                Some(uuid) => {
                    if n.inventory.gpu(uuid).is_none() {
                        return Err(Rejection::NotFound(format!("gpu {uuid} on node/{node}")));
                    }
                    n.cordoned_gpus.contains(uuid)
                }
                None => n.cordon.is_some(),
            };
            if cordoned {
                out.emit(
                    key(node),
                    EventPayload::NodeUncordoned {
                        gpu_uuid: gpu_uuid.clone().unwrap_or_default(),
                    },
                );
            }
            Ok(())
        })(),
        CommandBody::AcquirePortLeases {
            node,
            holder,
            count,
            ttl_ms,
        } => (|| {
            let n = registered(state, node)?;
            if n.lost {
                return Err(Rejection::FailedPrecondition(format!(
                    "node/{node} is lost; no ports are leased on it"
                )));
            }
            if !n.ports_of(holder).is_empty() {
                return Err(Rejection::AlreadyExists(format!(
                    "{holder} already holds ports on node/{node}"
                )));
            }
            let ports = n.free_ports(*count as usize).map_err(|free| {
                Rejection::FailedPrecondition(format!(
                    "node/{node} has {free} free ports in {}-{}, {count} asked",
                    n.inventory.port_range_start, n.inventory.port_range_end
                ))
            })?;
            let ttl = if *ttl_ms == 0 {
                node::DEFAULT_LEASE_TTL_MS
            } else {
                *ttl_ms
            };
            out.emit(
                key(node),
                EventPayload::PortLeaseGranted {
                    holder: holder.clone(),
                    ports,
                    expires_ms: cmd.timestamp_ms.saturating_add(ttl as i64),
                },
            );
            Ok(())
        })(),
        CommandBody::RenewPortLeases {
            node,
            ttl_ms,
            token_digest,
        } => authorised(state, node, token_digest).map(|n| {
            if !n.leases.is_empty() {
                let ttl = if *ttl_ms == 0 {
                    node::DEFAULT_LEASE_TTL_MS
                } else {
                    *ttl_ms
                };
                out.emit(
                    key(node),
                    EventPayload::PortLeasesRenewed {
                        expires_ms: cmd.timestamp_ms.saturating_add(ttl as i64),
                    },
                );
            }
        }),
        CommandBody::ReleasePortLeases { node, holder } => (|| {
            let n = registered(state, node)?;
            let ports = n.ports_of(holder);
            if ports.is_empty() {
                return Err(Rejection::NotFound(format!(
                    "{holder} holds no ports on node/{node}"
                )));
            }
            out.emit(
                key(node),
                EventPayload::PortLeaseReleased {
                    holder: holder.clone(),
                    ports,
                    reason: "released".into(),
                },
            );
            Ok(())
        })(),
        CommandBody::ExpirePortLeases => {
            for (name, n) in state.nodes() {
                let mut expired: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for (port, l) in &n.leases {
                    if l.expires_ms <= cmd.timestamp_ms {
                        expired.entry(l.holder.as_str()).or_default().push(*port);
                    }
                }
                for (holder, ports) in expired {
                    out.emit(
                        key(name),
                        EventPayload::PortLeaseReleased {
                            holder: holder.to_string(),
                            ports,
                            reason: "expired".into(),
                        },
                    );
                }
            }
            Ok(())
        }
        CommandBody::ReportPortViolation {
            node,
            port,
            pid,
            process,
            token_digest,
        } => (|| {
            let n = authorised(state, node, token_digest)?;
            let lease = n.leases.get(port).ok_or_else(|| {
                Rejection::InvalidArgument(format!(
                    "report_port_violation: port {port} is not leased on node/{node}"
                ))
            })?;
            out.emit(
                key(node),
                EventPayload::PortLeaseViolation {
                    port: *port,
                    holder: lease.holder.clone(),
                    pid: *pid,
                    process: process.clone(),
                },
            );
            Ok(())
        })(),
        _ => return None,
    };
    Some(r)
}

fn register(
    state: &State,
    node: &str,
    inventory: &node::NodeInventory,
    token_digest: &[u8],
    out: &mut Emitter<'_>,
) -> Result<(), Rejection> {
    if token_digest.is_empty() {
        return Err(Rejection::PermissionDenied(
            "register_node: the request carries no agent token".into(),
        ));
    }
    if let Some(n) = state.node(node) {
        if n.token_digest != token_digest {
            return Err(Rejection::PermissionDenied(format!(
                "node/{node} is registered with another agent token"
            )));
        }
        if n.inventory == *inventory {
            return Ok(());
        }
    }
    out.emit(
        key(node),
        EventPayload::NodeRegistered {
            inventory: inventory.clone(),
            token_digest: token_digest.to_vec(),
        },
    );
    Ok(())
}
