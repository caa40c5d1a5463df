//! Commands about cron schedules.

use super::spec::CronDocument;
use crate::validate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronCommand {
    /// A cron document, parsed and checked where the command entered: creates the cron,
    /// or replaces its spec.
    Submit {
        doc: Box<CronDocument>,
    },
    Delete {
        name: String,
    },
    /// Proposed by the leader: the run of `name` due at `scheduled_ms`.
    Trigger {
        name: String,
        scheduled_ms: i64,
    },
}

impl CronCommand {
    pub fn target(&self) -> &str {
        match self {
            CronCommand::Submit { doc } => &doc.metadata.name,
            CronCommand::Delete { name } | CronCommand::Trigger { name, .. } => name,
        }
    }

    /// Commands only the leader proposes; clients may not submit them.
    pub fn leader_only(&self) -> bool {
        match self {
            CronCommand::Trigger { .. } => true,
            CronCommand::Submit { .. } | CronCommand::Delete { .. } => false,
        }
    }

    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            CronCommand::Submit { doc } => p.extend(doc.problems()),
            CronCommand::Delete { name } | CronCommand::Trigger { name, .. } => {
                validate::name_problems("cron.name", name, p)
            }
        }
    }
}
