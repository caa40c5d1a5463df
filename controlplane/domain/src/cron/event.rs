//! What happened to a cron schedule.

use super::spec::CronDocument;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronEvent {
    /// A cron was created, or its spec replaced (stored as normalised JSON).
    Submitted {
        doc: Box<CronDocument>,
    },
    Deleted,
    /// The run due at `scheduled_ms` started as `job`.
    Triggered {
        scheduled_ms: i64,
        job: String,
    },
    /// The run due at `scheduled_ms` did not start, and why.
    Skipped {
        scheduled_ms: i64,
        reason: String,
    },
}

impl CronEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            CronEvent::Submitted { .. } => "cron_submitted",
            CronEvent::Deleted => "cron_deleted",
            CronEvent::Triggered { .. } => "cron_triggered",
            CronEvent::Skipped { .. } => "cron_skipped",
        }
    }
}
