//! Three members: writes through any member; the leader SIGKILLed under load loses no
//! acknowledged write, and a new leader serves writes within 2 s; the whole cluster
//! killed and started again lists its full history through the CLI.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto as pb;
use cairn_tests::{client, create_ns, eventually, note, note_text, Settings, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_reach_every_member() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    for id in 1..=3 {
        let r = cluster
            .node(id)
            .client()
            .submit(create_ns(&format!("via-{id}")))
            .await?;
        assert_eq!(r.into_inner().events.len(), 1);
    }
    let last = cluster
        .events_of(cluster.wait_leader(Duration::from_secs(5)).await?)
        .await?
        .len() as u64;
    cluster
        .wait_converged(last, Duration::from_secs(10))
        .await?;
    let reference = cluster.events_of(1).await?;
    for id in 2..=3 {
        assert_eq!(
            cluster.events_of(id).await?,
            reference,
            "member {id} differs"
        );
    }
    let created: Vec<_> = reference
        .iter()
        .filter(|e| e.type_name() == "namespace_created")
        .filter_map(|e| e.entity.as_ref().map(|r| r.name.clone()))
        .collect();
    assert_eq!(created, ["via-1", "via-2", "via-3"]);
    Ok(())
}

/// Linearizable reads that arrive together share one confirmation of leadership; each
/// must still see every write acknowledged before it began, whichever members took the
/// write and the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_see_every_write_acknowledged_before_them() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let clients: Vec<_> = (1..=3).map(|id| cluster.node(id).client()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16usize {
        let clients = clients.clone();
        tasks.spawn(async move {
            for i in 0..16usize {
                let name = format!("r-{w}-{i}");
                clients[(w + i) % 3]
                    .clone()
                    .submit(create_ns(&name))
                    .await?;
                let read = pb::GetEntityRequest {
                    entity: Some(pb::EntityRef {
                        kind: "namespace".into(),
                        name: name.clone(),
                    }),
                    consistency: pb::ReadConsistency::Linearizable as i32,
                };
                // A member that cannot confirm its leadership at that moment answers
                // UNAVAILABLE (a refusal, as a client reads it: try again); what may
                // never happen is an answer that misses the acknowledged write.
                let mut got = clients[(w + i + 1) % 3]
                    .clone()
                    .get_entity(read.clone())
                    .await;
                for _ in 0..5 {
                    match &got {
                        Err(s) if s.code() == tonic::Code::Unavailable => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            got = clients[(w + i + 1) % 3]
                                .clone()
                                .get_entity(read.clone())
                                .await;
                        }
                        _ => break,
                    }
                }
                anyhow::ensure!(got.is_ok(), "{name} was acknowledged, then read: {got:?}");
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_under_load_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    cluster
        .node(leader)
        .client()
        .submit(create_ns("load"))
        .await?;

    // --- steady load from 8 writers, each through every member in turn
    let endpoints = cluster.endpoints();
    // (text, when it was sent, when it was acknowledged)
    let acked: Arc<Mutex<Vec<(String, Instant, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (endpoints, acked, stop) = (endpoints.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut clients: Vec<_> = endpoints.iter().map(|a| client(a)).collect();
            let mut k = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let text = format!("w{w}-{k}");
                let n = clients.len();
                let sent = Instant::now();
                let call = clients[(w + k as usize) % n].submit(note("load", &text));
                let r = tokio::time::timeout(Duration::from_millis(1500), call).await;
                match r {
                    Ok(Ok(_)) => acked
                        .lock()
                        .expect("lock")
                        .push((text, sent, Instant::now())),
                    // As a real client would: back off a little before the next try.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                // Each text is attempted once: a failed one may or may not be applied.
                k += 1;
            }
        }));
    }
    // The load is under way: every writer has had writes acknowledged.
    eventually(
        Duration::from_secs(30),
        &format!("{WRITES_PER_PHASE} writes acknowledged, from every writer"),
        || async { load_under_way(&acked, None, writers.len()).then_some(()) },
    )
    .await?;

    // --- SIGKILL the leader
    let killed_at = Instant::now();
    cluster.node(leader).kill();
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    assert_ne!(new_leader, leader);
    // The first write sent after the kill was acknowledged within 2 s of the kill.
    let first_ack = eventually(
        (killed_at + Duration::from_secs(10)).saturating_duration_since(Instant::now()),
        "a write acknowledged within 10 s of the kill",
        || async {
            acked
                .lock()
                .expect("lock")
                .iter()
                .filter(|(_, sent, _)| *sent > killed_at)
                .map(|(_, _, done)| *done)
                .min()
        },
    )
    .await?;
    let gap = first_ack - killed_at;
    println!("first write sent after the kill acknowledged {gap:?} after the leader was killed");
    assert!(
        gap <= Duration::from_secs(2),
        "writes resumed only after {gap:?}"
    );

    // The load goes on under the new leader as it did before the kill.
    eventually(
        Duration::from_secs(30),
        &format!("{WRITES_PER_PHASE} writes sent after the kill acknowledged, from every writer"),
        || async { load_under_way(&acked, Some(killed_at), writers.len()).then_some(()) },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }

    // --- recovery: the old leader comes back and catches up
    cluster.restart(leader).await?;
    let leader_now = cluster.wait_leader(Duration::from_secs(10)).await?;
    let reference = cluster.events_of(leader_now).await?;
    let last = reference.last().map_or(0, |e| e.sequence);
    cluster
        .wait_converged(last, Duration::from_secs(20))
        .await?;

    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the load acknowledged only {} writes",
        acked.len()
    );
    for id in 1..=3 {
        let events = cluster.events_of(id).await?;
        let events: Vec<_> = events
            .into_iter()
            .take_while(|e| e.sequence <= last)
            .collect();
        assert_eq!(
            events, reference,
            "member {id}'s log differs from the leader's"
        );
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for t in events.iter().filter_map(note_text) {
            *seen.entry(t).or_default() += 1;
        }
        for (text, _, _) in &acked {
            assert_eq!(
                seen.get(text.as_str()),
                Some(&1),
                "acknowledged {text} is not present exactly once on member {id}"
            );
        }
    }
    println!(
        "{} acknowledged writes, all present exactly once on every member",
        acked.len()
    );
    Ok(())
}

