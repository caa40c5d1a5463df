//! Tests of job validation and placement.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::core::{Command, CommandBody, Event, State};
use crate::job::{JobCommand, JobPhase, ReplicaExit, ReplicaId};
use crate::node::{GpuHealth, GpuLink, NodeCommand, NodeInventory, PcieLevel};
use crate::queue::QueueCommand;
use crate::rejection::Rejection;
use crate::testkit::*;

/// The DGX-1 hybrid cube-mesh.
fn cube_mesh(node: &str) -> NodeInventory {
    let nv = [
        (0, 1, 1),
        (0, 2, 1),
        (0, 3, 2),
        (0, 4, 2),
        (1, 2, 2),
        (1, 3, 1),
        (1, 5, 2),
        (2, 3, 2),
        (2, 6, 1),
        (3, 7, 1),
        (4, 5, 1),
        (4, 6, 1),
        (4, 7, 2),
        (5, 6, 2),
        (5, 7, 1),
        (6, 7, 2),
    ];
    let mut links = Vec::new();
    for a in 0..8u32 {
        for b in a + 1..8 {
            let nvlinks = nv.iter().find(|l| l.0 == a && l.1 == b).map_or(0, |l| l.2);
            let pcie = if a / 4 != b / 4 {
                PcieLevel::CrossSocket
            } else if a / 2 == b / 2 {
                PcieLevel::SingleSwitch
            } else {
                PcieLevel::HostBridge
            };
            links.push(GpuLink {
                a,
                b,
                nvlinks,
                pcie,
            });
        }
    }
    inventory(node, 8, links)
}

/// Four GPUs, two PCIe switches of two, one per socket.
fn pcie4(node: &str) -> NodeInventory {
    let mut links = Vec::new();
    for a in 0..4u32 {
        for b in a + 1..4 {
            let pcie = if a / 2 == b / 2 {
                PcieLevel::SingleSwitch
            } else {
                PcieLevel::CrossSocket
            };
            links.push(GpuLink {
                a,
                b,
                nvlinks: 0,
                pcie,
            });
        }
    }
    inventory(node, 4, links)
}

fn spec(name: &str, roles: &[(&str, i64, i64)]) -> String {
    let roles: serde_json::Map<String, serde_json::Value> = roles
        .iter()
        .map(|(r, replicas, gpus)| {
            (
                r.to_string(),
                serde_json::json!({"replicas": replicas, "gpus": gpus, "command": ["python3", "-c", "pass"]}),
            )
        })
        .collect();
    serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"framework": "pytorch", "roles": roles},
    })
    .to_string()
}

fn submit(state: &mut State, json: String) -> Result<Vec<Event>, Rejection> {
    apply(state, &cmd(job_body(&json)?))
}

fn gpu_indexes(state: &State, job: &str) -> Vec<Vec<String>> {
    state
        .job(job)
        .expect("job")
        .placements
        .iter()
        .map(|p| p.gpus.clone())
        .collect()
}

#[test]
fn a_bad_spec_is_refused_with_field_paths_and_leaves_nothing() {
    let mut s = State::new();
    let bad = spec("mnist", &[("worker", 2, -1)]);
    let err = submit(&mut s, bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.roles.worker.gpus: must be >= 0"),
        "{err}"
    );
    let unknown = spec("mnist", &[("worker", 1, 1)]).replace("\"gpus\"", "\"gpu\"");
    let err = submit(&mut s, unknown).unwrap_err();
    assert!(err.to_string().contains("spec.roles.worker"), "{err}");
    assert!(err.to_string().contains("unknown field `gpu`"), "{err}");
    let wrong_role = spec("mnist", &[("launcher", 1, 0)]);
    assert!(submit(&mut s, wrong_role)
        .unwrap_err()
        .to_string()
        .contains("spec.roles.launcher: not a role"));
    let none = spec("mnist", &[("worker", 1, 1)]).replace(
        "\"framework\":\"pytorch\"",
        "\"framework\":\"pytorch\",\"runPolicy\":{\"cleanPodPolicy\":\"None\"}",
    );
    assert!(submit(&mut s, none)
        .unwrap_err()
        .to_string()
        .contains("spec.runPolicy.cleanPodPolicy"));
    assert_eq!(s.last_sequence(), 0, "a rejected job leaves nothing");
}

