//! Deciding deployment commands, and the rollout: what the next step is, given the state
//! and the time. [`plan`] is the whole policy; the leader proposes `Advance` whenever it
//! has something to do, and `decide` runs it again at the command's place in the log.
//!
//! The rules it keeps:
//! - traffic moves to a revision only as far as its ready replicas can carry it
//!   (`weight ≤ 100 × ready / replicas`, at least one ready replica for any weight);
//! - a revision losing traffic keeps the replicas its remaining weight needs, and the
//!   ready replicas in all stay at or above `replicas − maxUnavailable`;
//! - the replicas of all revisions stay at or below `replicas + maxSurge` (replacements
//!   of doomed replicas come on top);
//! - canary steps wait for their pause, or for `promote` when they have none.

use std::collections::BTreeMap;

use super::command::{DeploymentCommand, ServingReport};
use super::event::{DeploymentEvent, ServingPlacement};
use super::spec::DeploymentDocument;
use super::state::{DeploymentState, Deployments, ServingPhase};
use super::KIND;
use crate::emit::Emit;
use crate::entity::Issued;
use crate::model::Models;
use crate::node::{self, Disruption, Nodes};
use crate::rejection::Rejection;
use crate::schedule::{Capacity, Demand, Need};

/// What deciding a deployment command reads.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub deployments: &'a Deployments,
    pub nodes: &'a Nodes,
    pub models: &'a Models,
}

fn live<'a>(ctx: &Context<'a>, name: &str) -> Result<&'a DeploymentState, Rejection> {
    ctx.deployments
        .get(name)
        .filter(|d| !d.deleted)
        .ok_or_else(|| Rejection::NotFound(format!("{KIND}/{name}")))
}

/// The model version a spec names now, and where its artifacts are.
fn resolve(models: &Models, doc: &DeploymentDocument) -> Result<(u64, String), String> {
    let r = &doc.spec.model;
    let m = models
        .get(&r.name)
        .filter(|m| !m.deleted)
        .ok_or_else(|| format!("model/{} does not exist", r.name))?;
    let version = match (r.version, &r.alias) {
        (Some(v), _) => v.max(0) as u64,
        (None, Some(a)) => *m
            .aliases
            .get(a)
            .ok_or_else(|| format!("model/{} has no alias {a:?}", r.name))?,
        (None, None) => return Err("spec.model: no version or alias".into()),
    };
    let v = m
        .version(version)
        .ok_or_else(|| format!("model/{}:{version} does not exist", r.name))?;
    let uri = if v.storage_location.is_empty() {
        v.source.clone()
    } else {
        v.storage_location.clone()
    };
    Ok((version, uri))
}