/// Writes the load has acknowledged before the leader is killed, and again after.
const WRITES_PER_PHASE: usize = 30;

/// Whether the load has had [`WRITES_PER_PHASE`] writes (sent after `since`)
/// acknowledged, from each of its `writers` (their texts start with `w<writer>-`).
fn load_under_way(
    acked: &Mutex<Vec<(String, Instant, Instant)>>,
    since: Option<Instant>,
    writers: usize,
) -> bool {
    let acked = acked.lock().expect("lock");
    let writes: Vec<&str> = acked
        .iter()
        .filter(|(_, sent, _)| since.is_none_or(|t| *sent > t))
        .map(|(text, _, _)| text.as_str())
        .collect();
    let from: HashSet<&str> = writes
        .iter()
        .filter_map(|text| text.split_once('-').map(|(w, _)| w))
        .collect();
    writes.len() >= WRITES_PER_PHASE && from.len() == writers
}

/// `SubmitStream`: pipelined commands are each answered, in the order sent, with their
/// own outcome (a rejected or malformed one does not end the stream); every applied
/// note is on every member exactly once; a follower refuses the stream with the
/// leader's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_stream_answers_every_command_in_order() -> anyhow::Result<()> {
    use cairn_proto as pb;
    use pb::submit_stream_response::Result as R;

    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let leader_addr = cluster.node(leader).addr.clone();

    // --- a follower refuses, pointing at the leader
    let refused = cluster
        .node(follower)
        .client()
        .submit_stream(tokio_stream::iter(vec![create_ns("never")]))
        .await
        .expect_err("a follower refuses the stream");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        refused
            .metadata()
            .get(pb::LEADER_HINT)
            .and_then(|v| v.to_str().ok()),
        Some(leader_addr.as_str())
    );

    // --- the leader answers each command in the order sent (commands of one stream
    // may be applied in another order, so the namespace exists before they start)
    cluster
        .node(leader)
        .client()
        .submit(create_ns("stream"))
        .await?;
    let mut requests = Vec::new();
    for i in 0..300 {
        requests.push(match i {
            100 => note("missing", "to a namespace that does not exist"),
            200 => pb::SubmitRequest { command: None },
            _ => note("stream", &format!("n{i}")),
        });
    }
    let mut answers = cluster
        .node(leader)
        .client()
        .submit_stream(tokio_stream::iter(requests.clone()))
        .await?
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = answers.message().await? {
        got.push(a.result.expect("every answer has a result"));
    }
    assert_eq!(got.len(), requests.len(), "one answer per command");
    for (n, answer) in got.iter().enumerate() {
        match (n, answer) {
            (100, R::Error(e)) => assert_eq!(e.code, tonic::Code::NotFound as u32, "{e:?}"),
            (200, R::Error(e)) => {
                assert_eq!(e.code, tonic::Code::InvalidArgument as u32, "{e:?}");
                assert!(e.message.contains("command: required"), "{e:?}");
            }
            (_, R::Ok(ok)) => {
                assert_eq!(ok.events.len(), 1);
                assert_eq!(note_text(&ok.events[0]), Some(format!("n{n}").as_str()));
            }
            (_, other) => panic!("command {n}: unexpected answer {other:?}"),
        }
    }

    // --- every member has each applied note exactly once
    let last = cluster.events_of(leader).await?.len() as u64;
    cluster
        .wait_converged(last, Duration::from_secs(10))
        .await?;
    for id in 1..=3 {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for e in cluster.events_of(id).await? {
            if let Some(t) = note_text(&e) {
                *counts.entry(t.to_string()).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 298, "member {id}");
        assert!(
            counts.values().all(|c| *c == 1),
            "member {id}: a note twice"
        );
    }
    Ok(())
}

