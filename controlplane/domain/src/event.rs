//! Events: the facts the log records.

use std::collections::BTreeMap;
use std::fmt;

use crate::job::{Placement, ReplicaId};
use crate::node::{GpuHealth, NodeInventory};

/// The entity an event is about: `kind/name`, e.g. `namespace/research` or `member/2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey {
    pub kind: String,
    pub name: String,
}

impl EntityKey {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Where in the Raft log a command sits; stamped into every event it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub raft_index: u64,
    pub raft_term: u64,
}

/// One event of the append-only log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Global, gapless, starting at 1.
    pub sequence: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    /// The leader's clock when it proposed the command (Unix milliseconds).
    pub timestamp_ms: i64,
    pub entity: EntityKey,
    /// The entity's revision after this event, starting at 1.
    pub entity_revision: u64,
    pub actor: String,
    pub correlation_id: String,
    pub payload: EventPayload,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPayload {
    MemberAdded {
        node_id: u64,
        address: String,
        voter: bool,
    },
    MemberPromoted {
        node_id: u64,
    },
    MemberRemoved {
        node_id: u64,
    },
    NamespaceCreated {
        labels: BTreeMap<String, String>,
    },
    /// The full label set after the change.
    NamespaceLabelsChanged {
        labels: BTreeMap<String, String>,
    },
    NamespaceDeleted,
    NoteAdded {
        text: String,
    },
    NodeRegistered {
        inventory: NodeInventory,
        token_digest: Vec<u8>,
    },
    NodeLost {
        last_heartbeat_ms: i64,
        grace_ms: u64,
    },
    NodeRecovered,
    GpuHealthChanged {
        health: GpuHealth,
    },
    /// `gpu_uuid` empty: the whole node.
    NodeCordoned {
        gpu_uuid: String,
        reason: String,
        drain: bool,
    },
    NodeUncordoned {
        gpu_uuid: String,
    },
    PortLeaseGranted {
        holder: String,
        ports: Vec<u32>,
        expires_ms: i64,
    },
    PortLeasesRenewed {
        expires_ms: i64,
    },
    /// `reason`: "released" or "expired".
    PortLeaseReleased {
        holder: String,
        ports: Vec<u32>,
        reason: String,
    },
    PortLeaseViolation {
        port: u32,
        holder: String,
        pid: u32,
        process: String,
    },
    /// The job's document, as submitted (JSON).
    JobSubmitted {
        spec_json: String,
    },
    /// Why a queued job does not fit yet (only when the reason changes).
    JobWaiting {
        reason: String,
    },
    JobScheduled {
        placements: Vec<Placement>,
    },
    JobCancelled {
        reason: String,
    },
    /// Every replica runs.
    JobRunning,
    JobSucceeded,
    JobFailed {
        reason: String,
    },
    ReplicaStarted {
        replica: ReplicaId,
        attempt: u32,
        node: String,
        pid: u32,
    },
    /// `signal` 0: exited with `exit_code`.
    ReplicaExited {
        replica: ReplicaId,
        attempt: u32,
        exit_code: i32,
        signal: i32,
        oom: bool,
    },
    /// A GPU or node under the job failed (or was drained): its replicas stop and it
    /// waits to be placed again.
    JobRequeued {
        reason: String,
    },
    /// A queue's GPU quota (`None`: no limit).
    QueueQuotaSet {
        gpus: Option<u32>,
    },
    /// A cron was created, or its spec replaced (JSON).
    CronSubmitted {
        spec_json: String,
    },
    CronDeleted,
    /// The run due at `scheduled_ms` started as `job`.
    CronTriggered {
        scheduled_ms: i64,
        job: String,
    },
    /// The run due at `scheduled_ms` did not start, and why.
    CronSkipped {
        scheduled_ms: i64,
        reason: String,
    },
    /// The replica will run again, as `attempt`.
    ReplicaRestarting {
        replica: ReplicaId,
        attempt: u32,
        reason: String,
    },
}

impl EventPayload {
    /// The type name used by filters and indexes (the protobuf oneof field name).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventPayload::MemberAdded { .. } => "member_added",
            EventPayload::MemberPromoted { .. } => "member_promoted",
            EventPayload::MemberRemoved { .. } => "member_removed",
            EventPayload::NamespaceCreated { .. } => "namespace_created",
            EventPayload::NamespaceLabelsChanged { .. } => "namespace_labels_changed",
            EventPayload::NamespaceDeleted => "namespace_deleted",
            EventPayload::NoteAdded { .. } => "note_added",
            EventPayload::NodeRegistered { .. } => "node_registered",
            EventPayload::NodeLost { .. } => "node_lost",
            EventPayload::NodeRecovered => "node_recovered",
            EventPayload::GpuHealthChanged { .. } => "gpu_health_changed",
            EventPayload::NodeCordoned { .. } => "node_cordoned",
            EventPayload::NodeUncordoned { .. } => "node_uncordoned",
            EventPayload::PortLeaseGranted { .. } => "port_lease_granted",
            EventPayload::PortLeasesRenewed { .. } => "port_leases_renewed",
            EventPayload::PortLeaseReleased { .. } => "port_lease_released",
            EventPayload::PortLeaseViolation { .. } => "port_lease_violation",
            EventPayload::JobSubmitted { .. } => "job_submitted",
            EventPayload::JobWaiting { .. } => "job_waiting",
            EventPayload::JobScheduled { .. } => "job_scheduled",
            EventPayload::JobCancelled { .. } => "job_cancelled",
            EventPayload::JobRunning => "job_running",
            EventPayload::JobSucceeded => "job_succeeded",
            EventPayload::JobFailed { .. } => "job_failed",
            EventPayload::ReplicaStarted { .. } => "replica_started",
            EventPayload::ReplicaExited { .. } => "replica_exited",
            EventPayload::ReplicaRestarting { .. } => "replica_restarting",
            EventPayload::JobRequeued { .. } => "job_requeued",
            EventPayload::QueueQuotaSet { .. } => "queue_quota_set",
            EventPayload::CronSubmitted { .. } => "cron_submitted",
            EventPayload::CronDeleted => "cron_deleted",
            EventPayload::CronTriggered { .. } => "cron_triggered",
            EventPayload::CronSkipped { .. } => "cron_skipped",
        }
    }
}
