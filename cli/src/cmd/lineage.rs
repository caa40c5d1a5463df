//! `cairn lineage`: where a model version came from — the job that trained it, where
//! that job ran and on which GPUs, its code — and where it went: the deployments whose
//! revisions serve (or served) it. From a job, the versions it produced.
//! A tree by default, JSON with `-o json`, Graphviz with `--format dot`.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use cairn_proto as pb;
use serde::Serialize;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::Format;
use crate::views::stage_name;

#[derive(clap::Args)]
pub struct LineageArgs {
    /// `model/NAME`, `model/NAME:VERSION` or `job/NAME`.
    pub of: String,
    /// `tree` or `dot` (Graphviz); `-o json` gives the same as JSON.
    #[arg(long, default_value = "tree", value_parser = ["tree", "dot"])]
    pub format: String,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Serialize)]
struct Lineage {
    versions: Vec<VersionLineage>,
}

#[derive(Serialize)]
struct VersionLineage {
    model: String,
    version: u64,
    stage: String,
    aliases: Vec<String>,
    source: String,
    storage_location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobLineage>,
    /// What the run recorded: metrics and parameters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metrics: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, String>,
    /// The deployments with a revision of this version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deployments: Vec<DeploymentLineage>,
}

#[derive(Serialize)]
struct DeploymentLineage {
    name: String,
    /// Its revisions that run this version.
    revisions: Vec<u32>,
    /// The percentage of its requests these revisions take now.
    weight_now: u32,
    deleted: bool,
}

#[derive(Serialize)]
struct JobLineage {
    name: String,
    phase: String,
    code: String,
    nodes: Vec<String>,
    gpus: Vec<String>,
    replicas: Vec<ReplicaLineage>,
}

#[derive(Serialize)]
struct ReplicaLineage {
    replica: String,
    node: String,
    gpus: Vec<String>,
}

pub async fn run(ctx: &mut Ctx, a: LineageArgs) -> anyhow::Result<()> {
    let Some((kind, rest)) = a.of.split_once('/') else {
        bail!("{:?}: model/NAME[:VERSION] or job/NAME", a.of);
    };
    let lineage = match kind {
        "model" => {
            let (name, version) = match rest.rsplit_once(':') {
                Some((n, v)) => {
                    let v: u64 = v.parse().with_context(|| format!("version {v:?}"))?;
                    (n, Some(v))
                }
                None => (rest, None),
            };
            let models = ctx.models(name, false, None, &a.read).await?;
            let served = super::deploy::deployments(ctx, "", true, &a.read).await?;
            let mut versions = Vec::new();
            for m in &models {
                for v in m
                    .versions
                    .iter()
                    .filter(|v| version.is_none_or(|n| v.version == n))
                {
                    versions.push(version_lineage(ctx, v, &served, &a.read).await?);
                }
            }
            if versions.is_empty() {
                bail!("{}: no such version", a.of);
            }
            Lineage { versions }
        }
        "job" => {
            let models = ctx.models("", false, None, &a.read).await?;
            let served = super::deploy::deployments(ctx, "", true, &a.read).await?;
            let mut versions = Vec::new();
            for v in models
                .iter()
                .flat_map(|m| &m.versions)
                .filter(|v| v.run_id == rest)
            {
                versions.push(version_lineage(ctx, v, &served, &a.read).await?);
            }
            if versions.is_empty() {
                // Still show the job: it produced nothing (yet).
                let job = job_lineage(ctx, rest, None, &a.read)
                    .await?
                    .with_context(|| format!("no job {rest:?}"))?;
                println!("{}", job_tree(&job, ""));
                println!("  (no model version produced)");
                return Ok(());
            }
            Lineage { versions }
        }
        other => bail!("{other}: lineage is of a model or a job"),
    };
    match (ctx.format, a.format.as_str()) {
        (_, "dot") => print!("{}", dot(&lineage)),
        (Format::Json, _) => println!("{}", serde_json::to_string_pretty(&lineage)?),
        (Format::Yaml, _) => print!("{}", serde_yaml_ng::to_string(&lineage)?),
        (Format::Table, _) => print!("{}", tree(&lineage)),
    }
    Ok(())
}

/// The deployments of `all` with a revision of version `version` of `model`.
fn served_by(all: &[pb::DeploymentView], model: &str, version: u64) -> Vec<DeploymentLineage> {
    all.iter()
        .filter(|d| {
            let spec: serde_json::Value = serde_json::from_str(&d.spec_json).unwrap_or_default();
            spec["spec"]["model"]["name"] == model
        })
        .filter_map(|d| {
            let revisions: Vec<u32> = d
                .revisions
                .iter()
                .filter(|r| r.model_version == version)
                .map(|r| r.revision)
                .collect();
            (!revisions.is_empty()).then(|| DeploymentLineage {
                name: d.name.clone(),
                weight_now: revisions
                    .iter()
                    .map(|r| d.weights.get(r).copied().unwrap_or(0))
                    .sum(),
                revisions,
                deleted: d.deleted,
            })
        })
        .collect()
}

