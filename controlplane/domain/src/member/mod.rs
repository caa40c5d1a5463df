//! Raft members as the history records them. Membership changes are Raft's own log
//! entries, not commands; after each one (and when a member starts leading a term) the
//! leader proposes `ReconcileMembers`, which records the difference between the
//! membership Raft applied and the members already recorded. Idempotent: a repeat
//! records nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::emit::Emit;
use crate::entity::{At, EntityState};

pub const KIND: &str = "member";

/// A Raft member as recorded by member events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub address: String,
    pub voter: bool,
}

/// The Raft membership the log has applied (from membership entries, not events).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftMembers {
    pub voters: BTreeMap<u64, String>,
    pub learners: BTreeMap<u64, String>,
}

/// Members: as recorded by events, and as Raft applied them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    pub recorded: BTreeMap<u64, MemberRecord>,
    pub raft: RaftMembers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    Added {
        node_id: u64,
        address: String,
        voter: bool,
    },
    Promoted {
        node_id: u64,
    },
    Removed {
        node_id: u64,
    },
}

impl MemberEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            MemberEvent::Added { .. } => "member_added",
            MemberEvent::Promoted { .. } => "member_promoted",
            MemberEvent::Removed { .. } => "member_removed",
        }
    }
}

/// The entity name of a Raft member.
pub fn name(node_id: u64) -> String {
    node_id.to_string()
}

/// Emit the member events that bring the recorded members in line with Raft's.
pub fn reconcile(members: &Members, out: &mut impl Emit<MemberEvent>) {
    let applied = members
        .raft
        .voters
        .iter()
        .map(|(id, a)| (*id, a, true))
        .chain(members.raft.learners.iter().map(|(id, a)| (*id, a, false)));
    let mut in_raft = BTreeSet::new();
    for (id, address, voter) in applied {
        in_raft.insert(id);
        match members.recorded.get(&id) {
            None => out.emit(
                &name(id),
                MemberEvent::Added {
                    node_id: id,
                    address: address.clone(),
                    voter,
                },
            ),
            Some(m) if voter && !m.voter => {
                out.emit(&name(id), MemberEvent::Promoted { node_id: id })
            }
            Some(_) => {}
        }
    }
    for id in members.recorded.keys().filter(|id| !in_raft.contains(id)) {
        out.emit(&name(*id), MemberEvent::Removed { node_id: *id });
    }
}

/// Fold a member event in.
pub fn evolve(members: &mut Members, e: &mut EntityState, event: &MemberEvent, at: At<'_>) {
    match event {
        MemberEvent::Added {
            node_id,
            address,
            voter,
        } => {
            e.created(at);
            e.labels = labels(address, *voter);
            members.recorded.insert(
                *node_id,
                MemberRecord {
                    address: address.clone(),
                    voter: *voter,
                },
            );
        }
        MemberEvent::Promoted { node_id } => {
            if let Some(m) = members.recorded.get_mut(node_id) {
                m.voter = true;
                e.labels = labels(&m.address, true);
            }
        }
        MemberEvent::Removed { node_id } => {
            e.deleted = true;
            members.recorded.remove(node_id);
        }
    }
}

/// The labels a member entity shows: its address and role.
fn labels(address: &str, voter: bool) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("address".to_string(), address.to_string()),
        (
            "role".to_string(),
            if voter { "voter" } else { "learner" }.to_string(),
        ),
    ])
}
