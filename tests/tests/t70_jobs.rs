//! Training jobs on a 3-member control plane with real agents: a job is placed on the
//! best-connected GPUs at submission; a gang that does not fit waits with its reason and
//! is placed by the leader's scheduling pass once a new node brings the capacity.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{eventually, Settings, TestAgent, TestCluster};
use pb::command::Body;

fn job(name: &str, replicas: u32, gpus: u32) -> pb::SubmitRequest {
    submit_doc(serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "pytorch",
            "roles": {"worker": {"replicas": replicas, "gpus": gpus, "command": ["python3", "train.py"]}},
        },
    }))
}

async fn job_view(cluster: &TestCluster, name: &str) -> Option<pb::JobView> {
    let addr = cluster.endpoints().first()?.clone();
    cairn_tests::client(&addr)
        .list_jobs(pb::ListJobsRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .jobs
        .into_iter()
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_placed_on_the_best_links_and_queued_gangs_wait_for_capacity() -> anyhow::Result<()>
{
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let _cube = TestAgent::start(&dir, "cube", "cube-mesh-8", (22000, 22099), &endpoints)?;
    cairn_tests::wait_nodes(&endpoints, 1, Duration::from_secs(20)).await?;
    let mut c = cairn_tests::client(&endpoints[1]);

    // --- a 2-GPU job lands on a pair with two NVLinks behind one switch
    c.submit(job("pair", 1, 2)).await?;
    let pair = job_view(&cluster, "pair").await.expect("the job");
    assert_eq!(pair.phase, "Scheduled");
    assert_eq!(pair.placements[0].score, 250, "{pair:?}");

    // --- a gang of 2 x 8 GPUs does not fit on one 8-GPU node: it waits, holding nothing
    c.submit(job("gang", 2, 8)).await?;
    let gang = job_view(&cluster, "gang").await.expect("the job");
    assert_eq!(gang.phase, "Queued");
    assert!(gang.reason.contains("needs 16 GPUs"), "{}", gang.reason);

    // --- two more nodes join; the leader's pass places the gang by itself
    let _b = TestAgent::start(&dir, "nv-b", "nvswitch-8", (22100, 22199), &endpoints)?;
    let _c = TestAgent::start(&dir, "nv-c", "nvswitch-8", (22200, 22299), &endpoints)?;
    let placed = eventually(Duration::from_secs(20), "the gang is placed", || async {
        job_view(&cluster, "gang")
            .await
            .filter(|j| j.phase == "Scheduled")
    })
    .await?;
    let nodes: Vec<&str> = placed.placements.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["nv-b", "nv-c"],
        "whole nodes, the cube-mesh one stays partly free"
    );
    assert!(placed.placements.iter().all(|p| p.gpus.len() == 8));

    // --- a cancelled job's GPUs are free again
    c.submit(pb::SubmitRequest {
        command: Some(pb::Command {
            body: Some(Body::CancelJob(pb::CancelJob {
                name: "gang".into(),
                reason: "done testing".into(),
            })),
            ..Default::default()
        }),
    })
    .await?;
    c.submit(job("again", 2, 8)).await?;
    assert_eq!(
        job_view(&cluster, "again").await.map(|j| j.phase),
        Some("Scheduled".into())
    );
    Ok(())
}

fn script_job(name: &str, roles: serde_json::Value, backoff_limit: i64) -> pb::SubmitRequest {
    submit_doc(serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"framework": "pytorch", "roles": roles, "runPolicy": {"backoffLimit": backoff_limit}},
    }))
}

