//! Any entity: revision, times, labels, notes.

use cairn_domain::{EntityKey, EntityState, State};
use cairn_proto as pb;

use crate::convert::ToPb;

fn view(k: &EntityKey, s: &EntityState) -> pb::Entity {
    pb::Entity {
        r#ref: Some(k.to_pb()),
        revision: s.revision,
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        deleted: s.deleted,
        labels: s.labels.clone(),
        notes: s.notes,
    }
}

/// One entity (deleted ones too: their history goes on).
pub fn entity(state: &State, key: &EntityKey) -> Option<pb::Entity> {
    state.entity(key).map(|s| view(key, s))
}

/// The entities of one kind, by name.
pub fn entities(state: &State, kind: &str, include_deleted: bool) -> Vec<pb::Entity> {
    state
        .entities_of_kind(kind)
        .filter(|(_, s)| include_deleted || !s.deleted)
        .map(|(k, s)| view(k, s))
        .collect()
}
