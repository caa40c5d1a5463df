//! Membership changes, answered by the leader. Each is recorded as member events
//! afterwards (`ReconcileMembers`). A voter change is refused unless the new voter set
//! has a live majority: Raft would otherwise append a joint configuration it can never
//! commit, and with it nothing else (etcd's strict reconfiguration check is the same).

use std::collections::BTreeSet;

use cairn_domain::{CommandBody, Rejection};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::{App, AppError, Result};

/// The membership after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// The Raft log index of the change.
    pub raft_index: u64,
}

fn valid_address(a: &str) -> bool {
    a.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> AppError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AppError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AppError::Rejected(Rejection::FailedPrecondition(c.to_string()))
        }
        RaftError::Fatal(f) => AppError::Unavailable(format!("the Raft node stopped: {f}")),
    }
}

impl App {
    /// Check a new learner's id and address (before anything is routed).
    pub fn check_learner(node_id: u64, address: &str) -> Result<()> {
        let mut problems = Vec::new();
        if node_id == 0 {
            problems.push("node_id: must be > 0".to_string());
        }
        if !valid_address(address) {
            problems.push(format!("address: {address:?} is not host:port"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AppError::Invalid(problems))
        }
    }

    /// Add a learner (on the leader).
    pub async fn add_learner(&self, node_id: u64, address: String) -> Result<MembershipChange> {
        Self::check_learner(node_id, &address)?;
        let resp = self
            .raft()
            .add_learner(node_id, BasicNode::new(address), true)
            .await
            .map_err(membership_error)?;
        self.reconcile_members().await?;
        Ok(self.membership(resp.log_id.index))
    }

    /// Make a learner a voter (on the leader).
    pub async fn promote(&self, id: u64) -> Result<MembershipChange> {
        let m = self.raft().metrics().borrow().membership_config.clone();
        if !m.membership().learner_ids().any(|l| l == id) {
            let why = if m.membership().voter_ids().any(|v| v == id) {
                format!("node {id} is already a voter")
            } else {
                format!("node {id} is not a member; add it as a learner first")
            };
            return Err(AppError::Rejected(Rejection::FailedPrecondition(why)));
        }
        let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        voters.insert(id);
        self.change_membership(ChangeMembers::AddVoterIds([id].into()), voters)
            .await
    }

    /// Remove a voter or a learner (on the leader).
    pub async fn remove_member(&self, id: u64) -> Result<MembershipChange> {
        let m = self.raft().metrics().borrow().membership_config.clone();
        let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        let change = if voters.remove(&id) {
            if m.membership().voter_ids().count() == 1 {
                return Err(AppError::Rejected(Rejection::FailedPrecondition(format!(
                    "node {id} is the last voter"
                ))));
            }
            ChangeMembers::RemoveVoters([id].into())
        } else if m.membership().learner_ids().any(|l| l == id) {
            ChangeMembers::RemoveNodes([id].into())
        } else {
            return Err(AppError::Rejected(Rejection::NotFound(format!(
                "member/{id}"
            ))));
        };
        self.change_membership(change, voters).await
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<u64, BasicNode>,
        new_voters: BTreeSet<u64>,
    ) -> Result<MembershipChange> {
        self.ensure_live_quorum(&new_voters).await?;
        let resp = self
            .raft()
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        self.reconcile_members().await?;
        Ok(self.membership(resp.log_id.index))
    }

    fn membership(&self, raft_index: u64) -> MembershipChange {
        let m = self.raft().metrics().borrow().membership_config.clone();
        MembershipChange {
            voters: m.membership().voter_ids().collect(),
            learners: m.membership().learner_ids().collect(),
            raft_index,
        }
    }

    /// Refuse a voter change whose new voter set has no live majority. A voter is live
    /// when it answers a status probe.
    async fn ensure_live_quorum(&self, voters: &BTreeSet<u64>) -> Result<()> {
        let me = self.id();
        let membership = self.raft().metrics().borrow().membership_config.clone();
        let probes = voters.iter().map(|id| {
            let addr = membership
                .membership()
                .get_node(id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            let (id, this) = (*id, self.clone());
            async move {
                let live = id == me || this.probe(&addr).await.is_ok();
                (id, live)
            }
        });
        let answers = futures::future::join_all(probes).await;
        let live = answers.iter().filter(|a| a.1).count();
        if live * 2 > voters.len() {
            return Ok(());
        }
        let down: Vec<u64> = answers.iter().filter(|a| !a.1).map(|a| a.0).collect();
        Err(AppError::Rejected(Rejection::FailedPrecondition(format!(
            "the new voters {voters:?} would have no live majority (not answering: {down:?}); \
             bring those members back or remove them first"
        ))))
    }

    /// Record the current Raft membership as member events.
    pub async fn reconcile_members(&self) -> Result<()> {
        self.propose_as("system/membership", CommandBody::ReconcileMembers)
            .await
            .map(|_| ())
    }
}
