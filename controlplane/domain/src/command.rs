//! Commands: requests to change state, decided in log order.

use std::collections::BTreeMap;

use crate::event::EntityKey;

/// A command as proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Stamped by the leader when it proposes the command.
    pub timestamp_ms: i64,
    pub actor: String,
    pub correlation_id: String,
    /// The revision the caller expects the target entity to have (0: must not exist).
    pub expected_revision: Option<u64>,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    CreateNamespace {
        name: String,
        labels: BTreeMap<String, String>,
    },
    SetNamespaceLabels {
        name: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
        /// Replace the whole label set with `set` instead of merging.
        replace: bool,
    },
    DeleteNamespace {
        name: String,
    },
    AddNote {
        entity: EntityKey,
        text: String,
    },
    /// Record the applied Raft membership as member events.
    ReconcileMembers,
}

impl CommandBody {
    /// The entity the command is about, if it has a single target.
    pub fn target(&self) -> Option<EntityKey> {
        match self {
            CommandBody::CreateNamespace { name, .. }
            | CommandBody::SetNamespaceLabels { name, .. }
            | CommandBody::DeleteNamespace { name } => {
                Some(EntityKey::new(crate::kinds::NAMESPACE, name.clone()))
            }
            CommandBody::AddNote { entity, .. } => Some(entity.clone()),
            CommandBody::ReconcileMembers => None,
        }
    }
}
