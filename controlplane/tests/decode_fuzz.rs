//! Arbitrary bytes against every decoder at the edge: the protobuf requests and events,
//! the Raft transport's messages, and the conversions into the domain. Each must answer
//! with a typed error or a value, never panic.

use cairn_controlplane::convert::FromPb;
use cairn_controlplane::raft::{NodeId, TypeConfig};
use cairn_domain::{Command, Event};
use cairn_proto as pb;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use proptest::prelude::*;
use prost::Message;

/// Bytes that are sometimes valid protobuf: random bytes, or a valid message with
/// random bytes spliced in.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "a".into(),
            expected_revision: Some(3),
            body: Some(pb::command::Body::AddNote(pb::AddNote {
                entity: Some(pb::EntityRef {
                    kind: "namespace".into(),
                    name: "x".into(),
                }),
                text: "t".into(),
            })),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            prop::collection::vec(any::<u8>(), 0..16),
            any::<prop::sample::Index>()
        )
            .prop_map(move |(junk, at)| {
                let mut v = valid.clone();
                let i = at.index(v.len() + 1);
                v.splice(i..i, junk);
                v
            }),
    ]
}

/// Node commands with arbitrary field values (names, ranges, counts, tokens).
fn node_command() -> impl Strategy<Value = pb::Command> {
    use pb::command::Body;
    let name = prop_oneof![
        Just("n1".to_string()),
        Just("n2".to_string()),
        "[a-zA-Z0-9._-]{0,12}"
    ];
    let holder = prop_oneof![Just("job/0".to_string()), "[a-z/]{0,6}"];
    let body = prop_oneof![
        (name.clone(), any::<u32>(), any::<u32>(), 0u32..4).prop_map(|(node, lo, hi, gpus)| {
            Body::RegisterNode(pb::RegisterNode {
                node,
                inventory: Some(pb::NodeInventory {
                    port_range_start: lo % 70000,
                    port_range_end: hi % 70000,
                    gpus: (0..gpus)
                        .map(|i| pb::GpuInfo {
                            index: i,
                            uuid: format!("GPU-{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    links: vec![pb::GpuLink {
                        a: 0,
                        b: gpus,
                        nvlinks: 1,
                        pcie: 99,
                    }],
                    ..Default::default()
                }),
            })
        }),
        (name.clone(), 0u32..5, any::<bool>(), any::<u32>()).prop_map(
            |(node, gpu, healthy, xid)| {
                Body::ReportGpuHealth(pb::ReportGpuHealth {
                    node,
                    gpus: vec![pb::GpuHealth {
                        uuid: format!("GPU-{gpu}"),
                        healthy,
                        reason: String::new(),
                        xid,
                    }],
                })
            }
        ),
        (name.clone(), holder.clone(), any::<u32>(), any::<u64>()).prop_map(
            |(node, holder, count, ttl_ms)| {
                Body::AcquirePortLeases(pb::AcquirePortLeases {
                    node,
                    holder,
                    count: count % 80,
                    ttl_ms,
                })
            }
        ),
        (name.clone(), holder).prop_map(|(node, holder)| {
            Body::ReleasePortLeases(pb::ReleasePortLeases { node, holder })
        }),
        (name.clone(), any::<u64>()).prop_map(|(node, ttl_ms)| {
            Body::RenewPortLeases(pb::RenewPortLeases { node, ttl_ms })
        }),
        (name.clone(), any::<u32>()).prop_map(|(node, port)| {
            Body::ReportPortViolation(pb::ReportPortViolation {
                node,
                port,
                pid: 1,
                process: "p".into(),
            })
        }),
        (name.clone(), 0u32..5, any::<bool>()).prop_map(|(node, gpu, drain)| {
            Body::CordonNode(pb::CordonNode {
                node,
                gpu_uuid: if gpu == 4 {
                    String::new()
                } else {
                    format!("GPU-{gpu}")
                },
                reason: "r".into(),
                drain,
            })
        }),
        name.clone()
            .prop_map(|node| Body::MarkNodeLost(pb::MarkNodeLost {
                node,
                last_heartbeat_ms: 0,
                grace_ms: 1
            })),
        Just(Body::ExpirePortLeases(pb::ExpirePortLeases {})),
    ];
    (body, any::<i64>(), prop::collection::vec(any::<u8>(), 0..2)).prop_map(|(body, ts, token)| {
        pb::Command {
            timestamp_ms: ts,
            body: Some(body),
            token_digest: token,
            ..Default::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever node commands arrive, `decide` answers and the fold keeps its
    /// invariants: leased ports are real ports with a named holder.
    #[test]
    fn decided_node_commands_never_panic(cmds in prop::collection::vec(node_command(), 1..40)) {
        let mut state = cairn_domain::State::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let bytes = pb::CommandBatch { commands: vec![cmd.clone()] }.encode_to_vec();
            let batch = pb::CommandBatch::decode(bytes.as_slice()).expect("round trip");
            let Ok(c) = Command::from_pb(&batch.commands[0]) else { continue };
            let pos = cairn_domain::Position { raft_index: i as u64 + 1, raft_term: 1 };
            if let Ok(events) = cairn_domain::decide(&state, &c, pos) {
                for e in &events {
                    state.evolve(e);
                }
            }
        }
        for n in state.nodes().values() {
            for (port, lease) in &n.leases {
                prop_assert!((1..=65535).contains(port));
                prop_assert!(!lease.holder.is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn protobuf_requests_never_panic(bytes in wire_bytes()) {
        if let Ok(req) = pb::SubmitRequest::decode(bytes.as_slice()) {
            if let Some(cmd) = req.command {
                if let Ok(c) = Command::from_pb(&cmd) {
                    let _ = c.problems();
                }
            }
        }
        let _ = pb::ListEventsRequest::decode(bytes.as_slice());
        let _ = pb::GetEntityRequest::decode(bytes.as_slice());
        let _ = pb::CommandBatch::decode(bytes.as_slice());
    }

    #[test]
    fn events_never_panic(bytes in wire_bytes()) {
        if let Ok(e) = pb::Event::decode(bytes.as_slice()) {
            let _ = Event::from_pb(&e);
            let _ = e.type_name();
        }
    }

    #[test]
    fn raft_messages_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = bincode::deserialize::<AppendEntriesRequest<TypeConfig>>(&bytes);
        let _ = bincode::deserialize::<VoteRequest<NodeId>>(&bytes);
        let _ = bincode::deserialize::<InstallSnapshotRequest<TypeConfig>>(&bytes);
    }
}

#[test]
fn a_truncated_event_is_a_typed_error() {
    let e = pb::Event {
        sequence: 7,
        payload: Some(pb::event::Payload::NoteAdded(pb::NoteAdded {
            text: "hello".into(),
        })),
        ..Default::default()
    }
    .encode_to_vec();
    let err = pb::Event::decode(&e[..e.len() - 2]).unwrap_err();
    assert!(!err.to_string().is_empty());
    // An event without an entity decodes, but does not convert into the domain.
    let no_entity = pb::Event::decode(e.as_slice()).unwrap();
    assert!(Event::from_pb(&no_entity).is_err());
}
