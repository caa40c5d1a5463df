//! Commands: requests to change state, decided in log order.

use std::collections::BTreeMap;

use crate::event::EntityKey;
use crate::node::{GpuHealth, NodeInventory};

/// A command as proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Stamped by the leader when it proposes the command.
    pub timestamp_ms: i64,
    pub actor: String,
    pub correlation_id: String,
    /// The revision the caller expects the target entity to have (0: must not exist).
    pub expected_revision: Option<u64>,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    CreateNamespace {
        name: String,
        labels: BTreeMap<String, String>,
    },
    SetNamespaceLabels {
        name: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
        /// Replace the whole label set with `set` instead of merging.
        replace: bool,
    },
    DeleteNamespace {
        name: String,
    },
    AddNote {
        entity: EntityKey,
        text: String,
    },
    /// Record the applied Raft membership as member events.
    ReconcileMembers,
    /// An agent registers its node. `token_digest` is the SHA-256 of the token the
    /// request carried, set by the server's edge.
    RegisterNode {
        node: String,
        inventory: NodeInventory,
        token_digest: Vec<u8>,
    },
    /// An agent's full view of its GPUs' health.
    ReportGpuHealth {
        node: String,
        gpus: Vec<GpuHealth>,
        token_digest: Vec<u8>,
    },
    /// The leader heard nothing from the node for longer than `grace_ms`.
    MarkNodeLost {
        node: String,
        last_heartbeat_ms: i64,
        grace_ms: u64,
    },
    MarkNodeRecovered {
        node: String,
    },
    /// Cordon the node (`gpu_uuid` None) or one GPU.
    CordonNode {
        node: String,
        gpu_uuid: Option<String>,
        reason: String,
        drain: bool,
    },
    UncordonNode {
        node: String,
        gpu_uuid: Option<String>,
    },
    AcquirePortLeases {
        node: String,
        holder: String,
        count: u32,
        ttl_ms: u64,
    },
    RenewPortLeases {
        node: String,
        ttl_ms: u64,
        token_digest: Vec<u8>,
    },
    ReleasePortLeases {
        node: String,
        holder: String,
    },
    /// Release every lease that expired before the command's timestamp.
    ExpirePortLeases,
    ReportPortViolation {
        node: String,
        port: u32,
        pid: u32,
        process: String,
        token_digest: Vec<u8>,
    },
    /// A training job document (JSON).
    SubmitJob {
        spec_json: String,
    },
    CancelJob {
        name: String,
        reason: String,
    },
    /// Place what fits from the queue (proposed by the leader when capacity changed).
    ScheduleJobs,
    /// Set a queue's GPU quota (`None`: no limit).
    SetQueueQuota {
        queue: String,
        gpus: Option<u32>,
    },
    /// Proposed by the leader: fail a job past its `activeDeadlineSeconds`.
    EnforceJobDeadline {
        name: String,
    },
    /// A cron document (JSON): creates the cron, or replaces its spec.
    SubmitCron {
        spec_json: String,
    },
    DeleteCron {
        name: String,
    },
    /// Proposed by the leader: the run of `name` due at `scheduled_ms`.
    TriggerCron {
        name: String,
        scheduled_ms: i64,
    },
    /// An agent reports a replica it runs: started (`exit` None) or ended.
    ReportReplica {
        node: String,
        job: String,
        replica: crate::job::ReplicaId,
        attempt: u32,
        pid: u32,
        exit: Option<ReplicaExit>,
        token_digest: Vec<u8>,
    },
}

/// How a replica's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaExit {
    pub code: i32,
    pub signal: i32,
    pub oom: bool,
}

impl CommandBody {
    /// The entity the command is about, if it has a single target.
    pub fn target(&self) -> Option<EntityKey> {
        match self {
            CommandBody::CreateNamespace { name, .. }
            | CommandBody::SetNamespaceLabels { name, .. }
            | CommandBody::DeleteNamespace { name } => {
                Some(EntityKey::new(crate::kinds::NAMESPACE, name.clone()))
            }
            CommandBody::AddNote { entity, .. } => Some(entity.clone()),
            CommandBody::RegisterNode { node, .. }
            | CommandBody::ReportGpuHealth { node, .. }
            | CommandBody::MarkNodeLost { node, .. }
            | CommandBody::MarkNodeRecovered { node }
            | CommandBody::CordonNode { node, .. }
            | CommandBody::UncordonNode { node, .. }
            | CommandBody::AcquirePortLeases { node, .. }
            | CommandBody::RenewPortLeases { node, .. }
            | CommandBody::ReleasePortLeases { node, .. }
            | CommandBody::ReportPortViolation { node, .. } => {
                Some(EntityKey::new(crate::kinds::NODE, node.clone()))
            }
            CommandBody::SubmitJob { spec_json } => crate::job::parse(spec_json)
                .ok()
                .map(|d| EntityKey::new(crate::kinds::JOB, d.metadata.name)),
            CommandBody::CancelJob { name, .. }
            | CommandBody::EnforceJobDeadline { name }
            | CommandBody::ReportReplica { job: name, .. } => {
                Some(EntityKey::new(crate::kinds::JOB, name.clone()))
            }
            CommandBody::SetQueueQuota { queue, .. } => {
                Some(EntityKey::new(crate::kinds::QUEUE, queue.clone()))
            }
            CommandBody::SubmitCron { spec_json } => crate::cron::parse(spec_json)
                .ok()
                .map(|d| EntityKey::new(crate::kinds::CRON, d.metadata.name)),
            CommandBody::DeleteCron { name } | CommandBody::TriggerCron { name, .. } => {
                Some(EntityKey::new(crate::kinds::CRON, name.clone()))
            }
            CommandBody::ReconcileMembers
            | CommandBody::ExpirePortLeases
            | CommandBody::ScheduleJobs => None,
        }
    }
}

impl CommandBody {
    /// Commands only the leader proposes; clients may not submit them.
    pub fn leader_only(&self) -> bool {
        matches!(
            self,
            CommandBody::ReconcileMembers
                | CommandBody::MarkNodeLost { .. }
                | CommandBody::MarkNodeRecovered { .. }
                | CommandBody::ExpirePortLeases
                | CommandBody::ScheduleJobs
                | CommandBody::TriggerCron { .. }
                | CommandBody::EnforceJobDeadline { .. }
        )
    }
}
