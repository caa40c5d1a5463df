//! The leader is killed while it projects 5,000 models into a real kube-apiserver: the
//! new leader resumes from the checkpoint the old one recorded in the log (not from the
//! start), and Kubernetes ends up holding every model at its latest revision, none lost
//! and none stale, with models changed before and after the kill.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_proto as pb;
use cairn_tests::{cli_json, eventually, KubeApiServer, Settings, TestCluster};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use pb::command::Body;

const MODELS: usize = 5_000;
/// Models changed again before the kill, and after it.
const TAGGED_BEFORE: std::ops::Range<usize> = 0..100;
const TAGGED_AFTER: std::ops::Range<usize> = 4_900..5_000;

fn name(i: usize) -> String {
    format!("m-{i:04}")
}

fn submit(body: Body) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "user/loader".into(),
            body: Some(body),
            ..Default::default()
        }),
    }
}

/// Submit one command per index of `range`, 50 writers at a time, to the member at
/// `addr`.
async fn write_all(
    cluster: &mut TestCluster,
    leader: u64,
    range: std::ops::Range<usize>,
    body: fn(usize) -> Body,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let indexes: Vec<usize> = range.collect();
    for part in indexes.chunks(indexes.len().div_ceil(50)) {
        let mut c = cluster.node(leader).client();
        let part = part.to_vec();
        tasks.spawn(async move {
            for i in part {
                c.submit(submit(body(i))).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn create(i: usize) -> Body {
    Body::CreateModel(pb::CreateModel {
        name: name(i),
        ..Default::default()
    })
}

fn tag(i: usize) -> Body {
    Body::SetModelTag(pb::SetModelTag {
        name: name(i),
        key: "round".into(),
        value: "2".into(),
    })
}

/// `cairn k8s status` of the cluster, as JSON.
fn status(endpoints: &[String]) -> Option<serde_json::Value> {
    cli_json(endpoints, &["k8s", "status"]).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_resumes_the_projection_from_the_checkpoint() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let k = KubeApiServer::start(&dir.path().join("kube"))?;
    // No periodic full reconcile during the test: what the new leader does comes from
    // the checkpoint alone.
    let settings = Settings {
        extra_toml: format!(
            "[kubernetes]\nkubeconfig = \"{}\"\nresync_seconds = 3600\n",
            k.kubeconfig.display()
        ),
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(3, settings).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let endpoints = cluster.endpoints();
    let ready = eventually(Duration::from_secs(90), "the projector leads", || async {
        let p = status(&endpoints)?;
        (p["state"] == "leading").then_some(p)
    })
    .await?;
    let base = ready["last_sequence"].as_u64().unwrap_or(0);

    let started = Instant::now();
    write_all(&mut cluster, leader, 0..MODELS, create).await?;
    write_all(&mut cluster, leader, TAGGED_BEFORE, tag).await?;
    eprintln!("{MODELS} models written in {:?}", started.elapsed());

    // Kill the leader once part of them is in Kubernetes and checkpointed.
    let at_kill = eventually(Duration::from_secs(120), "a checkpoint mid-way", || async {
        let p = status(&endpoints)?;
        let models = p["objects"]["Model"].as_u64().unwrap_or(0);
        let checkpoint = p["checkpoint"].as_u64()?;
        (models >= 1_000 && models < MODELS as u64 - 500 && checkpoint > base + 500).then_some(p)
    })
    .await?;
    let checkpoint = at_kill["checkpoint"].as_u64().unwrap_or(0);
    eprintln!(
        "killing the leader with {} models projected, checkpoint {checkpoint}",
        at_kill["objects"]["Model"]
    );
    cluster.node(leader).kill();

    let new_leader = eventually(Duration::from_secs(30), "a new leader", || async {
        let l = cluster.wait_leader(Duration::from_secs(5)).await.ok()?;
        (l != leader).then_some(l)
    })
    .await?;
    let endpoints: Vec<String> = cluster.endpoints_from(new_leader);
    let resumed = eventually(
        Duration::from_secs(60),
        "the new leader projects",
        || async {
            let p = status(&endpoints)?;
            (p["state"] == "leading").then_some(p)
        },
    )
    .await?;
    let resumed_from = resumed["resumed_from"].as_u64().unwrap_or(0);
    assert!(
        resumed_from >= checkpoint,
        "resumed from {resumed_from}, before the checkpoint {checkpoint}: {resumed}"
    );
    write_all(&mut cluster, new_leader, TAGGED_AFTER, tag).await?;

    // Every model, at its latest revision.
    let client = k.client().await?;
    let models: Api<DynamicObject> = Api::namespaced_with(
        client,
        "cairn",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cairn.dev", "v1", "Model"),
            "models",
        ),
    );
    let want: BTreeMap<String, String> = (0..MODELS)
        .map(|i| {
            let tagged = TAGGED_BEFORE.contains(&i) || TAGGED_AFTER.contains(&i);
            (name(i), if tagged { "2" } else { "1" }.to_string())
        })
        .collect();
    let held = eventually(Duration::from_secs(180), "every model, current", || async {
        let list = models.list(&ListParams::default()).await.ok()?;
        let held: BTreeMap<String, String> = list
            .items
            .into_iter()
            .filter_map(|o| {
                let revision = o.metadata.annotations?.get("cairn.dev/revision")?.clone();
                Some((o.metadata.name?, revision))
            })
            .collect();
        (held == want).then_some(held)
    })
    .await?;
    assert_eq!(held.len(), MODELS);
    let done = status(&endpoints).unwrap_or_default();
    eprintln!(
        "all {MODELS} models current {:?} after they were written; the new leader resumed from {resumed_from} (the log held {} events when it began)",
        started.elapsed(),
        resumed["last_sequence"]
    );
    assert_eq!(done["resumed_from"], resumed_from, "{done}");
    Ok(())
}
