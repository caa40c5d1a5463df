//! The leader's watch over the GPU nodes: heartbeats are kept in memory (they are not
//! events), silence beyond the grace period becomes `MarkNodeLost`, a heartbeat from a
//! lost node becomes `MarkNodeRecovered`, and expired port leases are reclaimed with
//! `ExpirePortLeases`, due cron runs become `TriggerCron`; while jobs are queued, every change of state is followed by a
//! `ScheduleJobs` pass. Only the leader proposes these commands.
//!
//! A new leader has no heartbeats in memory: it waits a full grace period from the
//! moment it took over before declaring anyone lost, so a failover never loses nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_proto as pb;
use openraft::ServerState;

use super::{now_ms, Api};

/// How often the leader looks for silent nodes and expired leases.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Heartbeats seen by this member while it leads.
#[derive(Default)]
pub struct Heartbeats {
    /// Node → (when, leader's wall clock in ms).
    seen: Mutex<HashMap<String, (Instant, i64)>>,
}

impl Heartbeats {
    pub fn record(&self, node: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(node.to_string(), (Instant::now(), now_ms()));
    }

    fn last(&self, node: &str) -> Option<(Instant, i64)> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(node).copied()
    }

    fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn system_command(body: pb::command::Body) -> pb::Command {
    pb::Command {
        actor: "system/node-monitor".into(),
        body: Some(body),
        ..Default::default()
    }
}

impl Api {
    /// Run the failure detector and the lease reclaimer for as long as the server runs.
    pub async fn watch_nodes(self) {
        let grace = Duration::from_millis(self.lost_after_ms);
        let mut led_term = 0;
        let mut leading_since = Instant::now();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        // The log position at which the queue was last tried: a new pass is worth it
        // only after something changed.
        let mut scheduled_at = None;
        loop {
            tick.tick().await;
            let (leading, term) = {
                let m = self.raft().metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader, m.current_term)
            };
            if !leading {
                led_term = 0;
                continue;
            }
            if term != led_term {
                // Heartbeats recorded under an earlier term are stale.
                led_term = term;
                leading_since = Instant::now();
                self.heartbeats.clear();
            }
            for cmd in self.node_commands(grace, leading_since) {
                if let Err(e) = self.propose(cmd).await {
                    tracing::warn!(error = %e, "could not record a node's liveness or a lease expiry");
                }
            }
            let (queued, at) = {
                let inner = self.local.shared.read();
                (!inner.state.queue().is_empty(), inner.state.last_sequence())
            };
            if queued && scheduled_at != Some(at) {
                scheduled_at = Some(at);
                let pass = system_command(pb::command::Body::ScheduleJobs(pb::ScheduleJobs {}));
                if let Err(e) = self.propose(pass).await {
                    tracing::warn!(error = %e, "could not run a scheduling pass");
                }
            }
        }
    }

    /// The commands the current state and the heartbeats call for.
    fn node_commands(&self, grace: Duration, leading_since: Instant) -> Vec<pb::Command> {
        let now = now_ms();
        let inner = self.local.shared.read();
        let mut out = Vec::new();
        let mut lease_expired = false;
        for (name, n) in inner.state.nodes() {
            let last = self.heartbeats.last(name);
            let silent_since = last.map_or(leading_since, |(at, _)| at.max(leading_since));
            if !n.lost && silent_since.elapsed() > grace {
                out.push(system_command(pb::command::Body::MarkNodeLost(
                    pb::MarkNodeLost {
                        node: name.clone(),
                        last_heartbeat_ms: last.map_or(0, |(_, ms)| ms),
                        grace_ms: grace.as_millis() as u64,
                    },
                )));
            } else if n.lost && last.is_some_and(|(at, _)| at.elapsed() < grace) {
                out.push(system_command(pb::command::Body::MarkNodeRecovered(
                    pb::MarkNodeRecovered { node: name.clone() },
                )));
            }
            lease_expired |= n.leases.values().any(|l| l.expires_ms <= now);
        }
        if lease_expired {
            out.push(system_command(pb::command::Body::ExpirePortLeases(
                pb::ExpirePortLeases {},
            )));
        }
        for (name, j) in inner.state.jobs() {
            if !j.phase.finished() && j.deadline_ms().is_some_and(|d| d < now) {
                out.push(system_command(pb::command::Body::EnforceJobDeadline(
                    pb::EnforceJobDeadline { name: name.clone() },
                )));
            }
        }
        // Cron runs that are due: the next one of each (the following ones come on the
        // next ticks, so runs missed during a failover all start, in order).
        for (name, c) in inner.state.crons() {
            if c.doc.spec.suspend {
                continue;
            }
            if let Some(due) = c.next_due().filter(|t| *t <= now) {
                out.push(system_command(pb::command::Body::TriggerCron(
                    pb::TriggerCron {
                        name: name.clone(),
                        scheduled_ms: due,
                    },
                )));
            }
        }
        out
    }
}
