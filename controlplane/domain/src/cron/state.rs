//! A cron as the log tells it.

use std::collections::BTreeMap;

use super::expression::Schedule;
use super::spec::CronDocument;

/// Crons by name (deleted ones included: their history goes on).
pub type Crons = BTreeMap<String, CronState>;

/// A cron as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronState {
    pub doc: CronDocument,
    /// None when this build cannot read the recorded schedule: the cron never runs
    /// (the document stays as recorded).
    pub schedule: Option<Schedule>,
    pub created_ms: i64,
    /// The last time a run was due (started or skipped).
    pub last_scheduled_ms: Option<i64>,
    /// Runs started, by job name → scheduled time.
    pub runs: BTreeMap<String, i64>,
    pub deleted: bool,
}

impl CronState {
    /// When the next run is due.
    pub fn next_due(&self) -> Option<i64> {
        self.schedule
            .as_ref()?
            .next_after(self.last_scheduled_ms.unwrap_or(self.created_ms))
    }
}
