//! Agents' heartbeats. They are not events: the leader keeps the last one of each node
//! in memory, and its failure detector (`leader::liveness`) turns silence into
//! `MarkLost`. A heartbeat is judged by the same rule as an agent's reports: only the
//! agent holding the node's token may speak for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use cairn_domain::node;

use super::proposer::now_ms;
use super::{App, AppError, Result};

/// Heartbeats seen by this member while it leads: node → (when, leader's wall clock).
#[derive(Default)]
pub struct Heartbeats {
    seen: Mutex<HashMap<String, (Instant, i64)>>,
}

impl Heartbeats {
    fn record(&self, node: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(node.to_string(), (Instant::now(), now_ms()));
    }

    /// The heartbeats seen so far.
    pub fn snapshot(&self) -> HashMap<String, (Instant, i64)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forget them all (those recorded under an earlier term are stale).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub leader_id: u64,
    /// Whether the log still marks the node lost (its recovery is being recorded).
    pub lost: bool,
    pub grace_ms: u64,
}

impl App {
    /// A heartbeat from the agent of `node`. Heartbeats go to the leader only (a
    /// follower answers with the leader's address), so followers carry none of that load.
    pub async fn heartbeat(&self, node: &str, token_digest: &[u8]) -> Result<Heartbeat> {
        let mut problems = Vec::new();
        cairn_domain::validate::node_name_problems("node", node, &mut problems);
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems));
        }
        self.ensure_leader().await?;
        let lost =
            self.with_state(|s| node::authorise(s.nodes(), node, token_digest).map(|n| n.lost))?;
        self.inner.heartbeats.record(node);
        Ok(Heartbeat {
            leader_id: self.id(),
            lost,
            grace_ms: self.settings().lost_after_ms,
        })
    }
}