#[test]
fn two_gpus_on_the_cube_mesh_get_a_double_nvlink_pair() {
    let mut s = State::new();
    register(&mut s, cube_mesh("cube"));
    submit(&mut s, spec("pair", &[("master", 1, 2)])).unwrap();
    let gpus = &gpu_indexes(&s, "pair")[0];
    let pairs_with_two = [
        (0, 3),
        (0, 4),
        (1, 2),
        (1, 5),
        (2, 3),
        (4, 7),
        (5, 6),
        (6, 7),
    ];
    let idx: Vec<u32> = gpus
        .iter()
        .map(|g| g.trim_start_matches("cube-gpu").parse().unwrap())
        .collect();
    assert!(pairs_with_two.contains(&(idx[0], idx[1])), "{idx:?}");
    // The best of them also shares a PCIe switch: GPUs 2 and 3 (2 NVLinks + PIX).
    assert_eq!(idx, [2, 3]);
    assert_eq!(s.job("pair").unwrap().placements[0].score, 250);
}

#[test]
fn two_gpus_on_the_pcie_node_stay_behind_one_switch() {
    let mut s = State::new();
    register(&mut s, pcie4("pcie"));
    submit(&mut s, spec("a", &[("master", 1, 2)])).unwrap();
    submit(&mut s, spec("b", &[("master", 1, 2)])).unwrap();
    let a = &gpu_indexes(&s, "a")[0];
    let b = &gpu_indexes(&s, "b")[0];
    assert_eq!(a, &["pcie-gpu0", "pcie-gpu1"]);
    assert_eq!(b, &["pcie-gpu2", "pcie-gpu3"]);
}

#[test]
fn a_gang_is_all_or_nothing_and_waits_with_a_reason() {
    let mut s = State::new();
    register(&mut s, nvswitch("n1"));
    register(&mut s, nvswitch("n2"));
    let ev = submit(&mut s, spec("big", &[("master", 1, 8), ("worker", 2, 8)])).unwrap();
    assert_eq!(ev.last().unwrap().payload.type_name(), "job_waiting");
    let j = s.job("big").unwrap();
    assert_eq!(j.phase, JobPhase::Queued);
    assert!(j.reason.contains("needs 24 GPUs in all"), "{}", j.reason);
    assert!(
        s.nodes().values().all(|n| n.allocated_gpus.is_empty()),
        "nothing held"
    );
    // A smaller job backfills.
    submit(&mut s, spec("small", &[("master", 1, 8), ("worker", 1, 8)])).unwrap();
    assert_eq!(s.job("small").unwrap().phase, JobPhase::Scheduled);
    // Cancelling it frees the GPUs; a scheduling pass still cannot fit the big one.
    apply(
        &mut s,
        &cmd(CommandBody::Job(JobCommand::Cancel {
            name: "small".into(),
            reason: String::new(),
        })),
    )
    .unwrap();
    assert!(s.nodes().values().all(|n| n.allocated_gpus.is_empty()));
    let ev = apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    assert!(ev.is_empty(), "same reason, no new event: {ev:?}");
    // A third node arrives: the next pass places the gang.
    register(&mut s, nvswitch("n3"));
    let ev = apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(s.job("big").unwrap().placements.len(), 3);
}

