//! Cron triggers: the next due run of each cron. The runs after it come on the next
//! ticks, so runs missed during a failover all start, in order (`decide` accepts only
//! the run right after the last one it recorded).

use cairn_domain::cron::CronCommand;
use cairn_domain::{CommandBody, State};

/// `Trigger` for the next due run of every cron that is not suspended, at `now_ms`.
pub fn due(state: &State, now_ms: i64) -> Vec<CommandBody> {
    state
        .crons()
        .filter(|(_, c)| !c.doc.spec.suspend)
        .filter_map(|(name, c)| {
            let at = c.next_due().filter(|t| *t <= now_ms)?;
            Some(CommandBody::Cron(CronCommand::Trigger {
                name: name.clone(),
                scheduled_ms: at,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::cron;

    #[test]
    fn the_next_run_is_due_once_its_time_has_come_and_not_while_suspended() {
        let (state, created) = cron("*/5 * * * *", false);
        let next = state.cron("c").and_then(|c| c.next_due()).unwrap();
        assert!(next > created);
        assert!(due(&state, next - 1).is_empty());
        assert_eq!(
            due(&state, next + 60_000),
            [CommandBody::Cron(CronCommand::Trigger {
                name: "c".into(),
                scheduled_ms: next
            })]
        );
        let (suspended, _) = cron("*/5 * * * *", true);
        assert!(due(&suspended, i64::MAX).is_empty());
    }
}
