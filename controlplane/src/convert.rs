//! Conversions between the wire types (`cairn-proto`) and the domain (`cairn-domain`).
//! The only place that knows both.

use std::collections::BTreeMap;

use cairn_domain as domain;
use cairn_proto as pb;
use pb::command::Body;
use pb::event::Payload;

/// Why a wire message could not become a domain value: every problem, with its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Malformed(pub Vec<String>);

fn entity(e: &Option<pb::EntityRef>, field: &str) -> Result<domain::EntityKey, Malformed> {
    match e {
        Some(e) => Ok(domain::EntityKey::new(e.kind.clone(), e.name.clone())),
        None => Err(Malformed(vec![format!("{field}: required")])),
    }
}

pub fn entity_to_pb(k: &domain::EntityKey) -> pb::EntityRef {
    pb::EntityRef {
        kind: k.kind.clone(),
        name: k.name.clone(),
    }
}

/// A wire command as a domain command. Only the shape is checked here; `decide` and
/// `validate::command_problems` judge the content.
pub fn command_from_pb(c: &pb::Command) -> Result<domain::Command, Malformed> {
    use domain::CommandBody as B;
    let body = match &c.body {
        None => return Err(Malformed(vec!["command.body: required".into()])),
        Some(Body::CreateNamespace(x)) => B::CreateNamespace {
            name: x.name.clone(),
            labels: x.labels.clone(),
        },
        Some(Body::SetNamespaceLabels(x)) => B::SetNamespaceLabels {
            name: x.name.clone(),
            set: x.set.clone(),
            remove: x.remove.clone(),
            replace: x.replace,
        },
        Some(Body::DeleteNamespace(x)) => B::DeleteNamespace {
            name: x.name.clone(),
        },
        Some(Body::AddNote(x)) => B::AddNote {
            entity: entity(&x.entity, "add_note.entity")?,
            text: x.text.clone(),
        },
        Some(Body::ReconcileMembers(_)) => B::ReconcileMembers,
        Some(Body::RegisterNode(x)) => B::RegisterNode {
            node: x.node.clone(),
            inventory: inventory_from_pb(x.inventory.as_ref(), "register_node.inventory")?,
            token_digest: c.token_digest.clone(),
        },
        Some(Body::ReportGpuHealth(x)) => B::ReportGpuHealth {
            node: x.node.clone(),
            gpus: x.gpus.iter().map(health_from_pb).collect(),
            token_digest: c.token_digest.clone(),
        },
        Some(Body::MarkNodeLost(x)) => B::MarkNodeLost {
            node: x.node.clone(),
            last_heartbeat_ms: x.last_heartbeat_ms,
            grace_ms: x.grace_ms,
        },
        Some(Body::MarkNodeRecovered(x)) => B::MarkNodeRecovered {
            node: x.node.clone(),
        },
        Some(Body::CordonNode(x)) => B::CordonNode {
            node: x.node.clone(),
            gpu_uuid: (!x.gpu_uuid.is_empty()).then(|| x.gpu_uuid.clone()),
            reason: x.reason.clone(),
            drain: x.drain,
        },
        Some(Body::UncordonNode(x)) => B::UncordonNode {
            node: x.node.clone(),
            gpu_uuid: (!x.gpu_uuid.is_empty()).then(|| x.gpu_uuid.clone()),
        },
        Some(Body::AcquirePortLeases(x)) => B::AcquirePortLeases {
            node: x.node.clone(),
            holder: x.holder.clone(),
            count: x.count,
            ttl_ms: x.ttl_ms,
        },
        Some(Body::RenewPortLeases(x)) => B::RenewPortLeases {
            node: x.node.clone(),
            ttl_ms: x.ttl_ms,
            token_digest: c.token_digest.clone(),
        },
        Some(Body::ReleasePortLeases(x)) => B::ReleasePortLeases {
            node: x.node.clone(),
            holder: x.holder.clone(),
        },
        Some(Body::ExpirePortLeases(_)) => B::ExpirePortLeases,
        Some(Body::SubmitJob(x)) => B::SubmitJob {
            spec_json: x.spec_json.clone(),
        },
        Some(Body::CancelJob(x)) => B::CancelJob {
            name: x.name.clone(),
            reason: x.reason.clone(),
        },
        Some(Body::ScheduleJobs(_)) => B::ScheduleJobs,
        Some(Body::SetQueueQuota(x)) => B::SetQueueQuota {
            queue: x.queue.clone(),
            gpus: x.gpus,
        },
        Some(Body::EnforceJobDeadline(x)) => B::EnforceJobDeadline {
            name: x.name.clone(),
        },
        Some(Body::SubmitCron(x)) => B::SubmitCron {
            spec_json: x.spec_json.clone(),
        },
        Some(Body::DeleteCron(x)) => B::DeleteCron {
            name: x.name.clone(),
        },
        Some(Body::TriggerCron(x)) => B::TriggerCron {
            name: x.name.clone(),
            scheduled_ms: x.scheduled_ms,
        },
        Some(Body::ReportReplica(x)) => B::ReportReplica {
            node: x.node.clone(),
            job: x.job.clone(),
            replica: domain::job::ReplicaId {
                role: x.role.clone(),
                index: x.index,
            },
            attempt: x.attempt,
            pid: x.pid,
            exit: x.exited.then_some(domain::ReplicaExit {
                code: x.exit_code,
                signal: x.signal,
                oom: x.oom,
            }),
            token_digest: c.token_digest.clone(),
        },
        Some(Body::ReportPortViolation(x)) => B::ReportPortViolation {
            node: x.node.clone(),
            port: x.port,
            pid: x.pid,
            process: x.process.clone(),
            token_digest: c.token_digest.clone(),
        },
    };
    Ok(domain::Command {
        timestamp_ms: c.timestamp_ms,
        actor: c.actor.clone(),
        correlation_id: c.correlation_id.clone(),
        expected_revision: c.expected_revision,
        body,
    })
}

