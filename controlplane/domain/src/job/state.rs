//! A training job as the log tells it: phase, placements, replica statuses, restarts and
//! the conditions it went through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{JobDocument, RoleSpec, SuccessPolicy};
use crate::model::RunOutputs;

/// Training jobs, by name.
pub type Jobs = BTreeMap<String, JobState>;

/// Queued jobs in scheduling order: priority (higher first), then submission. A partly
/// placed non-gang job stays in the queue for the rest of its replicas.
pub fn queue(jobs: &Jobs) -> Vec<(&String, &JobState)> {
    let mut q: Vec<_> = jobs
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

/// GPUs held by the placed, unfinished jobs of each queue.
pub fn queue_usage(jobs: &Jobs) -> BTreeMap<String, u32> {
    let mut used: BTreeMap<String, u32> = BTreeMap::new();
    for j in jobs.values().filter(|j| j.phase.active()) {
        let gpus: u32 = j.placements.iter().map(|p| p.gpus.len() as u32).sum();
        *used.entry(j.doc.spec.scheduling.queue.clone()).or_default() += gpus;
    }
    used
}

/// One replica of a job: a role and an index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaId {
    pub role: String,
    pub index: u32,
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.role, self.index)
    }
}

/// Where one replica runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub replica: ReplicaId,
    pub node: String,
    /// GPU UUIDs.
    pub gpus: Vec<String>,
    pub ports: Vec<u32>,
    /// Why these GPUs: the interconnect score of the set.
    pub score: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPhase {
    Queued,
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobPhase {
    pub fn name(self) -> &'static str {
        match self {
            JobPhase::Queued => "Queued",
            JobPhase::Scheduled => "Scheduled",
            JobPhase::Running => "Running",
            JobPhase::Succeeded => "Succeeded",
            JobPhase::Failed => "Failed",
            JobPhase::Cancelled => "Cancelled",
        }
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
        )
    }

    pub const ALL: [JobPhase; 6] = [
        JobPhase::Queued,
        JobPhase::Scheduled,
        JobPhase::Running,
        JobPhase::Succeeded,
        JobPhase::Failed,
        JobPhase::Cancelled,
    ];

    /// Placed and not ended: the replicas should run.
    pub fn active(self) -> bool {
        matches!(self, JobPhase::Scheduled | JobPhase::Running)
    }
}

/// What one replica is doing, as its agent reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReplicaPhase {
    /// Placed, not (re)started yet.
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl ReplicaPhase {
    pub fn name(self) -> &'static str {
        match self {
            ReplicaPhase::Pending => "Pending",
            ReplicaPhase::Running => "Running",
            ReplicaPhase::Succeeded => "Succeeded",
            ReplicaPhase::Failed => "Failed",
        }
    }

    pub const ALL: [ReplicaPhase; 4] = [
        ReplicaPhase::Pending,
        ReplicaPhase::Running,
        ReplicaPhase::Succeeded,
        ReplicaPhase::Failed,
    ];
}

/// A phase name that is not one of the phases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {0:?}")]
pub struct UnknownPhase(pub String);

impl std::str::FromStr for JobPhase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, UnknownPhase> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

impl std::str::FromStr for ReplicaPhase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, UnknownPhase> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub phase: ReplicaPhase,
    /// 0 for the first run, +1 per restart.
    pub attempt: u32,
    pub pid: u32,
    pub exit_code: i32,
    pub signal: i32,
    /// When the last run ended (leader's clock), for the restart backoff.
    pub ended_ms: i64,
}

/// A job as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub doc: JobDocument,
    pub phase: JobPhase,
    /// Why it waits (when queued), or why it ended.
    pub reason: String,
    pub placements: Vec<Placement>,
    pub submitted_ms: i64,
    /// Queue order among equal priorities: the sequence of its submission.
    pub submitted_seq: u64,
    /// Each placed replica's status.
    pub replicas: BTreeMap<ReplicaId, ReplicaStatus>,
    /// Restarts so far (all replicas), against `runPolicy.backoffLimit`.
    pub restarts: u32,
    /// Every condition the job went through, oldest first.
    pub conditions: Vec<Condition>,
    /// What each replica's last run wrote (metrics, parameters), when it wrote any.
    pub outputs: BTreeMap<ReplicaId, RunOutputs>,
}

