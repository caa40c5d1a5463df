//! The state of the cluster: a pure fold of the event log (plus the Raft membership,
//! which the log's membership entries carry).

use std::collections::BTreeMap;

use crate::event::{EntityKey, Event, EventPayload};
use crate::job::{JobPhase, JobState, ReplicaPhase};
use crate::kinds;
use crate::node::{Cordon, NodeState, PortLease};

/// Current view of one entity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityState {
    /// Revision of the entity's stream: the number of events about it so far.
    pub revision: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub deleted: bool,
    pub labels: BTreeMap<String, String>,
    /// Number of notes added to it.
    pub notes: u64,
}

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

/// The fold of the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Sequence number the next event gets.
    next_sequence: u64,
    /// Every entity that ever existed, deleted ones included (their revision goes on).
    entities: BTreeMap<EntityKey, EntityState>,
    /// Members as recorded by `member_*` events.
    members: BTreeMap<u64, MemberRecord>,
    /// Membership as applied by Raft.
    raft_members: RaftMembers,
    /// GPU nodes, by name.
    nodes: BTreeMap<String, NodeState>,
    /// Training jobs, by name.
    jobs: BTreeMap<String, JobState>,
    /// Cron schedules of jobs, by name.
    crons: BTreeMap<String, crate::cron::CronState>,
    /// GPU quotas of queues (a queue without one has no limit).
    quotas: BTreeMap<String, u32>,
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
        self.entities.get(key).is_some_and(|e| !e.deleted)
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

    pub fn members(&self) -> &BTreeMap<u64, MemberRecord> {
        &self.members
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> &BTreeMap<String, NodeState> {
        &self.nodes
    }

    pub fn job(&self, name: &str) -> Option<&JobState> {
        self.jobs.get(name)
    }

    pub fn jobs(&self) -> &BTreeMap<String, JobState> {
        &self.jobs
    }

    pub fn quotas(&self) -> &BTreeMap<String, u32> {
        &self.quotas
    }

    /// GPUs held by the placed, unfinished jobs of each queue.
    pub fn queue_usage(&self) -> BTreeMap<String, u32> {
        let mut used: BTreeMap<String, u32> = BTreeMap::new();
        for j in self.jobs.values().filter(|j| j.phase.active()) {
            let gpus: u32 = j.placements.iter().map(|p| p.gpus.len() as u32).sum();
            *used.entry(j.doc.spec.scheduling.queue.clone()).or_default() += gpus;
        }
        used
    }

    pub fn cron(&self, name: &str) -> Option<&crate::cron::CronState> {
        self.crons.get(name).filter(|c| !c.deleted)
    }

    pub fn crons(&self) -> impl Iterator<Item = (&String, &crate::cron::CronState)> {
        self.crons.iter().filter(|(_, c)| !c.deleted)
    }

    /// Queued jobs in scheduling order: priority (higher first), then submission.
    pub fn queue(&self) -> Vec<(&String, &JobState)> {
        let mut q: Vec<_> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.phase == JobPhase::Queued
                    || (j.phase == JobPhase::Scheduled
                        && !j.doc.spec.scheduling.gang
                        && j.placements.len() < j.replicas().len())
            })
            .collect();
        q.sort_by_key(|(_, j)| {
            (
                std::cmp::Reverse(j.doc.spec.scheduling.priority),
                j.submitted_seq,
            )
        });
        q
    }

    /// A job ends: its GPUs, CPU, memory and ports go back to the nodes.
    fn end_job(&mut self, name: &str, phase: JobPhase, reason: &str, at_ms: i64) {
        let Some(j) = self.jobs.get_mut(name) else {
            return;
        };
        let roles = &j.doc.spec.roles;
        for p in &j.placements {
            let Some(n) = self.nodes.get_mut(&p.node) else {
                continue;
            };
            n.allocated_gpus.retain(|_, owner| owner != name);
            if let Some(r) = roles.get(&p.replica.role) {
                n.allocated_cpu_millis -= r.cpu_millis;
                n.allocated_memory_mib -= r.memory_mib;
            }
            let holder = format!("job/{name}/{}", p.replica);
            n.leases.retain(|_, l| l.holder != holder);
        }
        j.phase = phase;
        j.reason = reason.to_string();
        if phase.finished() {
            j.condition(phase.name(), reason, at_ms);
        }
    }

    pub fn raft_members(&self) -> &RaftMembers {
        &self.raft_members
    }

    /// Fold in a membership entry of the Raft log.
    pub fn set_raft_members(&mut self, members: RaftMembers) {
        self.raft_members = members;
    }

    /// Fold one event into the state. Events must arrive in sequence order, each
    /// exactly once; a gap is a bug in the caller and panics.
    pub fn evolve(&mut self, event: &Event) {
        assert_eq!(
            event.sequence,
            self.next_sequence(),
            "events must be folded in sequence order"
        );
        self.next_sequence = event.sequence + 1;
        let e = self.entities.entry(event.entity.clone()).or_default();
        e.revision = event.entity_revision;
        e.updated_ms = event.timestamp_ms;
        match &event.payload {
            EventPayload::NamespaceCreated { labels } => {
                *e = EntityState {
                    revision: event.entity_revision,
                    created_ms: event.timestamp_ms,
                    updated_ms: event.timestamp_ms,
                    deleted: false,
                    labels: labels.clone(),
                    notes: e.notes,
                };
            }
            EventPayload::NamespaceLabelsChanged { labels } => e.labels = labels.clone(),
            EventPayload::NamespaceDeleted => e.deleted = true,
            EventPayload::NoteAdded { .. } => e.notes += 1,
            EventPayload::MemberAdded {
                node_id,
                address,
                voter,
            } => {
                if e.created_ms == 0 || e.deleted {
                    e.created_ms = event.timestamp_ms;
                }
                e.deleted = false;
                e.labels = member_labels(address, *voter);
                self.members.insert(
                    *node_id,
                    MemberRecord {
                        address: address.clone(),
                        voter: *voter,
                    },
                );
            }
            EventPayload::MemberPromoted { node_id } => {
                if let Some(m) = self.members.get_mut(node_id) {
                    m.voter = true;
                    e.labels = member_labels(&m.address, true);
                }
            }
            EventPayload::MemberRemoved { node_id } => {
                e.deleted = true;
                self.members.remove(node_id);
            }
            EventPayload::NodeRegistered {
                inventory,
                token_digest,
            } => {
                if e.created_ms == 0 {
                    e.created_ms = event.timestamp_ms;
                }
                e.labels = inventory.labels.clone();
                let registered_ms = e.created_ms;
                match self.nodes.get_mut(&event.entity.name) {
                    Some(n) => {
                        n.inventory = inventory.clone();
                        n.token_digest = token_digest.clone();
                    }
                    None => {
                        self.nodes.insert(
                            event.entity.name.clone(),
                            NodeState {
                                inventory: inventory.clone(),
                                token_digest: token_digest.clone(),
                                registered_ms,
                                lost: false,
                                cordon: None,
                                cordoned_gpus: Default::default(),
                                health: Default::default(),
                                leases: Default::default(),
                                violations: 0,
                                allocated_gpus: Default::default(),
                                allocated_cpu_millis: 0,
                                allocated_memory_mib: 0,
                            },
                        );
                    }
                }
            }
            EventPayload::JobSubmitted { spec_json } => {
                e.created_ms = event.timestamp_ms;
                e.deleted = false;
                // decide parsed it before emitting the event: a stored event that no
                // longer parses leaves the job out rather than stopping the fold.
                if let Ok(doc) = crate::job::parse(spec_json) {
                    e.labels = doc.metadata.labels.clone();
                    self.jobs.insert(
                        event.entity.name.clone(),
                        JobState {
                            doc,
                            spec_json: spec_json.clone(),
                            phase: JobPhase::Queued,
                            reason: String::new(),
                            placements: Vec::new(),
                            submitted_ms: event.timestamp_ms,
                            submitted_seq: event.sequence,
                            replicas: Default::default(),
                            restarts: 0,
                            conditions: vec![
                                crate::job::Condition {
                                    kind: "Created".into(),
                                    reason: String::new(),
                                    at_ms: event.timestamp_ms,
                                },
                                crate::job::Condition {
                                    kind: "Queued".into(),
                                    reason: String::new(),
                                    at_ms: event.timestamp_ms,
                                },
                            ],
                        },
                    );
                }
            }
            EventPayload::JobWaiting { reason } => {
                if let Some(j) = self.jobs.get_mut(&event.entity.name) {
                    j.reason = reason.clone();
                    j.condition("Queued", reason, event.timestamp_ms);
                }
            }
            EventPayload::JobScheduled { placements } => {
                let name = &event.entity.name;
                if let Some(j) = self.jobs.get_mut(name) {
                    j.phase = JobPhase::Scheduled;
                    j.reason = String::new();
                    let on: std::collections::BTreeSet<&str> =
                        placements.iter().map(|p| p.node.as_str()).collect();
                    let on = on.into_iter().collect::<Vec<_>>().join(", ");
                    j.condition("Scheduled", &format!("on {on}"), event.timestamp_ms);
                    // A non-gang job may be placed in parts: placements add up.
                    j.placements.extend(placements.iter().cloned());
                    // Attempts continue across placements (a requeue counts as a
                    // restart), so a late report about an earlier run never matches.
                    let attempt = j.restarts;
                    for p in placements {
                        j.replicas.insert(
                            p.replica.clone(),
                            crate::job::ReplicaStatus {
                                attempt,
                                ..Default::default()
                            },
                        );
                    }
                    let roles = &j.doc.spec.roles;
                    for p in placements {
                        let Some(n) = self.nodes.get_mut(&p.node) else {
                            continue;
                        };
                        for g in &p.gpus {
                            n.allocated_gpus.insert(g.clone(), name.clone());
                        }
                        if let Some(r) = roles.get(&p.replica.role) {
                            n.allocated_cpu_millis += r.cpu_millis;
                            n.allocated_memory_mib += r.memory_mib;
                        }
                        for port in &p.ports {
                            n.leases.insert(
                                *port,
                                PortLease {
                                    holder: format!("job/{name}/{}", p.replica),
                                    expires_ms: i64::MAX,
                                },
                            );
                        }
                    }
                }
            }
            EventPayload::JobCancelled { reason } | EventPayload::JobFailed { reason } => {
                let phase = if matches!(event.payload, EventPayload::JobFailed { .. }) {
                    JobPhase::Failed
                } else {
                    JobPhase::Cancelled
                };
                self.end_job(&event.entity.name, phase, reason, event.timestamp_ms);
            }
            EventPayload::QueueQuotaSet { gpus } => {
                if e.created_ms == 0 {
                    e.created_ms = event.timestamp_ms;
                }
                match gpus {
                    Some(g) => self.quotas.insert(event.entity.name.clone(), *g),
                    None => self.quotas.remove(&event.entity.name),
                };
            }
            EventPayload::CronSubmitted { spec_json } => {
                if let Ok(doc) = crate::cron::parse(spec_json) {
                    e.labels = doc.metadata.labels.clone();
                    let name = event.entity.name.clone();
                    let schedule = crate::cron::Schedule::parse(&doc.spec.schedule);
                    if let Ok(schedule) = schedule {
                        match self.crons.get_mut(&name).filter(|c| !c.deleted) {
                            // A replaced spec keeps its place in time and its runs.
                            Some(c) => {
                                c.doc = doc;
                                c.schedule = schedule;
                            }
                            None => {
                                e.created_ms = event.timestamp_ms;
                                e.deleted = false;
                                self.crons.insert(
                                    name,
                                    crate::cron::CronState {
                                        doc,
                                        schedule,
                                        created_ms: event.timestamp_ms,
                                        last_scheduled_ms: None,
                                        runs: BTreeMap::new(),
                                        deleted: false,
                                    },
                                );
                            }
                        }
                    }
                }
            }
            EventPayload::CronDeleted => {
                e.deleted = true;
                if let Some(c) = self.crons.get_mut(&event.entity.name) {
                    c.deleted = true;
                }
            }
            EventPayload::CronTriggered { scheduled_ms, job } => {
                if let Some(c) = self.crons.get_mut(&event.entity.name) {
                    c.last_scheduled_ms = Some(*scheduled_ms);
                    c.runs.insert(job.clone(), *scheduled_ms);
                    // Keep the newest `historyLimit` runs in the cron's view (the jobs
                    // and their events stay in the log).
                    let limit = c.doc.spec.history_limit.max(1) as usize;
                    while c.runs.len() > limit {
                        let oldest = c
                            .runs
                            .iter()
                            .min_by_key(|(_, t)| **t)
                            .map(|(n, _)| n.clone());
                        match oldest {
                            Some(n) => {
                                c.runs.remove(&n);
                            }
                            None => break,
                        }
                    }
                }
            }
            EventPayload::CronSkipped { scheduled_ms, .. } => {
                if let Some(c) = self.crons.get_mut(&event.entity.name) {
                    c.last_scheduled_ms = Some(*scheduled_ms);
                }
            }
            EventPayload::JobRequeued { reason } => {
                let name = event.entity.name.clone();
                self.end_job(&name, JobPhase::Queued, reason, event.timestamp_ms);
                if let Some(j) = self.jobs.get_mut(&name) {
                    j.placements.clear();
                    j.replicas.clear();
                    j.restarts += 1;
                    j.condition("Restarting", reason, event.timestamp_ms);
                    j.condition("Queued", "", event.timestamp_ms);
                }
            }
            EventPayload::JobSucceeded => {
                self.end_job(
                    &event.entity.name,
                    JobPhase::Succeeded,
                    "",
                    event.timestamp_ms,
                );
            }
            EventPayload::JobRunning => {
                if let Some(j) = self.jobs.get_mut(&event.entity.name) {
                    j.phase = JobPhase::Running;
                    j.condition("Running", "every replica runs", event.timestamp_ms);
                }
            }
            EventPayload::ReplicaStarted {
                replica,
                attempt,
                pid,
                ..
            } => {
                if let Some(r) = self
                    .jobs
                    .get_mut(&event.entity.name)
                    .and_then(|j| j.replicas.get_mut(replica))
                {
                    r.phase = ReplicaPhase::Running;
                    r.attempt = *attempt;
                    r.pid = *pid;
                }
                if let Some(j) = self.jobs.get_mut(&event.entity.name) {
                    let restarted = j.conditions.last().is_some_and(|c| c.kind == "Restarting");
                    let all = j
                        .replicas
                        .values()
                        .all(|r| r.phase != ReplicaPhase::Pending);
                    if restarted && all && j.phase == JobPhase::Running {
                        j.condition(
                            "Running",
                            &format!("{replica} restarted"),
                            event.timestamp_ms,
                        );
                    }
                }
            }
            EventPayload::ReplicaExited {
                replica,
                exit_code,
                signal,
                ..
            } => {
                if let Some(r) = self
                    .jobs
                    .get_mut(&event.entity.name)
                    .and_then(|j| j.replicas.get_mut(replica))
                {
                    r.phase = if *exit_code == 0 && *signal == 0 {
                        ReplicaPhase::Succeeded
                    } else {
                        ReplicaPhase::Failed
                    };
                    r.exit_code = *exit_code;
                    r.signal = *signal;
                    r.ended_ms = event.timestamp_ms;
                }
            }
            EventPayload::ReplicaRestarting {
                replica, attempt, ..
            } => {
                if let Some(j) = self.jobs.get_mut(&event.entity.name) {
                    j.restarts += 1;
                    if let EventPayload::ReplicaRestarting { reason, .. } = &event.payload {
                        j.condition(
                            "Restarting",
                            &format!("{replica} {reason}"),
                            event.timestamp_ms,
                        );
                    }
                    if let Some(r) = j.replicas.get_mut(replica) {
                        r.phase = ReplicaPhase::Pending;
                        r.attempt = *attempt;
                        r.pid = 0;
                    }
                }
            }
            payload => {
                if let Some(n) = self.nodes.get_mut(&event.entity.name) {
                    evolve_node(n, payload);
                }
            }
        }
    }
}

