//! Tests of deployments: the spec's checks, revisions, placement, every rollout step
//! (rolling, canary with pauses and with promote, a canary that never becomes ready),
//! rollback mid-canary and after a completed rollout, restarts, scaling, failures under
//! serving replicas, an alias that moves, and deletion giving everything back.

use std::collections::BTreeMap;

use super::*;
use crate::core::{CommandBody, State};
use crate::model::ModelCommand;
use crate::node::NodeCommand;
use crate::rejection::Rejection;
use crate::testkit::*;

fn body(c: DeploymentCommand) -> CommandBody {
    CommandBody::Deployment(c)
}

/// A cluster with node `a` (8 GPUs) and model `m` with versions 1 and 2, alias
/// `champion` on 1.
fn cluster() -> State {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let m = |c| CommandBody::Model(c);
    apply(
        &mut s,
        &cmd(m(ModelCommand::Create {
            name: "m".into(),
            description: String::new(),
            tags: BTreeMap::new(),
        })),
    )
    .unwrap();
    for v in 1..=2 {
        let version = ModelCommand::CreateVersion {
            name: "m".into(),
            source: format!("/models/m{v}.json"),
            run_id: String::new(),
            description: String::new(),
            tags: BTreeMap::new(),
            create_model: false,
        };
        apply(&mut s, &cmd(m(version))).unwrap();
    }
    let alias = ModelCommand::SetAlias {
        name: "m".into(),
        alias: "champion".into(),
        version: 1,
        expected: None,
        reason: String::new(),
    };
    apply(&mut s, &cmd(m(alias))).unwrap();
    s
}

fn doc(extra: &str) -> String {
    format!(
        r#"{{"apiVersion": "cairn.dev/v1", "kind": "ModelDeployment", "metadata": {{"name": "svc"}},
        "spec": {{"model": {{"name": "m", "version": 1}}, "replicas": 2,
                 "template": {{"command": ["serve"], "gpus": 1}}{extra}}}}}"#
    )
}

fn apply_doc(s: &mut State, json: &str) -> Result<Vec<&'static str>, Rejection> {
    let doc = spec::parse(json).map_err(|p| Rejection::InvalidArgument(p.join("; ")))?;
    let events = apply(
        s,
        &cmd(body(DeploymentCommand::Apply { doc: Box::new(doc) })),
    )?;
    Ok(types(&events))
}

fn advance(s: &mut State, now: i64) -> Vec<&'static str> {
    let c = at(now, body(DeploymentCommand::Advance { name: "svc".into() }));
    types(&apply(s, &c).unwrap())
}

/// Advance until nothing is due (bounded).
fn settle(s: &mut State, now: i64) {
    for _ in 0..20 {
        if advance(s, now).is_empty() {
            return;
        }
    }
    panic!("the deployment never settles");
}

fn d(s: &State) -> &DeploymentState {
    s.deployment("svc").expect("deployment svc")
}

fn report(s: &mut State, now: i64, rev: u32, index: u32, report: ServingReport) {
    let x = &d(s).revisions[&rev].replicas[&index];
    let c = at(
        now,
        body(DeploymentCommand::ReportServing {
            node: x.node.clone(),
            name: "svc".into(),
            revision: rev,
            index,
            attempt: x.attempt,
            report,
            token_digest: x.node.clone().into_bytes(),
        }),
    );
    apply(s, &c).unwrap();
}

/// Start every pending replica of `rev` and report it ready.
fn all_ready(s: &mut State, now: i64, rev: u32) {
    let indexes: Vec<u32> = d(s).revisions[&rev].replicas.keys().copied().collect();
    for i in indexes {
        let phase = d(s).revisions[&rev].replicas[&i].phase;
        if phase == ServingPhase::Pending {
            report(s, now, rev, i, ServingReport::Started { pid: 100 + i });
        }
        report(s, now, rev, i, ServingReport::Ready);
    }
}

fn weights(s: &State) -> Vec<(u32, u32)> {
    d(s).weights.iter().map(|(r, w)| (*r, *w)).collect()
}

