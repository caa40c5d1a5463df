//! What happened to a model deployment.

use std::collections::BTreeMap;

use super::spec::DeploymentDocument;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// The spec, as accepted (stored as normalised JSON).
    Applied {
        doc: Box<DeploymentDocument>,
    },
    /// A new revision, from the spec last applied; a rollout to it begins (the first
    /// revision simply serves once ready).
    RevisionCreated {
        revision: u32,
        model_version: u64,
        model_uri: String,
        reason: String,
    },
    /// The stable endpoint's port is leased, and routed, on these nodes.
    Routed {
        port: u32,
        nodes: Vec<String>,
    },
    ReplicasPlaced {
        revision: u32,
        placements: Vec<ServingPlacement>,
    },
    ReplicaStarted {
        revision: u32,
        index: u32,
        attempt: u32,
        pid: u32,
    },
    ReplicaReady {
        revision: u32,
        index: u32,
    },
    ReplicaNotReady {
        revision: u32,
        index: u32,
        reason: String,
    },
    /// The replica will run again, as `attempt`.
    ReplicaRestarting {
        revision: u32,
        index: u32,
        attempt: u32,
        reason: String,
    },
    /// Its GPU or node failed or is drained: a replacement goes elsewhere, and it goes
    /// once the replacement is ready (or at once, when it cannot serve anyway).
    ReplicaDoomed {
        revision: u32,
        index: u32,
        reason: String,
    },
    /// Replicas that stop: their routers drain them first, then their agents stop them.
    ReplicasRemoved {
        revision: u32,
        indexes: Vec<u32>,
        reason: String,
    },
    /// The whole traffic table after the change (revision → percent).
    TrafficShifted {
        weights: BTreeMap<u32, u32>,
        reason: String,
    },
    /// The rollout reached canary step `step` (0-based).
    CanaryStep {
        step: u32,
    },
    RolloutCompleted {
        revision: u32,
    },
    /// A rollback began: `to` takes the traffic back.
    RollbackStarted {
        to: u32,
        reason: String,
    },
    Promoted,
    Paused {
        reason: String,
    },
    Resumed,
    /// Why it cannot progress (only when the reason changes; empty: it can again).
    Waiting {
        reason: String,
    },
    Scaled {
        replicas: u32,
        reason: String,
        /// The load the autoscaler measured (none: scaled by hand or by the spec).
        load: Option<ScaleLoad>,
    },
    Deleted,
}

/// The figures an autoscaling decision was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleLoad {
    /// Requests in flight at the deployment's routers, averaged over the last report of
    /// each, in thousandths.
    pub in_flight_milli: u64,
    /// Ready replicas with traffic then.
    pub ready: u32,
    /// The spec's target of requests in flight per replica.
    pub target_in_flight: u32,
}

/// Where one new replica runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingPlacement {
    pub index: u32,
    pub node: String,
    pub gpus: Vec<String>,
    pub port: u32,
}

impl DeploymentEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            DeploymentEvent::Applied { .. } => "deployment_applied",
            DeploymentEvent::RevisionCreated { .. } => "deployment_revision_created",
            DeploymentEvent::Routed { .. } => "deployment_routed",
            DeploymentEvent::ReplicasPlaced { .. } => "deployment_replicas_placed",
            DeploymentEvent::ReplicaStarted { .. } => "deployment_replica_started",
            DeploymentEvent::ReplicaReady { .. } => "deployment_replica_ready",
            DeploymentEvent::ReplicaNotReady { .. } => "deployment_replica_not_ready",
            DeploymentEvent::ReplicaRestarting { .. } => "deployment_replica_restarting",
            DeploymentEvent::ReplicaDoomed { .. } => "deployment_replica_doomed",
            DeploymentEvent::ReplicasRemoved { .. } => "deployment_replicas_removed",
            DeploymentEvent::TrafficShifted { .. } => "deployment_traffic_shifted",
            DeploymentEvent::CanaryStep { .. } => "deployment_canary_step",
            DeploymentEvent::RolloutCompleted { .. } => "deployment_rollout_completed",
            DeploymentEvent::RollbackStarted { .. } => "deployment_rollback_started",
            DeploymentEvent::Promoted => "deployment_promoted",
            DeploymentEvent::Paused { .. } => "deployment_paused",
            DeploymentEvent::Resumed => "deployment_resumed",
            DeploymentEvent::Waiting { .. } => "deployment_waiting",
            DeploymentEvent::Scaled { .. } => "deployment_scaled",
            DeploymentEvent::Deleted => "deployment_deleted",
        }
    }
}
