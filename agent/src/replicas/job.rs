//! The jobs placed on this node, read from the control plane's views into the domain's
//! types: the job document, typed phases, placements and replica statuses. A view that
//! does not read (a spec that does not decode, a phase this agent does not know) makes
//! its job unreadable: the runner leaves such a job's replicas as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_domain::job::{
    JobDocument, JobPhase, Placement, ReplicaId, ReplicaPhase, ReplicaStatus, RoleSpec,
    UnknownPhase,
};
use cairn_proto as pb;

/// One replica of one job: what processes, pid files and logs are kept by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplicaKey {
    pub job: String,
    pub replica: ReplicaId,
}

impl ReplicaKey {
    pub fn new(job: &str, role: &str, index: u32) -> Self {
        Self {
            job: job.to_string(),
            replica: ReplicaId {
                role: role.to_string(),
                index,
            },
        }
    }
}

impl std::fmt::Display for ReplicaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.job, self.replica)
    }
}

/// A job's view that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableJob {
    #[error("job {job}: its spec does not decode: {source}")]
    Spec {
        job: String,
        source: serde_json::Error,
    },
    #[error("job {job}: {source}")]
    Phase { job: String, source: UnknownPhase },
}

impl UnreadableJob {
    pub fn job(&self) -> &str {
        match self {
            UnreadableJob::Spec { job, .. } | UnreadableJob::Phase { job, .. } => job,
        }
    }
}

/// A job placed on this node, as the control plane last told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedJob {
    pub name: String,
    pub phase: JobPhase,
    /// The document as submitted (validated then).
    pub doc: JobDocument,
    /// Where every replica of the job runs, on this node or another.
    pub placements: Vec<Placement>,
    /// Every replica's status, as reported by the agents that run them.
    pub replicas: BTreeMap<ReplicaId, ReplicaStatus>,
}

impl PlacedJob {
    /// Read a job's view. The stored document was validated when it was submitted: it is
    /// only decoded here.
    pub fn from_view(view: &pb::JobView) -> Result<Self, UnreadableJob> {
        let phase_error = |source| UnreadableJob::Phase {
            job: view.name.clone(),
            source,
        };
        let doc = serde_json::from_str::<JobDocument>(&view.spec_json).map_err(|source| {
            UnreadableJob::Spec {
                job: view.name.clone(),
                source,
            }
        })?;
        let phase = view.phase.parse::<JobPhase>().map_err(phase_error)?;
        let mut replicas = BTreeMap::new();
        for r in &view.replica_status {
            let status = ReplicaStatus {
                phase: r.phase.parse::<ReplicaPhase>().map_err(phase_error)?,
                attempt: r.attempt,
                pid: r.pid,
                exit_code: r.exit_code,
                signal: r.signal,
                ended_ms: r.ended_ms,
            };
            replicas.insert(
                ReplicaId {
                    role: r.role.clone(),
                    index: r.index,
                },
                status,
            );
        }
        let placements = view
            .placements
            .iter()
            .map(|p| Placement {
                replica: ReplicaId {
                    role: p.role.clone(),
                    index: p.index,
                },
                node: p.node.clone(),
                gpus: p.gpus.clone(),
                ports: p.ports.clone(),
                score: p.score,
            })
            .collect();
        Ok(Self {
            name: view.name.clone(),
            phase,
            doc,
            placements,
            replicas,
        })
    }

    pub fn role(&self, role: &str) -> Option<&RoleSpec> {
        self.doc.spec.roles.get(role)
    }

    /// The replica's placement on `node`, if it is placed there.
    pub fn placement_on(&self, replica: &ReplicaId, node: &str) -> Option<&Placement> {
        self.placements
            .iter()
            .find(|p| p.replica == *replica && p.node == node)
    }

    /// How long the job's files stay on the node once it ended: none with
    /// `cleanPodPolicy: All`, `ttlSecondsAfterFinished` otherwise (`None`: kept).
    pub fn files_ttl(&self) -> Option<Duration> {
        let policy = &self.doc.spec.run_policy;
        if policy.clean_pod_policy.as_deref() == Some("All") {
            return Some(Duration::ZERO);
        }
        policy
            .ttl_seconds_after_finished
            .map(|s| Duration::from_secs(s.max(0).unsigned_abs()))
    }
}

/// The jobs placed on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsHere {
    pub node: String,
    pub jobs: Vec<PlacedJob>,
    /// Jobs placed here whose view does not read: left as they are.
    pub unreadable: BTreeSet<String>,
}