/// Fold a node event (other than its registration) into the node.
fn evolve_node(n: &mut NodeState, payload: &EventPayload) {
    match payload {
        EventPayload::NodeLost { .. } => n.lost = true,
        EventPayload::NodeRecovered => n.lost = false,
        EventPayload::GpuHealthChanged { health } => {
            if health.healthy {
                n.health.remove(&health.uuid);
            } else {
                n.health.insert(health.uuid.clone(), health.clone());
            }
        }
        EventPayload::NodeCordoned {
            gpu_uuid,
            reason,
            drain,
        } => {
            if gpu_uuid.is_empty() {
                n.cordon = Some(Cordon {
                    reason: reason.clone(),
                    drain: *drain,
                });
            } else {
                n.cordoned_gpus.insert(gpu_uuid.clone());
            }
        }
        EventPayload::NodeUncordoned { gpu_uuid } => {
            if gpu_uuid.is_empty() {
                n.cordon = None;
            } else {
                n.cordoned_gpus.remove(gpu_uuid);
            }
        }
        EventPayload::PortLeaseGranted {
            holder,
            ports,
            expires_ms,
        } => {
            for p in ports {
                n.leases.insert(
                    *p,
                    PortLease {
                        holder: holder.clone(),
                        expires_ms: *expires_ms,
                    },
                );
            }
        }
        EventPayload::PortLeasesRenewed { expires_ms } => {
            for l in n.leases.values_mut() {
                l.expires_ms = *expires_ms;
            }
        }
        EventPayload::PortLeaseReleased { holder, ports, .. } => {
            for p in ports {
                if n.leases.get(p).is_some_and(|l| l.holder == *holder) {
                    n.leases.remove(p);
                }
            }
        }
        EventPayload::PortLeaseViolation { .. } => n.violations += 1,
        _ => {}
    }
}

/// The labels a member entity shows: its address and role.
fn member_labels(address: &str, voter: bool) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("address".to_string(), address.to_string()),
        (
            "role".to_string(),
            if voter { "voter" } else { "learner" }.to_string(),
        ),
    ])
}

/// The entity key of a Raft member.
pub(crate) fn member_key(node_id: u64) -> EntityKey {
    EntityKey::new(kinds::MEMBER, node_id.to_string())
}