pub fn event_to_pb(e: &domain::Event) -> pb::Event {
    use domain::EventPayload as P;
    let map =
        |l: &BTreeMap<String, String>| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let payload = match &e.payload {
        P::MemberAdded {
            node_id,
            address,
            voter,
        } => Payload::MemberAdded(pb::MemberAdded {
            node_id: *node_id,
            address: address.clone(),
            voter: *voter,
        }),
        P::MemberPromoted { node_id } => {
            Payload::MemberPromoted(pb::MemberPromoted { node_id: *node_id })
        }
        P::MemberRemoved { node_id } => {
            Payload::MemberRemoved(pb::MemberRemoved { node_id: *node_id })
        }
        P::NamespaceCreated { labels } => Payload::NamespaceCreated(pb::NamespaceCreated {
            labels: map(labels),
        }),
        P::NamespaceLabelsChanged { labels } => {
            Payload::NamespaceLabelsChanged(pb::NamespaceLabelsChanged {
                labels: map(labels),
            })
        }
        P::NamespaceDeleted => Payload::NamespaceDeleted(pb::NamespaceDeleted {}),
        P::NoteAdded { text } => Payload::NoteAdded(pb::NoteAdded { text: text.clone() }),
        P::NodeRegistered {
            inventory,
            token_digest,
        } => Payload::NodeRegistered(pb::NodeRegistered {
            inventory: Some(inventory_to_pb(inventory)),
            token_digest: token_digest.clone(),
        }),
        P::NodeLost {
            last_heartbeat_ms,
            grace_ms,
        } => Payload::NodeLost(pb::NodeLost {
            last_heartbeat_ms: *last_heartbeat_ms,
            grace_ms: *grace_ms,
        }),
        P::NodeRecovered => Payload::NodeRecovered(pb::NodeRecovered {}),
        P::GpuHealthChanged { health } => Payload::GpuHealthChanged(pb::GpuHealthChanged {
            health: Some(health_to_pb(health)),
        }),
        P::NodeCordoned {
            gpu_uuid,
            reason,
            drain,
        } => Payload::NodeCordoned(pb::NodeCordoned {
            gpu_uuid: gpu_uuid.clone(),
            reason: reason.clone(),
            drain: *drain,
        }),
        P::NodeUncordoned { gpu_uuid } => Payload::NodeUncordoned(pb::NodeUncordoned {
            gpu_uuid: gpu_uuid.clone(),
        }),
        P::PortLeaseGranted {
            holder,
            ports,
            expires_ms,
        } => Payload::PortLeaseGranted(pb::PortLeaseGranted {
            holder: holder.clone(),
            ports: ports.clone(),
            expires_ms: *expires_ms,
        }),
        P::PortLeasesRenewed { expires_ms } => Payload::PortLeasesRenewed(pb::PortLeasesRenewed {
            expires_ms: *expires_ms,
        }),
        P::PortLeaseReleased {
            holder,
            ports,
            reason,
        } => Payload::PortLeaseReleased(pb::PortLeaseReleased {
            holder: holder.clone(),
            ports: ports.clone(),
            reason: reason.clone(),
        }),
        P::JobSubmitted { spec_json } => Payload::JobSubmitted(pb::JobSubmitted {
            spec_json: spec_json.clone(),
        }),
        P::JobWaiting { reason } => Payload::JobWaiting(pb::JobWaiting {
            reason: reason.clone(),
        }),
        P::JobScheduled { placements } => Payload::JobScheduled(pb::JobScheduled {
            placements: placements.iter().map(placement_to_pb).collect(),
        }),
        P::JobCancelled { reason } => Payload::JobCancelled(pb::JobCancelled {
            reason: reason.clone(),
        }),
        P::JobRunning => Payload::JobRunning(pb::JobRunning {}),
        P::QueueQuotaSet { gpus } => Payload::QueueQuotaSet(pb::QueueQuotaSet { gpus: *gpus }),
        P::CronSubmitted { spec_json } => Payload::CronSubmitted(pb::CronSubmitted {
            spec_json: spec_json.clone(),
        }),
        P::CronDeleted => Payload::CronDeleted(pb::CronDeleted {}),
        P::CronTriggered { scheduled_ms, job } => Payload::CronTriggered(pb::CronTriggered {
            scheduled_ms: *scheduled_ms,
            job: job.clone(),
        }),
        P::CronSkipped {
            scheduled_ms,
            reason,
        } => Payload::CronSkipped(pb::CronSkipped {
            scheduled_ms: *scheduled_ms,
            reason: reason.clone(),
        }),
        P::JobRequeued { reason } => Payload::JobRequeued(pb::JobRequeued {
            reason: reason.clone(),
        }),
        P::JobSucceeded => Payload::JobSucceeded(pb::JobSucceeded {}),
        P::JobFailed { reason } => Payload::JobFailed(pb::JobFailed {
            reason: reason.clone(),
        }),
        P::ReplicaStarted {
            replica,
            attempt,
            node,
            pid,
        } => Payload::ReplicaStarted(pb::ReplicaStarted {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            node: node.clone(),
            pid: *pid,
        }),
        P::ReplicaExited {
            replica,
            attempt,
            exit_code,
            signal,
            oom,
        } => Payload::ReplicaExited(pb::ReplicaExited {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            exit_code: *exit_code,
            signal: *signal,
            oom: *oom,
        }),
        P::ReplicaRestarting {
            replica,
            attempt,
            reason,
        } => Payload::ReplicaRestarting(pb::ReplicaRestarting {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            reason: reason.clone(),
        }),
        P::PortLeaseViolation {
            port,
            holder,
            pid,
            process,
        } => Payload::PortLeaseViolation(pb::PortLeaseViolation {
            port: *port,
            holder: holder.clone(),
            pid: *pid,
            process: process.clone(),
        }),
    };
    pb::Event {
        sequence: e.sequence,
        raft_index: e.raft_index,
        raft_term: e.raft_term,
        timestamp_ms: e.timestamp_ms,
        entity: Some(entity_to_pb(&e.entity)),
        entity_revision: e.entity_revision,
        actor: e.actor.clone(),
        correlation_id: e.correlation_id.clone(),
        payload: Some(payload),
    }
}