/// Decide a deployment command.
pub fn decide(
    ctx: Context<'_>,
    cmd: &DeploymentCommand,
    issued: Issued<'_>,
    out: &mut impl Emit<DeploymentEvent>,
) -> Result<(), Rejection> {
    let name = cmd.target();
    match cmd {
        DeploymentCommand::Apply { doc } => {
            let (version, uri) = resolve(ctx.models, doc).map_err(Rejection::FailedPrecondition)?;
            let Ok(d) = live(&ctx, name) else {
                out.emit(name, DeploymentEvent::Applied { doc: doc.clone() });
                let created = DeploymentEvent::RevisionCreated {
                    revision: 1,
                    model_version: version,
                    model_uri: uri,
                    reason: "created".into(),
                };
                out.emit(name, created);
                return Ok(());
            };
            if d.doc == **doc {
                return Ok(());
            }
            out.emit(name, DeploymentEvent::Applied { doc: doc.clone() });
            let changed = d
                .current()
                .and_then(|c| d.revisions.get(&c))
                .is_none_or(|r| {
                    r.model_version != version
                        || r.template != doc.spec.template
                        || r.probe != doc.spec.readiness_probe
                });
            if changed {
                let revision = d.revisions.keys().next_back().map_or(1, |r| r + 1);
                let created = DeploymentEvent::RevisionCreated {
                    revision,
                    model_version: version,
                    model_uri: uri,
                    reason: "spec changed".into(),
                };
                out.emit(name, created);
            }
            let asked = doc.spec.replicas.max(1) as u32;
            let (mut replicas, mut reason) = (d.replicas, "");
            if asked != d.doc.spec.replicas.max(1) as u32 {
                (replicas, reason) = (asked, "spec.replicas changed");
            }
            if let Some(a) = &doc.spec.autoscale {
                if a.clamp(replicas) != replicas {
                    (replicas, reason) = (a.clamp(replicas), "within spec.autoscale's bounds");
                }
            }
            if replicas != d.replicas {
                let scaled = DeploymentEvent::Scaled {
                    replicas,
                    reason: reason.into(),
                    load: None,
                };
                out.emit(name, scaled);
            }
        }
        DeploymentCommand::Delete { .. } => {
            live(&ctx, name)?;
            out.emit(name, DeploymentEvent::Deleted);
        }
        DeploymentCommand::Scale {
            replicas,
            reason,
            load,
            ..
        } => {
            let d = live(&ctx, name)?;
            match (&d.doc.spec.autoscale, load) {
                (Some(a), _) if a.clamp(*replicas) != *replicas => {
                    return Err(Rejection::FailedPrecondition(format!(
                        "{KIND}/{name} scales itself within {}-{} replicas (spec.autoscale): change the bounds with apply",
                        a.min_replicas, a.max_replicas
                    )));
                }
                (None, Some(_)) => {
                    return Err(Rejection::FailedPrecondition(format!(
                        "{KIND}/{name} has no spec.autoscale"
                    )));
                }
                _ => {}
            }
            if d.replicas != *replicas {
                let scaled = DeploymentEvent::Scaled {
                    replicas: *replicas,
                    reason: reason.clone(),
                    load: *load,
                };
                out.emit(name, scaled);
            }
        }
        DeploymentCommand::Pause { reason, .. } => {
            if live(&ctx, name)?.paused.is_none() {
                let reason = reason.clone();
                out.emit(name, DeploymentEvent::Paused { reason });
            }
        }
        DeploymentCommand::Resume { .. } => {
            if live(&ctx, name)?.paused.is_some() {
                out.emit(name, DeploymentEvent::Resumed);
            }
        }
        DeploymentCommand::Promote { .. } => match &live(&ctx, name)?.rollout {
            Some(r) if !r.promoted => out.emit(name, DeploymentEvent::Promoted),
            Some(_) => {}
            None => {
                return Err(Rejection::FailedPrecondition(format!(
                    "{KIND}/{name} has no rollout under way"
                )))
            }
        },
        DeploymentCommand::Rollback { reason, .. } => {
            let d = live(&ctx, name)?;
            let to = match &d.rollout {
                // Back to what serves beside the revision rolling in.
                Some(r) => d
                    .weights
                    .iter()
                    .filter(|(rev, w)| **rev != r.target && **w > 0)
                    .max_by_key(|(rev, w)| (**w, **rev))
                    .map(|(rev, _)| *rev),
                // Back to the revision before the one serving.
                None => d
                    .current()
                    .and_then(|c| d.revisions.range(..c).next_back().map(|(rev, _)| *rev)),
            };
            let Some(to) = to else {
                return Err(Rejection::FailedPrecondition(format!(
                    "{KIND}/{name} has no earlier revision to roll back to"
                )));
            };
            let reason = if reason.is_empty() {
                format!("rolled back by {}", issued.actor)
            } else {
                reason.clone()
            };
            out.emit(name, DeploymentEvent::RollbackStarted { to, reason });
        }
        DeploymentCommand::Advance { .. } => {
            let d = live(&ctx, name)?;
            for e in plan(&ctx, name, d, issued.timestamp_ms) {
                out.emit(name, e);
            }
        }
        DeploymentCommand::ReportServing {
            node,
            revision,
            index,
            attempt,
            report,
            token_digest,
            ..
        } => {
            node::authorise(ctx.nodes, node, token_digest)?;
            let d = live(&ctx, name)?;
            let replica = d
                .revisions
                .get(revision)
                .and_then(|r| r.replicas.get(index))
                .filter(|r| r.node == *node);
            // A report about a replica removed, moved or restarted since is stale.
            let Some(r) = replica.filter(|r| r.attempt == *attempt) else {
                return Ok(());
            };
            let (revision, index) = (*revision, *index);
            let event = match report {
                ServingReport::Started { pid } => Some(DeploymentEvent::ReplicaStarted {
                    revision,
                    index,
                    attempt: *attempt,
                    pid: *pid,
                }),
                ServingReport::Ready => (r.phase != ServingPhase::Ready)
                    .then_some(DeploymentEvent::ReplicaReady { revision, index }),
                ServingReport::NotReady { reason } => {
                    (r.phase == ServingPhase::Ready).then(|| DeploymentEvent::ReplicaNotReady {
                        revision,
                        index,
                        reason: reason.clone(),
                    })
                }
                ServingReport::Exited { code, signal } => {
                    let why = if *signal != 0 {
                        format!("killed by signal {signal}")
                    } else {
                        format!("exited with code {code}")
                    };
                    Some(DeploymentEvent::ReplicaRestarting {
                        revision,
                        index,
                        attempt: attempt + 1,
                        reason: why,
                    })
                }
            };
            if let Some(e) = event {
                out.emit(name, e);
            }
        }
    }
    Ok(())
}

