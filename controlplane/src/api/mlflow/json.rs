//! MLflow's registry objects as its REST API writes them (snake_case fields, `version`
//! as a string, enums by name, unset fields left out), made from Cairn's model views.
//! Answers carry a few fields of Cairn's own too; MLflow's client ignores them.

use std::collections::BTreeMap;

use cairn_proto as pb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AliasRef {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    pub current_stage: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Cairn's: where the artifacts are stored.
    pub storage_location: String,
}

pub fn tags(t: &BTreeMap<String, String>) -> Vec<Tag> {
    t.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// A stage's name as MLflow writes it.
pub fn stage(v: i32) -> &'static str {
    match pb::ModelStage::try_from(v) {
        Ok(pb::ModelStage::Staging) => "Staging",
        Ok(pb::ModelStage::Production) => "Production",
        Ok(pb::ModelStage::Archived) => "Archived",
        Ok(pb::ModelStage::None) | Err(_) => "None",
    }
}

fn status(v: i32) -> &'static str {
    match pb::ModelVersionStatus::try_from(v) {
        Ok(pb::ModelVersionStatus::Pending) => "PENDING_REGISTRATION",
        Ok(pb::ModelVersionStatus::Failed) => "FAILED_REGISTRATION",
        Ok(pb::ModelVersionStatus::Ready) | Err(_) => "READY",
    }
}

pub fn version(v: &pb::ModelVersionView) -> ModelVersion {
    ModelVersion {
        name: v.name.clone(),
        version: v.version.to_string(),
        creation_timestamp: v.created_ms,
        last_updated_timestamp: v.updated_ms,
        user_id: v.creator.clone(),
        current_stage: stage(v.stage),
        description: v.description.clone(),
        source: v.source.clone(),
        run_id: v.run_id.clone(),
        status: status(v.status),
        tags: tags(&v.tags),
        aliases: v.aliases.clone(),
        storage_location: v.storage_location.clone(),
    }
}

/// The latest version in each stage (every stage a version is in, or only `stages`).
pub fn latest_versions(m: &pb::ModelView, stages: &[&str]) -> Vec<ModelVersion> {
    let mut latest: BTreeMap<&'static str, &pb::ModelVersionView> = BTreeMap::new();
    for v in &m.versions {
        let s = stage(v.stage);
        if !stages.is_empty() && !stages.iter().any(|w| w.eq_ignore_ascii_case(s)) {
            continue;
        }
        match latest.get(s) {
            Some(l) if l.version > v.version => {}
            _ => {
                latest.insert(s, v);
            }
        }
    }
    let mut out: Vec<ModelVersion> = latest.values().map(|v| version(v)).collect();
    out.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(0));
    out
}

pub fn model(m: &pb::ModelView) -> RegisteredModel {
    RegisteredModel {
        name: m.name.clone(),
        creation_timestamp: m.created_ms,
        last_updated_timestamp: m.updated_ms,
        description: m.description.clone(),
        latest_versions: latest_versions(m, &[]),
        tags: tags(&m.tags),
        aliases: m
            .aliases
            .iter()
            .map(|(a, v)| AliasRef {
                alias: a.clone(),
                version: v.to_string(),
            })
            .collect(),
    }
}
