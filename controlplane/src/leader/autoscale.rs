//! Autoscaling: a deployment with `spec.autoscale` gets the replicas its load calls for,
//! `ceil(in flight / targetInFlight)` within its bounds, where "in flight" is the sum of
//! the requests in flight at its routers, each averaged over the agent's last heartbeat.
//! A higher count is proposed at once; a lower one only once it has been enough for all
//! of the last `scaleDownDelay` (the highest count needed over that window is taken, as
//! Kubernetes' HPA stabilises scale-downs). Each `Scale` carries the figures it was
//! decided from, so the log says why.
//!
//! The window lives in the leader's memory and starts empty when it takes over: a new
//! leader scales down only after watching a whole delay itself.

use std::collections::{BTreeMap, VecDeque};

use cairn_domain::deployment::{DeploymentCommand, DeploymentState, ScaleLoad, ServingPhase};
use cairn_domain::{CommandBody, State};

/// What the autoscaler remembers between ticks.
#[derive(Default)]
pub struct Memory {
    deployments: BTreeMap<String, Window>,
}

/// One deployment's recent needs.
struct Window {
    /// Since when this leader has had figures for it.
    since_ms: i64,
    /// (when, replicas needed then), oldest first, none older than the delay.
    needed: VecDeque<(i64, u32)>,
}

/// Ready replicas, not doomed, of the revisions with traffic.
fn ready(d: &DeploymentState) -> u32 {
    d.revisions
        .iter()
        .filter(|(r, _)| d.weights.get(r).is_some_and(|w| *w > 0))
        .flat_map(|(_, r)| r.replicas.values())
        .filter(|x| x.phase == ServingPhase::Ready && x.doomed.is_none())
        .count() as u32
}