/// Nodes or GPUs failed under deployments: their replicas are doomed (replaced
/// elsewhere, then removed); on a lost node they also stop counting as ready.
pub fn react(
    deployments: &Deployments,
    disruptions: &[Disruption],
    out: &mut impl Emit<DeploymentEvent>,
) {
    for (name, d) in deployments.iter().filter(|(_, d)| !d.deleted) {
        for (rev, r) in &d.revisions {
            for (i, x) in &r.replicas {
                let hit = disruptions.iter().find(|dis| {
                    x.node == dis.node
                        && dis
                            .gpu
                            .as_deref()
                            .is_none_or(|g| x.gpus.iter().any(|u| u == g))
                });
                let Some(dis) = hit else {
                    continue;
                };
                if dis.unreachable && x.phase == ServingPhase::Ready {
                    let not_ready = DeploymentEvent::ReplicaNotReady {
                        revision: *rev,
                        index: *i,
                        reason: dis.reason.clone(),
                    };
                    out.emit(name, not_ready);
                }
                if x.doomed.is_none() {
                    let doomed = DeploymentEvent::ReplicaDoomed {
                        revision: *rev,
                        index: *i,
                        reason: dis.reason.clone(),
                    };
                    out.emit(name, doomed);
                }
            }
        }
    }
}

/// The steps due for deployment `name` at `now`, in order (none: nothing to do).
pub fn plan(ctx: &Context<'_>, name: &str, d: &DeploymentState, now: i64) -> Vec<DeploymentEvent> {
    let mut ev = Vec::new();
    if d.deleted {
        return ev;
    }
    // The stable endpoint first: the replicas placed below must not take its port.
    if let Some(e) = route(ctx.nodes, d) {
        ev.push(e);
        return ev;
    }
    if let Some(e) = follow_alias(ctx.models, d) {
        ev.push(e);
        return ev;
    }
    restart_stuck(d, now, &mut ev);
    if d.paused.is_some() {
        return ev;
    }
    let Some(target) = d.current() else {
        return ev;
    };
    let mut waiting = String::new();
    let weights = traffic(d, target, now, &mut ev, &mut waiting);
    place(ctx.nodes, name, d, target, &mut ev, &mut waiting);
    remove(d, target, &weights, &mut ev);
    if waiting != d.waiting {
        ev.push(DeploymentEvent::Waiting { reason: waiting });
    }
    ev
}