impl JobsHere {
    /// Read the views of the jobs that have a replica placed on `node`; the others are
    /// skipped. Returns why each unreadable one is.
    pub fn read(node: &str, views: &[pb::JobView]) -> (Self, Vec<UnreadableJob>) {
        let mut here = JobsHere {
            node: node.to_string(),
            ..Default::default()
        };
        let mut problems = Vec::new();
        for view in views
            .iter()
            .filter(|v| v.placements.iter().any(|p| p.node == node))
        {
            match PlacedJob::from_view(view) {
                Ok(job) => here.jobs.push(job),
                Err(e) => {
                    here.unreadable.insert(view.name.clone());
                    problems.push(e);
                }
            }
        }
        (here, problems)
    }

    pub fn job(&self, name: &str) -> Option<&PlacedJob> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// Whether the job is placed here, readable or not.
    pub fn contains(&self, name: &str) -> bool {
        self.unreadable.contains(name) || self.job(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(spec: serde_json::Value) -> pb::JobView {
        pb::JobView {
            name: "train".into(),
            phase: "Running".into(),
            spec_json: spec.to_string(),
            placements: vec![pb::ReplicaPlacement {
                role: "worker".into(),
                index: 0,
                node: "n0".into(),
                gpus: vec!["GPU-0".into()],
                ports: vec![20000],
                score: 0,
            }],
            replica_status: vec![pb::ReplicaView {
                role: "worker".into(),
                index: 0,
                phase: "Pending".into(),
                attempt: 2,
                ended_ms: 7,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn doc(run_policy: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "cairn.dev/v1",
            "kind": "TrainingJob",
            "metadata": {"name": "train"},
            "spec": {
                "framework": "generic",
                "runPolicy": run_policy,
                "roles": {"worker": {"replicas": 1, "command": ["true"]}},
            },
        })
    }

    #[test]
    fn a_view_reads_into_typed_phases_and_statuses() {
        let job = PlacedJob::from_view(&view(doc(serde_json::json!({})))).unwrap();
        assert_eq!(job.phase, JobPhase::Running);
        let id = ReplicaId {
            role: "worker".into(),
            index: 0,
        };
        assert_eq!(job.replicas[&id].phase, ReplicaPhase::Pending);
        assert_eq!(job.replicas[&id].attempt, 2);
        assert_eq!(job.placement_on(&id, "n0").unwrap().ports, [20000]);
        assert!(job.placement_on(&id, "n1").is_none());
        assert!(job.role("worker").is_some());
    }

    #[test]
    fn a_spec_that_does_not_decode_names_the_job() {
        let mut v = view(doc(serde_json::json!({})));
        v.spec_json = r#"{"spec": {}}"#.into();
        let e = PlacedJob::from_view(&v).unwrap_err();
        assert!(matches!(e, UnreadableJob::Spec { .. }), "{e}");
        assert!(e.to_string().starts_with("job train: "), "{e}");
    }

    #[test]
    fn an_unknown_phase_is_an_error_not_a_panic() {
        let mut v = view(doc(serde_json::json!({})));
        v.phase = "Paused".into();
        let e = PlacedJob::from_view(&v).unwrap_err();
        assert!(e.to_string().contains("\"Paused\""), "{e}");
        let mut v = view(doc(serde_json::json!({})));
        v.replica_status[0].phase = "running".into();
        assert!(matches!(
            PlacedJob::from_view(&v),
            Err(UnreadableJob::Phase { .. })
        ));
    }

    #[test]
    fn files_stay_for_the_ttl_or_go_at_once_with_clean_pod_policy_all() {
        let ttl = |policy| {
            PlacedJob::from_view(&view(doc(policy)))
                .unwrap()
                .files_ttl()
        };
        assert_eq!(ttl(serde_json::json!({})), None);
        assert_eq!(
            ttl(serde_json::json!({"ttlSecondsAfterFinished": 30})),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            ttl(serde_json::json!({"ttlSecondsAfterFinished": 30, "cleanPodPolicy": "All"})),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn only_jobs_placed_here_are_read_and_unreadable_ones_are_named() {
        let good = view(doc(serde_json::json!({})));
        let mut elsewhere = good.clone();
        elsewhere.name = "other".into();
        elsewhere.placements[0].node = "n1".into();
        let mut broken = good.clone();
        broken.name = "broken".into();
        broken.spec_json = "not json".into();
        let (here, problems) = JobsHere::read("n0", &[good, elsewhere, broken]);
        assert_eq!(here.jobs.len(), 1);
        assert!(here.contains("train") && here.contains("broken"));
        assert!(!here.contains("other"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].job(), "broken");
    }
}
