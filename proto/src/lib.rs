//! Cairn's wire types: the `cairn.v1` protobuf schema and its generated tonic services.
//!
//! These types stay at the edge: the domain (`cairn-domain`) has its own types, and the
//! conversions between the two live in the control plane's `convert` module.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.v1");
}

pub use v1::*;

impl v1::Event {
    /// The event's type name, as in the payload oneof (`namespace_created`, ...).
    pub fn type_name(&self) -> &'static str {
        use v1::event::Payload;
        match &self.payload {
            Some(Payload::MemberAdded(_)) => "member_added",
            Some(Payload::MemberPromoted(_)) => "member_promoted",
            Some(Payload::MemberRemoved(_)) => "member_removed",
            Some(Payload::NamespaceCreated(_)) => "namespace_created",
            Some(Payload::NamespaceLabelsChanged(_)) => "namespace_labels_changed",
            Some(Payload::NamespaceDeleted(_)) => "namespace_deleted",
            Some(Payload::NoteAdded(_)) => "note_added",
            Some(Payload::NodeRegistered(_)) => "node_registered",
            Some(Payload::NodeLost(_)) => "node_lost",
            Some(Payload::NodeRecovered(_)) => "node_recovered",
            Some(Payload::GpuHealthChanged(_)) => "gpu_health_changed",
            Some(Payload::NodeCordoned(_)) => "node_cordoned",
            Some(Payload::NodeUncordoned(_)) => "node_uncordoned",
            Some(Payload::PortLeaseGranted(_)) => "port_lease_granted",
            Some(Payload::PortLeasesRenewed(_)) => "port_leases_renewed",
            Some(Payload::PortLeaseReleased(_)) => "port_lease_released",
            Some(Payload::PortLeaseViolation(_)) => "port_lease_violation",
            Some(Payload::JobSubmitted(_)) => "job_submitted",
            Some(Payload::JobWaiting(_)) => "job_waiting",
            Some(Payload::JobScheduled(_)) => "job_scheduled",
            Some(Payload::JobCancelled(_)) => "job_cancelled",
            Some(Payload::JobRunning(_)) => "job_running",
            Some(Payload::JobSucceeded(_)) => "job_succeeded",
            Some(Payload::JobFailed(_)) => "job_failed",
            Some(Payload::ReplicaStarted(_)) => "replica_started",
            Some(Payload::ReplicaExited(_)) => "replica_exited",
            Some(Payload::ReplicaRestarting(_)) => "replica_restarting",
            Some(Payload::JobRequeued(_)) => "job_requeued",
            Some(Payload::QueueQuotaSet(_)) => "queue_quota_set",
            Some(Payload::CronSubmitted(_)) => "cron_submitted",
            Some(Payload::CronDeleted(_)) => "cron_deleted",
            Some(Payload::CronTriggered(_)) => "cron_triggered",
            Some(Payload::CronSkipped(_)) => "cron_skipped",
            None => "unknown",
        }
    }
}

/// Every event type name `Event::type_name` can return for a known payload.
pub const EVENT_TYPES: &[&str] = &[
    "member_added",
    "member_promoted",
    "member_removed",
    "namespace_created",
    "namespace_labels_changed",
    "namespace_deleted",
    "note_added",
    "node_registered",
    "node_lost",
    "node_recovered",
    "gpu_health_changed",
    "node_cordoned",
    "node_uncordoned",
    "port_lease_granted",
    "port_leases_renewed",
    "port_lease_released",
    "port_lease_violation",
    "job_submitted",
    "job_waiting",
    "job_scheduled",
    "job_cancelled",
    "job_running",
    "job_succeeded",
    "job_failed",
    "replica_started",
    "replica_exited",
    "replica_restarting",
    "job_requeued",
    "queue_quota_set",
    "cron_submitted",
    "cron_deleted",
    "cron_triggered",
    "cron_skipped",
];

/// Metadata carrying an agent's node token.
pub const NODE_TOKEN: &str = "x-cairn-node-token";

impl std::fmt::Display for v1::EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Metadata a server sets on an error when the request certainly changed nothing (it
/// was never proposed), so a client may safely send it again, elsewhere.
pub const NOT_APPLIED: &str = "x-cairn-not-applied";
/// Metadata with the leader's address, on not-leader errors.
pub const LEADER_HINT: &str = "x-cairn-leader";
/// Metadata with the leader's node id, on not-leader errors.
pub const LEADER_ID_HINT: &str = "x-cairn-leader-id";

/// Whether a failed call certainly changed nothing: the server said so, or the
/// connection was never made. Any other failure of a write is indeterminate: it may have
/// been applied, and sending it again may apply it twice.
pub fn certainly_not_applied(s: &tonic::Status) -> bool {
    s.metadata().get(NOT_APPLIED).is_some()
        || (s.code() == tonic::Code::Unavailable && s.message().contains("tcp connect error"))
}

/// Every event a member answers with, paging through `ListEvents` from the start.
pub async fn all_events(
    client: &mut v1::cairn_client::CairnClient<tonic::transport::Channel>,
    consistency: v1::ReadConsistency,
) -> Result<Vec<v1::Event>, tonic::Status> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list_events(v1::ListEventsRequest {
                filter: Some(v1::EventFilter {
                    after_sequence: after,
                    ..Default::default()
                }),
                limit: 10_000,
                consistency: consistency as i32,
            })
            .await?
            .into_inner();
        out.extend(page.events);
        if page.next_after_sequence == 0 {
            return Ok(out);
        }
        after = page.next_after_sequence;
    }
}
