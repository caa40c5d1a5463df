//! Bad input gets a typed error with a precise message and changes nothing.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{bin, create_ns, note, Settings, TestCluster};
use tonic::Code;

async fn last_sequence(
    c: &mut pb::cairn_client::CairnClient<tonic::transport::Channel>,
) -> anyhow::Result<u64> {
    let r = c
        .list_events(pb::ListEventsRequest {
            filter: None,
            limit: 1,
            consistency: 0,
            raw: false,
        })
        .await?
        .into_inner();
    Ok(r.read.map_or(0, |r| r.last_sequence))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_typed_errors_and_change_nothing() -> anyhow::Result<()> {
    let settings = Settings {
        max_request_bytes: 64 * 1024,
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(1, settings).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut c = cluster.node(1).client();
    c.submit(create_ns("a")).await?;
    let before = last_sequence(&mut c).await?;

    // Oversized: over the configured 64 KiB.
    let s = c
        .submit(note("a", &"x".repeat(100 * 1024)))
        .await
        .unwrap_err();
    assert!(
        matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{s:?}"
    );

    // Unknown entity.
    let s = c.submit(note("ghost", "hi")).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    assert!(s.message().contains("namespace/ghost"), "{}", s.message());

    // Wrong expected revision.
    let mut req = note("a", "guarded");
    if let Some(cmd) = req.command.as_mut() {
        cmd.expected_revision = Some(7);
    }
    let s = c.submit(req).await.unwrap_err();
    assert_eq!(s.code(), Code::Aborted);
    assert!(
        s.message().contains("expected 7, current 1"),
        "{}",
        s.message()
    );

    // Invalid fields, every problem named with its path.
    let mut req = create_ns("Bad Name");
    if let Some(pb::command::Body::CreateNamespace(ns)) =
        req.command.as_mut().and_then(|c| c.body.as_mut())
    {
        ns.labels.insert("".into(), "v".into());
    }
    let s = c.submit(req).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("create_namespace.name"),
        "{}",
        s.message()
    );
    assert!(
        s.message().contains("key must not be empty"),
        "{}",
        s.message()
    );

    // Missing command; unknown event type in a filter; unknown kind.
    assert_eq!(
        c.submit(pb::SubmitRequest { command: None })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let s = c
        .list_events(pb::ListEventsRequest {
            filter: Some(pb::EventFilter {
                types: vec!["namespace_exploded".into()],
                ..Default::default()
            }),
            limit: 0,
            consistency: 0,
            raw: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("filter.types[0]"), "{}", s.message());

    // Nothing changed.
    assert_eq!(last_sequence(&mut c).await?, before);
    Ok(())
}

#[test]
fn a_bad_config_file_is_rejected_at_start_with_every_problem() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "node_id = 0\nlisten = \"not-an-address\"\n[raft]\nheartbeat_ms = 0\n[batch]\nmax_inflight = 0\n",
    )?;
    let out = std::process::Command::new(bin("cairn-server"))
        .args(["run", "--config"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "node_id",
        "listen",
        "raft.heartbeat_ms",
        "batch.max_inflight",
    ] {
        assert!(err.contains(field), "{field} not reported in:\n{err}");
    }
    // An unknown key is an error too, naming the key.
    std::fs::write(&path, "node_id = 1\nlisen = \"127.0.0.1:1\"\n")?;
    let out = std::process::Command::new(bin("cairn-server"))
        .args(["run", "--config"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `lisen`"));
    Ok(())
}
