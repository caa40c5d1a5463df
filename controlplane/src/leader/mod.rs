//! The leader's workers: what only the leader proposes, each a pure function of the
//! state and the time — `due(state, now, …) -> commands` — tested without a runtime, and
//! driven by one loop ([`run`]) that ticks them while this member leads.
//!
//! - [`liveness`]: silent nodes are lost, beating lost nodes recovered.
//! - [`leases`]: expired port leases are released.
//! - [`deadlines`]: jobs past their active deadline fail.
//! - [`cron`]: due cron runs start.
//! - [`schedule`]: while jobs wait, each change of state is followed by a scheduling pass.
//! - [`rollouts`]: deployments with a step due are advanced.
//! - [`autoscale`]: autoscaled deployments get the replicas their load calls for.
//! - Membership: whenever this member starts leading a term it records Raft's
//!   membership as member events ([`record_membership`]).
//!
//! A new worker is a module with a `due` function and one line in [`tick`].

mod autoscale;
mod cron;
mod deadlines;
mod leases;
mod liveness;
mod rollouts;
mod schedule;
#[cfg(test)]
mod testing;

use std::time::{Duration, Instant};

use cairn_domain::CommandBody;

use crate::app::{now_ms, App};

/// How often the leader's workers look at the state.
const TICK: Duration = Duration::from_millis(250);
/// How long to wait before recording the membership again after a failure.
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(500);

/// What one tick of the leader's workers proposes, with the actor each is recorded as.
fn tick(
    state: &cairn_domain::State,
    heard: &liveness::Heard,
    in_flight: &std::collections::BTreeMap<String, u64>,
    memory: &mut autoscale::Memory,
    leading_since: Instant,
    grace: Duration,
) -> Vec<(&'static str, CommandBody)> {
    let (now, wall) = (Instant::now(), now_ms());
    let mut due = Vec::new();
    let mut add = |actor: &'static str, bodies: Vec<CommandBody>| {
        due.extend(bodies.into_iter().map(|b| (actor, b)));
    };
    add(
        "system/node-monitor",
        liveness::due(state, heard, leading_since, now, grace),
    );
    add(
        "system/lease-reclaimer",
        leases::due(state, wall).into_iter().collect(),
    );
    add("system/deadlines", deadlines::due(state, wall));
    add("system/cron", cron::due(state, wall));
    add("system/rollouts", rollouts::due(state, wall));
    add(
        "system/autoscaler",
        autoscale::due(state, in_flight, wall, memory),
    );
    due
}

/// Run the leader's workers for as long as the server runs.
pub async fn run(app: App) {
    let grace = Duration::from_millis(app.settings().lost_after_ms);
    let mut led_term = 0;
    let mut leading_since = Instant::now();
    let mut interval = tokio::time::interval(TICK);
    // The log position at which the queue was last tried: a new pass is worth it only
    // after something changed.
    let mut last_pass = None;
    let mut memory = autoscale::Memory::default();
    loop {
        interval.tick().await;
        let (leading, term) = app.leading();
        if !leading {
            led_term = 0;
            continue;
        }
        if term != led_term {
            // Heartbeats recorded under an earlier term are stale.
            led_term = term;
            leading_since = Instant::now();
            app.heartbeats().clear();
            memory = autoscale::Memory::default();
        }
        let heard = app.heartbeats().snapshot();
        // A node silent for longer than the lost grace has no say in the load.
        let in_flight = app.heartbeats().in_flight(grace);
        let due =
            app.with_state(|s| tick(s, &heard, &in_flight, &mut memory, leading_since, grace));
        for (actor, body) in due {
            if let Err(e) = app.propose_as(actor, body).await {
                tracing::warn!(actor, error = %e, "a leader worker's command was not recorded; it is proposed again on a later tick");
            }
        }
        if let Some((pass, at)) = app.with_state(|s| schedule::due(s, last_pass)) {
            last_pass = Some(at);
            if let Err(e) = app.propose_as("system/scheduler", pass).await {
                tracing::warn!(error = %e, "could not run a scheduling pass");
            }
        }
    }
}

/// Record Raft's membership as member events whenever this member becomes leader of a
/// new term, so membership changes made by an earlier leader are recorded too.
pub async fn record_membership(app: App) {
    let mut rx = app.raft().metrics();
    let mut done_term = 0;
    loop {
        let (leading, term) = app.leading();
        if leading && term != done_term {
            match app.reconcile_members().await {
                Ok(()) => done_term = term,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the membership; will retry");
                    tokio::time::sleep(MEMBERSHIP_RETRY).await;
                    continue;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
