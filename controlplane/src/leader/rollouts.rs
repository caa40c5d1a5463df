//! Rollouts: a deployment with a step due (route its endpoint, place replicas, move
//! traffic, remove replicas, restart the stuck, follow a moved alias) is advanced. The
//! policy is the domain's `plan`; `decide` runs it again at the command's place in the
//! log, so a step proposed twice is taken once.

use cairn_domain::deployment::{plan, DeploymentCommand};
use cairn_domain::{CommandBody, State};

/// `Advance` for every live deployment with something to do at `now_ms`.
pub fn due(state: &State, now_ms: i64) -> Vec<CommandBody> {
    let ctx = state.deployment_context();
    state
        .deployments()
        .iter()
        .filter(|(name, d)| !d.deleted && !plan(&ctx, name, d, now_ms).is_empty())
        .map(|(name, _)| CommandBody::Deployment(DeploymentCommand::Advance { name: name.clone() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::{apply, deployment, with_node, T0};

    #[test]
    fn a_deployment_is_advanced_while_it_has_a_step_to_take() {
        let advance = || CommandBody::Deployment(DeploymentCommand::Advance { name: "svc".into() });
        // No node: once, to record why it waits; then nothing until something changes.
        let lonely = deployment(State::new());
        assert_eq!(due(&lonely, T0), [advance()]);
        let lonely = apply(lonely, advance());
        assert!(lonely
            .deployment("svc")
            .is_some_and(|d| d.waiting.contains("no room")));
        assert!(due(&lonely, T0).is_empty());
        let mut state = deployment(with_node("a"));
        // Route, then place: two steps, then nothing until the replica reports.
        for _ in 0..2 {
            assert_eq!(due(&state, T0), [advance()]);
            state = apply(state, advance());
        }
        assert!(due(&state, T0).is_empty());
        assert_eq!(state.deployment("svc").map(|d| d.replica_count()), Some(1));
    }
}