/// `cairn events list -o json`, as a user runs it: the whole history, with sequence numbers.
fn cli_events(endpoints: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    let events = cairn_tests::cli_json(endpoints, &["--timeout", "20s", "events", "list"])?;
    Ok(serde_json::from_value(events)?)
}

/// Every member is killed (SIGKILL) and started again, three times over: each time
/// `cairn events list -o json` returns the same full history, gapless from sequence 1,
/// with every acknowledged write once, and the cluster takes writes again. (Regression:
/// the old leader, made leader again in its old term with no election, served
/// linearizable reads before it had applied its log, without the last acknowledged
/// write, after 8 restarts of 30.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarted_lists_its_full_history() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    cluster
        .node(1)
        .client()
        .submit(create_ns("history"))
        .await?;
    let endpoints = cluster.endpoints();
    let mut after = Vec::new();
    let mut written = Vec::new();
    for round in 0..3 {
        for i in 0..10u64 {
            let text = format!("note {round}.{i}");
            cluster
                .node(i % 3 + 1)
                .client()
                .submit(note("history", &text))
                .await?;
            written.push(text);
        }
        let before = cli_events(&endpoints)?;

        cluster.restart_all().await?;
        cluster.wait_leader(Duration::from_secs(10)).await?;
        after = cli_events(&endpoints)?;
        let missing: Vec<_> = before.iter().filter(|e| !after.contains(e)).collect();
        let added: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
        anyhow::ensure!(
            after == before,
            "the history changed across restart {round} ({} events before, {} after): \
             missing {missing:?}, added {added:?}",
            before.len(),
            after.len()
        );
        let seqs: Vec<u64> = after
            .iter()
            .map(|e| e["sequence"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, (1..=after.len() as u64).collect::<Vec<_>>());
        for text in &written {
            let n = after
                .iter()
                .filter(|e| e["type"] == "note_added" && e["payload"]["text"] == text.as_str())
                .count();
            assert_eq!(n, 1, "{text} appears {n} times after restart {round}");
        }
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let r = cluster
        .node(leader)
        .client()
        .submit(note("history", "after the restart"))
        .await?
        .into_inner();
    assert_eq!(
        r.events.first().map(|e| e.sequence),
        Some(after.len() as u64 + 1)
    );
    Ok(())
}
