//! Model deployments end to end on `cairn-server dev`, with the example model server:
//! version 1 serves from 2 replicas behind the stable endpoint; under a constant load,
//! version 2 rolls out as a 10% canary (the split measured over more than 2,000
//! requests), is promoted, and is rolled back — with no failed request in the whole
//! sequence — and `cairn deploy history` tells every step with its actor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_tests::{bin, cli_json, eventually, free_port, http_json, Server, ServerSpec};
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/serving");

/// What the load saw: answers by model version, and failures.
#[derive(Default)]
struct Seen {
    by_version: std::collections::BTreeMap<String, u64>,
    failed: Vec<String>,
}

/// Requests through the endpoint until `stop`, from `clients` concurrent clients.
fn load(endpoint: String, clients: usize, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    for _ in 0..clients {
        let (endpoint, stop, seen) = (endpoint.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            let body = json!({"inputs": [[1, 2, 3]]});
            // Bounded: the test stops it, and it stops by itself after 10 minutes.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let answer = http_json(&endpoint, "POST", "/predict", Some(&body)).await;
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                match answer {
                    Ok((200, v)) => {
                        let version = v["version"].as_str().unwrap_or("?").to_string();
                        *seen.by_version.entry(version).or_default() += 1;
                    }
                    Ok((status, v)) => seen.failed.push(format!("{status}: {v}")),
                    Err(e) => seen.failed.push(format!("{e:#}")),
                }
            }
        });
    }
}

fn counts(seen: &Mutex<Seen>) -> (u64, u64, usize) {
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let v = |k: &str| s.by_version.get(k).copied().unwrap_or(0);
    (v("1"), v("2"), s.failed.len())
}

/// `cairn deploy get` as JSON, once the traffic table is `want`.
async fn traffic_becomes(
    endpoints: &[String],
    want: Value,
    within: Duration,
) -> anyhow::Result<Value> {
    eventually(within, &format!("traffic {want}"), || {
        let (endpoints, want) = (endpoints.to_vec(), want.clone());
        async move {
            let d = cli_json(&endpoints, &["deploy", "get", "linear"]).ok()?;
            (d["traffic"] == want).then_some(d)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_is_promoted_and_rolled_back_under_load_with_no_failed_request(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().join("dev"));
    let _server = Server::start_new(spec).await?;
    let endpoints = vec![addr];
    let cli = |args: &[&str]| cli_json(&endpoints, args);
    for v in [1, 2] {
        let source = format!("{EXAMPLES}/models/linear-v{v}.json");
        let mut args = vec!["model", "register", "linear", "--source", &source];
        if v == 1 {
            args.push("--create");
        }
        eventually(Duration::from_secs(20), "a version is registered", || {
            let (endpoints, args) = (endpoints.clone(), args.clone());
            async move { cli_json(&endpoints, &args).ok() }
        })
        .await?;
    }
    let doc = |version: u64| {
        json!({
            "apiVersion": "cairn.dev/v1", "kind": "ModelDeployment",
            "metadata": {"name": "linear"},
            "spec": {
                "model": {"name": "linear", "version": version},
                "replicas": 2,
                "template": {"command": ["python3", format!("{EXAMPLES}/model_server.py")]},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 1},
                // A canary of 10% that waits for promote.
                "canary": {"steps": [{"weight": 10}]}
            }
        })
    };
    let file = dir.path().join("linear.json");
    std::fs::write(&file, doc(1).to_string())?;
    let file = file.display().to_string();
    cli(&["deploy", "apply", "-f", &file])?;
    let d = traffic_becomes(&endpoints, json!({"1": 100}), Duration::from_secs(60)).await?;
    let url = d["urls"][0].as_str().unwrap_or_default().to_string();
    let endpoint = url.trim_start_matches("http://").to_string();
    assert!(!endpoint.is_empty(), "an endpoint URL: {d}");
    // The agent's router takes the table at its next step.
    eventually(Duration::from_secs(10), "the endpoint answers", || {
        let endpoint = endpoint.clone();
        async move {
            let body = json!({"inputs": [[1, 2, 3]]});
            let (status, v) = http_json(&endpoint, "POST", "/predict", Some(&body))
                .await
                .ok()?;
            (status == 200 && v["outputs"] == json!([14.5])).then_some(())
        }
    })
    .await?;

    // --- constant load through the stable endpoint from here on
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    load(endpoint, 4, stop.clone(), seen.clone());

    // --- version 2 as a 10% canary
    cli(&["deploy", "rollout", "linear", "--version", "2"])?;
    traffic_becomes(
        &endpoints,
        json!({"1": 90, "2": 10}),
        Duration::from_secs(60),
    )
    .await?;
    let (a1, a2, _) = counts(&seen);
    eventually(
        Duration::from_secs(120),
        "2,000 requests during the canary",
        || {
            let seen = seen.clone();
            async move {
                let (b1, b2, _) = counts(&seen);
                (b1 + b2 - a1 - a2 >= 2_000).then_some(())
            }
        },
    )
    .await?;
    let (b1, b2, _) = counts(&seen);
    let (to1, to2) = (b1 - a1, b2 - a2);
    let share = 100.0 * to2 as f64 / (to1 + to2) as f64;
    assert!(
        (7.0..=13.0).contains(&share),
        "the canary took {share:.1}% of {} requests, not 10% ± 3",
        to1 + to2
    );

    // --- promote: version 2 takes everything; then roll back to version 1
    cli(&["deploy", "promote", "linear"])?;
    traffic_becomes(&endpoints, json!({"2": 100}), Duration::from_secs(60)).await?;
    cli(&["deploy", "rollback", "linear", "--reason", "p99 regression"])?;
    traffic_becomes(&endpoints, json!({"1": 100}), Duration::from_secs(60)).await?;
    // Requests keep flowing after the rollback, and (once the routers have the new
    // table) to version 1 only.
    let more = |n: u64| {
        let seen = seen.clone();
        let from = counts(&seen).0;
        eventually(
            Duration::from_secs(30),
            "requests after the rollback",
            move || {
                let seen = seen.clone();
                async move { (counts(&seen).0 >= from + n).then_some(()) }
            },
        )
    };
    more(200).await?;
    let (_, c2, _) = counts(&seen);
    more(200).await?;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (d1, d2, _) = counts(&seen);
    assert_eq!(d2, c2, "version 2 served nothing after the rollback");
    let failed = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .failed
        .clone();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        d1 + d2 + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );

    // --- the history tells the sequence, with actors
    let history = cli(&["deploy", "history", "linear"])?;
    let steps: Vec<(String, String)> = history
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let kind = e["type"].as_str().unwrap_or_default().to_string();
                    (kind, e["actor"].as_str().unwrap_or_default().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let order = [
        "deployment_revision_created",
        "deployment_canary_step",
        "deployment_promoted",
        "deployment_rollout_completed",
        "deployment_rollback_started",
        "deployment_rollout_completed",
    ];
    let mut at = 0;
    for (kind, _) in &steps {
        if at < order.len() && kind == order[at] {
            at += 1;
        }
    }
    assert_eq!(at, order.len(), "the history's steps, in order: {steps:?}");
    assert!(steps
        .iter()
        .any(|(k, a)| k == "deployment_traffic_shifted" && a == "system/rollouts"));
    assert!(steps
        .iter()
        .any(|(k, a)| k == "deployment_replica_ready" && a.starts_with("node/")));
    Ok(())
}
