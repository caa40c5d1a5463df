//! Namespaces: a name and labels. They have no state beyond what every entity has
//! ([`EntityState`]), so deciding about one needs only its entity record.

use std::collections::BTreeMap;

use crate::emit::Emit;
use crate::entity::{At, EntityState};
use crate::rejection::Rejection;
use crate::validate;

pub const KIND: &str = "namespace";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceCommand {
    Create {
        name: String,
        labels: BTreeMap<String, String>,
    },
    SetLabels {
        name: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
        /// Replace the whole label set with `set` instead of merging.
        replace: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceEvent {
    Created {
        labels: BTreeMap<String, String>,
    },
    /// The full label set after the change.
    LabelsChanged {
        labels: BTreeMap<String, String>,
    },
    Deleted,
}

impl NamespaceCommand {
    /// The namespace the command is about.
    pub fn target(&self) -> &str {
        match self {
            NamespaceCommand::Create { name, .. }
            | NamespaceCommand::SetLabels { name, .. }
            | NamespaceCommand::Delete { name } => name,
        }
    }

    /// Every problem with the command's fields.
    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            NamespaceCommand::Create { name, labels } => {
                validate::name_problems("create_namespace.name", name, p);
                validate::label_problems("create_namespace.labels", labels, p);
            }
            NamespaceCommand::SetLabels {
                name, set, remove, ..
            } => {
                validate::name_problems("set_namespace_labels.name", name, p);
                validate::label_problems("set_namespace_labels.set", set, p);
                for (i, k) in remove.iter().enumerate() {
                    if let Some(why) = validate::label_key_problem(k) {
                        p.push(format!("set_namespace_labels.remove[{i}]: {why}"));
                    }
                }
            }
            NamespaceCommand::Delete { name } => {
                validate::name_problems("delete_namespace.name", name, p)
            }
        }
    }
}

impl NamespaceEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            NamespaceEvent::Created { .. } => "namespace_created",
            NamespaceEvent::LabelsChanged { .. } => "namespace_labels_changed",
            NamespaceEvent::Deleted => "namespace_deleted",
        }
    }
}

/// Decide `cmd` given the namespace's record (`None`: it never existed).
pub fn decide(
    current: Option<&EntityState>,
    cmd: &NamespaceCommand,
    out: &mut impl Emit<NamespaceEvent>,
) -> Result<(), Rejection> {
    let name = cmd.target();
    let not_found = || Rejection::NotFound(format!("{KIND}/{name}"));
    let live = current.filter(|e| !e.deleted);
    match cmd {
        NamespaceCommand::Create { labels, .. } => {
            if live.is_some() {
                return Err(Rejection::AlreadyExists(format!("{KIND}/{name}")));
            }
            out.emit(
                name,
                NamespaceEvent::Created {
                    labels: labels.clone(),
                },
            );
        }
        NamespaceCommand::SetLabels {
            set,
            remove,
            replace,
            ..
        } => {
            let current = live.ok_or_else(not_found)?;
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
                out.emit(name, NamespaceEvent::LabelsChanged { labels });
            }
        }
        NamespaceCommand::Delete { .. } => {
            live.ok_or_else(not_found)?;
            out.emit(name, NamespaceEvent::Deleted);
        }
    }
    Ok(())
}

/// Fold a namespace event into the namespace's record.
pub fn evolve(e: &mut EntityState, event: &NamespaceEvent, at: At<'_>) {
    match event {
        NamespaceEvent::Created { labels } => {
            e.created_ms = at.timestamp_ms;
            e.deleted = false;
            e.labels = labels.clone();
        }
        NamespaceEvent::LabelsChanged { labels } => e.labels = labels.clone(),
        NamespaceEvent::Deleted => e.deleted = true,
    }
}
