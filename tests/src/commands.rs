//! Commands the tests submit, and what they read back from the events.

use cairn_proto as pb;

/// A command creating namespace `name`.
pub fn create_ns(name: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(pb::command::Body::CreateNamespace(pb::CreateNamespace {
                name: name.into(),
                labels: Default::default(),
            })),
            ..Default::default()
        }),
    }
}

/// A command adding a note to `namespace/<ns>`.
pub fn note(ns: &str, text: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(pb::command::Body::AddNote(pb::AddNote {
                entity: Some(pb::EntityRef {
                    kind: "namespace".into(),
                    name: ns.into(),
                }),
                text: text.into(),
            })),
            ..Default::default()
        }),
    }
}

/// The text of a note event, if it is one.
pub fn note_text(e: &pb::Event) -> Option<&str> {
    match &e.payload {
        Some(pb::event::Payload::NoteAdded(n)) => Some(n.text.as_str()),
        _ => None,
    }
}
