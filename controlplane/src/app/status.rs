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
    /// The Kubernetes projection on this member (`off`, standby, or what it did last).
    #[serde(default)]
    pub kubernetes: String,
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