#[test]
fn unhealthy_cordoned_and_lost_gpus_are_never_chosen() {
    let mut s = State::new();
    register(&mut s, pcie4("p1"));
    register(&mut s, pcie4("p2"));
    apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::ReportGpuHealth {
            node: "p1".into(),
            gpus: vec![GpuHealth {
                uuid: "p1-gpu0".into(),
                healthy: false,
                reason: "xid 79".into(),
                xid: 79,
            }],
            token_digest: b"p1".to_vec(),
        })),
    )
    .unwrap();
    apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::Cordon {
            node: "p1".into(),
            gpu_uuid: Some("p1-gpu1".into()),
            reason: String::new(),
            drain: false,
        })),
    )
    .unwrap();
    apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::MarkLost {
            node: "p2".into(),
            last_heartbeat_ms: 0,
            grace_ms: 1,
        })),
    )
    .unwrap();
    submit(&mut s, spec("j", &[("master", 1, 2)])).unwrap();
    assert_eq!(gpu_indexes(&s, "j")[0], ["p1-gpu2", "p1-gpu3"]);
    submit(&mut s, spec("k", &[("master", 1, 1)])).unwrap();
    assert_eq!(
        s.job("k").unwrap().phase,
        JobPhase::Queued,
        "nothing healthy is left"
    );
}

#[test]
fn best_fit_keeps_whole_nodes_free() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    register(&mut s, nvswitch("b"));
    submit(&mut s, spec("six", &[("master", 1, 6)])).unwrap();
    let six = s.job("six").unwrap().placements[0].node.clone();
    submit(&mut s, spec("one", &[("master", 1, 1)])).unwrap();
    assert_eq!(
        s.job("one").unwrap().placements[0].node,
        six,
        "packed beside the 6-GPU job"
    );
    submit(&mut s, spec("eight", &[("master", 1, 8)])).unwrap();
    assert_eq!(
        s.job("eight").unwrap().phase,
        JobPhase::Scheduled,
        "a whole node stayed free"
    );
}

#[test]
fn host_network_replicas_get_leased_ports_released_on_cancel() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let json = spec("net", &[("master", 1, 1), ("worker", 2, 1)]).replace(
        "\"framework\":\"pytorch\"",
        "\"framework\":\"pytorch\",\"hostNetwork\":{\"portsPerReplica\":2}",
    );
    submit(&mut s, json).unwrap();
    let ports: Vec<u32> = s
        .job("net")
        .unwrap()
        .placements
        .iter()
        .flat_map(|p| p.ports.clone())
        .collect();
    assert_eq!(ports.len(), 6);
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 6);
    assert_eq!(s.node("a").unwrap().leases.len(), 6);
    apply(
        &mut s,
        &cmd(CommandBody::Job(JobCommand::Cancel {
            name: "net".into(),
            reason: String::new(),
        })),
    )
    .unwrap();
    assert!(s.node("a").unwrap().leases.is_empty());
}

proptest! {
    /// Random submissions and cancellations never double-book a GPU or a port, and the
    /// same commands always give the same placements.
    #[test]
    fn placement_never_double_books(ops in proptest::collection::vec((0u8..10, 1i64..4, 0i64..5, any::<bool>()), 1..40)) {
        let run = || {
            let mut s = State::new();
            register(&mut s, cube_mesh("c"));
            register(&mut s, pcie4("p"));
            register(&mut s, nvswitch("n"));
            for (job, replicas, gpus, cancel) in &ops {
                let name = format!("j{job}");
                if *cancel {
                    let _ = apply(&mut s, &cmd(CommandBody::Job(JobCommand::Cancel { name, reason: String::new() })));
                    let _ = apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule)));
                } else {
                    let json = spec(&name, &[("worker", *replicas, *gpus)]).replace(
                        "\"framework\":\"pytorch\"",
                        "\"framework\":\"pytorch\",\"hostNetwork\":{\"portsPerReplica\":1}",
                    );
                    let _ = submit(&mut s, json);
                }
                let mut gpus_seen = BTreeSet::new();
                let mut ports_seen = BTreeSet::new();
                for j in s.jobs().values().filter(|j| j.phase == JobPhase::Scheduled) {
                    prop_assert_eq!(j.placements.len(), j.replicas().len(), "gang");
                    for p in &j.placements {
                        for g in &p.gpus {
                            prop_assert!(gpus_seen.insert(g.clone()), "GPU {} twice", g);
                        }
                        for port in &p.ports {
                            prop_assert!(ports_seen.insert((p.node.clone(), *port)), "port twice");
                        }
                    }
                }
            }
            Ok(s)
        };
        let a = run()?;
        let b = run()?;
        prop_assert_eq!(a, b);
    }
}