async fn version_lineage(
    ctx: &mut Ctx,
    v: &pb::ModelVersionView,
    served: &[pb::DeploymentView],
    read: &ReadArgs,
) -> anyhow::Result<VersionLineage> {
    let job = if v.run_id.is_empty() {
        None
    } else {
        job_lineage(ctx, &v.run_id, v.lineage.as_ref(), read).await?
    };
    Ok(VersionLineage {
        model: v.name.clone(),
        version: v.version,
        stage: stage_name(v.stage).to_string(),
        aliases: v.aliases.clone(),
        source: v.source.clone(),
        storage_location: v.storage_location.clone(),
        job,
        metrics: v
            .outputs
            .as_ref()
            .map(|o| o.metrics.clone())
            .unwrap_or_default(),
        params: v
            .outputs
            .as_ref()
            .map(|o| o.params.clone())
            .unwrap_or_default(),
        deployments: served_by(served, &v.name, v.version),
    })
}

/// The job `name` and where it ran; what the version recorded when the job is gone.
async fn job_lineage(
    ctx: &mut Ctx,
    name: &str,
    recorded: Option<&pb::ModelLineage>,
    read: &ReadArgs,
) -> anyhow::Result<Option<JobLineage>> {
    let req = pb::ListJobsRequest {
        name: name.to_string(),
        consistency: read.consistency(),
        ..Default::default()
    };
    let jobs = ctx
        .cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.list_jobs(req).await }
        })
        .await
        .map(|r| r.jobs)
        .unwrap_or_default();
    let Some(j) = jobs.first() else {
        return Ok(recorded.map(|l| JobLineage {
            name: name.to_string(),
            phase: "?".into(),
            code: l.code.clone(),
            nodes: l.nodes.clone(),
            gpus: l.gpus.clone(),
            replicas: Vec::new(),
        }));
    };
    let replicas: Vec<ReplicaLineage> = j
        .placements
        .iter()
        .map(|p| ReplicaLineage {
            replica: format!("{}-{}", p.role, p.index),
            node: p.node.clone(),
            gpus: p.gpus.clone(),
        })
        .collect();
    let mut nodes: Vec<String> = replicas.iter().map(|r| r.node.clone()).collect();
    nodes.dedup();
    Ok(Some(JobLineage {
        name: j.name.clone(),
        phase: j.phase.clone(),
        code: recorded
            .map(|l| l.code.clone())
            .unwrap_or_else(|| code_of(&j.spec_json)),
        gpus: replicas.iter().flat_map(|r| r.gpus.clone()).collect(),
        nodes,
        replicas,
    }))
}

/// A job document's code source: `git <repo>[@<ref>]` or `dir <path>`.
fn code_of(spec_json: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
    let sync = &doc["spec"]["codeSync"];
    if let Some(repo) = sync["git"]["repository"].as_str() {
        match sync["git"]["ref"].as_str() {
            Some(r) => format!("git {repo}@{r}"),
            None => format!("git {repo}"),
        }
    } else if let Some(dir) = sync["directory"].as_str() {
        format!("dir {dir}")
    } else {
        String::new()
    }
}

fn job_tree(j: &JobLineage, indent: &str) -> String {
    let mut s = format!("{indent}job/{} ({})", j.name, j.phase);
    if !j.code.is_empty() {
        s.push_str(&format!(" code {}", j.code));
    }
    for (i, r) in j.replicas.iter().enumerate() {
        let branch = if i + 1 == j.replicas.len() {
            "└──"
        } else {
            "├──"
        };
        s.push_str(&format!(
            "\n{indent}{branch} {} on node/{}: {}",
            r.replica,
            r.node,
            if r.gpus.is_empty() {
                "no GPUs".to_string()
            } else {
                r.gpus.join(", ")
            }
        ));
    }
    if j.replicas.is_empty() && !j.nodes.is_empty() {
        s.push_str(&format!(
            "\n{indent}└── on {}: {}",
            j.nodes.join(", "),
            j.gpus.join(", ")
        ));
    }
    s
}

