//! Model deployments end to end with the example model server, on `cairn-server dev` and
//! on 3 members with 3 agents: version 1 serves from 2 replicas behind the stable
//! endpoint; under a constant load, version 2 rolls out as a 10% canary (the split
//! measured over more than 2,000 requests), is promoted, and is rolled back — with no
//! failed request in the whole sequence — and `cairn deploy history` tells every step
//! with its actor. On 3 nodes, a replica killed under load comes back, and a replica
//! whose GPU reports an XID moves to a healthy one with no failed request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_tests::{
    bin, cli_json, eventually, free_port, http_json, Server, ServerSpec, Settings, TestAgent,
    TestCluster,
};
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/serving");

/// What the load saw: answers by model version, and failures.
#[derive(Default)]
struct Seen {
    by_version: std::collections::BTreeMap<String, u64>,
    failed: Vec<String>,
}

/// Requests until `stop`, from `clients` concurrent clients, client `i` through endpoint
/// `i % endpoints.len()`.
fn load(endpoints: &[String], clients: usize, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    for i in 0..clients {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (stop, seen) = (stop.clone(), seen.clone());
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

/// Answers from version 1, from version 2, and failures so far.
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

/// Registers versions 1 and 2 of `linear` from the example's model files.
async fn register_linear(endpoints: &[String]) -> anyhow::Result<()> {
    for v in [1, 2] {
        let source = format!("{EXAMPLES}/models/linear-v{v}.json");
        let mut args = vec!["model", "register", "linear", "--source", &source];
        if v == 1 {
            args.push("--create");
        }
        eventually(Duration::from_secs(20), "a version is registered", || {
            let (endpoints, args) = (endpoints.to_vec(), args.clone());
            async move { cli_json(&endpoints, &args).ok() }
        })
        .await?;
    }
    Ok(())
}

/// The deployment of `linear` at `version`, 2 replicas with `gpus` GPUs each, and a 10%
/// canary step that waits for promote.
fn linear(version: u64, gpus: u32) -> Value {
    json!({
        "apiVersion": "cairn.dev/v1", "kind": "ModelDeployment",
        "metadata": {"name": "linear"},
        "spec": {
            "model": {"name": "linear", "version": version},
            "replicas": 2,
            "template": {
                "command": ["python3", format!("{EXAMPLES}/model_server.py")],
                "gpus": gpus
            },
            "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 1},
            "canary": {"steps": [{"weight": 10}]}
        }
    })
}

/// Applies `doc` and waits until version 1 takes all the traffic and every endpoint
/// answers; returns the endpoints (`host:port`).
async fn deploy(
    endpoints: &[String],
    dir: &std::path::Path,
    doc: Value,
) -> anyhow::Result<Vec<String>> {
    let file = dir.join("linear.json");
    std::fs::write(&file, doc.to_string())?;
    cli_json(
        endpoints,
        &["deploy", "apply", "-f", &file.display().to_string()],
    )?;
    let d = traffic_becomes(endpoints, json!({"1": 100}), Duration::from_secs(90)).await?;
    let urls: Vec<String> = d["urls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str())
                .map(|u| u.trim_start_matches("http://").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(!urls.is_empty(), "endpoint URLs: {d}");
    // Each agent's router takes the table at its next step.
    for endpoint in &urls {
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
    }
    Ok(urls)
}

/// Waits until at least `n` more answers came from version `version`.
async fn more_answers(seen: &Arc<Mutex<Seen>>, version: usize, n: u64) -> anyhow::Result<()> {
    let pick = move |s: &Mutex<Seen>| {
        let (a, b, _) = counts(s);
        [a, b][version - 1]
    };
    let from = pick(seen);
    eventually(Duration::from_secs(30), "more answers", || {
        let seen = seen.clone();
        async move { (pick(&seen) >= from + n).then_some(()) }
    })
    .await
}

/// The failures the load saw, as an error if there were any.
fn no_failures(seen: &Mutex<Seen>, during: &str) -> anyhow::Result<()> {
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let answered: u64 = s.by_version.values().sum();
    anyhow::ensure!(
        s.failed.is_empty(),
        "{during}: {} of {} requests failed: {:?}",
        s.failed.len(),
        answered + s.failed.len() as u64,
        &s.failed[..s.failed.len().min(5)]
    );
    Ok(())
}

/// Under the load already running: version 2 as a 10% canary (its share measured over
/// 2,000 requests), promote, roll back; no request fails, and the history tells it all.
async fn canary_promote_rollback(
    endpoints: &[String],
    dir: &std::path::Path,
    seen: &Arc<Mutex<Seen>>,
    gpus: u32,
) -> anyhow::Result<()> {
    let file = dir.join("linear.json");
    std::fs::write(&file, linear(2, gpus).to_string())?;
    cli_json(
        endpoints,
        &["deploy", "apply", "-f", &file.display().to_string()],
    )?;
    traffic_becomes(
        endpoints,
        json!({"1": 90, "2": 10}),
        Duration::from_secs(90),
    )
    .await?;
    // The split is measured once every router has the table: they read it every 500 ms
    // and pass thousands of requests a second.
    more_answers(seen, 2, 20).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a1, a2, _) = counts(seen);
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
    let (b1, b2, _) = counts(seen);
    let (to1, to2) = (b1 - a1, b2 - a2);
    let share = 100.0 * to2 as f64 / (to1 + to2) as f64;
    eprintln!("the canary took {share:.2}% of {} requests", to1 + to2);
    assert!(
        (7.0..=13.0).contains(&share),
        "the canary took {share:.1}% of {} requests, not 10% ± 3",
        to1 + to2
    );

    // --- promote: version 2 takes everything; then roll back to version 1
    cli_json(endpoints, &["deploy", "promote", "linear"])?;
    traffic_becomes(endpoints, json!({"2": 100}), Duration::from_secs(90)).await?;
    more_answers(seen, 2, 200).await?;
    cli_json(
        endpoints,
        &["deploy", "rollback", "linear", "--reason", "p99 regression"],
    )?;
    traffic_becomes(endpoints, json!({"1": 100}), Duration::from_secs(90)).await?;
    // Requests keep flowing after the rollback, and once every router has the new
    // table (agents read it every 500 ms), to version 1 only.
    more_answers(seen, 1, 200).await?;
    eventually(
        Duration::from_secs(20),
        "version 2 answers nothing for a second",
        || {
            let seen = seen.clone();
            async move {
                let (_, before, _) = counts(&seen);
                tokio::time::sleep(Duration::from_secs(1)).await;
                (counts(&seen).1 == before).then_some(())
            }
        },
    )
    .await?;
    let (_, c2, _) = counts(seen);
    more_answers(seen, 1, 1_000).await?;
    let (_, d2, _) = counts(seen);
    assert_eq!(d2, c2, "version 2 served nothing after the rollback");
    no_failures(seen, "canary, promote, rollback")?;

    // --- the history tells the sequence, with actors
    let history = cli_json(endpoints, &["deploy", "history", "linear"])?;
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
        .any(|(k, a)| k == "deployment_replica_ready" && a.starts_with("agent/")));
    assert!(history.as_array().is_some_and(|a| a
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| !t.is_empty()))));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_is_promoted_and_rolled_back_under_load_with_no_failed_request(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().join("dev"));
    spec.port_range = Some((21000, 21999));
    let _server = Server::start_new(spec).await?;
    let endpoints = vec![addr];
    register_linear(&endpoints).await?;
    let urls = deploy(&endpoints, dir.path(), linear(1, 0)).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    load(&urls, 4, stop.clone(), seen.clone());
    let outcome = canary_promote_rollback(&endpoints, dir.path(), &seen, 0).await;
    stop.store(true, Ordering::Relaxed);
    outcome
}