fn report(
    node: &str,
    job: &str,
    role: &str,
    index: u32,
    attempt: u32,
    exit: Option<i32>,
) -> Command {
    cmd(CommandBody::Job(JobCommand::ReportReplica {
        node: node.into(),
        job: job.into(),
        replica: ReplicaId {
            role: role.into(),
            index,
        },
        attempt,
        pid: 100,
        exit: exit.map(|code| ReplicaExit {
            code,
            signal: 0,
            oom: false,
        }),
        outputs: Default::default(),
        token_digest: node.as_bytes().to_vec(),
    }))
}

#[test]
fn a_job_runs_when_all_replicas_start_and_succeeds_with_its_master() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    submit(&mut s, spec("ddp", &[("master", 1, 1), ("worker", 2, 1)])).unwrap();
    assert_eq!(
        types(&apply(&mut s, &report("a", "ddp", "master", 0, 0, None)).unwrap()),
        ["replica_started"]
    );
    apply(&mut s, &report("a", "ddp", "worker", 0, 0, None)).unwrap();
    let ev = apply(&mut s, &report("a", "ddp", "worker", 1, 0, None)).unwrap();
    assert_eq!(types(&ev), ["replica_started", "job_running"]);
    // A duplicate report changes nothing.
    assert!(apply(&mut s, &report("a", "ddp", "worker", 1, 0, None))
        .unwrap()
        .is_empty());
    // Workers ending first do not end the job; the master does.
    assert_eq!(
        types(&apply(&mut s, &report("a", "ddp", "worker", 0, 0, Some(0))).unwrap()),
        ["replica_exited"]
    );
    let ev = apply(&mut s, &report("a", "ddp", "master", 0, 0, Some(0))).unwrap();
    assert_eq!(types(&ev), ["replica_exited", "job_succeeded"]);
    assert_eq!(s.job("ddp").unwrap().phase, JobPhase::Succeeded);
    assert!(
        s.node("a").unwrap().allocated_gpus.is_empty(),
        "GPUs given back"
    );
    // Late reports about an ended job change nothing.
    assert!(apply(&mut s, &report("a", "ddp", "worker", 1, 0, Some(0)))
        .unwrap()
        .is_empty());
}

#[test]
fn on_failure_restarts_until_the_backoff_limit_then_fails() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let json = spec("flaky", &[("worker", 1, 1)]).replace(
        "\"framework\":\"pytorch\"",
        "\"framework\":\"pytorch\",\"runPolicy\":{\"backoffLimit\":2}",
    );
    submit(&mut s, json).unwrap();
    for attempt in 0..2 {
        apply(&mut s, &report("a", "flaky", "worker", 0, attempt, None)).unwrap();
        let ev = apply(&mut s, &report("a", "flaky", "worker", 0, attempt, Some(1))).unwrap();
        assert_eq!(types(&ev), ["replica_exited", "replica_restarting"]);
    }
    // A report about an old attempt is ignored.
    assert!(
        apply(&mut s, &report("a", "flaky", "worker", 0, 0, Some(1)))
            .unwrap()
            .is_empty()
    );
    apply(&mut s, &report("a", "flaky", "worker", 0, 2, None)).unwrap();
    let ev = apply(&mut s, &report("a", "flaky", "worker", 0, 2, Some(1))).unwrap();
    assert_eq!(types(&ev), ["replica_exited", "job_failed"]);
    let j = s.job("flaky").unwrap();
    assert_eq!(j.phase, JobPhase::Failed);
    let kinds: Vec<&str> = j.conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Created",
            "Queued",
            "Scheduled",
            "Running",
            "Restarting",
            "Running",
            "Restarting",
            "Running",
            "Failed"
        ]
    );
    assert!(j.reason.contains("backoff limit 2"), "{}", j.reason);
}