/// A stored event back in the domain (to rebuild the state by folding the log).
pub fn event_from_pb(e: &pb::Event) -> Result<domain::Event, Malformed> {
    use domain::EventPayload as P;
    let payload = match &e.payload {
        None => {
            return Err(Malformed(vec![format!(
                "event {}: unknown or missing payload",
                e.sequence
            )]))
        }
        Some(Payload::MemberAdded(x)) => P::MemberAdded {
            node_id: x.node_id,
            address: x.address.clone(),
            voter: x.voter,
        },
        Some(Payload::MemberPromoted(x)) => P::MemberPromoted { node_id: x.node_id },
        Some(Payload::MemberRemoved(x)) => P::MemberRemoved { node_id: x.node_id },
        Some(Payload::NamespaceCreated(x)) => P::NamespaceCreated {
            labels: x.labels.clone(),
        },
        Some(Payload::NamespaceLabelsChanged(x)) => P::NamespaceLabelsChanged {
            labels: x.labels.clone(),
        },
        Some(Payload::NamespaceDeleted(_)) => P::NamespaceDeleted,
        Some(Payload::NoteAdded(x)) => P::NoteAdded {
            text: x.text.clone(),
        },
        Some(Payload::NodeRegistered(x)) => P::NodeRegistered {
            inventory: inventory_from_pb(x.inventory.as_ref(), "node_registered.inventory")?,
            token_digest: x.token_digest.clone(),
        },
        Some(Payload::NodeLost(x)) => P::NodeLost {
            last_heartbeat_ms: x.last_heartbeat_ms,
            grace_ms: x.grace_ms,
        },
        Some(Payload::NodeRecovered(_)) => P::NodeRecovered,
        Some(Payload::GpuHealthChanged(x)) => P::GpuHealthChanged {
            health: x.health.as_ref().map(health_from_pb).unwrap_or_default(),
        },
        Some(Payload::NodeCordoned(x)) => P::NodeCordoned {
            gpu_uuid: x.gpu_uuid.clone(),
            reason: x.reason.clone(),
            drain: x.drain,
        },
        Some(Payload::NodeUncordoned(x)) => P::NodeUncordoned {
            gpu_uuid: x.gpu_uuid.clone(),
        },
        Some(Payload::PortLeaseGranted(x)) => P::PortLeaseGranted {
            holder: x.holder.clone(),
            ports: x.ports.clone(),
            expires_ms: x.expires_ms,
        },
        Some(Payload::PortLeasesRenewed(x)) => P::PortLeasesRenewed {
            expires_ms: x.expires_ms,
        },
        Some(Payload::PortLeaseReleased(x)) => P::PortLeaseReleased {
            holder: x.holder.clone(),
            ports: x.ports.clone(),
            reason: x.reason.clone(),
        },
        Some(Payload::JobSubmitted(x)) => P::JobSubmitted {
            spec_json: x.spec_json.clone(),
        },
        Some(Payload::JobWaiting(x)) => P::JobWaiting {
            reason: x.reason.clone(),
        },
        Some(Payload::JobScheduled(x)) => P::JobScheduled {
            placements: x.placements.iter().map(placement_from_pb).collect(),
        },
        Some(Payload::JobCancelled(x)) => P::JobCancelled {
            reason: x.reason.clone(),
        },
        Some(Payload::JobRunning(_)) => P::JobRunning,
        Some(Payload::QueueQuotaSet(x)) => P::QueueQuotaSet { gpus: x.gpus },
        Some(Payload::CronSubmitted(x)) => P::CronSubmitted {
            spec_json: x.spec_json.clone(),
        },
        Some(Payload::CronDeleted(_)) => P::CronDeleted,
        Some(Payload::CronTriggered(x)) => P::CronTriggered {
            scheduled_ms: x.scheduled_ms,
            job: x.job.clone(),
        },
        Some(Payload::CronSkipped(x)) => P::CronSkipped {
            scheduled_ms: x.scheduled_ms,
            reason: x.reason.clone(),
        },
        Some(Payload::JobRequeued(x)) => P::JobRequeued {
            reason: x.reason.clone(),
        },
        Some(Payload::JobSucceeded(_)) => P::JobSucceeded,
        Some(Payload::JobFailed(x)) => P::JobFailed {
            reason: x.reason.clone(),
        },
        Some(Payload::ReplicaStarted(x)) => P::ReplicaStarted {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            node: x.node.clone(),
            pid: x.pid,
        },
        Some(Payload::ReplicaExited(x)) => P::ReplicaExited {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            exit_code: x.exit_code,
            signal: x.signal,
            oom: x.oom,
        },
        Some(Payload::ReplicaRestarting(x)) => P::ReplicaRestarting {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            reason: x.reason.clone(),
        },
        Some(Payload::PortLeaseViolation(x)) => P::PortLeaseViolation {
            port: x.port,
            holder: x.holder.clone(),
            pid: x.pid,
            process: x.process.clone(),
        },
    };
    Ok(domain::Event {
        sequence: e.sequence,
        raft_index: e.raft_index,
        raft_term: e.raft_term,
        timestamp_ms: e.timestamp_ms,
        entity: entity(&e.entity, "event.entity")?,
        entity_revision: e.entity_revision,
        actor: e.actor.clone(),
        correlation_id: e.correlation_id.clone(),
        payload,
    })
}