/// A serving replica of the revision with traffic: (revision, index, node, GPUs).
fn serving_replica(d: &Value) -> Option<(u64, u64, String, Vec<String>)> {
    let rev = d["revisions"]
        .as_array()?
        .iter()
        .find(|r| r["weight"].as_u64() == Some(100))?;
    let x = rev["replicas"]
        .as_array()?
        .iter()
        .find(|x| x["phase"] == "Ready")?;
    let gpus = x["gpus"]
        .as_array()?
        .iter()
        .filter_map(|g| g.as_str().map(String::from))
        .collect();
    Some((
        rev["revision"].as_u64()?,
        x["index"].as_u64()?,
        x["node"].as_str()?.to_string(),
        gpus,
    ))
}

/// The ready replicas of the revision with all the traffic, as (node, GPUs, attempt).
fn ready_replicas(d: &Value) -> Vec<(String, Vec<String>, u64)> {
    let Some(rev) = d["revisions"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["weight"].as_u64() == Some(100)))
    else {
        return Vec::new();
    };
    rev["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["phase"] == "Ready" && x["doomed"].is_null())
                .map(|x| {
                    let gpus = x["gpus"]
                        .as_array()
                        .map(|g| {
                            g.iter()
                                .filter_map(|g| g.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        x["node"].as_str().unwrap_or_default().to_string(),
                        gpus,
                        x["attempt"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_three_nodes_rollouts_lose_no_request_and_failed_replicas_are_replaced(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let agents = [
        TestAgent::start(&dir, "a", "pcie-4", (24000, 24099), &endpoints)?,
        TestAgent::start(&dir, "b", "pcie-4", (24100, 24199), &endpoints)?,
        TestAgent::start(&dir, "c", "pcie-4", (24200, 24299), &endpoints)?,
    ];
    cairn_tests::wait_nodes(&endpoints, 3, Duration::from_secs(20)).await?;
    register_linear(&endpoints).await?;
    let urls = deploy(&endpoints, &dir, linear(1, 1)).await?;
    assert_eq!(urls.len(), 3, "an endpoint on every node: {urls:?}");

    // Clients spread over the three nodes' endpoints: routers reach replicas on other
    // nodes.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    load(&urls, 6, stop.clone(), seen.clone());
    let outcome = async {
        canary_promote_rollback(&endpoints, &dir, &seen, 1).await?;

        // --- SIGKILL a serving replica: it comes back (at most the requests in flight
        // to it fail: the load's clients)
        let d = cli_json(&endpoints, &["deploy", "get", "linear"])?;
        let (rev, index, node, _) =
            serving_replica(&d).ok_or_else(|| anyhow::anyhow!("no serving replica: {d}"))?;
        let agent = agents
            .iter()
            .find(|a| a.node == node)
            .ok_or_else(|| anyhow::anyhow!("node {node}"))?;
        let pid_file = agent
            .dir
            .join(format!("serving/pids/linear.r{rev}-{index}"));
        let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        let before = counts(&seen).2;
        let attempts: u64 = ready_replicas(&d).iter().map(|x| x.2).sum();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).ok_or_else(|| anyhow::anyhow!("pid {pid}"))?,
            rustix::process::Signal::KILL,
        )?;
        eventually(
            Duration::from_secs(60),
            "the killed replica serves again",
            || {
                let endpoints = endpoints.clone();
                async move {
                    let d = cli_json(&endpoints, &["deploy", "get", "linear"]).ok()?;
                    let ready = ready_replicas(&d);
                    (ready.len() == 2 && ready.iter().map(|x| x.2).sum::<u64>() > attempts)
                        .then_some(())
                }
            },
        )
        .await?;
        more_answers(&seen, 1, 200).await?;
        let lost = counts(&seen).2 - before;
        eprintln!("{lost} requests failed when a replica was killed");
        assert!(
            lost <= 6,
            "{lost} requests failed, more than were in flight"
        );
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .clear();

        // --- an XID on a serving replica's GPU: it moves, and no request fails
        let d = cli_json(&endpoints, &["deploy", "get", "linear"])?;
        let (_, _, node, gpus) =
            serving_replica(&d).ok_or_else(|| anyhow::anyhow!("no serving replica: {d}"))?;
        let agent = agents
            .iter()
            .find(|a| a.node == node)
            .ok_or_else(|| anyhow::anyhow!("node {node}"))?;
        let bad = gpus
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no GPU: {d}"))?;
        agent.set_faults(&format!(r#"{{"{bad}": {{"xid": 79}}}}"#))?;
        eventually(
            Duration::from_secs(90),
            "the replica moved off the failed GPU",
            || {
                let (endpoints, bad) = (endpoints.clone(), bad.clone());
                async move {
                    let d = cli_json(&endpoints, &["deploy", "get", "linear"]).ok()?;
                    let all: usize = d["revisions"]
                        .as_array()?
                        .iter()
                        .map(|r| r["replicas"].as_array().map_or(0, Vec::len))
                        .sum();
                    let ready = ready_replicas(&d);
                    (all == 2 && ready.len() == 2 && ready.iter().all(|x| !x.1.contains(&bad)))
                        .then_some(())
                }
            },
        )
        .await?;
        more_answers(&seen, 1, 200).await?;
        no_failures(&seen, "a replica moved off a failed GPU")
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    outcome
}

/// The replica count `cairn deploy get` shows.
async fn replicas_become(endpoints: &[String], want: u64, within: Duration) -> anyhow::Result<()> {
    eventually(within, &format!("{want} replicas wanted and ready"), || {
        let endpoints = endpoints.to_vec();
        async move {
            let d = cli_json(&endpoints, &["deploy", "get", "linear"]).ok()?;
            (d["replicas"] == want && d["ready"] == want).then_some(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_autoscaled_deployment_follows_its_load_and_the_log_says_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().join("dev"));
    spec.port_range = Some((22000, 22999));
    let _server = Server::start_new(spec).await?;
    let endpoints = vec![addr];
    register_linear(&endpoints).await?;
    // Each prediction takes 50 ms, so each client keeps about one request in flight.
    let mut doc = linear(1, 0);
    doc["spec"]["replicas"] = json!(1);
    doc["spec"]["template"]["env"] = json!({"PREDICT_SECONDS": "0.05"});
    doc["spec"]["autoscale"] = json!({
        "minReplicas": 1, "maxReplicas": 3, "targetInFlight": 1, "scaleDownDelay": "5s"
    });
    let urls = deploy(&endpoints, dir.path(), doc).await?;
    replicas_become(&endpoints, 1, Duration::from_secs(10)).await?;

    // --- 4 clients: 4 in flight call for 4 replicas, 3 at most
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    load(&urls, 4, stop.clone(), seen.clone());
    let outcome = replicas_become(&endpoints, 3, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    outcome?;
    no_failures(&seen, "scaling up")?;

    // --- idle: down to the minimum, once idle for the delay
    replicas_become(&endpoints, 1, Duration::from_secs(60)).await?;

    let history = cli_json(&endpoints, &["deploy", "history", "linear"])?;
    let scaled: Vec<&Value> = history
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "deployment_scaled")
                .collect()
        })
        .unwrap_or_default();
    let up = scaled
        .iter()
        .find(|e| e["payload"]["replicas"] == 3)
        .ok_or_else(|| anyhow::anyhow!("no scale to 3: {scaled:?}"))?;
    assert_eq!(up["actor"], "system/autoscaler");
    let load = &up["payload"]["load"];
    let in_flight = load["in_flight_milli"].as_u64().unwrap_or(0);
    assert!(
        in_flight > 2_000,
        "scaled to 3 on more than 2 requests in flight: {up}"
    );
    assert_eq!(load["target_in_flight"], 1, "{up}");
    let down = scaled
        .last()
        .ok_or_else(|| anyhow::anyhow!("no scale at all"))?;
    assert_eq!(down["payload"]["replicas"], 1, "{down}");
    assert_eq!(down["actor"], "system/autoscaler");
    assert!(
        down["payload"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("autoscale down")),
        "{down}"
    );
    Ok(())
}
