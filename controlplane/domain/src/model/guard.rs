//! Protected stages and aliases: once a model names who may move its Production stage
//! (or an alias such as `champion`), a command that would move it is accepted only from
//! one of those actors or an admin. Judged in `decide`, against the model as it is at
//! the command's place in the log, so every member judges a command alike.

use super::command::ModelCommand;
use super::decide::live;
use super::state::{Held, ModelState, Models};
use super::KIND;
use crate::rejection::Rejection;
use crate::role::Role;

/// Refused if `cmd` moves a protected stage or alias of its model and `actor` is not
/// among those allowed to (an admin always is).
pub fn check(
    models: &Models,
    cmd: &ModelCommand,
    actor: &str,
    role: Option<Role>,
) -> Result<(), Rejection> {
    if role == Some(Role::Admin) {
        return Ok(());
    }
    // A model that does not exist has nothing protected; `decide` says NotFound.
    let Ok(m) = live(models, cmd.target()) else {
        return Ok(());
    };
    if m.protections.is_empty() {
        return Ok(());
    }
    for held in moved(m, cmd) {
        let Some(allowed) = m.protections.get(&held) else {
            continue;
        };
        if !allowed.contains(actor) {
            let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return Err(Rejection::PermissionDenied(format!(
                "{} of {KIND}/{} is protected: only {} or an admin may move it, not {actor}",
                held.describe(),
                cmd.target(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// The stages and aliases of `m` that `cmd` would move.
fn moved(m: &ModelState, cmd: &ModelCommand) -> Vec<Held> {
    match cmd {
        ModelCommand::Transition {
            version,
            stage,
            archive_existing,
            ..
        } => {
            let Some(now) = m.version(*version).map(|v| v.stage) else {
                return Vec::new();
            };
            let mut held = Vec::new();
            if now != *stage || *archive_existing {
                held.push(Held::Stage(*stage));
            }
            if now != *stage {
                held.push(Held::Stage(now));
            }
            held
        }
        ModelCommand::SetAlias { alias, .. } | ModelCommand::DeleteAlias { alias, .. } => {
            vec![Held::Alias(alias.clone())]
        }
        ModelCommand::DeleteVersion { version, .. } => m
            .version(*version)
            .map(|v| {
                let aliases = m.aliases_of(*version).into_iter().map(Held::Alias);
                std::iter::once(Held::Stage(v.stage))
                    .chain(aliases)
                    .collect()
            })
            .unwrap_or_default(),
        // Deleting the model moves everything it holds.
        ModelCommand::Delete { .. } => {
            let stages = m.live_versions().map(|(_, v)| Held::Stage(v.stage));
            let aliases = m.aliases.keys().cloned().map(Held::Alias);
            stages.chain(aliases).collect()
        }
        ModelCommand::Create { .. }
        | ModelCommand::Update { .. }
        | ModelCommand::SetTag { .. }
        | ModelCommand::DeleteTag { .. }
        | ModelCommand::Rename { .. }
        | ModelCommand::CreateVersion { .. }
        | ModelCommand::UpdateVersion { .. }
        | ModelCommand::SetVersionTag { .. }
        | ModelCommand::DeleteVersionTag { .. }
        | ModelCommand::Protect { .. } => Vec::new(),
    }
}