fn replica_id(role: &str, index: u32) -> domain::job::ReplicaId {
    domain::job::ReplicaId {
        role: role.to_string(),
        index,
    }
}

fn placement_to_pb(p: &domain::job::Placement) -> pb::ReplicaPlacement {
    pb::ReplicaPlacement {
        role: p.replica.role.clone(),
        index: p.replica.index,
        node: p.node.clone(),
        gpus: p.gpus.clone(),
        ports: p.ports.clone(),
        score: p.score,
    }
}

fn placement_from_pb(p: &pb::ReplicaPlacement) -> domain::job::Placement {
    domain::job::Placement {
        replica: domain::job::ReplicaId {
            role: p.role.clone(),
            index: p.index,
        },
        node: p.node.clone(),
        gpus: p.gpus.clone(),
        ports: p.ports.clone(),
        score: p.score,
    }
}

/// The API's view of a job.
pub fn job_to_pb(
    name: &str,
    j: &domain::job::JobState,
    e: Option<&domain::EntityState>,
) -> pb::JobView {
    let replicas = j.replicas();
    pb::JobView {
        name: name.to_string(),
        phase: j.phase.name().into(),
        reason: j.reason.clone(),
        spec_json: j.spec_json.clone(),
        placements: j.placements.iter().map(placement_to_pb).collect(),
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

/// The API's view of a cron.
pub fn cron_to_pb(
    name: &str,
    c: &domain::cron::CronState,
    e: Option<&domain::EntityState>,
) -> pb::CronView {
    let mut runs: Vec<pb::CronRun> = c
        .runs
        .iter()
        .map(|(job, t)| pb::CronRun {
            job: job.clone(),
            scheduled_ms: *t,
        })
        .collect();
    runs.sort_by_key(|r| r.scheduled_ms);
    pb::CronView {
        name: name.to_string(),
        schedule: c.doc.spec.schedule.clone(),
        suspend: c.doc.spec.suspend,
        concurrency_policy: format!("{:?}", c.doc.spec.concurrency_policy),
        last_scheduled_ms: c.last_scheduled_ms.unwrap_or(0),
        next_ms: if c.doc.spec.suspend {
            0
        } else {
            c.next_due().unwrap_or(0)
        },
        runs,
        spec_json: serde_json::to_string(&c.doc).unwrap_or_default(),
        revision: e.map_or(0, |e| e.revision),
    }
}

pub fn health_from_pb(h: &pb::GpuHealth) -> domain::node::GpuHealth {
    domain::node::GpuHealth {
        uuid: h.uuid.clone(),
        healthy: h.healthy,
        reason: h.reason.clone(),
        xid: h.xid,
    }
}

pub fn health_to_pb(h: &domain::node::GpuHealth) -> pb::GpuHealth {
    pb::GpuHealth {
        uuid: h.uuid.clone(),
        healthy: h.healthy,
        reason: h.reason.clone(),
        xid: h.xid,
    }
}

fn pcie_from_pb(v: i32) -> domain::node::PcieLevel {
    use domain::node::PcieLevel as L;
    match pb::PcieLevel::try_from(v) {
        Ok(pb::PcieLevel::SameBoard) => L::SameBoard,
        Ok(pb::PcieLevel::SingleSwitch) => L::SingleSwitch,
        Ok(pb::PcieLevel::MultipleSwitches) => L::MultipleSwitches,
        Ok(pb::PcieLevel::HostBridge) => L::HostBridge,
        Ok(pb::PcieLevel::SameNuma) => L::SameNuma,
        Ok(pb::PcieLevel::CrossSocket) => L::CrossSocket,
        Ok(pb::PcieLevel::Unspecified) | Err(_) => L::Unknown,
    }
}

fn pcie_to_pb(l: domain::node::PcieLevel) -> i32 {
    use domain::node::PcieLevel as L;
    (match l {
        L::Unknown => pb::PcieLevel::Unspecified,
        L::SameBoard => pb::PcieLevel::SameBoard,
        L::SingleSwitch => pb::PcieLevel::SingleSwitch,
        L::MultipleSwitches => pb::PcieLevel::MultipleSwitches,
        L::HostBridge => pb::PcieLevel::HostBridge,
        L::SameNuma => pb::PcieLevel::SameNuma,
        L::CrossSocket => pb::PcieLevel::CrossSocket,
    }) as i32
}

pub fn inventory_from_pb(
    inv: Option<&pb::NodeInventory>,
    field: &str,
) -> Result<domain::node::NodeInventory, Malformed> {
    let Some(inv) = inv else {
        return Err(Malformed(vec![format!("{field}: required")]));
    };
    Ok(domain::node::NodeInventory {
        hostname: inv.hostname.clone(),
        labels: inv.labels.clone(),
        cpu_millis: inv.cpu_millis,
        memory_bytes: inv.memory_bytes,
        gpus: inv
            .gpus
            .iter()
            .map(|g| domain::node::GpuInfo {
                index: g.index,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                memory_total_mib: g.memory_total_mib,
                compute_capability: g.compute_capability.clone(),
                numa_node: g.numa_node,
                cpu_affinity: g.cpu_affinity.clone(),
                mig_enabled: g.mig_enabled,
                mig_instances: g.mig_instances,
            })
            .collect(),
        links: inv
            .links
            .iter()
            .map(|l| domain::node::GpuLink {
                a: l.a,
                b: l.b,
                nvlinks: l.nvlinks,
                pcie: pcie_from_pb(l.pcie),
            })
            .collect(),
        port_range_start: inv.port_range_start,
        port_range_end: inv.port_range_end,
        driver_version: inv.driver_version.clone(),
        cuda_version: inv.cuda_version.clone(),
        gpu_provider: inv.gpu_provider.clone(),
        address: inv.address.clone(),
        agent_endpoint: inv.agent_endpoint.clone(),
    })
}

pub fn inventory_to_pb(inv: &domain::node::NodeInventory) -> pb::NodeInventory {
    pb::NodeInventory {
        hostname: inv.hostname.clone(),
        labels: inv
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cpu_millis: inv.cpu_millis,
        memory_bytes: inv.memory_bytes,
        gpus: inv
            .gpus
            .iter()
            .map(|g| pb::GpuInfo {
                index: g.index,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                memory_total_mib: g.memory_total_mib,
                compute_capability: g.compute_capability.clone(),
                numa_node: g.numa_node,
                cpu_affinity: g.cpu_affinity.clone(),
                mig_enabled: g.mig_enabled,
                mig_instances: g.mig_instances,
            })
            .collect(),
        links: inv
            .links
            .iter()
            .map(|l| pb::GpuLink {
                a: l.a,
                b: l.b,
                nvlinks: l.nvlinks,
                pcie: pcie_to_pb(l.pcie),
            })
            .collect(),
        port_range_start: inv.port_range_start,
        port_range_end: inv.port_range_end,
        driver_version: inv.driver_version.clone(),
        cuda_version: inv.cuda_version.clone(),
        gpu_provider: inv.gpu_provider.clone(),
        address: inv.address.clone(),
        agent_endpoint: inv.agent_endpoint.clone(),
    }
}

/// The API's view of a node.
pub fn node_to_pb(
    name: &str,
    n: &domain::node::NodeState,
    e: Option<&domain::EntityState>,
) -> pb::NodeView {
    pb::NodeView {
        name: name.to_string(),
        inventory: Some(inventory_to_pb(&n.inventory)),
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
            .map(|g| health_to_pb(&n.gpu_health(&g.uuid)))
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

pub fn entity_state_to_pb(k: &domain::EntityKey, s: &domain::EntityState) -> pb::Entity {
    pb::Entity {
        r#ref: Some(entity_to_pb(k)),
        revision: s.revision,
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        deleted: s.deleted,
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        notes: s.notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_protobuf() {
        use prost::Message;
        let e = domain::Event {
            sequence: 9,
            raft_index: 4,
            raft_term: 2,
            timestamp_ms: 123,
            entity: domain::EntityKey::new("namespace", "a"),
            entity_revision: 3,
            actor: "bob".into(),
            correlation_id: "c".into(),
            payload: domain::EventPayload::NamespaceCreated {
                labels: BTreeMap::from([("k".into(), "v".into())]),
            },
        };
        let bytes = event_to_pb(&e).encode_to_vec();
        let back = pb::Event::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(event_from_pb(&back), Ok(e));
    }

    #[test]
    fn a_command_without_body_is_malformed() {
        let err = command_from_pb(&pb::Command::default()).unwrap_err();
        assert_eq!(err.0, vec!["command.body: required".to_string()]);
    }
}
