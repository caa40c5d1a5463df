//! Prometheus metrics on every member of a TLS cluster: a write's timeline stage by
//! stage (on the follower that forwards it, the leader, the followers that store it),
//! Raft's figures, requests by method and code, refused TLS handshakes and refused
//! writes — each scraped from a real member's `/metrics` after real traffic; a dev
//! server's embedded agent on the same endpoint; and the Grafana dashboard asking for
//! nothing a member does not report.

use std::time::Duration;

use cairn_proto as pb;
use cairn_proto::tls::TlsFiles;
use cairn_tests::client::tls_client;
use cairn_tests::process::bin;
use cairn_tests::{certs, create_ns, eventually, Scrape, Settings, TestCluster};
use tonic::Code;

const STAGE_COUNT: &str = "cairn_write_stage_duration_seconds_count";

fn stage(s: &Scrape, stage: &str) -> f64 {
    s.value(&format!("{STAGE_COUNT}{{stage=\"{stage}\"}}"))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_reports_a_writes_timeline_raft_and_what_it_refused() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let certs_dir = dir.path().join("certs");
    let d = certs_dir.to_str().expect("utf-8");
    certs(&["init", "--dir", d, "--user", "alice"]);
    certs(&["issue", "user", "vera", "--dir", d, "--role", "viewer"]);
    let cluster = TestCluster::start(
        3,
        Settings {
            tls_dir: Some(certs_dir.clone()),
            metrics: true,
            ..Settings::default()
        },
    )
    .await?;
    let alice = TlsFiles::in_dir(&certs_dir, "user-alice");
    let vera = TlsFiles::in_dir(&certs_dir, "user-vera");
    let endpoints = cluster.endpoints();
    let leader = eventually(Duration::from_secs(20), "a leader over TLS", || {
        let mut c = tls_client(&endpoints[0], &alice);
        async move {
            let s = c.cluster_status(pb::ClusterStatusRequest {}).await.ok()?;
            let id = s.into_inner().leader_id;
            (id != 0).then_some(id)
        }
    })
    .await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let metrics = |id: u64| {
        cluster.nodes[(id - 1) as usize]
            .metrics_addr()
            .expect("metrics on")
            .to_string()
    };
    let before = Scrape::of(&metrics(follower)).await?;
    let forwarded_before = stage(&before, "forward");

    // 20 writes through a follower, which forwards each to the leader.
    let mut c = tls_client(&endpoints[(follower - 1) as usize], &alice);
    for i in 0..20 {
        c.submit(create_ns(&format!("m{i}"))).await?;
    }
    // A viewer's write is refused; a plaintext client never gets through the handshake.
    let refused = tls_client(&endpoints[(leader - 1) as usize], &vera)
        .submit(create_ns("by-vera"))
        .await
        .expect_err("a viewer may not write");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut plain =
        cairn_tests::client_with_timeout(&endpoints[(leader - 1) as usize], Duration::from_secs(3));
    assert!(plain.submit(create_ns("plain")).await.is_err());

    // The follower: each write read at its edge and forwarded.
    let f = Scrape::of(&metrics(follower)).await?;
    assert!(stage(&f, "forward") - forwarded_before >= 20.0, "{}", f.0);
    assert!(stage(&f, "edge") >= 20.0 && stage(&f, "total") >= 20.0);
    assert!(stage(&f, "follower_append") >= 1.0, "{}", f.0);
    assert_eq!(f.value("cairn_raft_is_leader"), Some(0.0));
    assert_eq!(f.value("cairn_raft_leader_id"), Some(leader as f64));

    // The leader: queued, proposed, flushed, replicated, applied; each follower's lag.
    let l = Scrape::of(&metrics(leader)).await?;
    assert_eq!(l.value("cairn_raft_is_leader"), Some(1.0));
    for s in [
        "edge",
        "queue",
        "raft",
        "to_log",
        "log_flush",
        "to_follower",
        "replicate",
        "to_apply",
        "apply",
        "to_reply",
        "total",
    ] {
        assert!(stage(&l, s) >= 20.0, "stage {s}: {}", l.0);
    }
    assert_eq!(stage(&l, "forward"), 0.0, "the leader forwards nothing");
    for other in (1..=3).filter(|id| *id != leader) {
        let lag = format!("cairn_raft_replication_lag_entries{{follower=\"{other}\"}}");
        assert!(l.value(&lag).is_some(), "no {lag} in {}", l.0);
    }
    assert!(
        l.sum(
            "cairn_api_requests_total",
            &["method=\"Submit\"", "code=\"PermissionDenied\""]
        ) >= 1.0,
        "{}",
        l.0
    );
    assert!(
        l.value("cairn_tls_handshake_failures_total")
            .is_some_and(|n| n >= 1.0),
        "{}",
        l.0
    );
    assert!(l.value("cairn_storage_fsync_duration_seconds_count") >= Some(20.0));
    assert!(l.value("cairn_process_resident_memory_bytes") > Some(0.0));
    assert!(l.value("cairn_storage_size_bytes") > Some(0.0), "{}", l.0);

    // Every member stored and applied every write (a follower that fell behind gets
    // many entries in one append: one flush), and all know the same term.
    let term = l.value("cairn_raft_term");
    for id in 1..=3 {
        let addr = metrics(id);
        let done = eventually(Duration::from_secs(10), "every member applied", || {
            let addr = addr.clone();
            async move {
                let s = Scrape::of(&addr).await.ok()?;
                let applied = s.value("cairn_raft_applied_index")?;
                let last = s.value("cairn_raft_last_log_index")?;
                (stage(&s, "log_flush") >= 1.0
                    && stage(&s, "apply") >= 1.0
                    && applied == last
                    && s.value("cairn_raft_term") == term)
                    .then_some(())
            }
        })
        .await;
        if done.is_err() {
            let s = Scrape::of(&addr).await?;
            panic!(
                "member {id}: flushes {}, applies {}, applied {:?} of {:?}, term {:?} (leader's {term:?})",
                stage(&s, "log_flush"),
                stage(&s, "apply"),
                s.value("cairn_raft_applied_index"),
                s.value("cairn_raft_last_log_index"),
                s.value("cairn_raft_term")
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_server_reports_its_embedded_agent_on_the_same_endpoint() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", cairn_tests::free_port());
    let metrics = format!("127.0.0.1:{}", cairn_tests::free_port());
    let spec = cairn_tests::ServerSpec {
        metrics_listen: Some(metrics.clone()),
        ..cairn_tests::ServerSpec::dev(bin("cairn-server"), addr, dir.path().join("dev"))
    };
    let _server = cairn_tests::Server::start_new(spec).await?;
    // The member's view of the node and the agent's own, side by side.
    let s = eventually(Duration::from_secs(20), "the agent's figures", || {
        let metrics = metrics.clone();
        async move {
            let s = Scrape::of(&metrics).await.ok()?;
            (s.value("cairn_nodes{status=\"ready\"}") == Some(1.0)
                && s.value("cairn_agent_gpus{health=\"healthy\"}") == Some(8.0)
                && s.value("cairn_agent_heartbeats_total{result=\"ok\"}") >= Some(1.0))
            .then_some(s)
        }
    })
    .await?;
    assert_eq!(
        s.value("cairn_gpus{health=\"healthy\"}"),
        Some(8.0),
        "{}",
        s.0
    );
    assert_eq!(
        s.value("cairn_agent_gpu_read_errors_total"),
        Some(0.0),
        "{}",
        s.0
    );
    assert_eq!(
        s.value("cairn_agent_replicas{kind=\"job\"}"),
        Some(0.0),
        "{}",
        s.0
    );

    // The Grafana dashboard asks only for metrics a member (with its agent) has.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/cairn.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let declared: Vec<&str> =
        s.0.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("an expr");
            for name in metric_names(expr) {
                asked += 1;
                let family = ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                assert!(
                    declared.contains(&family) || declared.contains(&name.as_str()),
                    "panel {:?} asks for {name}, which no member reports",
                    panel["title"]
                );
            }
        }
    }
    assert!(asked >= 40, "only {asked} metrics asked for");
    Ok(())
}

/// The `cairn_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("cairn_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}
