//! Registered models: versions, stages, aliases, tags, where each version came from.

use cairn_domain::model::{ModelState, KIND};
use cairn_domain::{EntityKey, State};
use cairn_proto as pb;

use crate::convert::ToPb;

/// The view of model `name` (revision: its stream's, when known).
pub fn model(name: &str, m: &ModelState, revision: u64) -> pb::ModelView {
    let versions = m
        .live_versions()
        .map(|(n, v)| pb::ModelVersionView {
            name: name.to_string(),
            version: *n,
            source: v.source.clone(),
            storage_location: v.storage_location.clone(),
            run_id: v.run_id.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            stage: v.stage.to_pb() as i32,
            status: v.status.to_pb() as i32,
            created_ms: v.created_ms,
            updated_ms: v.updated_ms,
            creator: v.creator.clone(),
            aliases: m.aliases_of(*n),
            lineage: v.lineage.as_ref().map(ToPb::to_pb),
            outputs: (!v.outputs.is_empty()).then(|| v.outputs.to_pb()),
            created_sequence: v.created_sequence,
        })
        .collect();
    pb::ModelView {
        name: name.to_string(),
        description: m.description.clone(),
        tags: m.tags.clone(),
        aliases: m.aliases.clone().into_iter().collect(),
        versions,
        created_ms: m.created_ms,
        updated_ms: m.updated_ms,
        creator: m.creator.clone(),
        deleted: m.deleted,
        revision,
        former_names: m.former_names.clone(),
        created_sequence: m.created_sequence,
        protections: m
            .protections
            .iter()
            .map(|(target, allowed)| crate::convert::protection(target, allowed))
            .collect(),
    }
}

/// Models: the one named (empty: all), deleted ones only when asked.
pub fn models(state: &State, name: &str, include_deleted: bool) -> Vec<pb::ModelView> {
    if name.is_empty() {
        return models_where(state, include_deleted, |_| true);
    }
    let found = state.models().get_key_value(name);
    found
        .filter(|(_, m)| include_deleted || !m.deleted)
        .map(|(n, m)| view(state, n, m))
        .into_iter()
        .collect()
}

/// Models whose name `admit` accepts, deleted ones only when asked.
pub fn models_where(
    state: &State,
    include_deleted: bool,
    admit: impl Fn(&str) -> bool,
) -> Vec<pb::ModelView> {
    state
        .models()
        .iter()
        .filter(|(n, m)| (include_deleted || !m.deleted) && admit(n))
        .map(|(n, m)| view(state, n, m))
        .collect()
}

fn view(state: &State, name: &str, m: &ModelState) -> pb::ModelView {
    model(
        name,
        m,
        state.revision(&EntityKey::new(KIND, name.to_string())),
    )
}
