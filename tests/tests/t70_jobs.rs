//! Training jobs on a 3-member control plane with real agents: a job is placed on the
//! best-connected GPUs at submission; a gang that does not fit waits with its reason and
//! is placed by the leader's scheduling pass once a new node brings the capacity.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{eventually, Settings, TestAgent, TestCluster};
use pb::command::Body;

fn job(name: &str, replicas: u32, gpus: u32) -> pb::SubmitRequest {
    let doc = serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "pytorch",
            "roles": {"worker": {"replicas": replicas, "gpus": gpus, "command": ["python3", "train.py"]}},
        },
    });
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
    let cluster = TestCluster::start(3, Settings::default())?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let _cube = TestAgent::start(&dir, "cube", "cube-mesh-8", (22000, 22099), &endpoints)?;
    eventually(Duration::from_secs(20), "the node registers", || async {
        let addr = cluster.endpoints()[0].clone();
        let n = cairn_tests::client(&addr)
            .list_nodes(pb::ListNodesRequest::default())
            .await
            .ok()?
            .into_inner()
            .nodes;
        (n.len() == 1).then_some(())
    })
    .await?;
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
