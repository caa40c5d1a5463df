//! The failure detector: a node silent for longer than the grace period is recorded
//! lost; a lost node that beats again is recorded recovered. A new leader has no
//! heartbeats in memory, so it counts silence from the moment it took over: a failover
//! never loses nodes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_domain::node::NodeCommand;
use cairn_domain::{CommandBody, State};

/// What the leader has heard from the agents: node → (when, leader's wall clock in ms).
pub type Heard = HashMap<String, (Instant, i64)>;

/// The lost and recovered nodes to record, at `now`.
pub fn due(
    state: &State,
    heard: &Heard,
    leading_since: Instant,
    now: Instant,
    grace: Duration,
) -> Vec<CommandBody> {
    let mut out = Vec::new();
    for (name, n) in state.nodes() {
        let last = heard.get(name);
        let silent_since = last.map_or(leading_since, |(at, _)| (*at).max(leading_since));
        let silent_for = now.saturating_duration_since(silent_since);
        if !n.lost && silent_for > grace {
            out.push(CommandBody::Node(NodeCommand::MarkLost {
                node: name.clone(),
                last_heartbeat_ms: last.map_or(0, |(_, ms)| *ms),
                grace_ms: grace.as_millis() as u64,
            }));
        } else if n.lost && last.is_some_and(|(at, _)| now.saturating_duration_since(*at) < grace) {
            out.push(CommandBody::Node(NodeCommand::MarkRecovered {
                node: name.clone(),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::{lose, with_node};

    const GRACE: Duration = Duration::from_secs(10);

    fn names(c: &[CommandBody]) -> Vec<String> {
        c.iter()
            .map(|c| match c {
                CommandBody::Node(NodeCommand::MarkLost { node, .. }) => format!("lost {node}"),
                CommandBody::Node(NodeCommand::MarkRecovered { node }) => {
                    format!("recovered {node}")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn silence_past_the_grace_period_is_lost_counted_from_the_takeover() {
        let state = with_node("gpu-1");
        let t0 = Instant::now();
        let none = Heard::new();
        // A new leader heard nothing yet: it waits a whole grace period from taking over.
        assert!(due(&state, &none, t0, t0 + GRACE, GRACE).is_empty());
        assert_eq!(
            names(&due(
                &state,
                &none,
                t0,
                t0 + GRACE + Duration::from_millis(1),
                GRACE
            )),
            ["lost gpu-1"]
        );
        // A heartbeat resets the count.
        let heard = Heard::from([("gpu-1".to_string(), (t0 + GRACE, 42))]);
        let later = t0 + GRACE + Duration::from_secs(5);
        assert!(due(&state, &heard, t0, later, GRACE).is_empty());
        let lost = due(&state, &heard, t0, later + GRACE, GRACE);
        assert!(matches!(
            &lost[0],
            CommandBody::Node(NodeCommand::MarkLost {
                last_heartbeat_ms: 42,
                grace_ms: 10_000,
                ..
            })
        ));
    }

    #[test]
    fn a_lost_node_that_beats_again_recovers_and_is_not_lost_twice() {
        let state = lose(with_node("gpu-1"), "gpu-1");
        let t0 = Instant::now();
        let far = t0 + 10 * GRACE;
        // Still silent: already recorded lost, nothing more.
        assert!(due(&state, &Heard::new(), t0, far, GRACE).is_empty());
        let heard = Heard::from([("gpu-1".to_string(), (far, 1))]);
        assert_eq!(
            names(&due(&state, &heard, t0, far, GRACE)),
            ["recovered gpu-1"]
        );
    }
}
