//! Commands about training jobs.

use super::spec::JobDocument;
use super::state::ReplicaId;
use crate::model::values::{self, RunOutputs};
use crate::validate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// A training job document, parsed and checked where the command entered.
    Submit {
        doc: Box<JobDocument>,
    },
    Cancel {
        name: String,
        reason: String,
    },
    /// Place what fits from the queue (proposed by the leader when capacity changed).
    Schedule,
    /// Proposed by the leader: fail a job past its `activeDeadlineSeconds`.
    EnforceDeadline {
        name: String,
    },
    /// An agent reports a replica it runs: started (`exit` None) or ended.
    ReportReplica {
        node: String,
        job: String,
        replica: ReplicaId,
        attempt: u32,
        pid: u32,
        exit: Option<ReplicaExit>,
        /// With an exit: the metrics and parameters the run wrote.
        outputs: RunOutputs,
        token_digest: Vec<u8>,
    },
}

/// How a replica's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaExit {
    pub code: i32,
    pub signal: i32,
    pub oom: bool,
}

impl JobCommand {
    /// The job the command is about, if it has a single target.
    pub fn target(&self) -> Option<&str> {
        match self {
            JobCommand::Submit { doc } => Some(&doc.metadata.name),
            JobCommand::Cancel { name, .. }
            | JobCommand::EnforceDeadline { name }
            | JobCommand::ReportReplica { job: name, .. } => Some(name),
            JobCommand::Schedule => None,
        }
    }

    /// Commands only the leader proposes; clients may not submit them.
    pub fn leader_only(&self) -> bool {
        match self {
            JobCommand::Schedule | JobCommand::EnforceDeadline { .. } => true,
            JobCommand::Submit { .. }
            | JobCommand::Cancel { .. }
            | JobCommand::ReportReplica { .. } => false,
        }
    }

    /// Every problem with the command's fields (a document is checked again whole).
    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            JobCommand::Submit { doc } => p.extend(doc.problems()),
            JobCommand::Cancel { name, reason } => {
                validate::name_problems("cancel_job.name", name, p);
                validate::short_text_problems("cancel_job.reason", reason, p);
            }
            JobCommand::Schedule => {}
            JobCommand::EnforceDeadline { name } => validate::name_problems("job.name", name, p),
            JobCommand::ReportReplica {
                node, job, outputs, ..
            } => {
                validate::node_name_problems("report_replica.node", node, p);
                validate::name_problems("report_replica.job", job, p);
                values::outputs_problems("report_replica.outputs", outputs, p);
            }
        }
    }
}
