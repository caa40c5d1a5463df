//! The state of the cluster: a pure fold of the event log (plus the Raft membership,
//! which the log's membership entries carry), made of each aggregate's state.

use std::collections::BTreeMap;

use crate::cron::{self, CronState, Crons};
use crate::deployment::{self, DeploymentState, Deployments};
use crate::entity::{EntityKey, EntityState};
use crate::job::{self, JobState, Jobs};
use crate::member::{MemberRecord, Members, RaftMembers};
use crate::model::Models;
use crate::node::{NodeState, Nodes};
use crate::projection::{Projection, Projections};
use crate::queue::Quotas;
use crate::token::Tokens;

/// The fold of the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Sequence number the next event gets.
    pub(super) next_sequence: u64,
    /// Every entity that ever existed, deleted ones included (their revision goes on).
    pub(super) entities: BTreeMap<EntityKey, EntityState>,
    pub(super) members: Members,
    /// GPU nodes, by name.
    pub(super) nodes: Nodes,
    /// Training jobs, by name.
    pub(super) jobs: Jobs,
    /// Cron schedules of jobs, by name.
    pub(super) crons: Crons,
    /// GPU quotas of queues (a queue without one has no limit).
    pub(super) quotas: Quotas,
    /// API tokens, by name (revoked ones too: names are never reused).
    pub(super) tokens: Tokens,
    /// Registered models, by current name (deleted ones until the name is taken again).
    pub(super) models: Models,
    /// Model deployments, by name (deleted ones until the name is taken again).
    pub(super) deployments: Deployments,
    /// Projections of the log into other systems, by name.
    pub(super) projections: Projections,
}

impl State {
    pub fn new() -> Self {
        Self {
            next_sequence: 1,
            ..Self::default()
        }
    }

    /// Sequence number of the last event folded in (0 when none).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence.saturating_sub(1)
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence.max(1)
    }

    pub fn entity(&self, key: &EntityKey) -> Option<&EntityState> {
        self.entities.get(key)
    }

    /// Current revision of `key` (0 if it never existed).
    pub fn revision(&self, key: &EntityKey) -> u64 {
        self.entities.get(key).map_or(0, |e| e.revision)
    }

    /// Whether `key` exists and is not deleted.
    pub fn is_live(&self, key: &EntityKey) -> bool {
        EntityState::live(self.entities.get(key))
    }

    /// Entities of one kind, ordered by name.
    pub fn entities_of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a EntityKey, &'a EntityState)> + 'a {
        let start = EntityKey::new(kind, "");
        self.entities
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
    }

    /// Members as recorded by member events.
    pub fn members(&self) -> &BTreeMap<u64, MemberRecord> {
        &self.members.recorded
    }

    pub fn raft_members(&self) -> &RaftMembers {
        &self.members.raft
    }

    /// Fold in a membership entry of the Raft log.
    pub fn set_raft_members(&mut self, members: RaftMembers) {
        self.members.raft = members;
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    pub fn job(&self, name: &str) -> Option<&JobState> {
        self.jobs.get(name)
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// What a job decision reads.
    pub fn job_context(&self) -> job::Context<'_> {
        job::Context {
            jobs: &self.jobs,
            nodes: &self.nodes,
            quotas: &self.quotas,
            models: &self.models,
        }
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// A projection's checkpoint and resync count (zero when it never recorded one).
    pub fn projection(&self, name: &str) -> Projection {
        self.projections.get(name).cloned().unwrap_or_default()
    }

    /// GPUs held by the placed, unfinished jobs of each queue.
    pub fn queue_usage(&self) -> BTreeMap<String, u32> {
        job::queue_usage(&self.jobs)
    }

    /// Queued jobs in scheduling order: priority (higher first), then submission.
    pub fn queue(&self) -> Vec<(&String, &JobState)> {
        job::queue(&self.jobs)
    }

    /// Registered models by name, deleted ones included.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Model deployments by name, deleted ones included.
    pub fn deployments(&self) -> &Deployments {
        &self.deployments
    }

    /// A deployment that exists now.
    pub fn deployment(&self, name: &str) -> Option<&DeploymentState> {
        self.deployments.get(name).filter(|d| !d.deleted)
    }

    /// What a deployment decision reads.
    pub fn deployment_context(&self) -> deployment::Context<'_> {
        deployment::Context {
            deployments: &self.deployments,
            nodes: &self.nodes,
            models: &self.models,
        }
    }

    /// A cron that exists now.
    pub fn cron(&self, name: &str) -> Option<&CronState> {
        cron::live(&self.crons, name)
    }

    /// The crons that exist now, by name.
    pub fn crons(&self) -> impl Iterator<Item = (&String, &CronState)> {
        self.crons.iter().filter(|(_, c)| !c.deleted)
    }
}