/// `Scale` for each autoscaled deployment whose load calls for another replica count.
/// `in_flight_milli`: deployment → requests in flight at its routers, in thousandths
/// (a deployment without fresh figures is left as it is).
pub fn due(
    state: &State,
    in_flight_milli: &BTreeMap<String, u64>,
    now_ms: i64,
    memory: &mut Memory,
) -> Vec<CommandBody> {
    let mut out = Vec::new();
    memory.deployments.retain(|name, _| {
        state
            .deployment(name)
            .is_some_and(|d| !d.deleted && d.doc.spec.autoscale.is_some())
            && in_flight_milli.contains_key(name)
    });
    for (name, d) in state.deployments() {
        let Some(a) = d.doc.spec.autoscale.as_ref().filter(|_| !d.deleted) else {
            continue;
        };
        let Some(&milli) = in_flight_milli.get(name) else {
            continue;
        };
        let target = a.target_in_flight.max(1) as u64;
        let need = a.clamp(u32::try_from(milli.div_ceil(target * 1000)).unwrap_or(u32::MAX));
        let delay = a.scale_down_delay_ms();
        let w = memory.deployments.entry(name.clone()).or_insert(Window {
            since_ms: now_ms,
            needed: VecDeque::new(),
        });
        w.needed.push_back((now_ms, need));
        while w.needed.front().is_some_and(|(t, _)| *t < now_ms - delay) {
            w.needed.pop_front();
        }
        let load = ScaleLoad {
            in_flight_milli: milli,
            ready: ready(d),
            target_in_flight: target as u32,
        };
        let figures = format!(
            "{:.2} requests in flight over {} ready replicas, target {} each",
            milli as f64 / 1000.0,
            load.ready,
            target
        );
        let scale = |replicas: u32, reason: String| {
            CommandBody::Deployment(DeploymentCommand::Scale {
                name: name.clone(),
                replicas,
                reason,
                load: Some(load),
            })
        };
        if need > d.replicas {
            out.push(scale(need, format!("autoscale up: {figures}")));
        } else if now_ms - w.since_ms >= delay {
            let highest = w.needed.iter().map(|(_, n)| *n).max().unwrap_or(need);
            if highest < d.replicas {
                let why = format!(
                    "autoscale down: {figures}; no more than {highest} needed for {} s",
                    delay / 1000
                );
                out.push(scale(highest, why));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::testing::{apply, with_node, T0};

    /// A deployment of 2 replicas autoscaled within 1-5 at 2 in flight each, scaled down
    /// after 10 s, with its replicas ready.
    fn autoscaled() -> State {
        let doc = r#"{"apiVersion": "cairn.dev/v1", "kind": "ModelDeployment",
            "metadata": {"name": "svc"},
            "spec": {"model": {"name": "m", "version": 1}, "replicas": 2,
                     "template": {"command": ["serve"]},
                     "autoscale": {"minReplicas": 1, "maxReplicas": 5, "targetInFlight": 2,
                                   "scaleDownDelay": "10s"}}}"#;
        crate::leader::testing::deployment_from(with_node("a"), doc)
    }

    fn scales(bodies: &[CommandBody]) -> Vec<(u32, Option<ScaleLoad>)> {
        bodies
            .iter()
            .map(|b| match b {
                CommandBody::Deployment(DeploymentCommand::Scale { replicas, load, .. }) => {
                    (*replicas, *load)
                }
                other => panic!("not a Scale: {other:?}"),
            })
            .collect()
    }

    fn load(milli: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("svc".to_string(), milli)])
    }

    #[test]
    fn more_load_scales_up_at_once_within_the_bounds_with_its_figures() {
        let state = autoscaled();
        let mut memory = Memory::default();
        // 2 × 2 in flight: as it is.
        assert!(due(&state, &load(4_000), T0, &mut memory).is_empty());
        // 7.2 in flight: 4 replicas, proposed at once, with the figures.
        let up = scales(&due(&state, &load(7_200), T0 + 250, &mut memory));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].0, 4);
        let figures = up[0].1.expect("the figures");
        assert_eq!(
            (figures.in_flight_milli, figures.target_in_flight),
            (7_200, 2)
        );
        // 50 in flight: no more than maxReplicas.
        assert_eq!(
            scales(&due(&state, &load(50_000), T0 + 500, &mut memory))[0].0,
            5
        );
    }

    #[test]
    fn less_load_scales_down_only_after_the_delay_to_the_highest_need_in_it() {
        let state = apply(
            autoscaled(),
            CommandBody::Deployment(DeploymentCommand::Scale {
                name: "svc".into(),
                replicas: 5,
                reason: String::new(),
                load: None,
            }),
        );
        let mut memory = Memory::default();
        let mut t = T0;
        // Idle, with one burst calling for 3 at 4 s.
        let mut proposed = Vec::new();
        while t < T0 + 10_000 {
            let milli = if t == T0 + 4_000 { 5_000 } else { 0 };
            proposed.extend(scales(&due(&state, &load(milli), t, &mut memory)));
            t += 250;
        }
        assert!(
            proposed.is_empty(),
            "nothing before the delay: {proposed:?}"
        );
        // The delay has passed: down to the highest need in the window (3, the burst).
        let down = scales(&due(&state, &load(0), T0 + 10_000, &mut memory));
        assert_eq!(down.iter().map(|s| s.0).collect::<Vec<_>>(), [3]);
        // Once the burst is older than the delay: the minimum.
        let later = scales(&due(&state, &load(0), T0 + 14_250, &mut memory));
        assert_eq!(later.iter().map(|s| s.0).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn without_fresh_figures_or_spec_autoscale_nothing_is_proposed() {
        let mut memory = Memory::default();
        let state = autoscaled();
        for t in 0..100 {
            assert!(due(&state, &BTreeMap::new(), T0 + t * 1_000, &mut memory).is_empty());
        }
        let fixed = crate::leader::testing::deployment(with_node("a"));
        assert!(due(&fixed, &load(99_000), T0, &mut memory).is_empty());
    }
}