#[test]
fn exit_code_policy_retries_only_signals_and_high_codes() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let json = spec("ec", &[("worker", 1, 1)])
        .replace("\"command\"", "\"restartPolicy\":\"ExitCode\",\"command\"");
    submit(&mut s, json).unwrap();
    apply(&mut s, &report("a", "ec", "worker", 0, 0, None)).unwrap();
    let ev = apply(&mut s, &report("a", "ec", "worker", 0, 0, Some(137))).unwrap();
    assert_eq!(types(&ev), ["replica_exited", "replica_restarting"]);
    apply(&mut s, &report("a", "ec", "worker", 0, 1, None)).unwrap();
    let ev = apply(&mut s, &report("a", "ec", "worker", 0, 1, Some(2))).unwrap();
    assert_eq!(
        types(&ev),
        ["replica_exited", "job_failed"],
        "code 2 is permanent"
    );
}

#[test]
fn only_the_node_running_a_replica_may_report_it() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    register(&mut s, nvswitch("b"));
    submit(&mut s, spec("j", &[("worker", 1, 8)])).unwrap();
    let on = s.job("j").unwrap().placements[0].node.clone();
    let other = if on == "a" { "b" } else { "a" };
    assert!(
        apply(&mut s, &report(other, "j", "worker", 0, 0, None))
            .unwrap()
            .is_empty(),
        "another node's report about the replica changes nothing"
    );
    let mut forged = report(&on, "j", "worker", 0, 0, None);
    if let CommandBody::Job(JobCommand::ReportReplica { token_digest, .. }) = &mut forged.body {
        *token_digest = b"forged".to_vec();
    }
    assert!(matches!(
        apply(&mut s, &forged),
        Err(Rejection::PermissionDenied(_))
    ));
}

#[test]
fn a_job_on_a_failed_gpu_is_placed_again_on_healthy_ones() {
    let mut s = State::new();
    register(&mut s, pcie4("p1"));
    register(&mut s, pcie4("p2"));
    submit(&mut s, spec("j", &[("worker", 1, 2)])).unwrap();
    let first = s.job("j").unwrap().placements[0].clone();
    apply(&mut s, &report(&first.node, "j", "worker", 0, 0, None)).unwrap();
    // --- an XID on one of its GPUs
    let ev = apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::ReportGpuHealth {
            node: first.node.clone(),
            gpus: vec![GpuHealth {
                uuid: first.gpus[0].clone(),
                healthy: false,
                reason: "xid 79".into(),
                xid: 79,
            }],
            token_digest: first.node.as_bytes().to_vec(),
        })),
    )
    .unwrap();
    assert_eq!(types(&ev), ["gpu_health_changed", "job_requeued"]);
    let j = s.job("j").unwrap();
    assert_eq!((j.phase, j.restarts), (JobPhase::Queued, 1));
    assert!(j.reason.contains("xid 79"), "{}", j.reason);
    // A late exit report about the first run changes nothing.
    assert!(
        apply(&mut s, &report(&first.node, "j", "worker", 0, 0, Some(137)))
            .unwrap()
            .is_empty()
    );
    // --- the next pass places it on healthy GPUs, as a new attempt
    apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    let j = s.job("j").unwrap();
    assert_eq!(j.phase, JobPhase::Scheduled);
    assert!(
        !j.placements[0].gpus.contains(&first.gpus[0]),
        "not the failed GPU"
    );
    assert_eq!(j.replicas.values().next().map(|r| r.attempt), Some(1));
}

