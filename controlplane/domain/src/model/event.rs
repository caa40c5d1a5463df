//! What happened to a model (all on the stream `model/<name>`).

use std::collections::{BTreeMap, BTreeSet};

use super::state::Held;
use super::values::{Lineage, RunOutputs, Stage, VersionStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    Created {
        description: String,
        tags: BTreeMap<String, String>,
    },
    Updated {
        description: String,
    },
    TagSet {
        key: String,
        value: String,
    },
    TagDeleted {
        key: String,
    },
    /// The model is now named `to` (on the old name's stream).
    Renamed {
        to: String,
    },
    /// The model was named `from` until now (on the new name's stream).
    RenamedFrom {
        from: String,
    },
    Deleted,
    VersionCreated(Box<NewVersion>),
    VersionUpdated {
        version: u64,
        description: String,
    },
    VersionTagSet {
        version: u64,
        key: String,
        value: String,
    },
    VersionTagDeleted {
        version: u64,
        key: String,
    },
    VersionDeleted {
        version: u64,
    },
    StageChanged {
        version: u64,
        from: Stage,
        to: Stage,
        reason: String,
    },
    AliasSet {
        alias: String,
        version: u64,
        /// The version it pointed at before, if any.
        previous: Option<u64>,
        reason: String,
    },
    AliasDeleted {
        alias: String,
        version: u64,
        reason: String,
    },
    /// Only these actors (and admins) may move `target` from now on; none: anyone
    /// with the role to may.
    Protected {
        target: Held,
        allowed: BTreeSet<String>,
    },
}

/// A version as it is registered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewVersion {
    pub version: u64,
    pub source: String,
    pub storage_location: String,
    pub run_id: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub status: VersionStatus,
    pub lineage: Option<Lineage>,
    pub outputs: RunOutputs,
}

impl ModelEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ModelEvent::Created { .. } => "model_created",
            ModelEvent::Updated { .. } => "model_updated",
            ModelEvent::TagSet { .. } => "model_tag_set",
            ModelEvent::TagDeleted { .. } => "model_tag_deleted",
            ModelEvent::Renamed { .. } => "model_renamed",
            ModelEvent::RenamedFrom { .. } => "model_renamed_from",
            ModelEvent::Deleted => "model_deleted",
            ModelEvent::VersionCreated(_) => "model_version_created",
            ModelEvent::VersionUpdated { .. } => "model_version_updated",
            ModelEvent::VersionTagSet { .. } => "model_version_tag_set",
            ModelEvent::VersionTagDeleted { .. } => "model_version_tag_deleted",
            ModelEvent::VersionDeleted { .. } => "model_version_deleted",
            ModelEvent::StageChanged { .. } => "model_version_stage_changed",
            ModelEvent::AliasSet { .. } => "model_alias_set",
            ModelEvent::AliasDeleted { .. } => "model_alias_deleted",
            ModelEvent::Protected { .. } => "model_protected",
        }
    }
}
