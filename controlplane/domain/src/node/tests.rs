//! Tests of node, GPU health and port lease decisions.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::core::{decide, Command, CommandBody, Event, EventPayload, State};
use crate::entity::Position;
use crate::rejection::Rejection;

fn cmd_at(ts: i64, body: CommandBody) -> Command {
    Command {
        timestamp_ms: ts,
        actor: "node/n1".into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: "c".into(),
        expected_revision: None,
        body,
    }
}

fn cmd(body: CommandBody) -> Command {
    cmd_at(1_000, body)
}

fn apply(state: &mut State, c: &Command) -> Result<Vec<Event>, Rejection> {
    let pos = Position {
        raft_index: state.last_sequence() + 1,
        raft_term: 1,
    };
    let events = decide(state, c, pos)?;
    for e in &events {
        state.evolve(e);
    }
    Ok(events)
}

fn inventory(gpus: u32, ports: (u32, u32)) -> NodeInventory {
    NodeInventory {
        hostname: "n1".into(),
        gpus: (0..gpus)
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("GPU-{i}"),
                name: "sim".into(),
                ..GpuInfo::default()
            })
            .collect(),
        port_range_start: ports.0,
        port_range_end: ports.1,
        ..NodeInventory::default()
    }
}

fn register(node: &str, inv: NodeInventory, token: &[u8]) -> Command {
    cmd(CommandBody::Node(NodeCommand::Register {
        node: node.into(),
        inventory: Box::new(inv),
        token_digest: token.to_vec(),
    }))
}

fn health(uuid: &str, healthy: bool, xid: u32) -> GpuHealth {
    GpuHealth {
        uuid: uuid.into(),
        healthy,
        reason: if healthy {
            "recovered".into()
        } else {
            format!("xid {xid}")
        },
        xid,
    }
}

fn report(node: &str, gpus: Vec<GpuHealth>, token: &[u8]) -> Command {
    cmd(CommandBody::Node(NodeCommand::ReportGpuHealth {
        node: node.into(),
        gpus,
        token_digest: token.to_vec(),
    }))
}

fn acquire(holder: &str, count: u32) -> Command {
    cmd(CommandBody::Node(NodeCommand::AcquirePortLeases {
        node: "n1".into(),
        holder: holder.into(),
        count,
        ttl_ms: 10_000,
    }))
}

#[test]
fn registration_binds_the_token_and_only_changes_make_events() {
    let mut s = State::new();
    assert_eq!(
        apply(&mut s, &register("n1", inventory(8, (20000, 20010)), b"t1"))
            .unwrap()
            .len(),
        1
    );
    // The same inventory again (an agent restart): nothing new.
    assert!(
        apply(&mut s, &register("n1", inventory(8, (20000, 20010)), b"t1"))
            .unwrap()
            .is_empty()
    );
    // Another agent claiming the node is refused.
    let denied = apply(&mut s, &register("n1", inventory(8, (20000, 20010)), b"t2")).unwrap_err();
    assert!(
        matches!(denied, Rejection::PermissionDenied(_)),
        "{denied:?}"
    );
    // A changed inventory is recorded.
    let ev = apply(&mut s, &register("n1", inventory(4, (20000, 20010)), b"t1")).unwrap();
    assert_eq!(ev[0].payload.type_name(), "node_registered");
    assert_eq!(s.node("n1").unwrap().inventory.gpus.len(), 4);
    // No token at all is refused too.
    assert!(matches!(
        apply(&mut s, &register("n2", inventory(1, (20000, 20010)), b"")),
        Err(Rejection::PermissionDenied(_))
    ));
}