/// Lease the endpoint's port on the live nodes that do not route it yet. The port is the
/// same on every node where it can be: the lowest free on all of them, chosen when the
/// deployment is first routed. A node where it is taken (or outside its port range)
/// routes on its own lowest free port, in a later step.
fn route(nodes: &Nodes, d: &DeploymentState) -> Option<DeploymentEvent> {
    let live: Vec<(&String, &node::NodeState)> = nodes
        .iter()
        .filter(|(n, s)| !s.lost && !d.routed_on.contains_key(*n))
        .collect();
    if live.is_empty() {
        return None;
    }
    let free = |s: &node::NodeState, p: u32| {
        (s.inventory.port_range_start..=s.inventory.port_range_end).contains(&p)
            && !s.leases.contains_key(&p)
    };
    let lowest = |s: &node::NodeState| {
        (s.inventory.port_range_start..=s.inventory.port_range_end).find(|p| free(s, *p))
    };
    let common = if d.port != 0 {
        Some(d.port)
    } else {
        let lo = live
            .iter()
            .map(|(_, s)| s.inventory.port_range_start)
            .max()?;
        let hi = live.iter().map(|(_, s)| s.inventory.port_range_end).min()?;
        (lo..=hi).find(|p| live.iter().all(|(_, s)| free(s, *p)))
    };
    if let Some(port) = common {
        let on: Vec<String> = live
            .iter()
            .filter(|(_, s)| free(s, port))
            .map(|(n, _)| (*n).clone())
            .collect();
        if !on.is_empty() {
            return Some(DeploymentEvent::Routed { port, nodes: on });
        }
    }
    live.iter().find_map(|(n, s)| {
        lowest(s).map(|port| DeploymentEvent::Routed {
            port,
            nodes: vec![(*n).clone()],
        })
    })
}

/// A deployment that follows an alias gets a new revision when the alias moved.
fn follow_alias(models: &Models, d: &DeploymentState) -> Option<DeploymentEvent> {
    let alias = d.doc.spec.model.alias.as_ref()?;
    let (version, uri) = resolve(models, &d.doc).ok()?;
    let newest = d.revisions.iter().next_back()?;
    // During a rollback the newest revision is not the one wanted: leave it be.
    let rolling_back = d.rollout.as_ref().is_some_and(|r| r.target != *newest.0);
    if newest.1.model_version == version || rolling_back {
        return None;
    }
    Some(DeploymentEvent::RevisionCreated {
        revision: newest.0 + 1,
        model_version: version,
        model_uri: uri,
        reason: format!(
            "alias {alias} moved to version {version} (from {})",
            newest.1.model_version
        ),
    })
}

/// Replicas started but not ready within the probe's startup budget start again.
fn restart_stuck(d: &DeploymentState, now: i64, ev: &mut Vec<DeploymentEvent>) {
    for (rev, r) in &d.revisions {
        let budget = r.probe.startup_seconds.saturating_mul(1000);
        for (i, x) in &r.replicas {
            if x.phase == ServingPhase::Starting && now.saturating_sub(x.started_ms) > budget {
                ev.push(DeploymentEvent::ReplicaRestarting {
                    revision: *rev,
                    index: *i,
                    attempt: x.attempt + 1,
                    reason: format!("not ready within {} s", r.probe.startup_seconds),
                });
            }
        }
    }
}

/// Ready replicas a weight needs: its share of the desired replicas, at least one.
fn needed(weight: u32, replicas: u32) -> u32 {
    if weight == 0 {
        0
    } else {
        (weight * replicas).div_ceil(100).max(1)
    }
}

