//! What happened to a training job.

use super::spec::JobDocument;
use super::state::{Placement, ReplicaId};
use crate::model::RunOutputs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The job's document, as accepted (stored as normalised JSON).
    Submitted {
        doc: Box<JobDocument>,
    },
    /// Why a queued job does not fit yet (only when the reason changes).
    Waiting {
        reason: String,
    },
    Scheduled {
        placements: Vec<Placement>,
    },
    Cancelled {
        reason: String,
    },
    /// Every replica runs.
    Running,
    Succeeded,
    Failed {
        reason: String,
    },
    ReplicaStarted {
        replica: ReplicaId,
        attempt: u32,
        node: String,
        pid: u32,
    },
    /// `signal` 0: exited with `exit_code`.
    ReplicaExited {
        replica: ReplicaId,
        attempt: u32,
        exit_code: i32,
        signal: i32,
        oom: bool,
        /// The metrics and parameters the run wrote (for the model it produces).
        outputs: RunOutputs,
    },
    /// The replica will run again, as `attempt`.
    ReplicaRestarting {
        replica: ReplicaId,
        attempt: u32,
        reason: String,
    },
    /// A GPU or node under the job failed (or was drained): its replicas stop and it
    /// waits to be placed again.
    Requeued {
        reason: String,
    },
}

impl JobEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            JobEvent::Submitted { .. } => "job_submitted",
            JobEvent::Waiting { .. } => "job_waiting",
            JobEvent::Scheduled { .. } => "job_scheduled",
            JobEvent::Cancelled { .. } => "job_cancelled",
            JobEvent::Running => "job_running",
            JobEvent::Succeeded => "job_succeeded",
            JobEvent::Failed { .. } => "job_failed",
            JobEvent::ReplicaStarted { .. } => "replica_started",
            JobEvent::ReplicaExited { .. } => "replica_exited",
            JobEvent::ReplicaRestarting { .. } => "replica_restarting",
            JobEvent::Requeued { .. } => "job_requeued",
        }
    }
}
