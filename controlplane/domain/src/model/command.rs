//! Commands about models and their versions.

use std::collections::{BTreeMap, BTreeSet};

use super::state::Held;
use super::values::{self, Stage};
use crate::validate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCommand {
    Create {
        name: String,
        description: String,
        tags: BTreeMap<String, String>,
    },
    Update {
        name: String,
        description: String,
    },
    SetTag {
        name: String,
        key: String,
        value: String,
    },
    DeleteTag {
        name: String,
        key: String,
    },
    Rename {
        name: String,
        new_name: String,
    },
    Delete {
        name: String,
    },
    CreateVersion {
        name: String,
        source: String,
        run_id: String,
        description: String,
        tags: BTreeMap<String, String>,
        /// Create the model too when it does not exist.
        create_model: bool,
    },
    UpdateVersion {
        name: String,
        version: u64,
        description: String,
    },
    SetVersionTag {
        name: String,
        version: u64,
        key: String,
        value: String,
    },
    DeleteVersionTag {
        name: String,
        version: u64,
        key: String,
    },
    DeleteVersion {
        name: String,
        version: u64,
    },
    /// Move a version to `stage`; with `expected`, only if it is in that stage now;
    /// with `expected_in_target`, only if exactly those versions are in the target
    /// stage now; `archive_existing` archives the versions in the target stage.
    Transition {
        name: String,
        version: u64,
        stage: Stage,
        expected: Option<Stage>,
        expected_in_target: Option<BTreeSet<u64>>,
        archive_existing: bool,
        reason: String,
    },
    /// Point `alias` at `version`; with `expected`, only if it points at that version
    /// now (`Some(None)`: only if it does not exist).
    SetAlias {
        name: String,
        alias: String,
        version: u64,
        expected: Option<Option<u64>>,
        reason: String,
    },
    DeleteAlias {
        name: String,
        alias: String,
        reason: String,
    },
    /// Name the actors who may move `target` (a stage or an alias) of the model: from
    /// then on a transition into or out of a protected stage, a move of a protected
    /// alias, or deleting what holds one, is accepted only from an actor named here or
    /// an admin. An empty `allowed` lifts the protection.
    Protect {
        name: String,
        target: Held,
        allowed: BTreeSet<String>,
    },
}

impl ModelCommand {
    /// The model the command is about.
    pub fn target(&self) -> &str {
        match self {
            ModelCommand::Create { name, .. }
            | ModelCommand::Update { name, .. }
            | ModelCommand::SetTag { name, .. }
            | ModelCommand::DeleteTag { name, .. }
            | ModelCommand::Rename { name, .. }
            | ModelCommand::Delete { name }
            | ModelCommand::CreateVersion { name, .. }
            | ModelCommand::UpdateVersion { name, .. }
            | ModelCommand::SetVersionTag { name, .. }
            | ModelCommand::DeleteVersionTag { name, .. }
            | ModelCommand::DeleteVersion { name, .. }
            | ModelCommand::Transition { name, .. }
            | ModelCommand::SetAlias { name, .. }
            | ModelCommand::DeleteAlias { name, .. }
            | ModelCommand::Protect { name, .. } => name,
        }
    }

    /// Every problem with the command's fields, named as the protobuf fields are.
    pub fn problems(&self, p: &mut Vec<String>) {
        let version = |field: &str, v: u64, p: &mut Vec<String>| {
            if v == 0 {
                p.push(format!("{field}.version: must be >= 1"));
            }
        };
        match self {
            ModelCommand::Create {
                name,
                description,
                tags,
            } => {
                values::name_problems("create_model.name", name, p);
                values::description_problems("create_model.description", description, p);
                values::tags_problems("create_model.tags", tags, p);
            }
            ModelCommand::Update { name, description } => {
                values::name_problems("update_model.name", name, p);
                values::description_problems("update_model.description", description, p);
            }
            ModelCommand::SetTag { name, key, value } => {
                values::name_problems("set_model_tag.name", name, p);
                values::tag_problems("set_model_tag", key, Some(value), p);
            }
            ModelCommand::DeleteTag { name, key } => {
                values::name_problems("delete_model_tag.name", name, p);
                values::tag_problems("delete_model_tag", key, None, p);
            }
            ModelCommand::Rename { name, new_name } => {
                values::name_problems("rename_model.name", name, p);
                values::name_problems("rename_model.new_name", new_name, p);
            }
            ModelCommand::Delete { name } => values::name_problems("delete_model.name", name, p),
            ModelCommand::CreateVersion {
                name,
                source,
                run_id,
                description,
                tags,
                ..
            } => {
                values::name_problems("create_model_version.name", name, p);
                values::source_problems("create_model_version.source", source, p);
                values::run_id_problems("create_model_version.run_id", run_id, p);
                values::description_problems("create_model_version.description", description, p);
                values::tags_problems("create_model_version.tags", tags, p);
            }
            ModelCommand::UpdateVersion {
                name,
                version: v,
                description,
            } => {
                values::name_problems("update_model_version.name", name, p);
                version("update_model_version", *v, p);
                values::description_problems("update_model_version.description", description, p);
            }
            ModelCommand::SetVersionTag {
                name,
                version: v,
                key,
                value,
            } => {
                values::name_problems("set_model_version_tag.name", name, p);
                version("set_model_version_tag", *v, p);
                values::tag_problems("set_model_version_tag", key, Some(value), p);
            }
            ModelCommand::DeleteVersionTag {
                name,
                version: v,
                key,
            } => {
                values::name_problems("delete_model_version_tag.name", name, p);
                version("delete_model_version_tag", *v, p);
                values::tag_problems("delete_model_version_tag", key, None, p);
            }
            ModelCommand::DeleteVersion { name, version: v } => {
                values::name_problems("delete_model_version.name", name, p);
                version("delete_model_version", *v, p);
            }
            ModelCommand::Transition {
                name,
                version: v,
                stage,
                archive_existing,
                reason,
                ..
            } => {
                values::name_problems("transition_model_stage.name", name, p);
                version("transition_model_stage", *v, p);
                validate::short_text_problems("transition_model_stage.reason", reason, p);
                if *archive_existing && !matches!(stage, Stage::Staging | Stage::Production) {
                    p.push(format!(
                        "transition_model_stage.archive_existing: only for Staging and Production, not {}",
                        stage.name()
                    ));
                }
            }
            ModelCommand::SetAlias {
                name,
                alias,
                version: v,
                reason,
                ..
            } => {
                values::name_problems("set_model_alias.name", name, p);
                values::alias_problems("set_model_alias.alias", alias, p);
                version("set_model_alias", *v, p);
                validate::short_text_problems("set_model_alias.reason", reason, p);
            }
            ModelCommand::DeleteAlias {
                name,
                alias,
                reason,
            } => {
                values::name_problems("delete_model_alias.name", name, p);
                if alias.is_empty() || alias.len() > values::MAX_ALIAS {
                    p.push(format!(
                        "delete_model_alias.alias: must be 1-{} bytes",
                        values::MAX_ALIAS
                    ));
                }
                validate::short_text_problems("delete_model_alias.reason", reason, p);
            }
            ModelCommand::Protect {
                name,
                target,
                allowed,
            } => {
                values::name_problems("protect_model.name", name, p);
                match target {
                    Held::Stage(Stage::None) => {
                        p.push("protect_model.protection.stage: None cannot be protected".into())
                    }
                    Held::Stage(_) => {}
                    Held::Alias(a) => {
                        values::alias_problems("protect_model.protection.alias", a, p)
                    }
                }
                values::actors_problems("protect_model.protection.allowed", allowed, p);
            }
        }
    }
}
