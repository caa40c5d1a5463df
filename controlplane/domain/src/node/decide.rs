//! Decisions about nodes, GPU health, cordons and port leases.

use std::collections::BTreeMap;

use super::command::NodeCommand;
use super::event::NodeEvent;
use super::inventory::{self, GpuHealth, NodeInventory};
use super::state::{NodeState, Nodes};
use super::KIND;
use crate::emit::Emit;
use crate::entity::Issued;
use crate::rejection::Rejection;

/// A change on a node that the work placed there must react to (its jobs go back to
/// the queue): a GPU turned unhealthy, the node was lost, or it is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disruption {
    pub node: String,
    /// Only the work on this GPU (None: everything on the node).
    pub gpu: Option<String>,
    /// The work there cannot be reached any more (the node was lost); otherwise it may
    /// go on serving until it is replaced.
    pub unreachable: bool,
    pub reason: String,
}

/// The registered node `node`, or NotFound.
pub fn registered<'a>(nodes: &'a Nodes, node: &str) -> Result<&'a NodeState, Rejection> {
    nodes
        .get(node)
        .ok_or_else(|| Rejection::NotFound(format!("{KIND}/{node}")))
}

/// A report about a node is accepted only from the agent holding its token: the node,
/// or why not. Heartbeats (which are not commands) are judged by the same rule.
pub fn authorise<'a>(
    nodes: &'a Nodes,
    node: &str,
    token_digest: &[u8],
) -> Result<&'a NodeState, Rejection> {
    let n = registered(nodes, node)?;
    if n.token_digest != token_digest {
        return Err(Rejection::PermissionDenied(format!(
            "{KIND}/{node} is registered with another agent token; an agent may only report about its own node"
        )));
    }
    Ok(n)
}