/// A deployment of version 1 serving from 2 ready replicas.
fn serving(extra: &str) -> State {
    let mut s = cluster();
    apply_doc(&mut s, &doc(extra)).unwrap();
    settle(&mut s, 10_000);
    all_ready(&mut s, 10_000, 1);
    settle(&mut s, 10_000);
    assert_eq!(weights(&s), [(1, 100)]);
    s
}

#[test]
fn a_spec_with_problems_is_refused_with_field_paths_and_changes_nothing() {
    let mut s = cluster();
    let before = s.clone();
    let bad = doc(r#", "strategy": {"maxSurge": 0, "maxUnavailable": 0},
        "canary": {"steps": [{"weight": 50}, {"weight": 10, "pause": "5 minutes"}]},
        "readinessProbe": {"httpGet": {"path": "healthz"}}"#)
    .replace(r#""version": 1"#, r#""version": 1, "alias": "champion""#)
    .replace(r#""gpus": 1"#, r#""gpus": 1, "env": {"CAIRN_PORT": "1"}"#);
    let Err(Rejection::InvalidArgument(why)) = apply_doc(&mut s, &bad) else {
        panic!("accepted");
    };
    for field in [
        "spec.model: exactly one of version and alias",
        "spec.template.env[\"CAIRN_PORT\"]: set by the agent",
        "spec.readinessProbe.httpGet.path",
        "spec.strategy: maxSurge or maxUnavailable",
        "spec.canary.steps[1].weight: must grow",
        "spec.canary.steps[1].pause",
    ] {
        assert!(why.contains(field), "{field} missing from: {why}");
    }
    let scaling = doc(
        r#", "autoscale": {"minReplicas": 3, "maxReplicas": 8, "targetInFlight": 0,
            "scaleDownDelay": "soon"}"#,
    );
    let Err(Rejection::InvalidArgument(why)) = apply_doc(&mut s, &scaling) else {
        panic!("accepted");
    };
    for field in [
        "spec.replicas: must be within spec.autoscale",
        "spec.autoscale.targetInFlight: must be 1-10000",
        "spec.autoscale.scaleDownDelay",
    ] {
        assert!(why.contains(field), "{field} missing from: {why}");
    }
    let inverted =
        doc(r#", "autoscale": {"minReplicas": 2, "maxReplicas": 1, "targetInFlight": 1}"#);
    assert!(
        matches!(apply_doc(&mut s, &inverted), Err(Rejection::InvalidArgument(w)) if w.contains("spec.autoscale.maxReplicas"))
    );
    let unknown = doc(r#", "replicaz": 3"#);
    assert!(apply_doc(&mut s, &unknown).is_err());
    let missing = doc("").replace(r#""version": 1"#, r#""version": 7"#);
    assert!(matches!(
        apply_doc(&mut s, &missing),
        Err(Rejection::FailedPrecondition(w)) if w.contains("model/m:7 does not exist")
    ));
    assert_eq!(s, before, "refused specs change nothing");
}

#[test]
fn a_new_deployment_routes_places_and_serves_once_ready() {
    let mut s = cluster();
    assert_eq!(
        apply_doc(&mut s, &doc("")).unwrap(),
        ["deployment_applied", "deployment_revision_created"]
    );
    assert_eq!(advance(&mut s, 10_000), ["deployment_routed"]);
    let port = d(&s).port;
    assert_eq!(port, 20000, "the lowest port free on every node");
    assert_eq!(
        s.node("a").unwrap().leases[&port].holder,
        "deploy/svc",
        "the endpoint port is leased"
    );
    assert_eq!(advance(&mut s, 10_000), ["deployment_replicas_placed"]);
    let rev = &d(&s).revisions[&1];
    assert_eq!(rev.replicas.len(), 2);
    for (i, x) in &rev.replicas {
        assert_eq!(x.gpus.len(), 1);
        assert_ne!(x.port, port, "replica ports differ from the endpoint's");
        let holder = replica_holder("svc", 1, *i);
        assert_eq!(s.node("a").unwrap().allocated_gpus[&x.gpus[0]], holder);
    }
    assert!(
        advance(&mut s, 10_000).is_empty(),
        "nothing due until ready"
    );
    report(&mut s, 10_000, 1, 0, ServingReport::Started { pid: 7 });
    report(&mut s, 10_000, 1, 0, ServingReport::Ready);
    assert_eq!(advance(&mut s, 10_000), ["deployment_traffic_shifted"]);
    assert_eq!(
        weights(&s),
        [(1, 100)],
        "the only revision takes everything"
    );
    // A report for an older attempt is ignored.
    let stale = at(
        10_000,
        body(DeploymentCommand::ReportServing {
            node: "a".into(),
            name: "svc".into(),
            revision: 1,
            index: 1,
            attempt: 9,
            report: ServingReport::Ready,
            token_digest: b"a".to_vec(),
        }),
    );
    assert!(apply(&mut s, &stale).unwrap().is_empty());
    // Another agent's token may not report for node a.
    let forged = at(
        10_000,
        body(DeploymentCommand::ReportServing {
            node: "a".into(),
            name: "svc".into(),
            revision: 1,
            index: 1,
            attempt: 0,
            report: ServingReport::Ready,
            token_digest: b"b".to_vec(),
        }),
    );
    assert!(matches!(
        apply(&mut s, &forged),
        Err(Rejection::PermissionDenied(_))
    ));
}

#[test]
fn a_rolling_update_moves_traffic_only_to_ready_capacity_within_the_surge() {
    let mut s = serving("");
    let v2 = doc("").replace(r#""version": 1"#, r#""version": 2"#);
    assert_eq!(
        apply_doc(&mut s, &v2).unwrap(),
        ["deployment_applied", "deployment_revision_created"]
    );
    assert_eq!(d(&s).rollout.as_ref().map(|r| r.target), Some(2));
    // maxSurge 1: one new replica beside the two old ones.
    assert_eq!(advance(&mut s, 20_000), ["deployment_replicas_placed"]);
    assert_eq!(d(&s).replica_count(), 3);
    assert!(
        advance(&mut s, 20_000).is_empty(),
        "no traffic before ready"
    );
    all_ready(&mut s, 20_000, 2);
    // Half the replicas ready: half the traffic; the old revision keeps what 50% needs.
    assert_eq!(
        advance(&mut s, 20_000),
        ["deployment_traffic_shifted", "deployment_replicas_removed"]
    );
    assert_eq!(weights(&s), [(1, 50), (2, 50)]);
    assert_eq!(d(&s).revisions[&1].replicas.len(), 1);
    assert_eq!(advance(&mut s, 20_000), ["deployment_replicas_placed"]);
    all_ready(&mut s, 20_000, 2);
    assert_eq!(
        advance(&mut s, 20_000),
        [
            "deployment_traffic_shifted",
            "deployment_rollout_completed",
            "deployment_replicas_removed"
        ]
    );
    assert_eq!(weights(&s), [(2, 100)]);
    assert!(d(&s).revisions[&1].replicas.is_empty());
    assert!(d(&s).rollout.is_none());
    let node = s.node("a").unwrap();
    assert_eq!(
        node.allocated_gpus.len(),
        2,
        "old replicas gave their GPUs back"
    );
}

#[test]
fn a_canary_steps_through_its_weights_with_pauses_and_waits_for_promote() {
    let canary = r#", "canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50}]}"#;
    let mut s = serving(canary);
    let v2 = doc(canary).replace(r#""version": 1"#, r#""version": 2"#);
    apply_doc(&mut s, &v2).unwrap();
    assert_eq!(
        advance(&mut s, 20_000),
        ["deployment_replicas_placed", "deployment_waiting"]
    );
    all_ready(&mut s, 20_000, 2);
    assert_eq!(
        advance(&mut s, 20_000),
        [
            "deployment_traffic_shifted",
            "deployment_canary_step",
            "deployment_waiting"
        ]
    );
    assert_eq!(weights(&s), [(1, 90), (2, 10)]);
    assert!(advance(&mut s, 79_999).is_empty(), "the pause is a minute");
    // At 50% the old revision needs one replica of two: the other goes.
    assert_eq!(
        advance(&mut s, 80_000),
        [
            "deployment_traffic_shifted",
            "deployment_canary_step",
            "deployment_replicas_removed"
        ]
    );
    assert_eq!(weights(&s), [(1, 50), (2, 50)]);
    assert_eq!(d(&s).revisions[&1].replicas.len(), 1);
    // The last step has no pause: it waits for promote, and says so; meanwhile the
    // room the old replica left takes a new one.
    assert_eq!(
        advance(&mut s, 999_999),
        ["deployment_replicas_placed", "deployment_waiting"]
    );
    assert!(
        d(&s).waiting.contains("waits for promote"),
        "{}",
        d(&s).waiting
    );
    assert!(advance(&mut s, 999_999).is_empty());
    apply(
        &mut s,
        &cmd(body(DeploymentCommand::Promote { name: "svc".into() })),
    )
    .unwrap();
    settle(&mut s, 1_000_000);
    all_ready(&mut s, 1_000_000, 2);
    settle(&mut s, 1_000_000);
    all_ready(&mut s, 1_000_000, 2);
    settle(&mut s, 1_000_000);
    assert_eq!(weights(&s), [(2, 100)]);
    assert!(d(&s).rollout.is_none() && d(&s).waiting.is_empty());
}

#[test]
fn a_canary_that_never_becomes_ready_moves_no_traffic_and_says_why() {
    let canary = r#", "canary": {"steps": [{"weight": 10, "pause": "1m"}]}"#;
    let mut s = serving(canary);
    let v2 = doc(canary).replace(r#""version": 1"#, r#""version": 2"#);
    apply_doc(&mut s, &v2).unwrap();
    assert_eq!(
        advance(&mut s, 20_000),
        ["deployment_replicas_placed", "deployment_waiting"]
    );
    report(&mut s, 20_000, 2, 0, ServingReport::Started { pid: 9 });
    assert!(
        advance(&mut s, 20_000).is_empty(),
        "the reason has not changed"
    );
    assert_eq!(weights(&s), [(1, 100)], "no traffic moves");
    assert!(
        d(&s)
            .waiting
            .contains("waits for 1 ready replicas of revision 2"),
        "{}",
        d(&s).waiting
    );
    // Past its startup budget (10 min) it is restarted, and still nothing moves.
    assert_eq!(
        advance(&mut s, 20_000 + 600_001),
        ["deployment_replica_restarting"]
    );
    assert_eq!(weights(&s), [(1, 100)]);
    assert_eq!(
        d(&s).revisions[&1].replicas.len(),
        2,
        "the old keeps its capacity"
    );
}

#[test]
fn a_rollback_mid_canary_gives_the_traffic_back_and_removes_the_canary() {
    let canary = r#", "canary": {"steps": [{"weight": 10, "pause": "1h"}]}"#;
    let mut s = serving(canary);
    let v2 = doc(canary).replace(r#""version": 1"#, r#""version": 2"#);
    apply_doc(&mut s, &v2).unwrap();
    advance(&mut s, 20_000);
    all_ready(&mut s, 20_000, 2);
    advance(&mut s, 20_000);
    assert_eq!(weights(&s), [(1, 90), (2, 10)]);
    let rollback = DeploymentCommand::Rollback {
        name: "svc".into(),
        reason: "p99 regression".into(),
    };
    assert_eq!(
        types(&apply(&mut s, &cmd(body(rollback))).unwrap()),
        ["deployment_rollback_started"]
    );
    assert_eq!(
        advance(&mut s, 21_000),
        [
            "deployment_traffic_shifted",
            "deployment_rollout_completed",
            "deployment_replicas_removed"
        ]
    );
    assert_eq!(weights(&s), [(1, 100)]);
    assert!(d(&s).revisions[&2].replicas.is_empty());
    // After a completed rollout, a rollback re-places the previous revision.
    let v2 = doc("").replace(r#""version": 1"#, r#""version": 2"#);
    apply_doc(&mut s, &v2).unwrap();
    for _ in 0..6 {
        settle(&mut s, 30_000);
        all_ready(&mut s, 30_000, 3);
    }
    settle(&mut s, 30_000);
    assert_eq!(weights(&s), [(3, 100)]);
    let rollback = DeploymentCommand::Rollback {
        name: "svc".into(),
        reason: String::new(),
    };
    apply(&mut s, &cmd(body(rollback))).unwrap();
    assert_eq!(d(&s).rollout.as_ref().map(|r| r.target), Some(2));
    for _ in 0..6 {
        settle(&mut s, 40_000);
        all_ready(&mut s, 40_000, 2);
    }
    settle(&mut s, 40_000);
    assert_eq!(weights(&s), [(2, 100)]);
    assert_eq!(d(&s).revisions[&2].model_version, 2);
    assert!(d(&s).revisions[&3].replicas.is_empty());
}

#[test]
fn an_exited_replica_restarts_and_scaling_adds_and_removes_replicas() {
    let mut s = serving("");
    report(
        &mut s,
        11_000,
        1,
        0,
        ServingReport::Exited { code: 1, signal: 0 },
    );
    let x = &d(&s).revisions[&1].replicas[&0];
    assert_eq!((x.phase, x.attempt), (ServingPhase::Pending, 1));
    let scale = |n| {
        body(DeploymentCommand::Scale {
            name: "svc".into(),
            replicas: n,
            reason: String::new(),
            load: None,
        })
    };
    apply(&mut s, &cmd(scale(4))).unwrap();
    assert_eq!(advance(&mut s, 12_000), ["deployment_replicas_placed"]);
    assert_eq!(d(&s).revisions[&1].replicas.len(), 4);
    apply(&mut s, &cmd(scale(1))).unwrap();
    assert_eq!(advance(&mut s, 12_000), ["deployment_replicas_removed"]);
    let left: Vec<u32> = d(&s).revisions[&1].replicas.keys().copied().collect();
    assert_eq!(left, [1], "the unready went first, and the ready one stays");
}

#[test]
fn a_failed_gpu_is_replaced_before_its_replica_is_removed() {
    let mut s = serving("");
    let x = d(&s).revisions[&1].replicas[&0].clone();
    let health = crate::node::GpuHealth {
        uuid: x.gpus[0].clone(),
        healthy: false,
        reason: "xid 79".into(),
        xid: 79,
    };
    let report_health = CommandBody::Node(NodeCommand::ReportGpuHealth {
        node: "a".into(),
        gpus: vec![health],
        token_digest: b"a".to_vec(),
    });
    let events = types(&apply(&mut s, &at(13_000, report_health)).unwrap());
    assert!(events.contains(&"deployment_replica_doomed"), "{events:?}");
    // It still serves; a replacement goes elsewhere first.
    assert_eq!(advance(&mut s, 13_000), ["deployment_replicas_placed"]);
    assert_eq!(d(&s).revisions[&1].replicas.len(), 3);
    assert!(d(&s).revisions[&1].replicas[&0].doomed.is_some());
    all_ready(&mut s, 13_000, 1);
    assert_eq!(advance(&mut s, 13_000), ["deployment_replicas_removed"]);
    let left: Vec<u32> = d(&s).revisions[&1].replicas.keys().copied().collect();
    assert_eq!(left, [1, 2]);
    assert_eq!(weights(&s), [(1, 100)], "traffic never stopped");
}

#[test]
fn a_deployment_following_an_alias_rolls_out_when_the_alias_moves() {
    let mut s = cluster();
    let follow = doc("").replace(r#""version": 1"#, r#""alias": "champion""#);
    apply_doc(&mut s, &follow).unwrap();
    settle(&mut s, 10_000);
    all_ready(&mut s, 10_000, 1);
    settle(&mut s, 10_000);
    assert_eq!(d(&s).revisions[&1].model_version, 1);
    let moved = CommandBody::Model(ModelCommand::SetAlias {
        name: "m".into(),
        alias: "champion".into(),
        version: 2,
        expected: None,
        reason: String::new(),
    });
    apply(&mut s, &cmd(moved)).unwrap();
    assert_eq!(advance(&mut s, 20_000), ["deployment_revision_created"]);
    assert_eq!(d(&s).revisions[&2].model_version, 2);
    assert_eq!(d(&s).revisions[&2].model_uri, "/models/m2.json");
    assert_eq!(d(&s).rollout.as_ref().map(|r| r.target), Some(2));
}

#[test]
fn deleting_gives_back_gpus_and_ports_and_the_name_can_be_used_again() {
    let mut s = serving("");
    apply(
        &mut s,
        &cmd(body(DeploymentCommand::Delete { name: "svc".into() })),
    )
    .unwrap();
    let node = s.node("a").unwrap();
    assert!(node.allocated_gpus.is_empty());
    assert!(node.leases.is_empty());
    assert!(s.deployment("svc").is_none());
    assert_eq!(
        apply_doc(&mut s, &doc("")).unwrap(),
        ["deployment_applied", "deployment_revision_created"]
    );
    assert_eq!(d(&s).revisions.len(), 1);
}

#[test]
fn applying_the_same_spec_twice_changes_nothing() {
    let mut s = serving("");
    assert!(apply_doc(&mut s, &doc("")).unwrap().is_empty());
    let more = doc("").replace(r#""replicas": 2"#, r#""replicas": 3"#);
    assert_eq!(
        apply_doc(&mut s, &more).unwrap(),
        ["deployment_applied", "deployment_scaled"]
    );
}

#[test]
fn the_endpoint_port_is_common_where_it_can_be_and_per_node_where_it_cannot() {
    let mut s = cluster();
    // `b` shares `a`'s port range; `c` has a range of its own.
    register(&mut s, nvswitch("b"));
    let mut c = nvswitch("c");
    (c.port_range_start, c.port_range_end) = (30000, 30099);
    register(&mut s, c);
    apply_doc(&mut s, &doc("")).unwrap();
    settle(&mut s, 10_000);
    let routed: Vec<(&str, u32)> = d(&s)
        .routed_on
        .iter()
        .map(|(n, p)| (n.as_str(), *p))
        .collect();
    assert_eq!(routed, [("a", 20000), ("b", 20000), ("c", 30000)]);
    assert_eq!(d(&s).port, 20000);
    for (node, port) in routed {
        assert_eq!(s.node(node).unwrap().leases[&port].holder, "deploy/svc");
    }
    // A node that joins later takes the common port if it is free there.
    register(&mut s, nvswitch("d"));
    settle(&mut s, 10_000);
    assert_eq!(d(&s).routed_on["d"], 20000);
}

#[test]
fn an_autoscaled_deployment_scales_within_its_bounds_and_keeps_its_count_on_apply() {
    let auto = r#", "autoscale": {"minReplicas": 1, "maxReplicas": 4, "targetInFlight": 2}"#;
    let mut s = serving(auto);
    let scale = |replicas, load| {
        body(DeploymentCommand::Scale {
            name: "svc".into(),
            replicas,
            reason: "r".into(),
            load,
        })
    };
    let figures = ScaleLoad {
        in_flight_milli: 7_000,
        ready: 2,
        target_in_flight: 2,
    };
    // Outside the bounds: refused, by hand or not.
    for replicas in [0, 5] {
        assert!(apply(&mut s, &cmd(scale(replicas, Some(figures)))).is_err());
    }
    let up = apply(&mut s, &cmd(scale(4, Some(figures)))).unwrap();
    assert!(matches!(
        &up[0].payload,
        crate::core::EventPayload::Deployment(DeploymentEvent::Scaled { replicas: 4, load: Some(l), .. })
            if *l == figures
    ));
    assert_eq!(d(&s).replicas, 4);
    // Applying the spec again (another template) keeps the count the load asked for ...
    let changed = doc(auto).replace(r#""command": ["serve"]"#, r#""command": ["serve", "-v"]"#);
    apply_doc(&mut s, &changed).unwrap();
    assert_eq!(d(&s).replicas, 4);
    // ... and narrower bounds bring it within them.
    let narrower = changed.replace(r#""maxReplicas": 4"#, r#""maxReplicas": 3"#);
    assert!(apply_doc(&mut s, &narrower)
        .unwrap()
        .contains(&"deployment_scaled"));
    assert_eq!(d(&s).replicas, 3);
    // Figures for a deployment without autoscale are refused.
    let mut fixed = serving("");
    assert!(matches!(
        apply(&mut fixed, &cmd(scale(3, Some(figures)))),
        Err(Rejection::FailedPrecondition(w)) if w.contains("no spec.autoscale")
    ));
}
