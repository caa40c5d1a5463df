//! A member's report of itself, and the cluster's status as one member sees it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::App;

pub use crate::metrics::rss_bytes;

/// A member's own view of itself, as its `MemberStatus` answers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberReport {
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub last_sequence: u64,
    pub rss_bytes: u64,
    /// The Kubernetes projection on this member.
    pub kubernetes: ProjectionReport,
}

/// The Kubernetes projector's account of itself on one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionReport {
    /// `off`, `standby`, `leading` or `failing`.
    pub state: String,
    pub namespace: String,
    /// Every event through this sequence is in Kubernetes.
    pub projected_through: u64,
    pub last_sequence: u64,
    /// The checkpoint in the log, and the one this member resumed from.
    pub checkpoint: u64,
    pub resumed_from: u64,
    /// How long the oldest event not yet projected has waited (ms; 0: caught up).
    pub lag_ms: u64,
    /// Objects per kind.
    pub objects: BTreeMap<String, u64>,
    /// When the last full reconcile ended (Unix ms; 0: none yet), and what it did.
    pub last_reconcile_ms: i64,
    pub last_reconcile: String,
    /// Full reconciles since this member began to lead.
    pub reconciles: u64,
    /// What failed, while failing.
    pub error: String,
    /// Kinds this api-server does not serve, so not projected (e.g. HTTPRoute without
    /// the Gateway API).
    pub unserved: Vec<String>,
    /// Objects the api-server refused as invalid, the latest last (kind, name: why).
    pub refused: Vec<String>,
}

impl ProjectionReport {
    /// The report in one line, for `cairn cluster status`.
    pub fn summary(&self) -> String {
        match self.state.as_str() {
            "" | "off" => "off".into(),
            "standby" => format!(
                "standby: projects into namespace {} while this member leads",
                self.namespace
            ),
            "failing" => format!("failing, will try again: {}", self.error),
            _ => format!(
                "{}: {} objects in namespace {}, projected through sequence {} of {}",
                self.state,
                self.objects.values().sum::<u64>(),
                self.namespace,
                self.projected_through,
                self.last_sequence,
            ),
        }
    }
}

/// One member in the cluster's status: its address, and its report or why none came.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
    pub report: Result<MemberReport, String>,
}

/// The cluster as one member sees it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub leader_id: u64,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    pub answered_by: u64,
}

impl App {
    /// This member's report of itself.
    pub fn report(&self) -> MemberReport {
        let m = self.raft().metrics().borrow().clone();
        let role = if m.current_leader == Some(m.id) {
            "leader".to_string()
        } else if m
            .membership_config
            .membership()
            .learner_ids()
            .any(|l| l == m.id)
        {
            "learner".to_string()
        } else {
            format!("{:?}", m.state).to_lowercase()
        };
        MemberReport {
            node_id: m.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            commit_index: self.inner.log.committed_index(),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_sequence: self.shared().read().state.last_sequence(),
            rss_bytes: rss_bytes(),
            kubernetes: self.projection(),
        }
    }

    /// Every member of the membership this member knows, each asked for its report.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let me = self.report();
        let membership = self.raft().metrics().borrow().membership_config.clone();
        let m = membership.membership();
        let addr = |id: &u64| m.get_node(id).map(|n| n.addr.clone()).unwrap_or_default();
        let mut members: BTreeMap<u64, (String, bool)> = BTreeMap::new();
        for id in m.voter_ids() {
            members.insert(id, (addr(&id), true));
        }
        for id in m.learner_ids() {
            members.insert(id, (addr(&id), false));
        }
        let queries = members.into_iter().map(|(id, (address, voter))| {
            let (me, this) = (me.clone(), self.clone());
            async move {
                let report = if id == me.node_id {
                    Ok(me)
                } else {
                    this.probe(&address).await
                };
                MemberStatus {
                    node_id: id,
                    address,
                    voter,
                    report,
                }
            }
        });
        ClusterStatus {
            leader_id: me.leader.unwrap_or(0),
            term: me.term,
            members: futures::future::join_all(queries).await,
            answered_by: me.node_id,
        }
    }
}
