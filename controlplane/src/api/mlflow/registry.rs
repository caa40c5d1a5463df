//! The endpoints of MLflow's model registry. Each reads its parameters, turns a write
//! into a domain command (recorded through the leader) and answers with MLflow's
//! objects: reads are linearizable, and a write's answer is read on this member once it
//! has applied that write.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cairn_domain::model::{ModelCommand, Stage};
use cairn_domain::CommandBody;
use cairn_proto as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Who;
use super::error::MlflowError;
use super::json::{self, Tag};
use super::request::{boolean, list, number, optional_number, Params};
use super::search::{self, Field, Filter, Over, Record};
use super::{Facade, Read};
use crate::app::AppError;

type Answer = Result<Json<Value>, MlflowError>;

fn tags(t: Vec<Tag>) -> BTreeMap<String, String> {
    t.into_iter().map(|t| (t.key, t.value)).collect()
}

fn stage(s: &str) -> Result<Stage, MlflowError> {
    Stage::parse(s).ok_or_else(|| {
        MlflowError::invalid(format!(
            "Invalid Model Version stage: {s}. Value must be one of None, Staging, Production, Archived."
        ))
    })
}

fn model(m: &pb::ModelView) -> Value {
    json!({ "registered_model": json::model(m) })
}

fn version(v: &pb::ModelVersionView) -> Value {
    json!({ "model_version": json::version(v) })
}

fn model_cmd(c: ModelCommand) -> CommandBody {
    CommandBody::Model(c)
}

pub async fn not_found() -> MlflowError {
    MlflowError::new(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        "No API endpoint here",
    )
}

// --- registered models

#[derive(Deserialize)]
struct CreateModel {
    name: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    description: String,
}

