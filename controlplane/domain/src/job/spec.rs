//! The spec of a training job (`apiVersion: cairn.dev/v1`, `kind: TrainingJob`): roles
//! and their replicas, framework, restart and run policies, scheduling, host network,
//! start order, code sync and the model a run produces; and its checks, with field paths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::doc::{self, Document, Metadata, Spec};
use crate::node;
use crate::validate;

/// A job document as users write it.
pub type JobDocument = Document<JobSpec>;

/// Most replicas in one job.
pub const MAX_REPLICAS: i64 = 1024;

/// Parse and check a submitted job document (JSON); a problem names the field path.
pub fn parse(json: &str) -> Result<JobDocument, Vec<String>> {
    doc::parse(json)
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

impl Spec for JobSpec {
    const KIND: &'static str = "TrainingJob";

    fn problems(&self, _: &Metadata) -> Vec<String> {
        spec_problems(self)
    }
}

/// Every problem with a job spec, with its field path from the document.
fn spec_problems(s: &JobSpec) -> Vec<String> {
    let mut p = Vec::new();
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
        } else if let Some(why) = validate::dns_label_problem(name, 32) {
            p.push(format!("{at}: {why}"));
        }
        if r.replicas < 1 {
            p.push(format!("{at}.replicas: must be >= 1"));
        }
        total += r.replicas.max(0);
        if r.gpus < 0 {
            p.push(format!("{at}.gpus: must be >= 0"));
        }
        if r.gpus > node::MAX_GPUS as i64 {
            p.push(format!("{at}.gpus: at most {}", node::MAX_GPUS));
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
        validate::name_problems("spec.model.name", &m.name, &mut p);
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
    if let Some(why) = validate::dns_label_problem(&s.scheduling.queue, 63) {
        p.push(format!("spec.scheduling.queue: {why}"));
    }
    if let Some(h) = &s.host_network {
        if !(0..=node::MAX_PORTS_PER_LEASE as i64).contains(&h.ports_per_replica) {
            p.push(format!(
                "spec.hostNetwork.portsPerReplica: must be 0..={}",
                node::MAX_PORTS_PER_LEASE
            ));
        }
    }
    p
}