#[test]
fn gpu_health_changes_only_on_change_and_recovers() {
    let mut s = State::new();
    apply(&mut s, &register("n1", inventory(2, (20000, 20010)), b"t")).unwrap();
    let all_healthy = vec![health("GPU-0", true, 0), health("GPU-1", true, 0)];
    assert!(apply(&mut s, &report("n1", all_healthy.clone(), b"t"))
        .unwrap()
        .is_empty());
    let xid = vec![health("GPU-0", true, 0), health("GPU-1", false, 79)];
    let ev = apply(&mut s, &report("n1", xid.clone(), b"t")).unwrap();
    assert_eq!(ev.len(), 1);
    assert!(!s.node("n1").unwrap().gpu_health("GPU-1").healthy);
    assert!(apply(&mut s, &report("n1", xid, b"t")).unwrap().is_empty());
    let ev = apply(&mut s, &report("n1", all_healthy, b"t")).unwrap();
    assert_eq!(ev.len(), 1, "recovery is an event");
    assert!(s.node("n1").unwrap().gpu_health("GPU-1").healthy);
    // Reports about another node, or an unknown GPU, are refused.
    assert!(matches!(
        apply(
            &mut s,
            &report("n1", vec![health("GPU-0", false, 48)], b"other")
        ),
        Err(Rejection::PermissionDenied(_))
    ));
    assert!(matches!(
        apply(
            &mut s,
            &report("n1", vec![health("GPU-9", false, 48)], b"t")
        ),
        Err(Rejection::InvalidArgument(_))
    ));
}

#[test]
fn lost_and_recovered_are_recorded_once() {
    let mut s = State::new();
    apply(&mut s, &register("n1", inventory(1, (20000, 20010)), b"t")).unwrap();
    let lost = cmd(CommandBody::Node(NodeCommand::MarkLost {
        node: "n1".into(),
        last_heartbeat_ms: 500,
        grace_ms: 10_000,
    }));
    assert_eq!(apply(&mut s, &lost).unwrap().len(), 1);
    assert!(apply(&mut s, &lost).unwrap().is_empty());
    assert!(s.node("n1").unwrap().lost);
    let back = cmd(CommandBody::Node(NodeCommand::MarkRecovered {
        node: "n1".into(),
    }));
    assert_eq!(apply(&mut s, &back).unwrap().len(), 1);
    assert!(apply(&mut s, &back).unwrap().is_empty());
    assert!(!s.node("n1").unwrap().lost);
}

#[test]
fn cordons_of_nodes_and_gpus() {
    let mut s = State::new();
    apply(&mut s, &register("n1", inventory(2, (20000, 20010)), b"t")).unwrap();
    let cordon = |gpu: Option<&str>, drain| {
        cmd(CommandBody::Node(NodeCommand::Cordon {
            node: "n1".into(),
            gpu_uuid: gpu.map(str::to_string),
            reason: "maintenance".into(),
            drain,
        }))
    };
    assert_eq!(apply(&mut s, &cordon(None, false)).unwrap().len(), 1);
    assert!(apply(&mut s, &cordon(None, false)).unwrap().is_empty());
    assert_eq!(
        apply(&mut s, &cordon(None, true)).unwrap().len(),
        1,
        "a drain is news"
    );
    assert_eq!(
        apply(&mut s, &cordon(Some("GPU-1"), false)).unwrap().len(),
        1
    );
    assert!(matches!(
        apply(&mut s, &cordon(Some("GPU-7"), false)),
        Err(Rejection::NotFound(_))
    ));
    let n = s.node("n1").unwrap();
    assert!(n.cordon.as_ref().is_some_and(|c| c.drain));
    assert!(n.cordoned_gpus.contains("GPU-1"));
    let uncordon = cmd(CommandBody::Node(NodeCommand::Uncordon {
        node: "n1".into(),
        gpu_uuid: None,
    }));
    assert_eq!(apply(&mut s, &uncordon).unwrap().len(), 1);
    assert!(s.node("n1").unwrap().cordon.is_none());
    assert!(s.node("n1").unwrap().cordoned_gpus.contains("GPU-1"));
}

