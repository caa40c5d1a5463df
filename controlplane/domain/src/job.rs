//! Training jobs: the spec users write (`apiVersion: cairn.dev/v1`, `kind: TrainingJob`),
//! its validation with field paths, and a job's state in the fold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "cairn.dev/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: JobSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Pytorch,
    Tensorflow,
    Mpi,
    Xgboost,
    Mars,
    Xdl,
    Generic,
}

impl Framework {
    /// The roles the framework knows (generic: any).
    pub fn roles(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Framework::Pytorch | Framework::Xgboost => &["master", "worker"],
            Framework::Tensorflow => &["ps", "worker", "chief", "master", "evaluator"],
            Framework::Mpi => &["launcher", "worker"],
            Framework::Mars => &["scheduler", "worker", "webservice"],
            Framework::Xdl => &["ps", "worker", "scheduler", "extendrole"],
            Framework::Generic => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    #[default]
    OnFailure,
    Never,
    /// Exit codes 1-127 are permanent failures, 128-255 retryable.
    ExitCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleSpec {
    pub replicas: i64,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub gpus: i64,
    /// CPU request in millicores.
    #[serde(default)]
    pub cpu_millis: i64,
    #[serde(default)]
    pub memory_mib: i64,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunPolicy {
    #[serde(default = "default_backoff")]
    pub backoff_limit: i64,
    #[serde(default)]
    pub active_deadline_seconds: Option<i64>,
    #[serde(default)]
    pub ttl_seconds_after_finished: Option<i64>,
    /// What goes when the job ends: `Running` (default: replicas still running are
    /// stopped; files stay until the TTL) or `All` (their files go at once too).
    #[serde(default)]
    pub clean_pod_policy: Option<String>,
}

fn default_backoff() -> i64 {
    3
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            backoff_limit: default_backoff(),
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            clean_pod_policy: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SuccessPolicy {
    /// The master or chief succeeds, or worker 0 when there is none.
    #[default]
    Default,
    AllWorkers,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scheduling {
    #[serde(default = "yes")]
    pub gang: bool,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "default_queue")]
    pub queue: String,
}

impl Default for Scheduling {
    fn default() -> Self {
        Self {
            gang: true,
            priority: 0,
            queue: default_queue(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_queue() -> String {
    "default".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostNetwork {
    pub ports_per_replica: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobSpec {
    pub framework: Framework,
    pub roles: BTreeMap<String, RoleSpec>,
    #[serde(default)]
    pub run_policy: RunPolicy,
    #[serde(default)]
    pub success_policy: SuccessPolicy,
    #[serde(default)]
    pub scheduling: Scheduling,
    #[serde(default)]
    pub host_network: Option<HostNetwork>,
    /// Role → roles whose replicas must all be running before it starts (default: the
    /// framework's order; `{}` turns it off).
    #[serde(default)]
    pub depends_on: Option<BTreeMap<String, Vec<String>>>,
    /// Code put in place (in `<work dir>/code`) before any replica starts.
    #[serde(default)]
    pub code_sync: Option<CodeSync>,
    /// The model a successful run produces (registered by the model registry).
    #[serde(default)]
    pub model: Option<ModelOutput>,
}

/// Where a job's code comes from: a git repository or a directory on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CodeSync {
    #[serde(default)]
    pub git: Option<GitSource>,
    #[serde(default)]
    pub directory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitSource {
    pub repository: String,
    /// A branch or tag (default: the repository's default branch).
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelOutput {
    pub name: String,
    /// Where the run leaves the model (a path or URI).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub description: String,
}

impl JobSpec {
    /// The start order: explicit, or the framework's (PS before workers, master before
    /// workers, workers before the MPI launcher, the Mars scheduler first), limited to the
    /// roles the job has.
    pub fn dependencies(&self) -> BTreeMap<String, Vec<String>> {
        if let Some(d) = &self.depends_on {
            return d.clone();
        }
        let defaults: &[(&str, &[&str])] = match self.framework {
            Framework::Pytorch | Framework::Xgboost => &[("worker", &["master"])],
            Framework::Tensorflow | Framework::Xdl => {
                &[("worker", &["ps"]), ("chief", &["ps"]), ("master", &["ps"])]
            }
            Framework::Mpi => &[("launcher", &["worker"])],
            Framework::Mars => &[("worker", &["scheduler"]), ("webservice", &["scheduler"])],
            Framework::Generic => &[],
        };
        defaults
            .iter()
            .filter(|(role, _)| self.roles.contains_key(*role))
            .map(|(role, after)| {
                (
                    role.to_string(),
                    after
                        .iter()
                        .filter(|a| self.roles.contains_key(**a))
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, after)| !after.is_empty())
            .collect()
    }
}

/// Most replicas in one job, and most bytes of one spec.
pub const MAX_REPLICAS: i64 = 1024;
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Parse a job document (JSON); a problem names the field path.
pub fn parse(json: &str) -> Result<JobDocument, Vec<String>> {
    if json.len() > MAX_SPEC_BYTES {
        return Err(vec![format!(
            "spec: {} bytes, at most {MAX_SPEC_BYTES}",
            json.len()
        )]);
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    let doc: JobDocument = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        vec![format!("{path}: {}", e.into_inner())]
    })?;
    let problems = problems(&doc);
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(problems)
    }
}

/// Every problem with a parsed job document, with its field path.
pub fn problems(doc: &JobDocument) -> Vec<String> {
    let mut p = Vec::new();
    if doc.api_version != API_VERSION {
        p.push(format!(
            "apiVersion: {:?}, expected {API_VERSION:?}",
            doc.api_version
        ));
    }
    if doc.kind != "TrainingJob" {
        p.push(format!("kind: {:?}, expected \"TrainingJob\"", doc.kind));
    }
    crate::validate::name_problems("metadata.name", &doc.metadata.name, &mut p);
    crate::validate::label_problems("metadata.labels", &doc.metadata.labels, &mut p);
    let s = &doc.spec;
    if s.roles.is_empty() {
        p.push("spec.roles: at least one role".into());
    }
    let mut total = 0i64;
    for (name, r) in &s.roles {
        let at = format!("spec.roles.{name}");
        if let Some(known) = s.framework.roles() {
            if !known.contains(&name.as_str()) {
                p.push(format!(
                    "{at}: not a role of {:?} (known: {})",
                    s.framework,
                    known.join(", ")
                ));
            }
        } else if let Some(why) = crate::validate::dns_label_problem(name, 32) {
            p.push(format!("{at}: {why}"));
        }
        if r.replicas < 1 {
            p.push(format!("{at}.replicas: must be >= 1"));
        }
        total += r.replicas.max(0);
        if r.gpus < 0 {
            p.push(format!("{at}.gpus: must be >= 0"));
        }
        if r.gpus > crate::node::MAX_GPUS as i64 {
            p.push(format!("{at}.gpus: at most {}", crate::node::MAX_GPUS));
        }
        if r.cpu_millis < 0 {
            p.push(format!("{at}.cpuMillis: must be >= 0"));
        }
        if r.memory_mib < 0 {
            p.push(format!("{at}.memoryMib: must be >= 0"));
        }
        if r.command.is_empty() {
            p.push(format!("{at}.command: must not be empty"));
        }
        for k in r.env.keys() {
            if k.is_empty() || k.contains('=') {
                p.push(format!("{at}.env[{k:?}]: not a variable name"));
            }
        }
    }
    if total > MAX_REPLICAS {
        p.push(format!(
            "spec.roles: {total} replicas, at most {MAX_REPLICAS}"
        ));
    }
    if let Some(d) = &s.depends_on {
        for (role, after) in d {
            if !s.roles.contains_key(role) {
                p.push(format!("spec.dependsOn.{role}: no such role"));
            }
            for a in after {
                if !s.roles.contains_key(a) {
                    p.push(format!("spec.dependsOn.{role}: no such role {a:?}"));
                }
            }
        }
        // No cycles: repeatedly remove roles whose dependencies are all removed.
        let mut left: BTreeMap<&String, Vec<&String>> =
            d.iter().map(|(r, a)| (r, a.iter().collect())).collect();
        loop {
            let done: Vec<&String> = left
                .iter()
                .filter(|(_, after)| after.iter().all(|a| !left.contains_key(a)))
                .map(|(r, _)| *r)
                .collect();
            if done.is_empty() {
                break;
            }
            for r in done {
                left.remove(r);
            }
        }
        if !left.is_empty() {
            let names: Vec<&str> = left.keys().map(|r| r.as_str()).collect();
            p.push(format!(
                "spec.dependsOn: a cycle among {}",
                names.join(", ")
            ));
        }
    }
    if let Some(c) = &s.code_sync {
        match (&c.git, &c.directory) {
            (Some(g), None) if g.repository.trim().is_empty() => {
                p.push("spec.codeSync.git.repository: must not be empty".into())
            }
            (None, Some(d)) if !d.starts_with('/') => {
                p.push("spec.codeSync.directory: must be an absolute path".into())
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => p.push("spec.codeSync: exactly one of git or directory".into()),
        }
    }
    if let Some(m) = &s.model {
        crate::validate::name_problems("spec.model.name", &m.name, &mut p);
    }
    match s.run_policy.clean_pod_policy.as_deref() {
        None | Some("Running") | Some("All") => {}
        Some("None") => p.push(
            "spec.runPolicy.cleanPodPolicy: None is not supported: a finished job's replicas always stop, its GPUs go back to the pool".into(),
        ),
        Some(other) => p.push(format!(
            "spec.runPolicy.cleanPodPolicy: {other:?}, expected Running or All"
        )),
    }
    if s.run_policy.backoff_limit < 0 {
        p.push("spec.runPolicy.backoffLimit: must be >= 0".into());
    }
    if s.run_policy.active_deadline_seconds.is_some_and(|d| d <= 0) {
        p.push("spec.runPolicy.activeDeadlineSeconds: must be > 0".into());
    }
    if s.run_policy
        .ttl_seconds_after_finished
        .is_some_and(|d| d < 0)
    {
        p.push("spec.runPolicy.ttlSecondsAfterFinished: must be >= 0".into());
    }
    if let Some(why) = crate::validate::dns_label_problem(&s.scheduling.queue, 63) {
        p.push(format!("spec.scheduling.queue: {why}"));
    }
    if let Some(h) = &s.host_network {
        if !(0..=crate::node::MAX_PORTS_PER_LEASE as i64).contains(&h.ports_per_replica) {
            p.push(format!(
                "spec.hostNetwork.portsPerReplica: must be 0..={}",
                crate::node::MAX_PORTS_PER_LEASE
            ));
        }
    }
    p
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
    /// The document as recorded (normalised JSON), served as is.
    pub spec_json: String,
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
