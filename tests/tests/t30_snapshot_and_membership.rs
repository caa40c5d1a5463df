//! A member stopped while the log is purged past it catches up through a snapshot that
//! carries the full history; a learner is added and promoted.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{
    client, client_with_timeout, create_ns, eventually, free_port, leader_seen_by, note, Settings,
    TestCluster,
};

/// The events in a member's snapshot history file (magic, count, length-prefixed
/// protobuf events), read independently of the server's code.
fn history_events(dir: &std::path::Path) -> anyhow::Result<Vec<pb::Event>> {
    use prost::Message;
    let bytes = std::fs::read(dir.join("data").join("snapshots").join("events.snap"))?;
    anyhow::ensure!(
        bytes.len() >= 16 && &bytes[..8] == b"CAIRNSN1",
        "not a snapshot"
    );
    let count = u64::from_be_bytes(bytes[8..16].try_into()?);
    let mut at = 16;
    let mut events = Vec::new();
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into()?) as usize;
        events.push(pb::Event::decode(&bytes[at + 4..at + 4 + len])?);
        at += 4 + len;
    }
    anyhow::ensure!(
        events.len() as u64 == count,
        "header says {count} events, the file holds {}",
        events.len()
    );
    Ok(events)
}

fn snapshot_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data").join("snapshots"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_member_catches_up_through_a_snapshot_and_a_learner_joins() -> anyhow::Result<()> {
    let settings = Settings {
        snapshot_after_logs: 50,
        logs_kept_after_snapshot: 0,
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(3, settings).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");

    // --- stop a follower, then write enough to snapshot and purge past it
    cluster.node(lagging).kill();
    let mut c = cluster.node(leader).client();
    c.submit(create_ns("history")).await?;
    for i in 0..300 {
        c.submit(note("history", &format!("entry {i}"))).await?;
    }
    let reference = cluster.events_of(leader).await?;
    let last = reference.last().map_or(0, |e| e.sequence);
    assert!(last >= 301);
    let leader_dir = cluster.node(leader).dir.clone();
    assert!(
        snapshot_files(&leader_dir) >= 1,
        "the leader built no snapshot"
    );

    // --- the follower comes back and gets the whole history
    cluster.restart(lagging).await?;
    cluster
        .wait_converged(last, Duration::from_secs(30))
        .await?;
    let got = cluster.events_of(lagging).await?;
    assert_eq!(&got[..reference.len()], &reference[..]);
    let lagging_dir = cluster.node(lagging).dir.clone();
    assert_eq!(
        snapshot_files(&lagging_dir),
        1,
        "the follower did not install a snapshot"
    );

    // --- a new server joins as a learner and is promoted
    let addr = format!("127.0.0.1:{}", free_port());
    cluster.add_node(4, addr.clone(), &BTreeMap::new()).await?;
    let r = c
        .add_learner(pb::AddLearnerRequest {
            node_id: 4,
            address: addr,
        })
        .await?
        .into_inner();
    assert!(r.learners.contains(&4));
    let r = c
        .promote(pb::PromoteRequest { node_id: 4 })
        .await?
        .into_inner();
    assert!(r.voters.contains(&4) && r.learners.is_empty(), "{r:?}");

    let all = cluster.events_of(leader).await?;
    let last = all.last().map_or(0, |e| e.sequence);
    cluster
        .wait_converged(last, Duration::from_secs(30))
        .await?;
    assert_eq!(cluster.events_of(4).await?[..all.len()], all[..]);
    let member4: Vec<_> = all
        .iter()
        .filter(|e| {
            e.entity
                .as_ref()
                .is_some_and(|r| r.kind == "member" && r.name == "4")
        })
        .map(|e| e.type_name())
        .collect();
    assert_eq!(member4, ["member_added", "member_promoted"]);

    // --- every member goes on snapshotting by appending to its history file, the
    // installed ones included: each file is exactly a prefix of the history
    for i in 0..200 {
        c.submit(note("history", &format!("after {i}"))).await?;
    }
    let all = cluster.events_of(leader).await?;
    cluster
        .wait_converged(
            all.last().map_or(0, |e| e.sequence),
            Duration::from_secs(30),
        )
        .await?;
    for id in 1..=4 {
        let snap = history_events(&cluster.node(id).dir)?;
        assert!(
            snap.len() > reference.len(),
            "node {id} snapshot stopped at {}",
            snap.len()
        );
        assert_eq!(snap[..], all[..snap.len()], "node {id}");
    }
    Ok(())
}

/// Found by a 30-minute chaos campaign: with one voter of three down, removing another
/// voter appended a joint configuration whose new half ({leader, dead voter}) could never
/// reach a majority, and the cluster accepted no write from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_removing_a_voter_while_another_is_down_is_refused() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (down, alive) = (followers[0], followers[1]);
    cluster.node(down).kill();

    let mut c = cluster.node(leader).client();
    let refused = c
        .remove_member(pb::RemoveMemberRequest { node_id: alive })
        .await
        .expect_err("a removal leaving no live majority must be refused");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("no live majority"),
        "{refused:?}"
    );

    // Nothing was appended: the cluster still takes writes and still has three voters.
    c.submit(create_ns("still-writable")).await?;
    let status = c
        .cluster_status(pb::ClusterStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.members.len(), 3, "{status:?}");

    // Removing the member that is down leaves a live majority and goes through.
    let r = c
        .remove_member(pb::RemoveMemberRequest { node_id: down })
        .await?
        .into_inner();
    assert_eq!(r.voters.len(), 2, "{r:?}");
    assert!(!r.voters.contains(&down), "{r:?}");
    c.submit(note("still-writable", "after the removal"))
        .await?;
    Ok(())
}