#[test]
fn lost_and_drained_nodes_give_their_jobs_back_to_the_queue() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    submit(&mut s, spec("j", &[("worker", 1, 1)])).unwrap();
    let ev = apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::Cordon {
            node: "a".into(),
            gpu_uuid: None,
            reason: "maintenance".into(),
            drain: true,
        })),
    )
    .unwrap();
    assert_eq!(types(&ev), ["node_cordoned", "job_requeued"]);
    assert!(s.node("a").unwrap().allocated_gpus.is_empty());
    apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::Uncordon {
            node: "a".into(),
            gpu_uuid: None,
        })),
    )
    .unwrap();
    apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    assert_eq!(s.job("j").unwrap().phase, JobPhase::Scheduled);
    let ev = apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::MarkLost {
            node: "a".into(),
            last_heartbeat_ms: 0,
            grace_ms: 1,
        })),
    )
    .unwrap();
    assert_eq!(types(&ev), ["node_lost", "job_requeued"]);
}

#[test]
fn start_order_defaults_per_framework_and_cycles_are_refused() {
    let doc = |fw: &str, roles: &[&str], deps: Option<serde_json::Value>| {
        let roles: serde_json::Map<String, serde_json::Value> = roles
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    serde_json::json!({"replicas": 1, "command": ["x"]}),
                )
            })
            .collect();
        let mut spec = serde_json::json!({"framework": fw, "roles": roles});
        if let Some(d) = deps {
            spec["dependsOn"] = d;
        }
        serde_json::json!({"apiVersion": "cairn.dev/v1", "kind": "TrainingJob", "metadata": {"name": "j"}, "spec": spec}).to_string()
    };
    let deps = |json: String| crate::job::parse(&json).map(|d| d.spec.dependencies());
    assert_eq!(
        deps(doc("pytorch", &["master", "worker"], None)).unwrap(),
        BTreeMap::from([("worker".to_string(), vec!["master".to_string()])])
    );
    assert_eq!(
        deps(doc("mpi", &["launcher", "worker"], None)).unwrap(),
        BTreeMap::from([("launcher".to_string(), vec!["worker".to_string()])])
    );
    assert!(
        deps(doc("tensorflow", &["worker"], None))
            .unwrap()
            .is_empty(),
        "no ps, no order"
    );
    let custom = serde_json::json!({"master": ["worker"]});
    assert_eq!(
        deps(doc("pytorch", &["master", "worker"], Some(custom)))
            .unwrap()
            .len(),
        1
    );
    let cycle = serde_json::json!({"master": ["worker"], "worker": ["master"]});
    let err = deps(doc("pytorch", &["master", "worker"], Some(cycle))).unwrap_err();
    assert!(err.iter().any(|e| e.contains("cycle")), "{err:?}");
}

#[test]
fn a_job_past_its_active_deadline_fails_and_frees_its_gpus() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let json = spec("slow", &[("worker", 1, 2)]).replace(
        "\"framework\":\"pytorch\"",
        "\"framework\":\"pytorch\",\"runPolicy\":{\"activeDeadlineSeconds\":60}",
    );
    submit(&mut s, json).unwrap();
    let submitted = s.job("slow").unwrap().submitted_ms;
    let enforce = |ts| {
        at(
            ts,
            CommandBody::Job(JobCommand::EnforceDeadline {
                name: "slow".into(),
            }),
        )
    };
    assert!(
        apply(&mut s, &enforce(submitted + 60_000))
            .unwrap()
            .is_empty(),
        "not past it yet"
    );
    let ev = apply(&mut s, &enforce(submitted + 60_001)).unwrap();
    assert_eq!(types(&ev), ["job_failed"]);
    assert!(s
        .job("slow")
        .unwrap()
        .reason
        .starts_with("DeadlineExceeded"));
    assert!(s.node("a").unwrap().allocated_gpus.is_empty());
    assert!(
        apply(&mut s, &enforce(submitted + 90_000))
            .unwrap()
            .is_empty(),
        "once"
    );
}

