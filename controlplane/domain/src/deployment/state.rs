//! A model deployment as the log tells it: its numbered revisions and their replicas,
//! the traffic weights, the rollout under way, and the stable endpoint.

use std::collections::BTreeMap;

use super::spec::{DeploymentDocument, Probe, ServingTemplate};

/// Model deployments, by name.
pub type Deployments = BTreeMap<String, DeploymentState>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentState {
    /// The spec last applied.
    pub doc: DeploymentDocument,
    pub created_ms: i64,
    /// Replicas wanted per revision (the spec's, or as scaled since).
    pub replicas: u32,
    pub revisions: BTreeMap<u32, Revision>,
    /// Revision → percent of the requests; sums to 100 once anything serves.
    pub weights: BTreeMap<u32, u32>,
    pub rollout: Option<Rollout>,
    /// The stable endpoint's port (0 until one is chosen): the same on every node where
    /// it is free there, else the node's own lowest free port.
    pub port: u32,
    /// Node → the endpoint port it leases and routes.
    pub routed_on: BTreeMap<String, u32>,
    /// Why the deployment does not progress (empty: it does, or has nothing to do).
    pub waiting: String,
    pub paused: Option<String>,
    pub deleted: bool,
}

/// One numbered revision: what its replicas run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub model_version: u64,
    /// Where the version's artifacts are (its storage location, else its source).
    pub model_uri: String,
    pub template: ServingTemplate,
    pub probe: Probe,
    pub created_ms: i64,
    pub replicas: BTreeMap<u32, ServingReplica>,
    /// Replica indexes are never reused within a revision.
    pub next_index: u32,
}

/// One replica of a revision, where it runs and what its agent last said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingReplica {
    pub node: String,
    /// GPU UUIDs.
    pub gpus: Vec<String>,
    /// The port the model server listens on.
    pub port: u32,
    pub attempt: u32,
    pub phase: ServingPhase,
    pub pid: u32,
    /// When it last started (readiness must come within the probe's startup budget).
    pub started_ms: i64,
    /// To be replaced (its GPU or node failed, or was drained): why.
    pub doomed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingPhase {
    /// Placed, not started (yet, or again).
    Pending,
    /// Started, not ready.
    Starting,
    Ready,
    /// Was ready, fails its probe.
    NotReady,
}

impl ServingPhase {
    pub fn name(self) -> &'static str {
        match self {
            ServingPhase::Pending => "Pending",
            ServingPhase::Starting => "Starting",
            ServingPhase::Ready => "Ready",
            ServingPhase::NotReady => "NotReady",
        }
    }
}

/// A revision taking over from the ones serving before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub target: u32,
    /// The canary step reached (None: none yet), and since when.
    pub step: Option<u32>,
    pub step_since_ms: i64,
    /// Skip the canary steps left: move the rest of the traffic as capacity allows.
    pub promoted: bool,
    pub reason: String,
}

/// The holder of a replica's port lease and GPUs on its node.
pub fn replica_holder(deployment: &str, revision: u32, index: u32) -> String {
    format!("deploy/{deployment}/r{revision}-{index}")
}

/// The holder of a deployment's stable endpoint port on a node.
pub fn endpoint_holder(deployment: &str) -> String {
    format!("deploy/{deployment}")
}

impl DeploymentState {
    /// The revision serving, or rolling in: the rollout's target, else the one with
    /// the most traffic, else the newest.
    pub fn current(&self) -> Option<u32> {
        if let Some(r) = &self.rollout {
            return Some(r.target);
        }
        self.weights
            .iter()
            .max_by_key(|(rev, w)| (**w, **rev))
            .map(|(rev, _)| *rev)
            .or_else(|| self.revisions.keys().next_back().copied())
    }

    /// Ready replicas of a revision.
    pub fn ready(&self, revision: u32) -> u32 {
        self.revisions.get(&revision).map_or(0, |r| {
            r.replicas
                .values()
                .filter(|x| x.phase == ServingPhase::Ready)
                .count() as u32
        })
    }

    /// Replicas in all revisions.
    pub fn replica_count(&self) -> u32 {
        self.revisions
            .values()
            .map(|r| r.replicas.len() as u32)
            .sum()
    }
}