/// `target` at `w` percent; the rest shared by the other revisions in proportion to
/// what they carry now (the largest takes the remainder).
fn split(d: &DeploymentState, target: u32, w: u32) -> BTreeMap<u32, u32> {
    let others: Vec<(u32, u32)> = d
        .weights
        .iter()
        .filter(|(rev, w)| **rev != target && **w > 0)
        .map(|(rev, w)| (*rev, *w))
        .collect();
    let total: u32 = others.iter().map(|(_, w)| w).sum();
    let mut out = BTreeMap::new();
    if total == 0 {
        out.insert(target, 100);
        return out;
    }
    out.insert(target, w);
    let rest = 100 - w;
    let mut given = 0;
    for (rev, ow) in &others {
        let share = rest * ow / total;
        out.insert(*rev, share);
        given += share;
    }
    if let Some((rev, _)) = others.iter().max_by_key(|(rev, w)| (*w, *rev)) {
        *out.entry(*rev).or_default() += rest - given;
    }
    out.retain(|_, w| *w > 0);
    out
}

/// Move traffic as far as the rules allow; the weights after this step.
fn traffic(
    d: &DeploymentState,
    target: u32,
    now: i64,
    ev: &mut Vec<DeploymentEvent>,
    waiting: &mut String,
) -> BTreeMap<u32, u32> {
    let replicas = d.replicas;
    let ready = d.ready(target);
    let now_w = d.weights.get(&target).copied().unwrap_or(0);
    let steps = d.doc.spec.canary.as_ref().map_or(&[][..], |c| &c.steps[..]);
    let canary = d
        .rollout
        .as_ref()
        .filter(|r| !r.promoted && !steps.is_empty());
    if let Some(r) = canary {
        let next = match r.step {
            None => Some(0),
            Some(i) => match steps
                .get(i as usize)
                .and_then(|s| s.pause.as_ref().map(|_| s))
            {
                Some(s) if now >= r.step_since_ms + s.pause_ms().unwrap_or(0) => Some(i + 1),
                Some(_) => return d.weights.clone(),
                None => {
                    *waiting = format!("canary step {} waits for promote", i + 1);
                    return d.weights.clone();
                }
            },
        };
        if let Some(k) = next.filter(|k| (*k as usize) < steps.len()) {
            let w = steps[k as usize].weight.clamp(1, 99) as u32;
            let need = needed(w, replicas);
            if ready < need {
                *waiting = format!(
                    "canary step {} ({w}%) waits for {need} ready replicas of revision {target}",
                    k + 1
                );
                return d.weights.clone();
            }
            let weights = split(d, target, w);
            ev.push(DeploymentEvent::TrafficShifted {
                weights: weights.clone(),
                reason: format!("canary step {} of {}", k + 1, steps.len()),
            });
            ev.push(DeploymentEvent::CanaryStep { step: k });
            return weights;
        }
    }
    // A rolling move (or the last part of a canary): as much as the ready replicas carry.
    let carry = if ready >= replicas {
        100
    } else {
        100 * ready / replicas.max(1)
    };
    let w = carry.max(now_w);
    let mut weights = d.weights.clone();
    if w > now_w || (w > 0 && d.weights.values().sum::<u32>() == 0) {
        weights = split(d, target, w);
        if weights != d.weights {
            ev.push(DeploymentEvent::TrafficShifted {
                weights: weights.clone(),
                reason: format!("{ready} of {replicas} replicas of revision {target} ready"),
            });
        }
    }
    let done = weights.get(&target) == Some(&100) && ready >= replicas;
    if done && d.rollout.is_some() {
        ev.push(DeploymentEvent::RolloutCompleted { revision: target });
    }
    weights
}

