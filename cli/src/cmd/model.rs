//! `cairn model`: the model registry — models, versions, stages, aliases, tags — and its
//! history: every event of a model, who held a stage or alias at any time, a model as it
//! was then, and a watch that follows registry changes across leader changes.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use serde::Serialize;

use crate::ctx::{now_ms, parse_labels, parse_time, Ctx, ReadArgs};
use crate::output::{emit, table, time, Format};
use crate::views::{events_table, stage_name, EventView};
use comfy_table::Table;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Create a model.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A tag, `key=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Models, with their latest version per stage.
    List {
        /// Deleted models too (their history stays).
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// One model with its versions; `--at` shows it as it was then.
    Get {
        name: String,
        /// RFC 3339 time, Unix ms, or a duration ago (`2h`).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Change a model's description or tags.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Set a tag, `key=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Remove a tag (repeatable).
        #[arg(long = "untag")]
        untags: Vec<String>,
    },
    /// Rename a model (its history follows it).
    Rename { name: String, new_name: String },
    /// Delete a model: it leaves listings; its history stays.
    Delete { name: String },
    /// A model's versions.
    Versions {
        name: String,
        /// Only versions in this stage.
        #[arg(long)]
        stage: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Register a new version of a model.
    Register {
        name: String,
        /// Where the model's artifacts are (a URI or a path).
        #[arg(long)]
        source: String,
        /// The job (run) that produced it.
        #[arg(long, default_value = "")]
        run_id: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A tag, `key=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Create the model too when it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Change a version's description or tags, or delete it.
    Version {
        name: String,
        version: u64,
        #[arg(long)]
        description: Option<String>,
        /// Set a tag, `key=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Remove a tag (repeatable).
        #[arg(long = "untag")]
        untags: Vec<String>,
        /// Delete the version (and the aliases pointing at it).
        #[arg(long)]
        delete: bool,
    },
    /// Move a version to a stage: None, Staging, Production or Archived.
    Stage {
        name: String,
        version: u64,
        stage: String,
        /// Only if the version is in this stage now.
        #[arg(long)]
        expect: Option<String>,
        /// Only if exactly these versions are in the target stage now (`none`: no version).
        #[arg(long, value_delimiter = ',')]
        expect_in_stage: Option<Vec<String>>,
        /// Archive the versions already in the target stage.
        #[arg(long)]
        archive_existing: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Point an alias at a version, or delete it.
    Alias {
        name: String,
        alias: String,
        /// The version (not needed with --delete).
        version: Option<u64>,
        /// Only if the alias points at this version now (`none`: only if it does not
        /// exist).
        #[arg(long)]
        expect: Option<String>,
        #[arg(long)]
        delete: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Say who may move a stage or an alias of the model (admins only): from then on
    /// only those actors (`user/alice`, …) or an admin may move it; no --allow lifts the
    /// protection.
    Protect {
        name: String,
        #[arg(long, conflicts_with = "alias", required_unless_present = "alias")]
        stage: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        /// An actor who may move it (repeatable).
        #[arg(long = "allow")]
        allowed: Vec<String>,
    },
    /// Every event of a model and its versions, under this and earlier names.
    History {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Which versions held a stage or an alias at a time, since when, set by whom.
    Who {
        name: String,
        #[arg(long, conflicts_with = "alias", required_unless_present = "alias")]
        stage: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        /// RFC 3339 time, Unix ms, or a duration ago (default: now).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Follow registry events (of one model, or all), resuming after a reconnect.
    Watch {
        name: Option<String>,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
    },
}

fn stage(s: &str) -> anyhow::Result<pb::ModelStage> {
    [
        pb::ModelStage::None,
        pb::ModelStage::Staging,
        pb::ModelStage::Production,
        pb::ModelStage::Archived,
    ]
    .into_iter()
    .find(|st| stage_name(*st as i32).eq_ignore_ascii_case(s))
    .with_context(|| format!("stage {s:?}: one of None, Staging, Production, Archived"))
}

#[derive(Serialize)]
struct VersionOut {
    name: String,
    version: u64,
    stage: &'static str,
    aliases: Vec<String>,
    source: String,
    storage_location: String,
    run_id: String,
    description: String,
    tags: BTreeMap<String, String>,
    creator: String,
    created: String,
    updated: String,
    metrics: BTreeMap<String, String>,
    params: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<LineageOut>,
}

#[derive(Serialize)]
struct LineageOut {
    job: String,
    nodes: Vec<String>,
    gpus: Vec<String>,
    code: String,
}

#[derive(Serialize)]
struct ModelOut {
    name: String,
    description: String,
    tags: BTreeMap<String, String>,
    aliases: BTreeMap<String, u64>,
    creator: String,
    created: String,
    updated: String,
    deleted: bool,
    former_names: Vec<String>,
    /// "stage Production" / "alias champion" → who may move it.
    protected: BTreeMap<String, Vec<String>>,
    versions: Vec<VersionOut>,
}

fn version_out(v: &pb::ModelVersionView) -> VersionOut {
    let outputs = v.outputs.clone().unwrap_or_default();
    VersionOut {
        name: v.name.clone(),
        version: v.version,
        stage: stage_name(v.stage),
        aliases: v.aliases.clone(),
        source: v.source.clone(),
        storage_location: v.storage_location.clone(),
        run_id: v.run_id.clone(),
        description: v.description.clone(),
        tags: v.tags.clone(),
        creator: v.creator.clone(),
        created: time(v.created_ms),
        updated: time(v.updated_ms),
        metrics: outputs.metrics,
        params: outputs.params,
        lineage: v.lineage.as_ref().map(|l| LineageOut {
            job: l.job.clone(),
            nodes: l.nodes.clone(),
            gpus: l.gpus.clone(),
            code: l.code.clone(),
        }),
    }
}

fn model_out(m: &pb::ModelView) -> ModelOut {
    ModelOut {
        name: m.name.clone(),
        description: m.description.clone(),
        tags: m.tags.clone(),
        aliases: m.aliases.clone(),
        creator: m.creator.clone(),
        created: time(m.created_ms),
        updated: time(m.updated_ms),
        deleted: m.deleted,
        former_names: m.former_names.clone(),
        protected: m
            .protections
            .iter()
            .map(|p| {
                use pb::model_protection::Target;
                let what = match &p.target {
                    Some(Target::Stage(s)) => format!("stage {}", stage_name(*s)),
                    Some(Target::Alias(a)) => format!("alias {a}"),
                    None => "?".to_string(),
                };
                (what, p.allowed.clone())
            })
            .collect(),
        versions: m.versions.iter().map(version_out).collect(),
    }
}

/// A table with `header` and `rows`.
fn grid(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut t = table(header);
    for r in rows {
        t.add_row(r);
    }
    t
}

fn versions_table(versions: &[VersionOut]) -> Table {
    grid(
        &[
            "VERSION", "STAGE", "ALIASES", "SOURCE", "RUN", "CREATOR", "UPDATED",
        ],
        versions
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    v.stage.to_string(),
                    v.aliases.join(","),
                    v.source.clone(),
                    v.run_id.clone(),
                    v.creator.clone(),
                    v.updated.clone(),
                ]
            })
            .collect(),
    )
}

pub async fn run(ctx: &mut Ctx, c: ModelCmd) -> anyhow::Result<()> {
    match c {
        ModelCmd::Create {
            name,
            description,
            tags,
        } => {
            let body = Body::CreateModel(pb::CreateModel {
                name,
                description,
                tags: parse_labels(&tags)?,
            });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::List { deleted, read } => {
            let models = ctx.models("", deleted, None, &read).await?;
            let out: Vec<ModelOut> = models.iter().map(model_out).collect();
            emit(ctx.format, &out, || {
                grid(
                    &[
                        "NAME",
                        "VERSIONS",
                        "PRODUCTION",
                        "STAGING",
                        "ALIASES",
                        "UPDATED",
                    ],
                    out.iter()
                        .map(|m| {
                            let in_stage = |s: &str| {
                                m.versions
                                    .iter()
                                    .filter(|v| v.stage == s)
                                    .map(|v| v.version.to_string())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            };
                            let aliases = m
                                .aliases
                                .iter()
                                .map(|(a, v)| format!("{a}→{v}"))
                                .collect::<Vec<_>>()
                                .join(" ");
                            let name = if m.deleted {
                                format!("{} (deleted)", m.name)
                            } else {
                                m.name.clone()
                            };
                            vec![
                                name,
                                m.versions.len().to_string(),
                                in_stage("Production"),
                                in_stage("Staging"),
                                aliases,
                                m.updated.clone(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ModelCmd::Get { name, at, read } => {
            let at = at.as_deref().map(parse_time).transpose()?;
            let models = ctx.models(&name, false, at, &read).await?;
            let m = models
                .first()
                .with_context(|| format!("no model {name:?}"))?;
            let out = model_out(m);
            emit(ctx.format, &out, || {
                print!(
                    "model/{}{}\n  description: {}\n  tags: {:?}\n  aliases: {:?}\n  created {} by {}\n",
                    out.name,
                    if out.deleted { " (deleted)" } else { "" },
                    out.description,
                    out.tags,
                    out.aliases,
                    out.created,
                    out.creator
                );
                if !out.former_names.is_empty() {
                    println!("  formerly: {}", out.former_names.join(", "));
                }
                for (what, allowed) in &out.protected {
                    println!("  protected: {what}, moved only by {}", allowed.join(", "));
                }
                versions_table(&out.versions)
            })
        }
        ModelCmd::Update {
            name,
            description,
            tags,
            untags,
        } => {
            let bodies = changes(
                description,
                &tags,
                untags,
                |description| {
                    Body::UpdateModel(pb::UpdateModel {
                        name: name.clone(),
                        description,
                    })
                },
                |key, value| {
                    Body::SetModelTag(pb::SetModelTag {
                        name: name.clone(),
                        key,
                        value,
                    })
                },
                |key| {
                    Body::DeleteModelTag(pb::DeleteModelTag {
                        name: name.clone(),
                        key,
                    })
                },
            )?;
            submit_all(ctx, bodies).await
        }
        ModelCmd::Rename { name, new_name } => {
            let body = Body::RenameModel(pb::RenameModel { name, new_name });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::Delete { name } => {
            let body = Body::DeleteModel(pb::DeleteModel { name });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::Versions {
            name,
            stage: s,
            read,
        } => {
            let models = ctx.models(&name, false, None, &read).await?;
            let wanted = s.as_deref().map(stage).transpose()?;
            let out: Vec<VersionOut> = models
                .iter()
                .flat_map(|m| &m.versions)
                .filter(|v| wanted.is_none_or(|w| v.stage == w as i32))
                .map(version_out)
                .collect();
            emit(ctx.format, &out, || versions_table(&out))
        }
        ModelCmd::Register {
            name,
            source,
            run_id,
            description,
            tags,
            create,
        } => {
            let body = Body::CreateModelVersion(pb::CreateModelVersion {
                name,
                source,
                run_id,
                description,
                tags: parse_labels(&tags)?,
                create_model: create,
            });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::Version {
            name,
            version,
            description,
            tags,
            untags,
            delete,
        } => {
            let mut bodies = changes(
                description,
                &tags,
                untags,
                |description| {
                    Body::UpdateModelVersion(pb::UpdateModelVersion {
                        name: name.clone(),
                        version,
                        description,
                    })
                },
                |key, value| {
                    Body::SetModelVersionTag(pb::SetModelVersionTag {
                        name: name.clone(),
                        version,
                        key,
                        value,
                    })
                },
                |key| {
                    Body::DeleteModelVersionTag(pb::DeleteModelVersionTag {
                        name: name.clone(),
                        version,
                        key,
                    })
                },
            )?;
            if delete {
                bodies.push(Body::DeleteModelVersion(pb::DeleteModelVersion {
                    name: name.clone(),
                    version,
                }));
            }
            submit_all(ctx, bodies).await
        }
        ModelCmd::Stage {
            name,
            version,
            stage: to,
            expect,
            expect_in_stage,
            archive_existing,
            reason,
        } => {
            let expected_in_target = expect_in_stage
                .map(|vs| {
                    vs.iter()
                        .filter(|v| *v != "none")
                        .map(|v| {
                            v.parse()
                                .with_context(|| format!("--expect-in-stage {v:?}"))
                        })
                        .collect::<anyhow::Result<Vec<u64>>>()
                })
                .transpose()?
                .map(|versions| pb::ModelVersions { versions });
            let body = Body::TransitionModelStage(pb::TransitionModelStage {
                name,
                version,
                stage: stage(&to)? as i32,
                expected_stage: expect.as_deref().map(stage).transpose()?.map(|s| s as i32),
                archive_existing,
                reason,
                expected_in_target,
            });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::Alias {
            name,
            alias,
            version,
            expect,
            delete,
            reason,
        } => {
            let body = if delete {
                Body::DeleteModelAlias(pb::DeleteModelAlias {
                    name,
                    alias,
                    reason,
                })
            } else {
                let Some(version) = version else {
                    bail!("a version to point the alias at (or --delete)");
                };
                let expected_version = match expect.as_deref() {
                    None => None,
                    Some("none") => Some(0),
                    Some(v) => Some(
                        v.parse()
                            .with_context(|| format!("--expect {v:?}: a version or none"))?,
                    ),
                };
                Body::SetModelAlias(pb::SetModelAlias {
                    name,
                    alias,
                    version,
                    expected_version,
                    reason,
                })
            };
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::Protect {
            name,
            stage: s,
            alias,
            allowed,
        } => {
            use pb::model_protection::Target;
            let target = match (s, alias) {
                (Some(s), _) => Target::Stage(stage(&s)? as i32),
                (None, Some(a)) => Target::Alias(a),
                (None, None) => bail!("--stage or --alias"),
            };
            let body = Body::ProtectModel(pb::ProtectModel {
                name,
                protection: Some(pb::ModelProtection {
                    target: Some(target),
                    allowed,
                }),
            });
            ctx.submit_and_print(body, None).await
        }
        ModelCmd::History { name, read } => history(ctx, &name, &read).await,
        ModelCmd::Who {
            name,
            stage: s,
            alias,
            at,
            read,
        } => {
            let at_ms = at
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or_else(now_ms);
            let held = match (s, alias) {
                (Some(s), _) => pb::who_held_request::Held::Stage(stage(&s)? as i32),
                (None, Some(a)) => pb::who_held_request::Held::Alias(a),
                (None, None) => bail!("--stage or --alias"),
            };
            let req = pb::WhoHeldRequest {
                name,
                held: Some(held),
                at_ms,
                consistency: read.consistency(),
            };
            let r = ctx
                .cluster
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.who_held(req).await }
                })
                .await?;
            #[derive(Serialize)]
            struct HoldingOut {
                version: u64,
                since: String,
                actor: String,
                reason: String,
                sequence: u64,
            }
            let out: Vec<HoldingOut> = r
                .holders
                .iter()
                .map(|h| HoldingOut {
                    version: h.version,
                    since: time(h.since_ms),
                    actor: h.actor.clone(),
                    reason: h.reason.clone(),
                    sequence: h.sequence,
                })
                .collect();
            if out.is_empty() && matches!(ctx.format, Format::Table) {
                println!("no version held it at {}", time(at_ms));
                return Ok(());
            }
            emit(ctx.format, &out, || {
                grid(
                    &["VERSION", "SINCE", "SET BY", "REASON", "SEQ"],
                    out.iter()
                        .map(|h| {
                            vec![
                                h.version.to_string(),
                                h.since.clone(),
                                h.actor.clone(),
                                h.reason.clone(),
                                h.sequence.to_string(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ModelCmd::Watch { name, after_seq } => {
            ctx.follow_entity("model", name.unwrap_or_default(), after_seq)
                .await
        }
    }
}

/// The commands for a new description, tags to set (`key=value`) and tags to remove.
fn changes(
    description: Option<String>,
    tags: &[String],
    untags: Vec<String>,
    describe: impl Fn(String) -> Body,
    set: impl Fn(String, String) -> Body,
    unset: impl Fn(String) -> Body,
) -> anyhow::Result<Vec<Body>> {
    let mut bodies: Vec<Body> = description.into_iter().map(describe).collect();
    for (key, value) in parse_labels(tags)? {
        bodies.push(set(key, value));
    }
    bodies.extend(untags.into_iter().map(unset));
    Ok(bodies)
}

/// Submit each change in turn, printing what each recorded.
async fn submit_all(ctx: &mut Ctx, bodies: Vec<Body>) -> anyhow::Result<()> {
    if bodies.is_empty() {
        bail!("nothing to change: give --description, --tag, --untag (or --delete)");
    }
    let mut events = Vec::new();
    for body in bodies {
        events.extend(ctx.submit(body, None).await?.events);
    }
    ctx.print_submitted(&pb::SubmitResponse {
        events,
        ..Default::default()
    })
}

/// Every event of a model: its stream, and those of the names it had before.
async fn history(ctx: &mut Ctx, name: &str, read: &ReadArgs) -> anyhow::Result<()> {
    let mut names = vec![name.to_string()];
    let mut all: Vec<pb::Event> = Vec::new();
    while let Some(n) = names.pop() {
        let events = ctx.events_of("model", &n, read).await?;
        for e in &events {
            if let Some(pb::event::Payload::ModelRenamedFrom(r)) = &e.payload {
                if !names.contains(&r.from) && !all.iter().any(|x| x.sequence == e.sequence) {
                    names.push(r.from.clone());
                }
            }
        }
        all.extend(events);
    }
    all.sort_by_key(|e| e.sequence);
    all.dedup_by_key(|e| e.sequence);
    if all.is_empty() {
        bail!("no events of model/{name}");
    }
    let views: Vec<EventView> = all.iter().map(EventView::from).collect();
    emit(ctx.format, &views, || events_table(&views))
}