fn tree(l: &Lineage) -> String {
    let mut s = String::new();
    let mut model = "";
    for v in &l.versions {
        if v.model != model {
            model = &v.model;
            s.push_str(&format!("model/{model}\n"));
        }
        let aliases = if v.aliases.is_empty() {
            String::new()
        } else {
            format!(", aliases {}", v.aliases.join(", "))
        };
        s.push_str(&format!(
            "└── version {} ({}{aliases}) source {}\n",
            v.version, v.stage, v.source
        ));
        match &v.job {
            Some(j) => s.push_str(&format!("{}\n", job_tree(j, "    "))),
            None => s.push_str("    (registered by hand: no job)\n"),
        }
        for (what, values) in [("metrics", &v.metrics), ("params", &v.params)] {
            if !values.is_empty() {
                let list: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("    {what}: {}\n", list.join(", ")));
            }
        }
        for d in &v.deployments {
            let revisions: Vec<String> = d.revisions.iter().map(|r| format!("r{r}")).collect();
            let now = if d.deleted {
                "deleted".to_string()
            } else {
                format!("{}% of its traffic now", d.weight_now)
            };
            s.push_str(&format!(
                "    → deployment/{} {} ({now})\n",
                d.name,
                revisions.join(", ")
            ));
        }
    }
    s
}

fn dot(l: &Lineage) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
    let mut s = String::from("digraph lineage {\n  rankdir=LR;\n");
    for v in &l.versions {
        let version = q(&format!("model/{}:{}", v.model, v.version));
        s.push_str(&format!(
            "  {version} [shape=box, label={}];\n",
            q(&format!("model/{} v{}\\n{}", v.model, v.version, v.stage))
        ));
        if let Some(j) = &v.job {
            let job = q(&format!("job/{}", j.name));
            s.push_str(&format!(
                "  {job} [shape=ellipse];\n  {job} -> {version};\n"
            ));
            if !j.code.is_empty() {
                s.push_str(&format!("  {} -> {job};\n", q(&j.code)));
            }
            for r in &j.replicas {
                let node = q(&format!("node/{}", r.node));
                s.push_str(&format!(
                    "  {node} [shape=component];\n  {node} -> {job} [label={}];\n",
                    q(&format!("{}: {} GPUs", r.replica, r.gpus.len()))
                ));
            }
        }
        for d in &v.deployments {
            let deployment = q(&format!("deployment/{}", d.name));
            s.push_str(&format!(
                "  {deployment} [shape=hexagon];\n  {version} -> {deployment};\n"
            ));
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lineage {
        Lineage {
            versions: vec![VersionLineage {
                model: "resnet".into(),
                version: 3,
                stage: "Production".into(),
                aliases: vec!["champion".into()],
                source: "/models/r".into(),
                storage_location: "file://a/models/r".into(),
                job: Some(JobLineage {
                    name: "train".into(),
                    phase: "Succeeded".into(),
                    code: "git https://example.com/r.git@v1".into(),
                    nodes: vec!["a".into()],
                    gpus: vec!["GPU-0".into()],
                    replicas: vec![ReplicaLineage {
                        replica: "master-0".into(),
                        node: "a".into(),
                        gpus: vec!["GPU-0".into()],
                    }],
                }),
                metrics: BTreeMap::from([("accuracy".into(), "0.93".into())]),
                params: BTreeMap::from([("lr".into(), "0.001".into())]),
                deployments: vec![DeploymentLineage {
                    name: "classify".into(),
                    revisions: vec![1, 3],
                    weight_now: 90,
                    deleted: false,
                }],
            }],
        }
    }

    #[test]
    fn the_tree_and_the_graph_show_the_chain() {
        let t = tree(&sample());
        assert!(
            t.starts_with("model/resnet\n└── version 3 (Production, aliases champion)"),
            "{t}"
        );
        assert!(
            t.contains("job/train (Succeeded) code git https://example.com/r.git@v1"),
            "{t}"
        );
        assert!(t.contains("master-0 on node/a: GPU-0"), "{t}");
        assert!(
            t.contains("    metrics: accuracy=0.93\n    params: lr=0.001\n"),
            "{t}"
        );
        assert!(
            t.contains("    → deployment/classify r1, r3 (90% of its traffic now)\n"),
            "{t}"
        );
        let d = dot(&sample());
        assert!(
            d.contains("\"model/resnet:3\" -> \"deployment/classify\""),
            "{d}"
        );
        assert!(d.contains("\"job/train\" -> \"model/resnet:3\""), "{d}");
        assert!(d.contains("\"node/a\" -> \"job/train\""), "{d}");
    }

    #[test]
    fn a_job_documents_code_source_reads() {
        let spec = r#"{"spec": {"codeSync": {"git": {"repository": "r", "ref": "main"}}}}"#;
        assert_eq!(code_of(spec), "git r@main");
        assert_eq!(
            code_of(r#"{"spec": {"codeSync": {"directory": "/src"}}}"#),
            "dir /src"
        );
        assert_eq!(code_of("{}"), "");
    }
}
