//! The spec of a cron schedule of jobs (`kind: TrainingCron`): a schedule, a job
//! template, a concurrency policy, a deadline for late runs, how many runs to keep.

use serde::{Deserialize, Serialize};

use super::expression::Schedule;
use crate::doc::{self, Document, Metadata, Spec, API_VERSION};
use crate::job::{JobDocument, JobSpec};
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    /// Skip a run while the previous one is active.
    Forbid,
    /// Cancel the active run and start the new one.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CronSpec {
    pub schedule: String,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default)]
    pub suspend: bool,
    /// A run more than this late is skipped (none: runs however late).
    #[serde(default)]
    pub deadline_seconds: Option<i64>,
    #[serde(default = "default_history")]
    pub history_limit: i64,
    pub job_template: JobSpec,
}

fn default_history() -> i64 {
    10
}

/// A cron document as users write it.
pub type CronDocument = Document<CronSpec>;

/// Parse and check a cron document (JSON); problems name their field path.
pub fn parse(json: &str) -> Result<CronDocument, Vec<String>> {
    doc::parse(json)
}

impl Spec for CronSpec {
    const KIND: &'static str = "TrainingCron";
    /// Run names append `-<minutes since epoch>` (8 digits): keep room for it.
    const MAX_NAME_LEN: usize = 50;

    fn problems(&self, metadata: &Metadata) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = Schedule::parse(&self.schedule) {
            p.push(format!("spec.schedule: {e}"));
        }
        if self.history_limit < 0 {
            p.push("spec.historyLimit: must be >= 0".into());
        }
        if self.deadline_seconds.is_some_and(|d| d <= 0) {
            p.push("spec.deadlineSeconds: must be > 0".into());
        }
        // Its runs carry one label more.
        if metadata.labels.len() >= validate::MAX_LABELS {
            p.push(format!(
                "metadata.labels: at most {} for a cron (its runs get one more)",
                validate::MAX_LABELS - 1
            ));
        }
        // The template must make a valid job.
        let template = Metadata {
            name: "template".into(),
            labels: Default::default(),
        };
        for problem in self.job_template.problems(&template) {
            match problem.strip_prefix("spec.") {
                Some(rest) => p.push(format!("spec.jobTemplate.{rest}")),
                None => p.push(problem),
            }
        }
        p
    }
}

/// The job document of the run scheduled at `scheduled_ms`.
pub fn run_document(cron: &CronDocument, scheduled_ms: i64) -> JobDocument {
    let mut labels = cron.metadata.labels.clone();
    labels.insert("cairn.dev/cron".into(), cron.metadata.name.clone());
    JobDocument {
        api_version: API_VERSION.into(),
        kind: "TrainingJob".into(),
        metadata: Metadata {
            name: format!("{}-{}", cron.metadata.name, scheduled_ms / 60_000),
            labels,
        },
        spec: cron.spec.job_template.clone(),
    }
}
