//! What every entity has, whatever its kind: its key (`kind/name`), its stream's
//! revision, when it was created and last changed, whether it is deleted, its labels and
//! its notes; and where in the log a command or event sits.

use std::collections::BTreeMap;
use std::fmt;

/// The entity an event is about: `kind/name`, e.g. `namespace/research` or `member/2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey {
    pub kind: String,
    pub name: String,
}

impl EntityKey {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Current view of one entity, kept for every entity that ever existed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityState {
    /// Revision of the entity's stream: the number of events about it so far.
    pub revision: u64,
    /// The sequence of its latest event.
    pub sequence: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub deleted: bool,
    pub labels: BTreeMap<String, String>,
    /// Number of notes added to it.
    pub notes: u64,
}

impl EntityState {
    /// The entity is there now: it exists and is not deleted.
    pub fn live(e: Option<&EntityState>) -> bool {
        e.is_some_and(|e| !e.deleted)
    }

    /// (Re)created: a deleted entity's stream goes on, with a new creation time.
    pub fn created(&mut self, at: At<'_>) {
        if self.created_ms == 0 || self.deleted {
            self.created_ms = at.timestamp_ms;
        }
        self.deleted = false;
    }
}

/// Where in the Raft log a command sits; stamped into every event it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub raft_index: u64,
    pub raft_term: u64,
}

/// Where an event sits in the history, and who caused it: what `evolve` may record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At<'a> {
    pub sequence: u64,
    /// The leader's clock when it proposed the command (Unix milliseconds).
    pub timestamp_ms: i64,
    pub actor: &'a str,
}

/// What `decide` may know of the command besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued<'a> {
    /// Stamped by the leader when it proposed the command.
    pub timestamp_ms: i64,
    pub actor: &'a str,
}
