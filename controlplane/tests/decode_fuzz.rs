//! Arbitrary bytes against every decoder at the edge: the protobuf requests and events,
//! the Raft transport's messages, and the conversions into the domain. Each must answer
//! with a typed error or a value, never panic.

use cairn_controlplane::convert;
use cairn_controlplane::raft::{NodeId, TypeConfig};
use cairn_domain::validate;
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn protobuf_requests_never_panic(bytes in wire_bytes()) {
        if let Ok(req) = pb::SubmitRequest::decode(bytes.as_slice()) {
            if let Some(cmd) = req.command {
                if let Ok(c) = convert::command_from_pb(&cmd) {
                    let _ = validate::command_problems(&c);
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
            let _ = convert::event_from_pb(&e);
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
    assert!(convert::event_from_pb(&no_entity).is_err());
}
