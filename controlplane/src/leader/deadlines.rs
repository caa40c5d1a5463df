//! Active deadlines: a job running past its `activeDeadlineSeconds` is failed.

use cairn_domain::job::JobCommand;
use cairn_domain::{CommandBody, State};

/// `EnforceDeadline` for every unfinished job past its deadline at `now_ms`.
pub fn due(state: &State, now_ms: i64) -> Vec<CommandBody> {
    state
        .jobs()
        .iter()
        .filter(|(_, j)| !j.phase.finished() && j.deadline_ms().is_some_and(|d| d < now_ms))
        .map(|(name, _)| CommandBody::Job(JobCommand::EnforceDeadline { name: name.clone() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::{job, submitted_at};

    #[test]
    fn only_jobs_past_their_deadline_are_failed() {
        let state = job(r#""runPolicy": {"activeDeadlineSeconds": 60}"#);
        let t = submitted_at(&state, "j");
        assert!(due(&state, t + 60_000).is_empty());
        assert_eq!(
            due(&state, t + 60_001),
            [CommandBody::Job(JobCommand::EnforceDeadline {
                name: "j".into()
            })]
        );
        let no_deadline = job("");
        assert!(due(&no_deadline, i64::MAX).is_empty());
    }
}
