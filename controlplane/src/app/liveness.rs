//! Agents' heartbeats. They are not events: the leader keeps the last one of each node
//! in memory, and its failure detector (`leader::liveness`) turns silence into
//! `MarkLost`. A heartbeat is judged by the same rule as an agent's reports: only the
//! agent holding the node's token may speak for it. It also carries the load on the
//! deployments the node routes, which the leader's autoscaler works from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use cairn_domain::node;

use super::proposer::now_ms;
use super::{App, AppError, Result};

/// Most endpoint loads one heartbeat may carry.
pub const MAX_LOADS: usize = 4096;

/// The load on one revision of a deployment at one node's router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointLoad {
    pub deployment: String,
    pub revision: u32,
    /// Requests in flight, averaged since the node's previous report, in thousandths.
    pub in_flight_milli: u64,
}

/// Heartbeats seen by this member while it leads: node → (when, leader's wall clock),
/// and the loads the last one of each node carried.
#[derive(Default)]
pub struct Heartbeats {
    seen: Mutex<HashMap<String, (Instant, i64)>>,
    loads: Mutex<HashMap<String, (Instant, Vec<EndpointLoad>)>>,
}

impl Heartbeats {
    fn record(&self, node: &str, loads: Vec<EndpointLoad>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(node.to_string(), (now, now_ms()));
        drop(seen);
        let mut all = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(node.to_string(), (now, loads));
    }

    /// Deployment → requests in flight at all its routers (thousandths), from the
    /// heartbeats younger than `fresh`.
    pub fn in_flight(&self, fresh: std::time::Duration) -> BTreeMap<String, u64> {
        let all = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        let mut sum: BTreeMap<String, u64> = BTreeMap::new();
        for (at, loads) in all.values() {
            if at.elapsed() > fresh {
                continue;
            }
            for l in loads {
                *sum.entry(l.deployment.clone()).or_default() += l.in_flight_milli;
            }
        }
        sum
    }

    /// The heartbeats seen so far.
    pub fn snapshot(&self) -> HashMap<String, (Instant, i64)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forget them all (those recorded under an earlier term are stale).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.loads.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
    pub async fn heartbeat(
        &self,
        node: &str,
        token_digest: &[u8],
        loads: Vec<EndpointLoad>,
    ) -> Result<Heartbeat> {
        let mut problems = Vec::new();
        cairn_domain::validate::node_name_problems("node", node, &mut problems);
        if loads.len() > MAX_LOADS {
            problems.push(format!("serving: at most {MAX_LOADS} endpoint loads"));
        }
        for (i, l) in loads.iter().enumerate() {
            let at = format!("serving[{i}].deployment");
            cairn_domain::validate::name_problems(&at, &l.deployment, &mut problems);
        }
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems));
        }
        self.ensure_leader().await?;
        let lost =
            self.with_state(|s| node::authorise(s.nodes(), node, token_digest).map(|n| n.lost))?;
        self.inner.heartbeats.record(node, loads);
        Ok(Heartbeat {
            leader_id: self.id(),
            lost,
            grace_ms: self.settings().lost_after_ms,
        })
    }
}
