//! `cairn events tail` follows the log across the loss of the member it reads from.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_tests::{cli, create_ns, note, Settings, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_survives_the_loss_of_its_member() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, Settings::default()).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    cluster
        .node(leader)
        .client()
        .submit(create_ns("tailed"))
        .await?;

    // --- tail through a follower first, so killing it leaves a working cluster
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let endpoints = cluster.endpoints_from(follower);
    let mut tail = cli(&endpoints)
        .args(["events", "tail", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = tail.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let seq = line
                .split("\"sequence\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok());
            if let Some(seq) = seq {
                if tx.send(seq).is_err() {
                    return;
                }
            }
        }
    });

    let mut c = cluster.node(leader).client();
    for i in 0..10 {
        c.submit(note("tailed", &format!("before {i}"))).await?;
    }
    // --- lose the member the tail reads from, and go on writing
    cluster.node(follower).kill();
    for i in 0..10 {
        c.submit(note("tailed", &format!("after {i}"))).await?;
    }
    let last = cluster
        .events_of(leader)
        .await?
        .last()
        .map_or(0, |e| e.sequence);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&last) && Instant::now() < deadline {
        if let Ok(seq) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(seq);
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(
        seen,
        (1..=last).collect::<Vec<_>>(),
        "the tail missed or repeated events"
    );
    Ok(())
}
