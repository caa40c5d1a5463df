//! A client that opens an event tail and stops reading holds the member's memory to its
//! buffer: the watch reads the store as the reader takes events, so what the member
//! keeps for it is bounded by the channel and HTTP/2's flow-control windows, not by
//! how much is written meanwhile.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::process::bin;
use cairn_tests::server::{Server, ServerSpec};
use cairn_tests::{client, create_ns, free_port, note};

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn write_mib(addr: &str, ns: &str, mib: usize) {
    let text = "x".repeat(60 * 1024);
    let mut c = client(addr);
    for _ in 0..(mib * 1024 / 60) {
        c.submit(note(ns, &text)).await.expect("a note");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_event_tails_do_not_grow_the_members_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec {
        initial_members: [(1, listen.clone())].into(),
        ..ServerSpec::new(
            bin("cairn-server"),
            1,
            listen.clone(),
            dir.path().join("m1"),
        )
    };
    let server = Server::start_new(spec).await.expect("a member");
    let pid = server.pid().expect("running");
    let mut c = client(&listen);
    let start = std::time::Instant::now();
    while c.submit(create_ns("load")).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up, then the member's own growth for the same writes with no tail open.
    const MIB: usize = 24;
    write_mib(&listen, "load", MIB).await;
    let warm = rss_kib(pid);
    write_mib(&listen, "load", MIB).await;
    let before = rss_kib(pid);
    let baseline_mib = before.saturating_sub(warm) / 1024;

    // 32 tails of everything, each on its own connection, that never read.
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut t = client(&listen);
        let stream = t
            .watch_events(pb::WatchEventsRequest {
                filter: Some(pb::EventFilter::default()),
            })
            .await
            .expect("a tail")
            .into_inner();
        stalled.push((t, stream));
    }
    write_mib(&listen, "load", MIB).await;
    let after = rss_kib(pid);
    let grew_mib = after.saturating_sub(before) / 1024;
    println!(
        "RSS +{baseline_mib} MiB for {MIB} MiB written with no tail, +{grew_mib} MiB with 32 stalled tails ({} MiB in all)",
        after / 1024
    );
    // Buffering what the readers did not take would cost 32 × 24 MiB = 768 MiB; each
    // stalled tail may hold two pages of 16 events (60 KiB each here) and its HTTP/2
    // window: under 4 MiB.
    assert!(
        grew_mib < baseline_mib + 32 * 4,
        "32 stalled tails grew the member by {grew_mib} MiB, {baseline_mib} MiB without them"
    );
    // The member still answers, and the tails still work once read.
    c.cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("the member answers");
    let first = stalled[0].1.message().await.expect("a tail reads on");
    assert!(first.is_some(), "the tail ended");
}
