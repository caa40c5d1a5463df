//! Agents on a 3-member control plane: three `cairn-agent` processes with simulated
//! GPUs on different topologies register, report an injected XID and its recovery,
//! are recorded lost when killed and recovered when restarted, and name a foreign
//! process holding a leased port. 1,000 concurrent lease requests never collide.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use cairn_proto as pb;
use cairn_tests::{eventually, Settings, TestAgent, TestCluster};
use pb::command::Body;

async fn nodes(cluster: &TestCluster) -> Vec<pb::NodeView> {
    cairn_tests::nodes(&cluster.endpoints()).await
}

/// `cairn gpu list --unhealthy -o json`: the UUIDs it shows.
fn cli_unhealthy(endpoints: &[String]) -> Vec<String> {
    let v = cairn_tests::cli_json(endpoints, &["gpu", "list", "--unhealthy"]).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g["uuid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn event_types_of(cluster: &TestCluster, leader: u64, node: &str) -> Vec<String> {
    cluster
        .events_of(leader)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e.entity
                .as_ref()
                .is_some_and(|r| r.kind == "node" && r.name == node)
        })
        .map(|e| e.type_name().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_inventory_health_liveness_and_port_violations() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(
        3,
        Settings {
            node_lost_after_ms: 2_000,
            ..Settings::default()
        },
    )
    .await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();
    let dir = cluster.dir().to_path_buf();
    let _a = TestAgent::start(&dir, "gpu-a", "nvswitch-8", (21000, 21099), &endpoints)?;
    let b = TestAgent::start(&dir, "gpu-b", "cube-mesh-8", (21100, 21199), &endpoints)?;
    let mut c = TestAgent::start(&dir, "gpu-c", "pcie-4", (21200, 21299), &endpoints)?;

    // --- all three register with their inventory and topology
    let all = cairn_tests::wait_nodes(&endpoints, 3, Duration::from_secs(20)).await?;
    let gpus: Vec<usize> = all
        .iter()
        .map(|n| n.inventory.as_ref().map_or(0, |i| i.gpus.len()))
        .collect();
    assert_eq!(gpus, [8, 8, 4]);
    let cube = all[1].inventory.clone().unwrap_or_default();
    let l03 = cube
        .links
        .iter()
        .find(|l| l.a == 0 && l.b == 3)
        .expect("a link 0-3");
    assert_eq!(l03.nvlinks, 2, "the cube-mesh pair 0-3 has two NVLinks");
    assert!(all.iter().all(|n| n.state == "ready"));

    // --- an XID on gpu-b's GPU 2 shows in `cairn gpu list --unhealthy` within 2 s
    let uuid = cube.gpus[2].uuid.clone();
    let injected = Instant::now();
    b.set_faults(&format!(r#"{{"{uuid}": {{"xid": 79}}}}"#))?;
    let shown = eventually(Duration::from_secs(5), "the XID shows", || async {
        cli_unhealthy(&endpoints).contains(&uuid).then_some(())
    })
    .await
    .map(|_| injected.elapsed())?;
    assert!(shown <= Duration::from_secs(2), "unhealthy after {shown:?}");
    // An application XID on another GPU does not count.
    let other = cube.gpus[5].uuid.clone();
    b.set_faults(&format!(
        r#"{{"{uuid}": {{"xid": 79}}, "{other}": {{"xid": 13}}}}"#
    ))?;

    // --- recovery shows too
    b.set_faults("{}")?;
    eventually(Duration::from_secs(5), "the GPU recovers", || async {
        cli_unhealthy(&endpoints).is_empty().then_some(())
    })
    .await?;
    let health: Vec<pb::GpuHealth> = cluster
        .events_of(leader)
        .await?
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::GpuHealthChanged(h)) => h.health.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        health.len(),
        2,
        "unhealthy then recovered, nothing else: {health:?}"
    );
    assert_eq!((health[0].healthy, health[0].xid), (false, 79));
    assert!(health[1].healthy && health[1].reason.contains("xid 79"));

    // --- a killed agent is lost after the grace period, and recovered on restart
    c.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(10), "gpu-c lost", || async {
        event_types_of(&cluster, leader, "gpu-c")
            .await
            .contains(&"node_lost".to_string())
            .then_some(())
    })
    .await?;
    assert!(
        killed.elapsed() >= Duration::from_millis(1_500),
        "lost too early"
    );
    c.restart()?;
    eventually(Duration::from_secs(10), "gpu-c recovered", || async {
        event_types_of(&cluster, leader, "gpu-c")
            .await
            .contains(&"node_recovered".to_string())
            .then_some(())
    })
    .await?;
    let lost_count = event_types_of(&cluster, leader, "gpu-a")
        .await
        .iter()
        .filter(|t| *t == "node_lost")
        .count();
    assert_eq!(lost_count, 0, "a live agent was declared lost");

    // --- a foreign process holding a leased port is named
    let squatter = TcpListener::bind("0.0.0.0:21200")?;
    let mut client = cairn_tests::client(&cluster.endpoints()[0]);
    client.submit(lease_request("gpu-c", "job-x/0", 1)).await?;
    let violation = eventually(Duration::from_secs(10), "a violation", || async {
        cluster
            .events_of(leader)
            .await
            .unwrap_or_default()
            .iter()
            .find_map(|e| match &e.payload {
                Some(pb::event::Payload::PortLeaseViolation(v)) => Some(v.clone()),
                _ => None,
            })
    })
    .await?;
    drop(squatter);
    assert_eq!(violation.port, 21200);
    assert_eq!(violation.holder, "job-x/0");
    assert_eq!(violation.pid, std::process::id());

    // --- the leader fails: its successor waits a full grace period before judging
    // anyone, so no live node is declared lost, and the leases are still there
    let lost_before = lost_events(&cluster, leader).await;
    cluster.node(leader).kill();
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    // Nothing to wait for here: the point is that a full grace period (2 s) and then
    // some pass without a live node being declared lost.
    tokio::time::sleep(Duration::from_millis(2_000 + 1_500)).await;
    assert_eq!(
        lost_events(&cluster, new_leader).await,
        lost_before,
        "a failover declared a live node lost"
    );
    let leases: Vec<pb::PortLease> = nodes(&cluster)
        .await
        .iter()
        .filter(|n| n.name == "gpu-c")
        .flat_map(|n| n.leases.clone())
        .collect();
    assert_eq!(
        leases.len(),
        1,
        "the lease survives the failover: {leases:?}"
    );
    assert_eq!(leases[0].holder, "job-x/0");
    Ok(())
}