#[test]
fn a_queue_quota_caps_the_gpus_its_jobs_hold() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    apply(
        &mut s,
        &cmd(CommandBody::Queue(QueueCommand::SetQuota {
            queue: "research".into(),
            gpus: Some(4),
        })),
    )
    .unwrap();
    let in_queue = |name: &str, gpus: i64| {
        spec(name, &[("worker", 1, gpus)]).replace(
            "\"framework\":\"pytorch\"",
            "\"framework\":\"pytorch\",\"scheduling\":{\"queue\":\"research\"}",
        )
    };
    submit(&mut s, in_queue("a", 3)).unwrap();
    assert_eq!(s.job("a").unwrap().phase, JobPhase::Scheduled);
    submit(&mut s, in_queue("b", 2)).unwrap();
    let b = s.job("b").unwrap();
    assert_eq!(b.phase, JobPhase::Queued, "3 + 2 > 4");
    assert!(b.reason.contains("quota"), "{}", b.reason);
    // Another queue is not limited by it.
    submit(&mut s, spec("c", &[("worker", 1, 2)])).unwrap();
    assert_eq!(s.job("c").unwrap().phase, JobPhase::Scheduled);
    // Raising the quota lets the next pass place it.
    apply(
        &mut s,
        &cmd(CommandBody::Queue(QueueCommand::SetQuota {
            queue: "research".into(),
            gpus: Some(5),
        })),
    )
    .unwrap();
    apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    assert_eq!(s.job("b").unwrap().phase, JobPhase::Scheduled);
    assert_eq!(s.queue_usage()["research"], 5);
}

#[test]
fn without_gang_a_job_takes_what_fits_and_gets_the_rest_later() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    register(&mut s, nvswitch("b"));
    let json = spec("loose", &[("worker", 3, 8)]).replace(
        "\"framework\":\"pytorch\"",
        "\"framework\":\"pytorch\",\"scheduling\":{\"gang\":false}",
    );
    submit(&mut s, json).unwrap();
    let j = s.job("loose").unwrap();
    assert_eq!(
        (j.phase, j.placements.len()),
        (JobPhase::Scheduled, 2),
        "two of three placed"
    );
    assert_eq!(s.queue().len(), 1, "still waiting for its third replica");
    // Two replicas start: the job does not run until all three do.
    for i in 0..2 {
        let node = s.job("loose").unwrap().placements[i].node.clone();
        let ev = apply(&mut s, &report(&node, "loose", "worker", i as u32, 0, None)).unwrap();
        assert_eq!(types(&ev), ["replica_started"]);
    }
    register(&mut s, nvswitch("c"));
    apply(&mut s, &cmd(CommandBody::Job(JobCommand::Schedule))).unwrap();
    let j = s.job("loose").unwrap();
    assert_eq!(j.placements.len(), 3);
    assert!(s.queue().is_empty());
    let ev = apply(&mut s, &report("c", "loose", "worker", 2, 0, None)).unwrap();
    assert_eq!(types(&ev), ["replica_started", "job_running"]);
}

#[test]
fn a_node_failure_fails_a_job_whose_replica_must_never_restart() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let json = spec("once", &[("worker", 1, 1)])
        .replace("\"command\"", "\"restartPolicy\":\"Never\",\"command\"");
    submit(&mut s, json).unwrap();
    let lost = CommandBody::Node(NodeCommand::MarkLost {
        node: "a".into(),
        last_heartbeat_ms: 0,
        grace_ms: 1,
    });
    let ev = apply(&mut s, &cmd(lost)).unwrap();
    assert_eq!(types(&ev), ["node_lost", "job_failed"]);
    assert!(s
        .job("once")
        .unwrap()
        .reason
        .contains("restart policy Never"));
}
