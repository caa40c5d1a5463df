//! Folding model events into the models.

use super::event::ModelEvent;
use super::state::{Change, ModelState, Models, Move, VersionState};
use super::values::Stage;
use crate::entity::{At, EntityState};

/// Fold a model event into model `name` and its entity record.
pub fn evolve(
    models: &mut Models,
    e: &mut EntityState,
    name: &str,
    event: &ModelEvent,
    at: At<'_>,
) {
    let ts = at.timestamp_ms;
    let record = |m: &mut ModelState, reason: &str, change: Change| {
        m.timeline.push(Move {
            sequence: at.sequence,
            at_ms: ts,
            actor: at.actor.to_string(),
            reason: reason.to_string(),
            change,
        });
    };
    match event {
        ModelEvent::Created { description, tags } => {
            e.created(at);
            e.created_ms = ts;
            e.labels = tags.clone();
            let m = ModelState {
                description: description.clone(),
                tags: tags.clone(),
                created_ms: ts,
                updated_ms: ts,
                creator: at.actor.to_string(),
                created_sequence: at.sequence,
                ..ModelState::default()
            };
            models.insert(name.to_string(), m);
            return;
        }
        ModelEvent::Renamed { to } => {
            e.deleted = true;
            if let Some(mut m) = models.remove(name) {
                m.former_names.push(name.to_string());
                m.updated_ms = ts;
                models.insert(to.clone(), m);
            }
            return;
        }
        ModelEvent::RenamedFrom { .. } => {
            e.created(at);
            if let Some(m) = models.get(name) {
                e.labels = m.tags.clone();
            }
            return;
        }
        ModelEvent::Deleted => e.deleted = true,
        ModelEvent::Updated { .. }
        | ModelEvent::TagSet { .. }
        | ModelEvent::TagDeleted { .. }
        | ModelEvent::VersionCreated(_)
        | ModelEvent::VersionUpdated { .. }
        | ModelEvent::VersionTagSet { .. }
        | ModelEvent::VersionTagDeleted { .. }
        | ModelEvent::VersionDeleted { .. }
        | ModelEvent::StageChanged { .. }
        | ModelEvent::AliasSet { .. }
        | ModelEvent::AliasDeleted { .. }
        | ModelEvent::Protected { .. } => {}
    }
    // Every other event is about the live model of that name (decide checked it).
    let Some(m) = models.get_mut(name) else {
        return;
    };
    m.updated_ms = ts;
    match event {
        ModelEvent::Created { .. }
        | ModelEvent::Renamed { .. }
        | ModelEvent::RenamedFrom { .. } => {}
        ModelEvent::Deleted => m.deleted = true,
        ModelEvent::Updated { description } => m.description = description.clone(),
        ModelEvent::TagSet { key, value } => {
            m.tags.insert(key.clone(), value.clone());
            e.labels = m.tags.clone();
        }
        ModelEvent::TagDeleted { key } => {
            m.tags.remove(key);
            e.labels = m.tags.clone();
        }
        ModelEvent::VersionCreated(v) => {
            let state = VersionState {
                source: v.source.clone(),
                storage_location: v.storage_location.clone(),
                run_id: v.run_id.clone(),
                description: v.description.clone(),
                tags: v.tags.clone(),
                stage: Stage::None,
                status: v.status,
                created_ms: ts,
                updated_ms: ts,
                creator: at.actor.to_string(),
                created_sequence: at.sequence,
                lineage: v.lineage.clone(),
                outputs: v.outputs.clone(),
                deleted: false,
            };
            m.versions.insert(v.version, state);
            let entered = Change::Stage {
                version: v.version,
                from: Stage::None,
                to: Stage::None,
            };
            record(m, "registered", entered);
        }
        ModelEvent::VersionUpdated {
            version,
            description,
        } => on(m, *version, ts, |v| v.description = description.clone()),
        ModelEvent::VersionTagSet {
            version,
            key,
            value,
        } => on(m, *version, ts, |v| {
            v.tags.insert(key.clone(), value.clone());
        }),
        ModelEvent::VersionTagDeleted { version, key } => on(m, *version, ts, |v| {
            v.tags.remove(key);
        }),
        ModelEvent::VersionDeleted { version } => {
            on(m, *version, ts, |v| v.deleted = true);
            record(m, "deleted", Change::Deleted { version: *version });
        }
        ModelEvent::StageChanged {
            version,
            from,
            to,
            reason,
        } => {
            on(m, *version, ts, |v| v.stage = *to);
            let change = Change::Stage {
                version: *version,
                from: *from,
                to: *to,
            };
            record(m, reason, change);
        }
        ModelEvent::AliasSet {
            alias,
            version,
            previous,
            reason,
        } => {
            m.aliases.insert(alias.clone(), *version);
            let change = Change::Alias {
                alias: alias.clone(),
                from: *previous,
                to: Some(*version),
            };
            record(m, reason, change);
        }
        ModelEvent::AliasDeleted {
            alias,
            version,
            reason,
        } => {
            m.aliases.remove(alias);
            let change = Change::Alias {
                alias: alias.clone(),
                from: Some(*version),
                to: None,
            };
            record(m, reason, change);
        }
        ModelEvent::Protected { target, allowed } => {
            if allowed.is_empty() {
                m.protections.remove(target);
            } else {
                m.protections.insert(target.clone(), allowed.clone());
            }
        }
    }
}

/// Apply `f` to version `n` of `m`, and stamp it.
fn on(m: &mut ModelState, n: u64, ts: i64, f: impl FnOnce(&mut VersionState)) {
    if let Some(v) = m.versions.get_mut(&n) {
        f(v);
        v.updated_ms = ts;
    }
}