async fn lost_events(cluster: &TestCluster, member: u64) -> usize {
    cluster
        .events_of(member)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|e| e.type_name() == "node_lost")
        .count()
}

fn lease_request(node: &str, holder: &str, count: u32) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(Body::AcquirePortLeases(pb::AcquirePortLeases {
                node: node.into(),
                holder: holder.into(),
                count,
                ttl_ms: 600_000,
            })),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_lease_requests_never_collide() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let endpoints = cluster.endpoints();

    // --- a node registered straight through the API (no agent holds its ports)
    let mut register = tonic::Request::new(pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(Body::RegisterNode(pb::RegisterNode {
                node: "lease-node".into(),
                inventory: Some(pb::NodeInventory {
                    port_range_start: 30000,
                    port_range_end: 31999,
                    ..Default::default()
                }),
            })),
            ..Default::default()
        }),
    });
    register
        .metadata_mut()
        .insert(pb::NODE_TOKEN, "test-token".parse()?);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    cluster.node(leader).client().submit(register).await?;

    // --- 1,000 holders ask at once, through all three members
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let addr = endpoints[i % endpoints.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut c = cairn_tests::client(&addr);
            // A leadership change on a loaded machine answers "not applied" or "may or
            // may not be applied"; both are retried. A retry of a request that was
            // applied after all is refused (the holder holds its port): its port is
            // then known only from the state, checked below.
            let mut maybe_applied = false;
            let r = loop {
                match c
                    .submit(lease_request("lease-node", &format!("job-{i}/0"), 1))
                    .await
                {
                    Ok(r) => break Some(r.into_inner()),
                    Err(s) if maybe_applied && s.code() == tonic::Code::AlreadyExists => {
                        break None
                    }
                    Err(s)
                        if pb::certainly_not_applied(&s)
                            || matches!(
                                s.code(),
                                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                            ) =>
                    {
                        maybe_applied |= !pb::certainly_not_applied(&s);
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(s) => return Err(s),
                }
            };
            let ports: Vec<u32> = r
                .iter()
                .flat_map(|r| &r.events)
                .flat_map(|e| match &e.payload {
                    Some(pb::event::Payload::PortLeaseGranted(g)) => g.ports.clone(),
                    _ => Vec::new(),
                })
                .collect();
            Ok::<_, tonic::Status>((r.is_some(), ports))
        }));
    }
    let mut granted = Vec::new();
    let mut answered = 0;
    for t in tasks {
        let (definite, ports) = t.await??;
        if definite {
            answered += 1;
            assert_eq!(ports.len(), 1, "an answered request got exactly one port");
        }
        granted.extend(ports);
    }
    let unique: BTreeSet<u32> = granted.iter().copied().collect();
    assert_eq!(unique.len(), granted.len(), "a port was leased twice");
    assert!(answered > 0);

    // The state agrees on every member: 1,000 holders, 1,000 distinct ports, and every
    // port a request was answered with among them.
    for addr in &endpoints {
        let view = loop {
            match cairn_tests::client(addr)
                .list_nodes(pb::ListNodesRequest {
                    name: "lease-node".into(),
                    consistency: pb::ReadConsistency::Linearizable as i32,
                })
                .await
            {
                Ok(v) => break v.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => return Err(s.into()),
            }
        };
        let leases = &view.nodes[0].leases;
        assert_eq!(leases.len(), 1000, "every holder holds exactly one port");
        let held: BTreeSet<u32> = leases.iter().map(|l| l.port).collect();
        assert_eq!(held.len(), 1000, "a port was leased twice");
        assert!(unique.is_subset(&held));
        assert!(held.iter().all(|p| (30000..=31999).contains(p)));
    }

    // --- another agent may not report about this node
    let mut impostor = tonic::Request::new(pb::SubmitRequest {
        command: Some(pb::Command {
            body: Some(Body::RenewPortLeases(pb::RenewPortLeases {
                node: "lease-node".into(),
                ttl_ms: 1000,
            })),
            ..Default::default()
        }),
    });
    impostor
        .metadata_mut()
        .insert(pb::NODE_TOKEN, "someone-else".parse()?);
    let refused = cairn_tests::client(&endpoints[1])
        .submit(impostor)
        .await
        .expect_err("an impostor is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    Ok(())
}
