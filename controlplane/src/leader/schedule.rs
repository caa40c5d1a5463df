//! Scheduling passes: while jobs wait, every change of state is followed by one
//! `Schedule` pass over the queue (capacity may have come free).

use cairn_domain::job::JobCommand;
use cairn_domain::{CommandBody, State};

/// A pass when jobs are queued and the state changed since the last pass (at the log
/// sequence `last_pass`); and the sequence it is made at.
pub fn due(state: &State, last_pass: Option<u64>) -> Option<(CommandBody, u64)> {
    let at = state.last_sequence();
    let queued = !state.queue().is_empty();
    (queued && last_pass != Some(at)).then_some((CommandBody::Job(JobCommand::Schedule), at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::job;

    #[test]
    fn a_pass_follows_each_change_while_jobs_wait() {
        // Nothing to place on: the job waits in the queue.
        let state = job("");
        let (_, at) = due(&state, None).unwrap();
        assert_eq!(due(&state, Some(at)), None, "nothing changed since");
        assert!(due(&state, Some(at - 1)).is_some());
        assert_eq!(due(&cairn_domain::State::new(), None), None, "no queue");
    }
}
