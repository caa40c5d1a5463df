//! Decisions about models: every write is judged against the model's state at its place
//! in the log, so two racing promotions with the same expectation cannot both win.

use super::command::ModelCommand;
use super::event::{ModelEvent, NewVersion};
use super::state::{ModelState, Models, VersionState};
use super::values::{self, Stage};
use super::KIND;
use crate::emit::Emit;
use crate::rejection::Rejection;

fn not_found(name: &str) -> Rejection {
    Rejection::NotFound(format!("{KIND}/{name}"))
}

/// The model named `name` now (not deleted), or NotFound.
pub fn live<'a>(models: &'a Models, name: &str) -> Result<&'a ModelState, Rejection> {
    models
        .get(name)
        .filter(|m| !m.deleted)
        .ok_or_else(|| not_found(name))
}

/// Version `n` of a live model, or NotFound.
fn version<'a>(m: &'a ModelState, name: &str, n: u64) -> Result<&'a VersionState, Rejection> {
    m.version(n)
        .ok_or_else(|| Rejection::NotFound(format!("{KIND}/{name} version {n}")))
}

/// Decide a model command.
pub fn decide(
    models: &Models,
    cmd: &ModelCommand,
    out: &mut impl Emit<ModelEvent>,
) -> Result<(), Rejection> {
    let name = cmd.target();
    match cmd {
        ModelCommand::Create {
            description, tags, ..
        } => {
            if live(models, name).is_ok() {
                return Err(Rejection::AlreadyExists(format!("{KIND}/{name}")));
            }
            let created = ModelEvent::Created {
                description: description.clone(),
                tags: tags.clone(),
            };
            out.emit(name, created);
        }
        ModelCommand::Update { description, .. } => {
            if live(models, name)?.description != *description {
                let updated = ModelEvent::Updated {
                    description: description.clone(),
                };
                out.emit(name, updated);
            }
        }
        ModelCommand::SetTag { key, value, .. } => {
            if live(models, name)?.tags.get(key) != Some(value) {
                let set = ModelEvent::TagSet {
                    key: key.clone(),
                    value: value.clone(),
                };
                out.emit(name, set);
            }
        }
        ModelCommand::DeleteTag { key, .. } => {
            if live(models, name)?.tags.contains_key(key) {
                out.emit(name, ModelEvent::TagDeleted { key: key.clone() });
            }
        }
        ModelCommand::Rename { new_name, .. } => {
            live(models, name)?;
            if live(models, new_name).is_ok() {
                return Err(Rejection::AlreadyExists(format!("{KIND}/{new_name}")));
            }
            out.emit(
                name,
                ModelEvent::Renamed {
                    to: new_name.clone(),
                },
            );
            let from = ModelEvent::RenamedFrom {
                from: name.to_string(),
            };
            out.emit(new_name, from);
        }
        ModelCommand::Delete { .. } => {
            live(models, name)?;
            out.emit(name, ModelEvent::Deleted);
        }
        ModelCommand::CreateVersion {
            source,
            run_id,
            description,
            tags,
            create_model,
            ..
        } => {
            let new = NewVersion {
                source: source.clone(),
                storage_location: values::storage_location(source, ""),
                run_id: run_id.clone(),
                description: description.clone(),
                tags: tags.clone(),
                ..NewVersion::default()
            };
            register(models, name, new, *create_model, out)?;
        }
        ModelCommand::UpdateVersion {
            version: n,
            description,
            ..
        } => {
            let m = live(models, name)?;
            if version(m, name, *n)?.description != *description {
                let updated = ModelEvent::VersionUpdated {
                    version: *n,
                    description: description.clone(),
                };
                out.emit(name, updated);
            }
        }
        ModelCommand::SetVersionTag {
            version: n,
            key,
            value,
            ..
        } => {
            let m = live(models, name)?;
            if version(m, name, *n)?.tags.get(key) != Some(value) {
                let set = ModelEvent::VersionTagSet {
                    version: *n,
                    key: key.clone(),
                    value: value.clone(),
                };
                out.emit(name, set);
            }
        }
        ModelCommand::DeleteVersionTag {
            version: n, key, ..
        } => {
            let m = live(models, name)?;
            if version(m, name, *n)?.tags.contains_key(key) {
                let deleted = ModelEvent::VersionTagDeleted {
                    version: *n,
                    key: key.clone(),
                };
                out.emit(name, deleted);
            }
        }
        ModelCommand::DeleteVersion { version: n, .. } => {
            let m = live(models, name)?;
            version(m, name, *n)?;
            // Its aliases go with it, each recorded.
            for alias in m.aliases_of(*n) {
                let deleted = ModelEvent::AliasDeleted {
                    alias,
                    version: *n,
                    reason: format!("version {n} was deleted"),
                };
                out.emit(name, deleted);
            }
            out.emit(name, ModelEvent::VersionDeleted { version: *n });
        }
        ModelCommand::Transition {
            version: n,
            stage,
            expected,
            expected_in_target,
            archive_existing,
            reason,
            ..
        } => {
            let m = live(models, name)?;
            let now = version(m, name, *n)?.stage;
            if let Some(expected) = expected {
                if *expected != now {
                    return Err(Rejection::FailedPrecondition(format!(
                        "{KIND}/{name} version {n} is in {}, not {} as expected",
                        now.name(),
                        expected.name()
                    )));
                }
            }
            if let Some(expected) = expected_in_target {
                let holders: std::collections::BTreeSet<u64> = m
                    .live_versions()
                    .filter(|(_, v)| v.stage == *stage)
                    .map(|(v, _)| *v)
                    .collect();
                if holders != *expected {
                    return Err(Rejection::FailedPrecondition(format!(
                        "{KIND}/{name} has versions {holders:?} in {}, not {expected:?} as expected",
                        stage.name()
                    )));
                }
            }
            if *archive_existing {
                let others = m
                    .live_versions()
                    .filter(|(v, s)| **v != *n && s.stage == *stage);
                for (v, _) in others {
                    let archived = ModelEvent::StageChanged {
                        version: *v,
                        from: *stage,
                        to: Stage::Archived,
                        reason: format!("version {n} moved to {}", stage.name()),
                    };
                    out.emit(name, archived);
                }
            }
            if now != *stage {
                let changed = ModelEvent::StageChanged {
                    version: *n,
                    from: now,
                    to: *stage,
                    reason: reason.clone(),
                };
                out.emit(name, changed);
            }
        }
        ModelCommand::SetAlias {
            alias,
            version: n,
            expected,
            reason,
            ..
        } => {
            let m = live(models, name)?;
            version(m, name, *n)?;
            let previous = m.aliases.get(alias).copied();
            if let Some(expected) = expected {
                if *expected != previous {
                    let is = previous.map_or("does not exist".into(), |v| {
                        format!("points at version {v}")
                    });
                    let was = expected.map_or("not to exist".into(), |v| {
                        format!("to point at version {v}")
                    });
                    return Err(Rejection::FailedPrecondition(format!(
                        "alias {alias:?} of {KIND}/{name} {is}; it was expected {was}"
                    )));
                }
            }
            if previous != Some(*n) {
                let set = ModelEvent::AliasSet {
                    alias: alias.clone(),
                    version: *n,
                    previous,
                    reason: reason.clone(),
                };
                out.emit(name, set);
            }
        }
        ModelCommand::DeleteAlias { alias, reason, .. } => {
            let m = live(models, name)?;
            if let Some(v) = m.aliases.get(alias) {
                let deleted = ModelEvent::AliasDeleted {
                    alias: alias.clone(),
                    version: *v,
                    reason: reason.clone(),
                };
                out.emit(name, deleted);
            }
        }
        ModelCommand::Protect {
            target, allowed, ..
        } => {
            let m = live(models, name)?;
            let now = m.protections.get(target);
            if now.map_or(!allowed.is_empty(), |now| now != allowed) {
                let protected = ModelEvent::Protected {
                    target: target.clone(),
                    allowed: allowed.clone(),
                };
                out.emit(name, protected);
            }
        }
    }
    Ok(())
}

/// Register a new version of `name` (numbered one past every version it ever had),
/// creating the model first when `create_model` says so and it does not exist; the
/// version's number.
pub fn register(
    models: &Models,
    name: &str,
    mut new: NewVersion,
    create_model: bool,
    out: &mut impl Emit<ModelEvent>,
) -> Result<u64, Rejection> {
    let number = match live(models, name) {
        Ok(m) => m.next_version(),
        Err(_) if create_model => {
            let created = ModelEvent::Created {
                description: String::new(),
                tags: Default::default(),
            };
            out.emit(name, created);
            1
        }
        Err(e) => return Err(e),
    };
    new.version = number;
    out.emit(name, ModelEvent::VersionCreated(Box::new(new)));
    Ok(number)
}