pub async fn create_model(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: CreateModel = p.read()?;
    let cmd = ModelCommand::Create {
        name: r.name.clone(),
        description: r.description,
        tags: tags(r.tags),
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(model(&f.model(&r.name, Read::After(w.index)).await?)))
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

pub async fn get_model(State(f): State<Facade>, p: Params) -> Answer {
    let r: Name = p.read()?;
    Ok(Json(model(&f.model(&r.name, Read::Now).await?)))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
    new_name: String,
}

pub async fn rename_model(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: Rename = p.read()?;
    let cmd = ModelCommand::Rename {
        name: r.name,
        new_name: r.new_name.clone(),
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(model(
        &f.model(&r.new_name, Read::After(w.index)).await?,
    )))
}

#[derive(Deserialize)]
struct UpdateModel {
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn update_model(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: UpdateModel = p.read()?;
    let cmd = ModelCommand::Update {
        name: r.name.clone(),
        description: r.description,
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(model(&f.model(&r.name, Read::After(w.index)).await?)))
}

pub async fn delete_model(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: Name = p.read()?;
    f.submit(&who, model_cmd(ModelCommand::Delete { name: r.name }))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    filter: String,
    #[serde(default, deserialize_with = "optional_number")]
    max_results: Option<u64>,
    #[serde(default, deserialize_with = "list")]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: String,
}

/// Order two records by `order`: each field compared by `cmp`, reversed where it says
/// descending, the next field breaking ties.
fn ordered<'a, T>(
    order: &'a [(Field, bool)],
    cmp: impl Fn(&T, &T, Field) -> Ordering + 'a,
) -> impl Fn(&T, &T) -> Ordering + 'a {
    move |a, b| {
        for (field, desc) in order {
            let o = cmp(a, b, *field);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

pub async fn search_models(State(f): State<Facade>, p: Params) -> Answer {
    let r: Search = p.read()?;
    let max = r.max_results.unwrap_or(100);
    if max == 0 || max > 1000 {
        return Err(MlflowError::invalid(format!(
            "Invalid value {max} for parameter 'max_results' supplied. It must be at most 1000."
        )));
    }
    let filter = Filter::parse(&r.filter, Over::Models)?;
    let mut order = search::order(&r.order_by, Over::Models)?;
    order.push((Field::Name, false));
    let mut models: Vec<pb::ModelView> = f
        .models_where(Read::Now, "", |n| filter.admits_name(n))
        .await?
        .into_iter()
        .filter(|m| {
            filter.matches(&Record {
                name: &m.name,
                tags: &m.tags,
                version: None,
                run_id: "",
                source: "",
            })
        })
        .collect();
    models.sort_by(ordered(&order, |a: &pb::ModelView, b, field| match field {
        Field::Name => a.name.cmp(&b.name),
        Field::Created => a.created_ms.cmp(&b.created_ms),
        Field::Updated => a.updated_ms.cmp(&b.updated_ms),
        Field::Version => Ordering::Equal,
    }));
    let (page, next) = search::page(models, &r.page_token, max as usize)?;
    let mut out = json!({
        "registered_models": page.iter().map(json::model).collect::<Vec<_>>(),
    });
    if !next.is_empty() {
        out["next_page_token"] = Value::String(next);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Latest {
    name: String,
    #[serde(default, deserialize_with = "list")]
    stages: Vec<String>,
}

pub async fn latest_versions(State(f): State<Facade>, p: Params) -> Answer {
    let r: Latest = p.read()?;
    for s in &r.stages {
        stage(s)?;
    }
    let m = f.model(&r.name, Read::Now).await?;
    let stages: Vec<&str> = r.stages.iter().map(String::as_str).collect();
    Ok(Json(
        json!({ "model_versions": json::latest_versions(&m, &stages) }),
    ))
}

#[derive(Deserialize)]
struct SetTag {
    name: String,
    key: String,
    value: String,
}

pub async fn set_model_tag(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: SetTag = p.read()?;
    let cmd = ModelCommand::SetTag {
        name: r.name,
        key: r.key,
        value: r.value,
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteTag {
    name: String,
    key: String,
}

pub async fn delete_model_tag(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: DeleteTag = p.read()?;
    let cmd = ModelCommand::DeleteTag {
        name: r.name,
        key: r.key,
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SetAlias {
    name: String,
    alias: String,
    #[serde(deserialize_with = "number")]
    version: u64,
    /// Cairn's: only if the alias points at this version now (`""`: only if it is unset).
    #[serde(default)]
    expected_version: Option<Value>,
}

/// A version number given as a JSON number or a string of digits.
fn version_number(v: &Value, field: &str) -> Result<u64, MlflowError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| MlflowError::invalid(format!("{field}: {v} is not a version number")))
}

pub async fn set_alias(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: SetAlias = p.read()?;
    let expected = match r.expected_version {
        None => None,
        Some(Value::String(s)) if s.is_empty() => Some(None),
        Some(v) => Some(Some(version_number(&v, "expected_version")?)),
    };
    let cmd = ModelCommand::SetAlias {
        name: r.name,
        alias: r.alias,
        version: r.version,
        expected,
        reason: String::new(),
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct AliasName {
    name: String,
    alias: String,
}

pub async fn delete_alias(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: AliasName = p.read()?;
    let cmd = ModelCommand::DeleteAlias {
        name: r.name,
        alias: r.alias,
        reason: String::new(),
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

pub async fn get_by_alias(State(f): State<Facade>, p: Params) -> Answer {
    let r: AliasName = p.read()?;
    let m = f.model(&r.name, Read::Now).await?;
    let Some(n) = m.aliases.get(&r.alias) else {
        return Err(MlflowError::invalid(format!(
            "Registered model alias {} not found.",
            r.alias
        )));
    };
    let v = m
        .versions
        .iter()
        .find(|v| v.version == *n)
        .ok_or_else(|| MlflowError::not_found(format!("version {n} of {}", r.name)))?;
    Ok(Json(version(v)))
}

// --- model versions

#[derive(Deserialize)]
struct CreateVersion {
    name: String,
    source: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    description: String,
}

pub async fn create_version(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: CreateVersion = p.read()?;
    let cmd = ModelCommand::CreateVersion {
        name: r.name.clone(),
        source: r.source.clone(),
        run_id: r.run_id.clone(),
        description: r.description,
        tags: tags(r.tags),
        create_model: false,
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    let made = w.events.iter().find_map(|e| match &e.payload {
        Some(pb::event::Payload::ModelVersionCreated(v)) => Some(v.version),
        _ => None,
    });
    let made = made.ok_or_else(|| AppError::Internal("no version was created".into()))?;
    Ok(Json(version(
        &f.version(&r.name, made, Read::After(w.index)).await?,
    )))
}

#[derive(Deserialize)]
struct VersionRef {
    name: String,
    #[serde(deserialize_with = "number")]
    version: u64,
}

pub async fn get_version(State(f): State<Facade>, p: Params) -> Answer {
    let r: VersionRef = p.read()?;
    Ok(Json(version(
        &f.version(&r.name, r.version, Read::Now).await?,
    )))
}

#[derive(Deserialize)]
struct UpdateVersion {
    name: String,
    #[serde(deserialize_with = "number")]
    version: u64,
    #[serde(default)]
    description: String,
}

pub async fn update_version(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: UpdateVersion = p.read()?;
    let cmd = ModelCommand::UpdateVersion {
        name: r.name.clone(),
        version: r.version,
        description: r.description,
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(version(
        &f.version(&r.name, r.version, Read::After(w.index)).await?,
    )))
}

pub async fn delete_version(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: VersionRef = p.read()?;
    let cmd = ModelCommand::DeleteVersion {
        name: r.name,
        version: r.version,
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

pub async fn search_versions(State(f): State<Facade>, p: Params) -> Answer {
    let r: Search = p.read()?;
    let max = r.max_results.unwrap_or(10_000);
    if max == 0 || max > 200_000 {
        return Err(MlflowError::invalid(format!(
            "Invalid value {max} for parameter 'max_results' supplied."
        )));
    }
    let filter = Filter::parse(&r.filter, Over::Versions)?;
    let mut order = search::order(&r.order_by, Over::Versions)?;
    // MLflow's default and tie-breaks.
    order.extend([
        (Field::Updated, true),
        (Field::Name, false),
        (Field::Version, true),
    ]);
    let mut versions: Vec<pb::ModelVersionView> = f
        .models_where(Read::Now, "", |n| filter.admits_name(n))
        .await?
        .into_iter()
        .flat_map(|m| m.versions)
        .filter(|v| {
            filter.matches(&Record {
                name: &v.name,
                tags: &v.tags,
                version: Some(v.version),
                run_id: &v.run_id,
                source: &v.source,
            })
        })
        .collect();
    versions.sort_by(ordered(
        &order,
        |a: &pb::ModelVersionView, b, field| match field {
            Field::Name => a.name.cmp(&b.name),
            Field::Created => a.created_ms.cmp(&b.created_ms),
            Field::Updated => a.updated_ms.cmp(&b.updated_ms),
            Field::Version => a.version.cmp(&b.version),
        },
    ));
    let (page, next) = search::page(versions, &r.page_token, max as usize)?;
    let mut out = json!({
        "model_versions": page.iter().map(json::version).collect::<Vec<_>>(),
    });
    if !next.is_empty() {
        out["next_page_token"] = Value::String(next);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Transition {
    name: String,
    #[serde(deserialize_with = "number")]
    version: u64,
    stage: String,
    #[serde(default, deserialize_with = "boolean")]
    archive_existing_versions: bool,
    /// Cairn's: only if the version is in this stage now (compare-and-set).
    #[serde(default)]
    expected_stage: Option<String>,
    /// Cairn's: only if exactly these versions are in the target stage now.
    #[serde(default)]
    expected_in_target: Option<Vec<Value>>,
    #[serde(default)]
    comment: String,
}

pub async fn transition_stage(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: Transition = p.read()?;
    let cmd = ModelCommand::Transition {
        name: r.name.clone(),
        version: r.version,
        stage: stage(&r.stage)?,
        expected: r.expected_stage.as_deref().map(stage).transpose()?,
        expected_in_target: r
            .expected_in_target
            .map(|vs| {
                vs.iter()
                    .map(|v| version_number(v, "expected_in_target"))
                    .collect::<Result<_, _>>()
            })
            .transpose()?,
        archive_existing: r.archive_existing_versions,
        reason: r.comment,
    };
    let w = f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(version(
        &f.version(&r.name, r.version, Read::After(w.index)).await?,
    )))
}

#[derive(Deserialize)]
struct SetVersionTag {
    name: String,
    #[serde(deserialize_with = "number")]
    version: u64,
    key: String,
    value: String,
}

pub async fn set_version_tag(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: SetVersionTag = p.read()?;
    let cmd = ModelCommand::SetVersionTag {
        name: r.name,
        version: r.version,
        key: r.key,
        value: r.value,
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteVersionTag {
    name: String,
    #[serde(deserialize_with = "number")]
    version: u64,
    key: String,
}

pub async fn delete_version_tag(State(f): State<Facade>, who: Who, p: Params) -> Answer {
    let r: DeleteVersionTag = p.read()?;
    let cmd = ModelCommand::DeleteVersionTag {
        name: r.name,
        version: r.version,
        key: r.key,
    };
    f.submit(&who, model_cmd(cmd)).await?;
    Ok(Json(json!({})))
}

pub async fn download_uri(State(f): State<Facade>, p: Params) -> Answer {
    let r: VersionRef = p.read()?;
    let v = f.version(&r.name, r.version, Read::Now).await?;
    let uri = if v.storage_location.is_empty() {
        v.source
    } else {
        v.storage_location
    };
    Ok(Json(json!({ "artifact_uri": uri })))
}
