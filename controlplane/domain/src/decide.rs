//! `decide`: the verdict on a command, given the state at its place in the log.

use std::collections::BTreeMap;

use crate::command::{Command, CommandBody};
use crate::event::{EntityKey, Event, EventPayload, Position};
use crate::rejection::Rejection;
use crate::state::{member_key, State};
use crate::validate;

/// Decide `cmd` against `state`: the events it appends, or why it is rejected.
///
/// Pure and deterministic: the same state, command and position give the same result on
/// every replica. The events come fully stamped (sequence, entity revision, position).
pub fn decide(state: &State, cmd: &Command, pos: Position) -> Result<Vec<Event>, Rejection> {
    let problems = validate::command_problems(cmd);
    if !problems.is_empty() {
        return Err(Rejection::InvalidArgument(problems.join("; ")));
    }
    if let (Some(expected), Some(target)) = (cmd.expected_revision, cmd.body.target()) {
        let actual = state.revision(&target);
        if expected != actual {
            return Err(Rejection::WrongRevision {
                entity: target.to_string(),
                expected,
                actual,
            });
        }
    }
    let mut out = Emitter::new(state, cmd, pos);
    match &cmd.body {
        CommandBody::CreateNamespace { name, labels } => {
            let key = EntityKey::new(crate::kinds::NAMESPACE, name.clone());
            if state.is_live(&key) {
                return Err(Rejection::AlreadyExists(key.to_string()));
            }
            out.emit(
                key,
                EventPayload::NamespaceCreated {
                    labels: labels.clone(),
                },
            );
        }
        CommandBody::SetNamespaceLabels {
            name,
            set,
            remove,
            replace,
        } => {
            let key = EntityKey::new(crate::kinds::NAMESPACE, name.clone());
            let current = live(state, &key)?;
            let mut labels = if *replace {
                BTreeMap::new()
            } else {
                current.labels.clone()
            };
            for k in remove {
                labels.remove(k);
            }
            labels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            if labels.len() > validate::MAX_LABELS {
                return Err(Rejection::InvalidArgument(format!(
                    "set_namespace_labels: the result has {} labels, at most {}",
                    labels.len(),
                    validate::MAX_LABELS
                )));
            }
            if labels != current.labels {
                out.emit(key, EventPayload::NamespaceLabelsChanged { labels });
            }
        }
        CommandBody::DeleteNamespace { name } => {
            let key = EntityKey::new(crate::kinds::NAMESPACE, name.clone());
            live(state, &key)?;
            out.emit(key, EventPayload::NamespaceDeleted);
        }
        CommandBody::AddNote { entity, text } => {
            live(state, entity)?;
            out.emit(
                entity.clone(),
                EventPayload::NoteAdded { text: text.clone() },
            );
        }
        CommandBody::ReconcileMembers => reconcile_members(state, &mut out),
        _ => nodes::decide(state, cmd, &mut out)
            .or_else(|| jobs::decide(state, cmd, &mut out))
            .or_else(|| crons::decide(state, cmd, &mut out))
            .unwrap_or(Ok(()))?,
    }
    Ok(out.events)
}

/// The live entity at `key`, or NotFound.
fn live<'a>(state: &'a State, key: &EntityKey) -> Result<&'a crate::EntityState, Rejection> {
    match state.entity(key) {
        Some(e) if !e.deleted => Ok(e),
        _ => Err(Rejection::NotFound(key.to_string())),
    }
}

/// Emit the member events that bring the recorded members in line with Raft's.
fn reconcile_members(state: &State, out: &mut Emitter<'_>) {
    let raft = state.raft_members();
    let recorded = state.members();
    let applied = raft
        .voters
        .iter()
        .map(|(id, a)| (*id, a, true))
        .chain(raft.learners.iter().map(|(id, a)| (*id, a, false)));
    let mut in_raft = BTreeMap::new();
    for (id, address, voter) in applied {
        in_raft.insert(id, ());
        match recorded.get(&id) {
            None => out.emit(
                member_key(id),
                EventPayload::MemberAdded {
                    node_id: id,
                    address: address.clone(),
                    voter,
                },
            ),
            Some(m) if voter && !m.voter => {
                out.emit(member_key(id), EventPayload::MemberPromoted { node_id: id })
            }
            Some(_) => {}
        }
    }
    for id in recorded.keys().filter(|id| !in_raft.contains_key(id)) {
        out.emit(
            member_key(*id),
            EventPayload::MemberRemoved { node_id: *id },
        );
    }
}

/// Stamps events with sequence numbers and entity revisions as a command emits them.
struct Emitter<'a> {
    state: &'a State,
    cmd: &'a Command,
    pos: Position,
    events: Vec<Event>,
}

impl<'a> Emitter<'a> {
    fn new(state: &'a State, cmd: &'a Command, pos: Position) -> Self {
        Self {
            state,
            cmd,
            pos,
            events: Vec::new(),
        }
    }

    fn emit(&mut self, entity: EntityKey, payload: EventPayload) {
        let earlier = self.events.iter().filter(|e| e.entity == entity).count() as u64;
        let entity_revision = self.state.revision(&entity) + earlier + 1;
        self.events.push(Event {
            sequence: self.state.next_sequence() + self.events.len() as u64,
            raft_index: self.pos.raft_index,
            raft_term: self.pos.raft_term,
            timestamp_ms: self.cmd.timestamp_ms,
            entity,
            entity_revision,
            actor: self.cmd.actor.clone(),
            correlation_id: self.cmd.correlation_id.clone(),
            payload,
        });
    }
}

mod crons;
#[cfg(test)]
mod job_tests;
mod jobs;
#[cfg(test)]
mod node_tests;
mod nodes;
#[cfg(test)]
mod tests;