/// A step of a job's life (Created, Queued, Scheduled, Running, Restarting, Succeeded,
/// Failed, Cancelled), with why and when (leader time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub kind: String,
    pub reason: String,
    pub at_ms: i64,
}

impl JobState {
    /// A job just submitted: queued, with its first two conditions.
    pub fn queued(doc: JobDocument, submitted_ms: i64, submitted_seq: u64) -> Self {
        let condition = |kind: &str| Condition {
            kind: kind.into(),
            reason: String::new(),
            at_ms: submitted_ms,
        };
        Self {
            doc,
            phase: JobPhase::Queued,
            reason: String::new(),
            placements: Vec::new(),
            submitted_ms,
            submitted_seq,
            replicas: BTreeMap::new(),
            restarts: 0,
            conditions: vec![condition("Created"), condition("Queued")],
            outputs: BTreeMap::new(),
        }
    }

    /// Record a condition; the same kind again only updates the reason.
    pub fn condition(&mut self, kind: &str, reason: &str, at_ms: i64) {
        match self.conditions.last_mut() {
            Some(c) if c.kind == kind => c.reason = reason.to_string(),
            _ => self.conditions.push(Condition {
                kind: kind.to_string(),
                reason: reason.to_string(),
                at_ms,
            }),
        }
    }

    /// When the job passes its `activeDeadlineSeconds` (counted from submission).
    pub fn deadline_ms(&self) -> Option<i64> {
        self.doc
            .spec
            .run_policy
            .active_deadline_seconds
            .map(|s| self.submitted_ms.saturating_add(s.saturating_mul(1000)))
    }

    /// Whether the success policy is met by the replicas' statuses.
    pub fn succeeded(&self) -> bool {
        let done = |role: &str, index: u32| {
            self.replicas
                .get(&ReplicaId {
                    role: role.into(),
                    index,
                })
                .is_some_and(|r| r.phase == ReplicaPhase::Succeeded)
        };
        let roles = &self.doc.spec.roles;
        match self.doc.spec.success_policy {
            SuccessPolicy::AllWorkers if roles.contains_key("worker") => self
                .replicas
                .iter()
                .filter(|(id, _)| id.role == "worker")
                .all(|(_, r)| r.phase == ReplicaPhase::Succeeded),
            _ => {
                if let Some(lead) = ["master", "chief", "launcher"]
                    .into_iter()
                    .find(|r| roles.contains_key(*r))
                {
                    done(lead, 0)
                } else if roles.contains_key("worker") {
                    done("worker", 0)
                } else {
                    self.replicas
                        .values()
                        .all(|r| r.phase == ReplicaPhase::Succeeded)
                }
            }
        }
    }

    /// Every replica the spec asks for, in role order.
    pub fn replicas(&self) -> Vec<(ReplicaId, &RoleSpec)> {
        self.doc
            .spec
            .roles
            .iter()
            .flat_map(|(role, r)| {
                (0..r.replicas.max(0) as u32).map(move |index| {
                    (
                        ReplicaId {
                            role: role.clone(),
                            index,
                        },
                        r,
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod phase_tests {
    use super::*;

    #[test]
    fn phases_read_back_from_their_names_and_nothing_else() {
        for p in JobPhase::ALL {
            assert_eq!(p.name().parse::<JobPhase>(), Ok(p));
        }
        for p in ReplicaPhase::ALL {
            assert_eq!(p.name().parse::<ReplicaPhase>(), Ok(p));
        }
        assert!("running".parse::<JobPhase>().is_err());
        assert!("".parse::<ReplicaPhase>().is_err());
    }
}