/// Place the target revision's missing replicas, within the surge allowance.
fn place(
    nodes: &Nodes,
    name: &str,
    d: &DeploymentState,
    target: u32,
    ev: &mut Vec<DeploymentEvent>,
    waiting: &mut String,
) {
    let Some(rev) = d.revisions.get(&target) else {
        return;
    };
    let alive = rev.replicas.values().filter(|x| x.doomed.is_none()).count() as u32;
    let missing = d.replicas.saturating_sub(alive);
    let doomed: u32 = d
        .revisions
        .values()
        .map(|r| r.replicas.values().filter(|x| x.doomed.is_some()).count() as u32)
        .sum();
    let room = if d.rollout.is_some() {
        let surge = d.doc.spec.strategy.max_surge.max(0) as u32;
        (d.replicas + surge + doomed).saturating_sub(d.replica_count())
    } else {
        missing
    };
    let n = missing.min(room);
    if n == 0 {
        return;
    }
    let t = &rev.template;
    let need = Need {
        gpus: t.gpus.max(0) as usize,
        cpu_millis: t.cpu_millis,
        memory_mib: t.memory_mib,
    };
    let demand = Demand {
        queue: "",
        gang: false,
        ports_per_replica: 1,
        replicas: (rev.next_index..rev.next_index + n)
            .map(|i| (i, need))
            .collect(),
    };
    let mut capacity = Capacity::new(nodes, BTreeMap::new());
    let placed = capacity.place(demand);
    let slots = placed.as_ref().map(Vec::as_slice).unwrap_or_default();
    if !slots.is_empty() {
        let placements = slots
            .iter()
            .map(|s| ServingPlacement {
                index: s.replica,
                node: s.node.clone(),
                gpus: s.gpus.clone(),
                port: s.ports.first().copied().unwrap_or(0),
            })
            .collect();
        ev.push(DeploymentEvent::ReplicasPlaced {
            revision: target,
            placements,
        });
    }
    if (slots.len() as u32) < n {
        let why = placed
            .as_ref()
            .err()
            .cloned()
            .unwrap_or_else(|| "no room".into());
        *waiting = format!(
            "{KIND}/{name}: no room for {} replicas of revision {target}: {why}",
            n - slots.len() as u32
        );
    }
}

/// Remove what is no longer needed: other revisions' replicas beyond what their weight
/// needs (keeping enough ready), the target's beyond the desired count, and doomed
/// replicas once replaced (or at once when they do not serve).
fn remove(
    d: &DeploymentState,
    target: u32,
    weights: &BTreeMap<u32, u32>,
    ev: &mut Vec<DeploymentEvent>,
) {
    let unavailable = d.doc.spec.strategy.max_unavailable.max(0) as u32;
    let floor = d.replicas.saturating_sub(unavailable);
    let mut ready_total: u32 = d.revisions.keys().map(|r| d.ready(*r)).sum();
    for (rev, r) in &d.revisions {
        let keep = if *rev == target {
            d.replicas
        } else {
            needed(weights.get(rev).copied().unwrap_or(0), d.replicas)
        };
        // The ones that serve least go first: doomed, not ready, newest.
        let mut order: Vec<(&u32, &super::state::ServingReplica)> = r.replicas.iter().collect();
        order.sort_by_key(|(i, x)| {
            (
                x.doomed.is_none(),
                x.phase == ServingPhase::Ready,
                std::cmp::Reverse(**i),
            )
        });
        let sound_ready = r
            .replicas
            .values()
            .filter(|x| x.doomed.is_none() && x.phase == ServingPhase::Ready)
            .count() as u32;
        let mut count = r.replicas.len() as u32;
        let mut gone = Vec::new();
        for (i, x) in order {
            let ready = x.phase == ServingPhase::Ready;
            let excess = count > keep;
            let replaced = x.doomed.is_some() && (!ready || sound_ready >= keep);
            if !(excess || replaced) {
                continue;
            }
            if ready && *rev != target && ready_total <= floor && !replaced {
                continue;
            }
            if ready {
                ready_total = ready_total.saturating_sub(1);
            }
            count -= 1;
            gone.push(*i);
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            let reason = if *rev == target {
                "not needed".to_string()
            } else {
                format!("revision {target} takes over")
            };
            ev.push(DeploymentEvent::ReplicasRemoved {
                revision: *rev,
                indexes: gone,
                reason,
            });
        }
    }
}
