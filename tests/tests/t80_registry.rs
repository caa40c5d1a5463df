//! The model registry on real servers: racing promotions (one winner, through gRPC and
//! through the MLflow-compatible API, from different members), and the whole story on
//! `cairn-server dev` — a training job registers a version with its lineage, it is
//! promoted, its alias moves, and the history answers who held what when.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{
    bin, cli_json, eventually, free_port, http_json, Server, ServerSpec, Settings, TestCluster,
};
use pb::command::Body;
use serde_json::json;

fn submit(body: Body) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "user/test".into(),
            body: Some(body),
            ..Default::default()
        }),
    }
}

fn promote(name: &str, version: u64) -> Body {
    Body::TransitionModelStage(pb::TransitionModelStage {
        name: name.into(),
        version,
        stage: pb::ModelStage::Production as i32,
        archive_existing: true,
        // Both racers expect no version in Production.
        expected_in_target: Some(pb::ModelVersions::default()),
        ..Default::default()
    })
}

async fn production(cluster: &mut TestCluster, name: &str) -> anyhow::Result<Vec<u64>> {
    let models = cluster
        .node(1)
        .client()
        .list_models(pb::ListModelsRequest {
            name: name.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .models;
    Ok(models[0]
        .versions
        .iter()
        .filter(|v| v.stage == pb::ModelStage::Production as i32)
        .map(|v| v.version)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_promotions_have_one_winner_through_grpc_and_through_mlflow() -> anyhow::Result<()> {
    let settings = Settings {
        mlflow: true,
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(3, settings).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut c1 = cluster.node(1).client();
    let mut c2 = cluster.node(2).client();
    let mut c3 = cluster.node(3).client();

    // --- through gRPC, from two members at once
    c1.submit(submit(Body::CreateModel(pb::CreateModel {
        name: "grpc".into(),
        ..Default::default()
    })))
    .await?;
    for _ in 0..2 {
        c1.submit(submit(Body::CreateModelVersion(pb::CreateModelVersion {
            name: "grpc".into(),
            source: "s3://b/m".into(),
            ..Default::default()
        })))
        .await?;
    }
    let (a, b) = tokio::join!(
        c2.submit(submit(promote("grpc", 1))),
        c3.submit(submit(promote("grpc", 2)))
    );
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one wins: {outcomes:?}"
    );
    let loser = if outcomes[0] { b } else { a }.unwrap_err();
    assert_eq!(loser.code(), tonic::Code::FailedPrecondition, "{loser:?}");
    assert_eq!(production(&mut cluster, "grpc").await?.len(), 1);

    // --- through the MLflow-compatible API, on two followers and the leader
    let addrs: Vec<String> = (1..=3)
        .map(|id| cluster.node(id).mlflow_addr().map(str::to_string))
        .collect::<Option<_>>()
        .expect("every member serves MLflow's API");
    let api = "/api/2.0/mlflow";
    let (status, _) = http_json(
        &addrs[1],
        "POST",
        &format!("{api}/registered-models/create"),
        Some(&json!({"name": "rest"})),
    )
    .await?;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let (status, v) = http_json(
            &addrs[2],
            "POST",
            &format!("{api}/model-versions/create"),
            Some(&json!({"name": "rest", "source": "s3://b/m"})),
        )
        .await?;
        assert_eq!(status, 200, "{v}");
    }
    let body = |v: u64| {
        json!({"name": "rest", "version": v.to_string(), "stage": "Production",
               "archive_existing_versions": true, "expected_in_target": []})
    };
    let path = format!("{api}/model-versions/transition-stage");
    let (one, two) = (body(1), body(2));
    let (x, y) = tokio::join!(
        http_json(&addrs[0], "POST", &path, Some(&one)),
        http_json(&addrs[1], "POST", &path, Some(&two))
    );
    let (x, y) = (x?, y?);
    let statuses = [x.0, y.0];
    assert!(
        statuses.contains(&200) && statuses.contains(&400),
        "{x:?} {y:?}"
    );
    let loser = if x.0 == 400 { x.1 } else { y.1 };
    assert_eq!(loser["error_code"], "INVALID_STATE", "{loser}");
    assert_eq!(production(&mut cluster, "rest").await?.len(), 1);
    Ok(())
}

/// The registry example: a job that registers version N+1 of `resnet` when it succeeds.
const TRAIN: &str = include_str!("../../deploy/examples/registry/train-resnet.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_version_is_promoted_and_its_history_answers_who_held_what_when(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().join("dev"));
    let _server = Server::start_new(spec).await?;
    let endpoints = vec![addr];
    let job = dir.path().join("train.yaml");
    std::fs::write(&job, TRAIN)?;
    let job = job.display().to_string();
    // --- the agent registers its node, then the job runs to success
    eventually(Duration::from_secs(20), "the job is accepted", || {
        let (endpoints, job) = (endpoints.clone(), job.clone());
        async move { cli_json(&endpoints, &["job", "submit", "-f", &job]).ok() }
    })
    .await?;
    eventually(Duration::from_secs(60), "a version of resnet", || {
        let endpoints = endpoints.clone();
        async move {
            let v = cli_json(&endpoints, &["model", "versions", "resnet"]).ok()?;
            v.as_array().is_some_and(|a| !a.is_empty()).then_some(v)
        }
    })
    .await?;
    let model = cli_json(&endpoints, &["model", "get", "resnet"])?;
    let v1 = &model["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["run_id"], "train-resnet");
    assert_eq!(v1["source"], "/models/resnet");
    assert_eq!(v1["metrics"]["accuracy"], "0.93");
    assert_eq!(v1["params"]["lr"], "0.001");
    assert_eq!(v1["lineage"]["job"], "train-resnet");
    assert_eq!(v1["lineage"]["gpus"].as_array().map(Vec::len), Some(2));

    // --- promoted, then its alias moves twice, with time between each step
    cli_json(
        &endpoints,
        &["model", "register", "resnet", "--source", "s3://b/v2"],
    )?;
    let instant = |endpoints: &[String]| -> anyhow::Result<i64> {
        // The leader's time of the last event: the instant "after this step".
        let events = cli_json(endpoints, &["model", "history", "resnet"])?;
        let last = events
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .unwrap_or_default();
        Ok(last["timestamp_ms"].as_i64().unwrap_or(0))
    };
    cli_json(
        &endpoints,
        &[
            "--actor",
            "user/alice",
            "model",
            "stage",
            "resnet",
            "1",
            "Production",
            "--reason",
            "passed eval",
        ],
    )?;
    cli_json(
        &endpoints,
        &[
            "--actor",
            "user/alice",
            "model",
            "alias",
            "resnet",
            "champion",
            "1",
        ],
    )?;
    let t1 = instant(&endpoints)?;
    tokio::time::sleep(Duration::from_millis(20)).await; // distinct leader timestamps
    cli_json(
        &endpoints,
        &[
            "--actor", "user/bob", "model", "alias", "resnet", "champion", "2", "--expect", "1",
        ],
    )?;
    let t2 = instant(&endpoints)?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    cli_json(
        &endpoints,
        &[
            "--actor",
            "user/carol",
            "model",
            "stage",
            "resnet",
            "2",
            "Production",
            "--archive-existing",
        ],
    )?;
    cli_json(
        &endpoints,
        &[
            "--actor",
            "user/carol",
            "model",
            "alias",
            "resnet",
            "champion",
            "1",
            "--expect",
            "2",
        ],
    )?;
    let t3 = instant(&endpoints)?;

    // --- who held Production and champion at three instants
    let who = |what: &[&str], at: i64| -> anyhow::Result<(u64, String)> {
        let mut args = vec!["model", "who", "resnet"];
        args.extend_from_slice(what);
        let at = at.to_string();
        args.extend(["--at", &at]);
        let h = cli_json(&endpoints, &args)?;
        Ok((
            h[0]["version"].as_u64().unwrap_or(0),
            h[0]["actor"].as_str().unwrap_or_default().to_string(),
        ))
    };
    assert_eq!(who(&["--alias", "champion"], t1)?, (1, "user/alice".into()));
    assert_eq!(who(&["--alias", "champion"], t2)?, (2, "user/bob".into()));
    assert_eq!(who(&["--alias", "champion"], t3)?, (1, "user/carol".into()));
    assert_eq!(
        who(&["--stage", "Production"], t1)?,
        (1, "user/alice".into())
    );
    assert_eq!(
        who(&["--stage", "Production"], t3)?,
        (2, "user/carol".into())
    );
    let created = cli_json(&endpoints, &["model", "history", "resnet"])?[0]["timestamp_ms"]
        .as_i64()
        .unwrap_or(0);
    let before = cli_json(
        &endpoints,
        &[
            "model",
            "who",
            "resnet",
            "--alias",
            "champion",
            "--at",
            &created.to_string(),
        ],
    )?;
    assert_eq!(before, json!([]), "nobody before it was set");
    let none = cli_json(
        &endpoints,
        &[
            "model",
            "who",
            "resnet",
            "--stage",
            "Production",
            "--at",
            &(created - 1).to_string(),
        ],
    );
    assert!(
        none.is_err_and(|e| e.to_string().contains("not found: model/resnet at")),
        "no model of that name then"
    );
    // The model as it was at t2: version 1 in Production, champion on 2.
    let then = cli_json(
        &endpoints,
        &["model", "get", "resnet", "--at", &t2.to_string()],
    )?;
    assert_eq!(then["aliases"]["champion"], 2);
    assert_eq!(then["versions"][0]["stage"], "Production");
    assert_eq!(then["versions"][1]["stage"], "None");

    // --- lineage: the version, its job, where it ran
    let lineage = cli_json(&endpoints, &["lineage", "model/resnet:1"])?;
    let l = &lineage["versions"][0];
    assert_eq!(l["job"]["name"], "train-resnet");
    assert_eq!(l["job"]["phase"], "Succeeded");
    assert_eq!(l["job"]["replicas"][0]["replica"], "master-0");
    assert_eq!(l["job"]["gpus"].as_array().map(Vec::len), Some(2));
    let back = cli_json(&endpoints, &["lineage", "job/train-resnet"])?;
    assert_eq!(back["versions"][0]["model"], "resnet");
    Ok(())
}

/// `cairn model watch` follows registry events only, and resumes after losing the member
/// it reads from, missing and repeating none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_watch_survives_the_loss_of_its_member() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let endpoints = cluster.endpoints_from(follower);
    let mut watch = cairn_tests::cli(&endpoints)
        .args(["model", "watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });

    let mut c = cluster.node(leader).client();
    c.submit(submit(Body::CreateModel(pb::CreateModel {
        name: "watched".into(),
        ..Default::default()
    })))
    .await?;
    for i in 1..=5 {
        watched_round(&mut c, i).await?;
    }
    // --- lose the member the watch reads from, and go on changing the registry
    cluster.node(follower).kill();
    for i in 6..=10 {
        watched_round(&mut c, i).await?;
    }
    let expected: Vec<u64> = cluster
        .events_of(leader)
        .await?
        .iter()
        .filter(|e| e.entity.as_ref().is_some_and(|r| r.kind == "model"))
        .map(|e| e.sequence)
        .collect();
    assert_eq!(expected.len(), 1 + 10 * 2, "model events written");

    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.last() != expected.last() && std::time::Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            let entity = v["entity"].as_str().unwrap_or_default();
            assert!(entity.starts_with("model/"), "only registry events: {v}");
            seen.push(v["sequence"].as_u64().unwrap_or_default());
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(seen, expected, "the watch missed or repeated events");
    Ok(())
}

/// A version of `watched`, a namespace (not a registry event), and the alias moved.
async fn watched_round(
    c: &mut pb::cairn_client::CairnClient<tonic::transport::Channel>,
    i: u64,
) -> anyhow::Result<()> {
    c.submit(submit(Body::CreateModelVersion(pb::CreateModelVersion {
        name: "watched".into(),
        source: format!("s3://b/{i}"),
        ..Default::default()
    })))
    .await?;
    c.submit(cairn_tests::create_ns(&format!("not-a-model-{i}")))
        .await?;
    c.submit(submit(Body::SetModelAlias(pb::SetModelAlias {
        name: "watched".into(),
        alias: "champion".into(),
        version: i,
        ..Default::default()
    })))
    .await?;
    Ok(())
}