async fn wait_phase(cluster: &TestCluster, name: &str, phase: &str) -> anyhow::Result<pb::JobView> {
    eventually(
        Duration::from_secs(40),
        &format!("job/{name} {phase}"),
        || async { job_view(cluster, name).await.filter(|j| j.phase == phase) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_replicas_to_success_and_failures_to_the_backoff_limit() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let _agents = [
        TestAgent::start(&dir, "a", "pcie-4", (23000, 23099), &endpoints)?,
        TestAgent::start(&dir, "b", "pcie-4", (23100, 23199), &endpoints)?,
        TestAgent::start(&dir, "c", "pcie-4", (23200, 23299), &endpoints)?,
    ];
    cairn_tests::wait_nodes(&endpoints, 3, Duration::from_secs(20)).await?;
    let mut c = cairn_tests::client(&endpoints[0]);

    // --- 1 master + 3 workers with 3 GPUs each: spread over the nodes; each replica
    // checks the wiring it was given and exits 0
    let check = "import os; e=os.environ; \
        assert e['WORLD_SIZE']=='4' and e['MASTER_ADDR']=='127.0.0.1', e; \
        assert int(e['RANK']) == (0 if e['CAIRN_ROLE']=='master' else int(e['CAIRN_INDEX'])+1); \
        assert len(e['CUDA_VISIBLE_DEVICES'].split(','))==int(e['GPUS']); print('ok', e['RANK'])";
    let role = |replicas: u32, gpus: u32| {
        serde_json::json!({
            "replicas": replicas, "gpus": gpus,
            "command": ["python3", "-c", check],
            "env": {"GPUS": gpus.to_string()},
        })
    };
    c.submit(script_job(
        "ddp",
        serde_json::json!({"master": role(1, 1), "worker": role(3, 3)}),
        0,
    ))
    .await?;
    let done = wait_phase(&cluster, "ddp", "Succeeded").await?;
    assert!(done
        .replica_status
        .iter()
        .any(|r| r.role == "master" && r.exit_code == 0));
    let nodes: std::collections::BTreeSet<&str> =
        done.placements.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 3, "3-GPU workers need their own 4-GPU nodes");
    // `cairn job logs` reads the master's output from its node's agent.
    let out = cairn_tests::cli(&endpoints)
        .args(["job", "logs", "ddp"])
        .args([
            "--role",
            "master",
            "--index",
            "0",
            "--state-dir",
            "/nonexistent",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok 0"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --- a worker that always fails: restarted twice, then the job fails
    c.submit(script_job(
        "flaky",
        serde_json::json!({"worker": {"replicas": 1, "command": ["python3", "-c", "import sys; sys.exit(3)"]}}),
        2,
    ))
    .await?;
    let failed = wait_phase(&cluster, "flaky", "Failed").await?;
    assert_eq!(failed.restarts, 2);
    assert!(
        failed.reason.contains("backoff limit 2"),
        "{}",
        failed.reason
    );
    let leader = cluster.wait_leader(Duration::from_secs(5)).await?;
    let exits = cluster
        .events_of(leader)
        .await?
        .iter()
        .filter(|e| {
            e.entity.as_ref().is_some_and(|r| r.name == "flaky")
                && e.type_name() == "replica_exited"
        })
        .count();
    assert_eq!(exits, 3, "three attempts ran");

    // --- a cancelled job's running replica is stopped
    c.submit(script_job(
        "sleeper",
        serde_json::json!({"worker": {"replicas": 1, "command": ["sleep", "300"]}}),
        0,
    ))
    .await?;
    wait_phase(&cluster, "sleeper", "Running").await?;
    c.submit(pb::SubmitRequest {
        command: Some(pb::Command {
            body: Some(Body::CancelJob(pb::CancelJob {
                name: "sleeper".into(),
                reason: String::new(),
            })),
            ..Default::default()
        }),
    })
    .await?;
    let pid = job_view(&cluster, "sleeper")
        .await
        .expect("job")
        .replica_status[0]
        .pid;
    eventually(Duration::from_secs(15), "the replica stops", || async {
        (!alive(pid)).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_hit_by_an_xid_is_placed_again_on_healthy_gpus() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let agent = TestAgent::start(&dir, "p", "pcie-4", (23300, 23399), &endpoints)?;
    cairn_tests::wait_nodes(&endpoints, 1, Duration::from_secs(20)).await?;
    let mut c = cairn_tests::client(&endpoints[0]);
    c.submit(script_job(
        "long",
        serde_json::json!({"worker": {"replicas": 1, "gpus": 2, "command": ["sleep", "300"]}}),
        3,
    ))
    .await?;
    let running = wait_phase(&cluster, "long", "Running").await?;
    let (gpus, pid) = (
        running.placements[0].gpus.clone(),
        running.replica_status[0].pid,
    );

    // --- XID 79 on one of its GPUs
    agent.set_faults(&format!(r#"{{"{}": {{"xid": 79}}}}"#, gpus[0]))?;
    let moved = eventually(
        Duration::from_secs(30),
        "placed again and running",
        || async {
            job_view(&cluster, "long")
                .await
                .filter(|j| j.phase == "Running" && j.restarts == 1)
        },
    )
    .await;
    let Ok(moved) = moved else {
        let j = job_view(&cluster, "long").await;
        anyhow::bail!("not placed again: {j:?}");
    };
    assert!(!moved.placements[0].gpus.contains(&gpus[0]), "{moved:?}");
    assert_ne!(moved.replica_status[0].pid, pid, "a new process");
    eventually(
        Duration::from_secs(15),
        "the first process stops",
        || async { (!alive(pid)).then_some(()) },
    )
    .await?;
    Ok(())
}

async fn cron_runs(cluster: &TestCluster) -> Vec<pb::CronRun> {
    for addr in cluster.endpoints() {
        if let Ok(r) = cairn_tests::client(&addr)
            .list_crons(pb::ListCronsRequest {
                name: "minutely".into(),
                ..Default::default()
            })
            .await
        {
            return r
                .into_inner()
                .crons
                .pop()
                .map(|c| c.runs)
                .unwrap_or_default();
        }
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_neither_skips_nor_doubles_a_run_across_a_leader_failover() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let doc = serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingCron",
        "metadata": {"name": "minutely"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}},
        },
    });
    cluster
        .node(leader)
        .client()
        .submit(pb::SubmitRequest {
            command: Some(pb::Command {
                body: Some(Body::SubmitCron(pb::SubmitCron {
                    spec_json: doc.to_string(),
                })),
                ..Default::default()
            }),
        })
        .await?;

    // --- the first run starts at the next minute
    eventually(Duration::from_secs(75), "the first run", || async {
        (cron_runs(&cluster).await.len() == 1).then_some(())
    })
    .await?;

    // --- the leader dies; its successor starts the next run, once
    cluster.node(leader).kill();
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let runs = eventually(Duration::from_secs(75), "the second run", || async {
        let r = cron_runs(&cluster).await;
        (r.len() >= 2).then_some(r)
    })
    .await?;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[1].scheduled_ms - runs[0].scheduled_ms,
        60_000,
        "consecutive minutes, none skipped: {runs:?}"
    );
    let names: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(names.len(), 2, "two distinct jobs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_neither_orphans_nor_duplicates_replicas() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let mut agent = TestAgent::start(&dir, "r", "pcie-4", (23400, 23499), &endpoints)?;
    cairn_tests::wait_nodes(&endpoints, 1, Duration::from_secs(20)).await?;
    let mut c = cairn_tests::client(&endpoints[0]);
    c.submit(script_job(
        "survivor",
        serde_json::json!({"worker": {"replicas": 1, "command": ["sleep", "300"]}}),
        3,
    ))
    .await?;
    let first = wait_phase(&cluster, "survivor", "Running")
        .await?
        .replica_status[0]
        .pid;

    // --- the agent dies (SIGKILL) and comes back
    agent.kill();
    assert!(alive(first), "the replica outlived its agent");
    agent.restart()?;
    let second = eventually(Duration::from_secs(30), "a new run", || async {
        job_view(&cluster, "survivor")
            .await
            .filter(|j| {
                let r = &j.replica_status[0];
                j.phase == "Running" && r.attempt == 1 && r.phase == "Running"
            })
            .map(|j| j.replica_status[0].pid)
    })
    .await?;
    assert_ne!(second, first);
    // The first run is gone (no orphan) and only the new one runs (no duplicate).
    eventually(
        Duration::from_secs(10),
        "the old replica is gone",
        || async { (!alive(first)).then_some(()) },
    )
    .await?;
    assert!(alive(second));
    Ok(())
}

fn submit_doc(doc: serde_json::Value) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(Body::SubmitJob(pb::SubmitJob {
                spec_json: doc.to_string(),
            })),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_is_synced_before_start_and_files_go_after_the_ttl() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let agent = TestAgent::start(&dir, "s", "pcie-4", (23500, 23599), &endpoints)?;
    cairn_tests::wait_nodes(&endpoints, 1, Duration::from_secs(20)).await?;
    // --- a directory and a git repository, each with a script the replica runs
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    std::fs::write(
        src.join("train.sh"),
        "test -n \"$CAIRN_CODE_DIR\" && echo trained\n",
    )?;
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo)?;
    std::fs::write(repo.join("train.sh"), "echo from git\n")?;
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-c", "user.email=t@t", "-c", "user.name=t"])
            .args(args)
            .current_dir(&repo)
            .status()
    };
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &["commit", "-qm", "code"],
    ] {
        anyhow::ensure!(git(args)?.success(), "git {args:?}");
    }
    let job = |name: &str, sync: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "cairn.dev/v1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "framework": "generic",
                "codeSync": sync,
                "runPolicy": {"ttlSecondsAfterFinished": 1},
                "roles": {"run": {"replicas": 1, "command": ["sh", "train.sh"]}},
            },
        })
    };
    let mut c = cairn_tests::client(&endpoints[0]);
    c.submit(submit_doc(job(
        "from-dir",
        serde_json::json!({"directory": src.display().to_string()}),
    )))
    .await?;
    c.submit(submit_doc(job(
        "from-git",
        serde_json::json!({"git": {"repository": repo.display().to_string()}}),
    )))
    .await?;
    wait_phase(&cluster, "from-dir", "Succeeded").await?;
    wait_phase(&cluster, "from-git", "Succeeded").await?;

    // --- a second after they finished, their files are gone from the node; the history stays
    let work = agent.dir.join("replicas").join("work");
    eventually(
        Duration::from_secs(15),
        "the TTL removes the files",
        || async {
            (!work.join("from-dir").exists() && !work.join("from-git").exists()).then_some(())
        },
    )
    .await?;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await?;
    let history = cluster
        .events_of(leader)
        .await?
        .iter()
        .filter(|e| e.entity.as_ref().is_some_and(|r| r.name == "from-git"))
        .count();
    assert!(history >= 4, "the job's events stay: {history}");
    Ok(())
}

/// Whether a process runs (an unreaped zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