#[test]
fn leases_take_the_lowest_free_ports_and_expire() {
    let mut s = State::new();
    apply(&mut s, &register("n1", inventory(1, (20000, 20004)), b"t")).unwrap();
    apply(&mut s, &acquire("job-a/0", 2)).unwrap();
    apply(&mut s, &acquire("job-b/0", 2)).unwrap();
    let n = s.node("n1").unwrap();
    assert_eq!(n.ports_of("job-a/0"), [20000, 20001]);
    assert_eq!(n.ports_of("job-b/0"), [20002, 20003]);
    assert!(matches!(
        apply(&mut s, &acquire("job-a/0", 1)),
        Err(Rejection::AlreadyExists(_))
    ));
    assert!(matches!(
        apply(&mut s, &acquire("job-c/0", 2)),
        Err(Rejection::FailedPrecondition(_))
    ));
    // Released ports are reused.
    apply(
        &mut s,
        &cmd(CommandBody::Node(NodeCommand::ReleasePortLeases {
            node: "n1".into(),
            holder: "job-a/0".into(),
        })),
    )
    .unwrap();
    apply(&mut s, &acquire("job-c/0", 3)).unwrap();
    assert_eq!(
        s.node("n1").unwrap().ports_of("job-c/0"),
        [20000, 20001, 20004]
    );
    // The agent renews; only what is past its expiry is reclaimed.
    let renew = cmd_at(
        5_000,
        CommandBody::Node(NodeCommand::RenewPortLeases {
            node: "n1".into(),
            ttl_ms: 10_000,
            token_digest: b"t".to_vec(),
        }),
    );
    apply(&mut s, &renew).unwrap();
    assert!(apply(
        &mut s,
        &cmd_at(14_999, CommandBody::Node(NodeCommand::ExpirePortLeases))
    )
    .unwrap()
    .is_empty());
    let ev = apply(
        &mut s,
        &cmd_at(15_000, CommandBody::Node(NodeCommand::ExpirePortLeases)),
    )
    .unwrap();
    assert_eq!(ev.len(), 2, "one release per holder: {ev:?}");
    assert!(s.node("n1").unwrap().leases.is_empty());
}

#[test]
fn a_violation_names_the_lessee() {
    let mut s = State::new();
    apply(&mut s, &register("n1", inventory(1, (20000, 20004)), b"t")).unwrap();
    apply(&mut s, &acquire("job-a/0", 1)).unwrap();
    let violation = |port| {
        cmd(CommandBody::Node(NodeCommand::ReportPortViolation {
            node: "n1".into(),
            port,
            pid: 42,
            process: "nc".into(),
            token_digest: b"t".to_vec(),
        }))
    };
    let ev = apply(&mut s, &violation(20000)).unwrap();
    assert!(
        matches!(&ev[0].payload, EventPayload::Node(NodeEvent::PortLeaseViolation { holder, .. }) if holder == "job-a/0")
    );
    assert!(matches!(
        apply(&mut s, &violation(20001)),
        Err(Rejection::InvalidArgument(_))
    ));
    assert_eq!(s.node("n1").unwrap().violations, 1);
}

proptest! {
    /// Any sequence of acquisitions and releases never leases one port twice, and the
    /// same sequence always gives the same leases.
    #[test]
    fn leases_never_collide(ops in proptest::collection::vec((0u8..12, 1u32..5, any::<bool>()), 1..80)) {
        let run = || {
            let mut s = State::new();
            apply(&mut s, &register("n1", inventory(1, (20000, 20031)), b"t")).unwrap();
            for (holder, count, release) in &ops {
                let holder = format!("h{holder}");
                let c = if *release {
                    cmd(CommandBody::Node(NodeCommand::ReleasePortLeases { node: "n1".into(), holder }))
                } else {
                    acquire(&holder, *count)
                };
                let _ = apply(&mut s, &c);
                let n = s.node("n1").unwrap();
                let mut seen = BTreeSet::new();
                for port in n.leases.keys() {
                    prop_assert!(seen.insert(*port));
                    prop_assert!((20000..=20031).contains(port));
                }
            }
            Ok(s)
        };
        let a = run()?;
        let b = run()?;
        prop_assert_eq!(a, b);
    }
}
