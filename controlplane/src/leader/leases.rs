//! The lease reclaimer: port leases past their expiry are released.

use cairn_domain::node::NodeCommand;
use cairn_domain::{CommandBody, State};

/// `ExpirePortLeases` when any lease has expired at `now_ms` (leader time).
pub fn due(state: &State, now_ms: i64) -> Option<CommandBody> {
    let expired = state
        .nodes()
        .values()
        .any(|n| n.leases.values().any(|l| l.expires_ms <= now_ms));
    expired.then_some(CommandBody::Node(NodeCommand::ExpirePortLeases))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::{lease, with_node};

    #[test]
    fn a_lease_is_reclaimed_once_its_expiry_has_passed() {
        let state = with_node("gpu-1");
        assert_eq!(due(&state, i64::MAX), None, "no leases");
        let (state, expires) = lease(state, "gpu-1", "job-a/0");
        assert_eq!(due(&state, expires - 1), None);
        assert_eq!(
            due(&state, expires),
            Some(CommandBody::Node(NodeCommand::ExpirePortLeases))
        );
    }
}
