//! Conversions between the wire types (`cairn-proto`) and the domain (`cairn-domain`).
//! The only place that knows both.

use std::collections::BTreeMap;

use cairn_domain as domain;
use cairn_proto as pb;
use pb::command::Body;
use pb::event::Payload;

/// Why a wire message could not become a domain value: every problem, with its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Malformed(pub Vec<String>);

fn labels(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn entity(e: &Option<pb::EntityRef>, field: &str) -> Result<domain::EntityKey, Malformed> {
    match e {
        Some(e) => Ok(domain::EntityKey::new(e.kind.clone(), e.name.clone())),
        None => Err(Malformed(vec![format!("{field}: required")])),
    }
}

pub fn entity_to_pb(k: &domain::EntityKey) -> pb::EntityRef {
    pb::EntityRef {
        kind: k.kind.clone(),
        name: k.name.clone(),
    }
}

/// A wire command as a domain command. Only the shape is checked here; `decide` and
/// `validate::command_problems` judge the content.
pub fn command_from_pb(c: &pb::Command) -> Result<domain::Command, Malformed> {
    use domain::CommandBody as B;
    let body = match &c.body {
        None => return Err(Malformed(vec!["command.body: required".into()])),
        Some(Body::CreateNamespace(x)) => B::CreateNamespace {
            name: x.name.clone(),
            labels: labels(&x.labels),
        },
        Some(Body::SetNamespaceLabels(x)) => B::SetNamespaceLabels {
            name: x.name.clone(),
            set: labels(&x.set),
            remove: x.remove.clone(),
            replace: x.replace,
        },
        Some(Body::DeleteNamespace(x)) => B::DeleteNamespace {
            name: x.name.clone(),
        },
        Some(Body::AddNote(x)) => B::AddNote {
            entity: entity(&x.entity, "add_note.entity")?,
            text: x.text.clone(),
        },
        Some(Body::ReconcileMembers(_)) => B::ReconcileMembers,
    };
    Ok(domain::Command {
        timestamp_ms: c.timestamp_ms,
        actor: c.actor.clone(),
        correlation_id: c.correlation_id.clone(),
        expected_revision: c.expected_revision,
        body,
    })
}

pub fn event_to_pb(e: &domain::Event) -> pb::Event {
    use domain::EventPayload as P;
    let map =
        |l: &BTreeMap<String, String>| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let payload = match &e.payload {
        P::MemberAdded {
            node_id,
            address,
            voter,
        } => Payload::MemberAdded(pb::MemberAdded {
            node_id: *node_id,
            address: address.clone(),
            voter: *voter,
        }),
        P::MemberPromoted { node_id } => {
            Payload::MemberPromoted(pb::MemberPromoted { node_id: *node_id })
        }
        P::MemberRemoved { node_id } => {
            Payload::MemberRemoved(pb::MemberRemoved { node_id: *node_id })
        }
        P::NamespaceCreated { labels } => Payload::NamespaceCreated(pb::NamespaceCreated {
            labels: map(labels),
        }),
        P::NamespaceLabelsChanged { labels } => {
            Payload::NamespaceLabelsChanged(pb::NamespaceLabelsChanged {
                labels: map(labels),
            })
        }
        P::NamespaceDeleted => Payload::NamespaceDeleted(pb::NamespaceDeleted {}),
        P::NoteAdded { text } => Payload::NoteAdded(pb::NoteAdded { text: text.clone() }),
    };
    pb::Event {
        sequence: e.sequence,
        raft_index: e.raft_index,
        raft_term: e.raft_term,
        timestamp_ms: e.timestamp_ms,
        entity: Some(entity_to_pb(&e.entity)),
        entity_revision: e.entity_revision,
        actor: e.actor.clone(),
        correlation_id: e.correlation_id.clone(),
        payload: Some(payload),
    }
}

/// A stored event back in the domain (to rebuild the state by folding the log).
pub fn event_from_pb(e: &pb::Event) -> Result<domain::Event, Malformed> {
    use domain::EventPayload as P;
    let payload = match &e.payload {
        None => {
            return Err(Malformed(vec![format!(
                "event {}: unknown or missing payload",
                e.sequence
            )]))
        }
        Some(Payload::MemberAdded(x)) => P::MemberAdded {
            node_id: x.node_id,
            address: x.address.clone(),
            voter: x.voter,
        },
        Some(Payload::MemberPromoted(x)) => P::MemberPromoted { node_id: x.node_id },
        Some(Payload::MemberRemoved(x)) => P::MemberRemoved { node_id: x.node_id },
        Some(Payload::NamespaceCreated(x)) => P::NamespaceCreated {
            labels: labels(&x.labels),
        },
        Some(Payload::NamespaceLabelsChanged(x)) => P::NamespaceLabelsChanged {
            labels: labels(&x.labels),
        },
        Some(Payload::NamespaceDeleted(_)) => P::NamespaceDeleted,
        Some(Payload::NoteAdded(x)) => P::NoteAdded {
            text: x.text.clone(),
        },
    };
    Ok(domain::Event {
        sequence: e.sequence,
        raft_index: e.raft_index,
        raft_term: e.raft_term,
        timestamp_ms: e.timestamp_ms,
        entity: entity(&e.entity, "event.entity")?,
        entity_revision: e.entity_revision,
        actor: e.actor.clone(),
        correlation_id: e.correlation_id.clone(),
        payload,
    })
}

pub fn entity_state_to_pb(k: &domain::EntityKey, s: &domain::EntityState) -> pb::Entity {
    pb::Entity {
        r#ref: Some(entity_to_pb(k)),
        revision: s.revision,
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        deleted: s.deleted,
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        notes: s.notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_protobuf() {
        use prost::Message;
        let e = domain::Event {
            sequence: 9,
            raft_index: 4,
            raft_term: 2,
            timestamp_ms: 123,
            entity: domain::EntityKey::new("namespace", "a"),
            entity_revision: 3,
            actor: "bob".into(),
            correlation_id: "c".into(),
            payload: domain::EventPayload::NamespaceCreated {
                labels: BTreeMap::from([("k".into(), "v".into())]),
            },
        };
        let bytes = event_to_pb(&e).encode_to_vec();
        let back = pb::Event::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(event_from_pb(&back), Ok(e));
    }

    #[test]
    fn a_command_without_body_is_malformed() {
        let err = command_from_pb(&pb::Command::default()).unwrap_err();
        assert_eq!(err.0, vec!["command.body: required".to_string()]);
    }
}