/// Decide a node command: the node events, and the disruptions that follow from them.
pub fn decide(
    nodes: &Nodes,
    cmd: &NodeCommand,
    issued: Issued<'_>,
    out: &mut impl Emit<NodeEvent>,
) -> Result<Vec<Disruption>, Rejection> {
    let mut disrupted = Vec::new();
    match cmd {
        NodeCommand::Register {
            node,
            inventory,
            token_digest,
        } => register(nodes, node, inventory, token_digest, out)?,
        NodeCommand::ReportGpuHealth {
            node,
            gpus,
            token_digest,
        } => {
            let n = authorise(nodes, node, token_digest)?;
            disrupted = report_health(n, node, gpus, out)?;
        }
        NodeCommand::MarkLost {
            node,
            last_heartbeat_ms,
            grace_ms,
        } => {
            if !registered(nodes, node)?.lost {
                out.emit(
                    node,
                    NodeEvent::Lost {
                        last_heartbeat_ms: *last_heartbeat_ms,
                        grace_ms: *grace_ms,
                    },
                );
                disrupted.push(Disruption {
                    node: node.clone(),
                    gpu: None,
                    unreachable: true,
                    reason: format!("{KIND}/{node} was lost"),
                });
            }
        }
        NodeCommand::MarkRecovered { node } => {
            if registered(nodes, node)?.lost {
                out.emit(node, NodeEvent::Recovered);
            }
        }
        NodeCommand::Cordon {
            node,
            gpu_uuid,
            reason,
            drain,
        } => {
            let n = registered(nodes, node)?;
            match gpu_uuid {
                Some(uuid) => {
                    known_gpu(n, node, uuid)?;
                    if !n.cordoned_gpus.contains(uuid) {
                        out.emit(
                            node,
                            NodeEvent::Cordoned {
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
                            node,
                            NodeEvent::Cordoned {
                                gpu_uuid: String::new(),
                                reason: reason.clone(),
                                drain: *drain,
                            },
                        );
                        if *drain {
                            disrupted.push(Disruption {
                                node: node.clone(),
                                gpu: None,
                                unreachable: false,
                                reason: format!("{KIND}/{node} is drained"),
                            });
                        }
                    }
                }
            }
        }
        NodeCommand::Uncordon { node, gpu_uuid } => {
            let n = registered(nodes, node)?;
            let cordoned = match gpu_uuid {
                Some(uuid) => {
                    known_gpu(n, node, uuid)?;
                    n.cordoned_gpus.contains(uuid)
                }
                None => n.cordon.is_some(),
            };
            if cordoned {
                out.emit(
                    node,
                    NodeEvent::Uncordoned {
                        gpu_uuid: gpu_uuid.clone().unwrap_or_default(),
                    },
                );
            }
        }
        NodeCommand::AcquirePortLeases {
            node,
            holder,
            count,
            ttl_ms,
        } => {
            let n = registered(nodes, node)?;
            if n.lost {
                return Err(Rejection::FailedPrecondition(format!(
                    "{KIND}/{node} is lost; no ports are leased on it"
                )));
            }
            if !n.ports_of(holder).is_empty() {
                return Err(Rejection::AlreadyExists(format!(
                    "{holder} already holds ports on {KIND}/{node}"
                )));
            }
            let ports = n.free_ports(*count as usize).map_err(|free| {
                Rejection::FailedPrecondition(format!(
                    "{KIND}/{node} has {free} free ports in {}-{}, {count} asked",
                    n.inventory.port_range_start, n.inventory.port_range_end
                ))
            })?;
            out.emit(
                node,
                NodeEvent::PortLeaseGranted {
                    holder: holder.clone(),
                    ports,
                    expires_ms: expiry(issued, *ttl_ms),
                },
            );
        }
        NodeCommand::RenewPortLeases {
            node,
            ttl_ms,
            token_digest,
        } => {
            if !authorise(nodes, node, token_digest)?.leases.is_empty() {
                out.emit(
                    node,
                    NodeEvent::PortLeasesRenewed {
                        expires_ms: expiry(issued, *ttl_ms),
                    },
                );
            }
        }
        NodeCommand::ReleasePortLeases { node, holder } => {
            let ports = registered(nodes, node)?.ports_of(holder);
            if ports.is_empty() {
                return Err(Rejection::NotFound(format!(
                    "{holder} holds no ports on {KIND}/{node}"
                )));
            }
            out.emit(
                node,
                NodeEvent::PortLeaseReleased {
                    holder: holder.clone(),
                    ports,
                    reason: "released".into(),
                },
            );
        }
        NodeCommand::ExpirePortLeases => {
            for (name, n) in nodes {
                let mut expired: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for (port, l) in &n.leases {
                    if l.expires_ms <= issued.timestamp_ms {
                        expired.entry(l.holder.as_str()).or_default().push(*port);
                    }
                }
                for (holder, ports) in expired {
                    out.emit(
                        name,
                        NodeEvent::PortLeaseReleased {
                            holder: holder.to_string(),
                            ports,
                            reason: "expired".into(),
                        },
                    );
                }
            }
        }
        NodeCommand::ReportPortViolation {
            node,
            port,
            pid,
            process,
            token_digest,
        } => {
            let n = authorise(nodes, node, token_digest)?;
            let lease = n.leases.get(port).ok_or_else(|| {
                Rejection::InvalidArgument(format!(
                    "report_port_violation: port {port} is not leased on {KIND}/{node}"
                ))
            })?;
            out.emit(
                node,
                NodeEvent::PortLeaseViolation {
                    port: *port,
                    holder: lease.holder.clone(),
                    pid: *pid,
                    process: process.clone(),
                },
            );
        }
    }
    Ok(disrupted)
}

/// When a lease taken or renewed now ends (a TTL of 0: the default).
fn expiry(issued: Issued<'_>, ttl_ms: u64) -> i64 {
    let ttl = if ttl_ms == 0 {
        inventory::DEFAULT_LEASE_TTL_MS
    } else {
        ttl_ms
    };
    issued.timestamp_ms.saturating_add(ttl as i64)
}

fn known_gpu(n: &NodeState, node: &str, uuid: &str) -> Result<(), Rejection> {
    match n.inventory.gpu(uuid) {
        Some(_) => Ok(()),
        None => Err(Rejection::NotFound(format!("gpu {uuid} on {KIND}/{node}"))),
    }
}

fn register(
    nodes: &Nodes,
    node: &str,
    inventory: &NodeInventory,
    token_digest: &[u8],
    out: &mut impl Emit<NodeEvent>,
) -> Result<(), Rejection> {
    if token_digest.is_empty() {
        return Err(Rejection::PermissionDenied(
            "register_node: the request carries no agent token".into(),
        ));
    }
    if let Some(n) = nodes.get(node) {
        if n.token_digest != token_digest {
            return Err(Rejection::PermissionDenied(format!(
                "{KIND}/{node} is registered with another agent token"
            )));
        }
        if n.inventory == *inventory {
            return Ok(());
        }
    }
    out.emit(
        node,
        NodeEvent::Registered {
            inventory: inventory.clone(),
            token_digest: token_digest.to_vec(),
        },
    );
    Ok(())
}

/// Health changes are events only when a GPU's verdict differs from the log's; a GPU
/// that just failed disrupts the work on it.
fn report_health(
    n: &NodeState,
    node: &str,
    gpus: &[GpuHealth],
    out: &mut impl Emit<NodeEvent>,
) -> Result<Vec<Disruption>, Rejection> {
    for g in gpus {
        if n.inventory.gpu(&g.uuid).is_none() {
            return Err(Rejection::InvalidArgument(format!(
                "report_gpu_health: {KIND}/{node} has no GPU {:?}",
                g.uuid
            )));
        }
    }
    let mut disrupted = Vec::new();
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
            out.emit(node, NodeEvent::GpuHealthChanged { health });
        }
        if !g.healthy && now.healthy {
            disrupted.push(Disruption {
                node: node.to_string(),
                gpu: Some(g.uuid.clone()),
                unreachable: false,
                reason: format!(
                    "GPU {} on {KIND}/{node} became unhealthy ({})",
                    g.uuid, g.reason
                ),
            });
        }
    }
    Ok(disrupted)
}