/// The index of the last entry in the log of the member at `addr`, as it reports it.
async fn own_last_log_index(addr: &str) -> Option<u64> {
    let status = client(addr)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .ok()?
        .into_inner();
    status
        .members
        .iter()
        .find(|m| m.node_id == status.answered_by)
        .map(|m| m.last_log_index)
}

/// A leader that one of `among` reports, itself one of `among`.
async fn leader_among(addrs: &BTreeMap<u64, String>, among: &[u64]) -> anyhow::Result<u64> {
    eventually(Duration::from_secs(15), "a leader elected", || async {
        for id in among {
            if let Some(l) = leader_seen_by(&addrs[id], Duration::from_secs(3)).await {
                if among.contains(&l) {
                    return Some(l);
                }
            }
        }
        None
    })
    .await
}

/// Found by a chaos campaign: a leader cut off from its peers took writes it could not
/// commit; the others elected a leader that snapshotted and purged past those entries,
/// and the old leader caught up by installing that snapshot. openraft 0.9 never answers
/// a write whose entry a snapshot replaced, so those writes held the proposer's
/// pipeline full, and once that member led again it took no write at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_leader_takes_writes_after_a_snapshot_replaced_its_unanswered_ones(
) -> anyhow::Result<()> {
    let settings = Settings {
        snapshot_after_logs: 20,
        logs_kept_after_snapshot: 0,
        relayed: true,
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(3, settings).await?;
    let addrs: BTreeMap<u64, String> = cluster
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    let old = cluster.wait_leader(Duration::from_secs(10)).await?;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let mut c = client(&addrs[&old]);
    c.submit(create_ns("cut-off")).await?;

    // --- the leader is cut off and takes more writes than it keeps in flight; the
    // first one's caller waits for its answer
    for id in &others {
        cluster.node(*id).pause()?;
    }
    let before = own_last_log_index(&addrs[&old])
        .await
        .expect("the leader answers");
    let mut patient = client_with_timeout(&addrs[&old], Duration::from_secs(60));
    let first = tokio::spawn(async move {
        patient
            .submit(note("cut-off", "uncommitted, answered"))
            .await
    });
    eventually(
        Duration::from_secs(10),
        "the first write in the leader's log",
        || async {
            own_last_log_index(&addrs[&old])
                .await
                .filter(|i| *i > before)
        },
    )
    .await?;
    for i in 0..2 {
        let w = tokio::time::timeout(
            Duration::from_millis(500),
            c.submit(note("cut-off", &format!("uncommitted {i}"))),
        )
        .await;
        assert!(
            !matches!(w, Ok(Ok(_))),
            "a write without a quorum was acknowledged"
        );
    }

    // --- the others elect a leader, which snapshots and purges past those entries;
    // nothing it sends reaches the old leader
    cluster.relay(old).cut();
    cluster.node(old).pause()?;
    for id in &others {
        cluster.node(*id).resume()?;
    }
    let new = leader_among(&addrs, &others).await?;
    let mut w = client(&addrs[&new]);
    for i in 0..60 {
        w.submit(note("cut-off", &format!("while cut off {i}")))
            .await?;
    }
    let last = cluster
        .events_of(new)
        .await?
        .last()
        .map_or(0, |e| e.sequence);

    // --- the old leader comes back and catches up by installing a snapshot
    cluster.node(old).resume()?;
    cluster.relay(old).heal();
    cluster
        .wait_converged(last, Duration::from_secs(30))
        .await?;
    let log = std::fs::read_to_string(cluster.node(old).log_path())?;
    assert!(
        log.contains("snapshot installed"),
        "node {old} caught up without a snapshot"
    );

    // A snapshot replaced the first write's entry, so openraft never answers it: its
    // caller learns that its outcome is unknown once the grace after the leadership
    // ended is over.
    let answer = tokio::time::timeout(Duration::from_secs(30), first).await??;
    let status = answer.expect_err("an orphaned write is not acknowledged");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("may or may not be applied"),
        "{status:?}"
    );

    // --- it leads again (stop whoever leads until it is elected) and takes writes
    let mut leader = new;
    for _ in 0..20 {
        if leader == old {
            break;
        }
        cluster.node(leader).pause()?;
        let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let next = leader_among(&addrs, &rest).await;
        cluster.node(leader).resume()?;
        leader = next?;
    }
    assert_eq!(leader, old, "node {old} was never elected again");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client(&addrs[&old]).submit(note("cut-off", "led again")),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "node {old} leads but takes no write: {r:?}"
    );
    Ok(())
}
