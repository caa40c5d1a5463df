//! Mutual TLS: `cairn certs` makes the identities; members, agents and the CLI speak
//! TLS 1.3 with client certificates of the cluster CA; the identity, never the client,
//! is the actor; only members speak Raft; an agent reports only about its own node;
//! certificates rotate without a restart; and plaintext, garbage and silent
//! connections are refused without harming anyone else.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto as pb;
use cairn_proto::tls::TlsFiles;
use cairn_tests::client::tls_client;
use cairn_tests::process::bin;
use cairn_tests::{certs, cli, create_ns, eventually, free_port, Settings, TestAgent, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// `msg` with `authorization: Bearer <secret>`.
fn bearer<T>(msg: T, secret: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        pb::AUTHORIZATION,
        format!("Bearer {secret}").parse().expect("ascii"),
    );
    r
}

fn events_by(events: &[pb::Event], entity: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.entity.as_ref().is_some_and(|r| r.to_string() == entity))
        .map(|e| e.actor.clone())
        .collect()
}

/// The certificate (DER) a member presents to a new connection.
async fn presented_cert(addr: &str, client: &TlsFiles) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&client.ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("a CA");
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(&client.cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(&client.key).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("a certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_names_every_caller_and_refuses_the_rest() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_dir = dir.path().join("certs");
    let d = certs_dir.to_str().expect("utf-8");
    certs(&["init", "--dir", d, "--agent", "n1", "--user", "alice"]);
    // Files a test needs that `init` does not make: an expired and a future user, and
    // a user of another CA.
    certs(&[
        "issue",
        "user",
        "old",
        "--dir",
        d,
        "--backdate",
        "48h",
        "--valid-for",
        "24h",
    ]);
    certs(&["issue", "user", "early", "--dir", d, "--postdate", "24h"]);
    certs(&["issue", "user", "vera", "--dir", d, "--role", "viewer"]);
    let other = dir.path().join("other");
    certs(&[
        "init",
        "--dir",
        other.to_str().expect("utf-8"),
        "--members",
        "1",
        "--user",
        "alice",
    ]);
    let user = |name: &str| TlsFiles::in_dir(&certs_dir, &format!("user-{name}"));
    let alice = user("alice");

    let cluster = TestCluster::start(
        3,
        Settings {
            tls_dir: Some(certs_dir.clone()),
            ..Settings::default()
        },
    )
    .await
    .expect("a TLS cluster");
    let endpoints = cluster.endpoints();

    // --- a leader, through TLS.
    let start = Instant::now();
    let leader = loop {
        let mut c = tls_client(&endpoints[0], &alice);
        if let Ok(s) = c.cluster_status(pb::ClusterStatusRequest {}).await {
            let s = s.into_inner();
            if s.leader_id != 0 {
                break s.leader_id;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no leader over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower = endpoints[if leader == 1 { 1 } else { 0 }].clone();

    // --- the actor is the certificate's identity, whatever the client says, also
    // through a follower that forwards the write to the leader.
    let mut c = tls_client(&follower, &alice);
    c.submit(create_ns("by-alice"))
        .await
        .expect("alice creates a namespace");
    let out = cli(std::slice::from_ref(&follower))
        .args(["--ca", alice.ca.to_str().expect("utf-8")])
        .args(["--cert", alice.cert.to_str().expect("utf-8")])
        .args(["--key", alice.key.to_str().expect("utf-8")])
        .args(["--actor", "mallory", "ns", "create", "by-cli"])
        .output()
        .expect("cairn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = pb::all_events(&mut c, pb::ReadConsistency::Linearizable)
        .await
        .expect("events");
    assert_eq!(events_by(&events, "namespace/by-alice"), ["user/alice"]);
    assert_eq!(events_by(&events, "namespace/by-cli"), ["user/alice"]);
    // ... and the history answers "what did alice do".
    let by_alice = c
        .list_events(pb::ListEventsRequest {
            filter: Some(pb::EventFilter {
                actor: "user/alice".into(),
                ..Default::default()
            }),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events by actor")
        .into_inner()
        .events;
    let names: Vec<String> = by_alice
        .iter()
        .filter_map(|e| e.entity.as_ref().map(|r| r.to_string()))
        .collect();
    assert_eq!(names, ["namespace/by-alice", "namespace/by-cli"]);

    // --- refused: plaintext, another CA, expired, not yet valid.
    let mut plain = cairn_tests::client_with_timeout(&endpoints[0], Duration::from_secs(3));
    assert!(
        plain.submit(create_ns("plain")).await.is_err(),
        "plaintext accepted"
    );
    for (who, files) in [
        ("another CA", TlsFiles::in_dir(&other, "user-alice")),
        ("expired", user("old")),
        ("not yet valid", user("early")),
    ] {
        let mut c = tls_client(&endpoints[0], &files);
        let r = c.submit(create_ns("refused")).await;
        assert!(r.is_err(), "{who}: a certificate accepted: {r:?}");
    }

    // --- roles: a viewer reads but may not write (through a follower too: the leader
    // judges the role the follower forwards); an operator may not change the
    // membership.
    for addr in [&endpoints[0], &follower] {
        let mut viewer = tls_client(addr, &user("vera"));
        let s = viewer
            .submit(create_ns("by-viewer"))
            .await
            .expect_err("a viewer wrote");
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        assert!(
            s.message().contains("user/vera has the role viewer"),
            "{s:?}"
        );
        viewer
            .cluster_status(pb::ClusterStatusRequest {})
            .await
            .expect("a viewer reads");
    }
    let s = tls_client(&follower, &alice)
        .add_learner(pb::AddLearnerRequest {
            node_id: 9,
            address: "127.0.0.1:1".into(),
        })
        .await
        .expect_err("an operator changed the membership");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // --- bearer tokens: an admin makes one (the CLI shows its secret once); it
    // authenticates without a certificate on every member, as its user and role; a
    // revocation is an event that every member honours at once.
    let admin = user("admin");
    let admin_cli = |args: &[&str]| {
        let out = cli(&endpoints)
            .args(["--ca", admin.ca.to_str().expect("utf-8")])
            .args(["--cert", admin.cert.to_str().expect("utf-8")])
            .args(["--key", admin.key.to_str().expect("utf-8")])
            .args(args)
            .output()
            .expect("cairn");
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let secret = admin_cli(&[
        "token", "create", "carol-ci", "--user", "carol", "--role", "operator",
    ]);
    assert!(
        secret.starts_with("cairn_") && secret.len() > 40,
        "{secret}"
    );
    let ca_only = TlsFiles::ca_only(alice.ca.clone());
    let with_token = |msg: pb::SubmitRequest| bearer(msg, &secret);
    for (i, addr) in endpoints.iter().enumerate() {
        tls_client(addr, &ca_only)
            .submit(with_token(create_ns(&format!("by-token-{i}"))))
            .await
            .expect("a write with the token");
    }
    // A token authenticates on every member as soon as its creation is acknowledged:
    // a member that has not applied it yet catches up with the leader before judging
    // it. Each token here is used on the followers within a moment of its creation,
    // over connections already open.
    let mut followers: Vec<_> = (0..endpoints.len())
        .filter(|&i| i as u64 + 1 != leader)
        .map(|i| tls_client(&endpoints[i], &ca_only))
        .collect();
    for f in &mut followers {
        f.cluster_status(bearer(pb::ClusterStatusRequest {}, &secret))
            .await
            .expect("a follower, with the first token");
    }
    let mut to_leader = tls_client(&endpoints[leader as usize - 1], &admin);
    for round in 0..10 {
        let fresh = format!("cairn_fresh{round}_{}", "f".repeat(48));
        let digest = ring::digest::digest(&ring::digest::SHA256, fresh.as_bytes());
        to_leader
            .submit(pb::SubmitRequest {
                command: Some(pb::Command {
                    body: Some(pb::command::Body::CreateToken(pb::CreateToken {
                        name: format!("fresh-{round}"),
                        user: "dora".into(),
                        role: "operator".into(),
                        digest: digest.as_ref().to_vec(),
                        expires_ms: None,
                    })),
                    ..Default::default()
                }),
            })
            .await
            .expect("a token created");
        for (i, f) in followers.iter_mut().enumerate() {
            f.submit(bearer(create_ns(&format!("fresh-{round}-{i}")), &fresh))
                .await
                .expect("a token just created, on a follower");
        }
    }
    let events = pb::all_events(&mut c, pb::ReadConsistency::Linearizable)
        .await
        .expect("events");
    assert_eq!(events_by(&events, "namespace/by-token-1"), ["user/carol"]);
    assert_eq!(events_by(&events, "namespace/fresh-9-1"), ["user/dora"]);
    // No certificate and no token: refused. A wrong token: refused.
    let s = tls_client(&endpoints[0], &ca_only)
        .submit(create_ns("anonymous"))
        .await
        .expect_err("anonymous");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let s = tls_client(&endpoints[0], &ca_only)
        .submit(bearer(create_ns("forged"), "cairn_0000"))
        .await
        .expect_err("a made-up token");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    admin_cli(&["token", "revoke", "carol-ci"]);
    let revoked_at = Instant::now();
    let mut refused_after = Vec::new();
    for addr in &endpoints {
        // A write goes through the leader, which applied the revocation before it
        // acknowledged it: refused at once, from any member.
        let s = tls_client(addr, &ca_only)
            .submit(with_token(create_ns("after-revoke")))
            .await
            .expect_err("a write with a revoked token");
        assert!(
            matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied),
            "{addr}: {s:?}"
        );
        // A member's own reads stop once it has applied the revocation event.
        loop {
            let r = bearer(pb::ClusterStatusRequest {}, &secret);
            match tls_client(addr, &ca_only).cluster_status(r).await {
                Err(s) if s.code() == Code::Unauthenticated => {
                    refused_after.push(revoked_at.elapsed());
                    break;
                }
                other => assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "{addr} still reads with the revoked token: {other:?}"
                ),
            }
        }
    }
    println!("revoked token refused by each member's reads after {refused_after:?}");
    let listed = admin_cli(&["token", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed[0]["user"], "carol");
    assert_eq!(listed[0]["revoked_by"], "user/admin");

    // --- only members speak Raft: an agent's and a user's certificates are refused.
    for files in [TlsFiles::in_dir(&certs_dir, "agent-n1"), alice.clone()] {
        let channel = pb::Dial::new()
            .tls(Some(Arc::new(files.clone())))
            .channel(&endpoints[0])
            .expect("a channel");
        let mut raft = pb::raft_transport_client::RaftTransportClient::new(channel);
        let s = raft
            .member_status(pb::RaftMessage::default())
            .await
            .expect_err("Raft from a non-member");
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "{}: {s:?}",
            files.cert.display()
        );
    }

    // --- a user may not pretend to be forwarding for someone else.
    let mut req = tonic::Request::new(create_ns("impersonated"));
    req.metadata_mut().insert(
        pb::ON_BEHALF_OF,
        "urn:cairn:user:admin".parse().expect("ascii"),
    );
    let s = tls_client(&endpoints[0], &alice)
        .submit(req)
        .await
        .expect_err("impersonation");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // --- an agent registers its own node, and may report about no other.
    let agent_files = TlsFiles::in_dir(&certs_dir, "agent-n1");
    let tls_args = [
        "--tls-ca".to_string(),
        agent_files.ca.display().to_string(),
        "--tls-cert".into(),
        agent_files.cert.display().to_string(),
        "--tls-key".into(),
        agent_files.key.display().to_string(),
    ];
    let port = free_port();
    let _agent = TestAgent::start_with(
        dir.path(),
        "n1",
        "pcie-4",
        (port, port + 20),
        &endpoints,
        &tls_args,
    )
    .expect("an agent");
    eventually(
        Duration::from_secs(20),
        "the TLS agent registers",
        || async {
            let nodes = tls_client(&endpoints[0], &alice)
                .list_nodes(pb::ListNodesRequest::default())
                .await
                .ok()?
                .into_inner()
                .nodes;
            nodes.iter().any(|n| n.name == "n1").then_some(())
        },
    )
    .await
    .expect("the TLS agent registers");
    let forged = pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "agent/n2".into(),
            body: Some(pb::command::Body::ReportGpuHealth(pb::ReportGpuHealth {
                node: "n2".into(),
                gpus: Vec::new(),
            })),
            ..Default::default()
        }),
    };
    let s = tls_client(&endpoints[0], &agent_files)
        .submit(forged)
        .await
        .expect_err("a report about another node");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = tls_client(&endpoints[0], &agent_files)
        .submit(create_ns("by-agent"))
        .await
        .expect_err("an agent creating a namespace");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let events = pb::all_events(&mut c, pb::ReadConsistency::Linearizable)
        .await
        .expect("events");
    assert_eq!(events_by(&events, "node/n1")[0], "agent/n1");

    // --- a replica's log, read through a member: a viewer with only a bearer token
    // reads what the TLS agent's replica printed; an agent may not read logs there.
    let job = serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": "says-hello"},
        "spec": {"framework": "pytorch", "roles": {"worker": {
            "replicas": 1, "command": ["python3", "-c", "print('hello from n1')"]}}},
    });
    tls_client(&endpoints[0], &alice)
        .submit(pb::SubmitRequest {
            command: Some(pb::Command {
                body: Some(pb::command::Body::SubmitJob(pb::SubmitJob {
                    spec_json: job.to_string(),
                })),
                ..Default::default()
            }),
        })
        .await
        .expect("a job");
    eventually(
        Duration::from_secs(30),
        "job/says-hello succeeds",
        || async {
            let jobs = tls_client(&endpoints[0], &alice)
                .list_jobs(pb::ListJobsRequest {
                    name: "says-hello".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .jobs;
            jobs.iter().any(|j| j.phase == "Succeeded").then_some(())
        },
    )
    .await
    .expect("job/says-hello succeeds");
    let viewer_secret = admin_cli(&[
        "token",
        "create",
        "dana-logs",
        "--user",
        "dana",
        "--role",
        "viewer",
    ]);
    let out = cli(&endpoints[2..])
        .args(["--ca", alice.ca.to_str().expect("utf-8")])
        .args(["--token", &viewer_secret])
        .args(["job", "logs", "says-hello", "--role", "worker"])
        .args(["--state-dir", "/nonexistent"])
        .output()
        .expect("cairn");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("hello from n1"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = tls_client(&endpoints[0], &agent_files)
        .read_replica_log(pb::ReadLogRequest {
            job: "says-hello".into(),
            role: "worker".into(),
            index: 0,
            follow: false,
        })
        .await
        .expect_err("an agent reading logs through a member");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // --- silent, garbage and plaintext connections leave the member answering, and a
    // silent one is closed after the handshake deadline.
    let mut silent = tokio::net::TcpStream::connect(&endpoints[0])
        .await
        .expect("tcp");
    let mut junk = Vec::new();
    for i in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&endpoints[0])
            .await
            .expect("tcp");
        if i % 2 == 0 {
            let _ = s
                .write_all(b"\x16\x03\x01\xff\xffgarbage that is no handshake")
                .await;
        } else {
            let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        }
        junk.push(s);
    }
    let t = Instant::now();
    tls_client(&endpoints[0], &alice)
        .submit(create_ns("amid-junk"))
        .await
        .expect("a write amid junk connections");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "slow amid junk: {:?}",
        t.elapsed()
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection was not closed after the handshake deadline: {closed:?}"
    );

    // --- rotation under write load: member 1's certificate is replaced on disk; new
    // connections get the new one, and no acknowledged write is lost.
    let m1 = endpoints[0].clone();
    let before = presented_cert(&m1, &alice).await;
    assert_eq!(before, pem_der(&certs_dir.join("member-1.crt")));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop, addr, files) = (
            acked.clone(),
            stop.clone(),
            endpoints.clone(),
            alice.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2_000 {
                let name = format!("w{w}-{i}");
                let mut c = tls_client(&addr[i % addr.len()], &files);
                if c.submit(create_ns(&name)).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                    ok.push(name);
                }
                i += 1;
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    certs(&["issue", "member", "1", "--dir", d]);
    let start = Instant::now();
    loop {
        if presented_cert(&m1, &alice).await != before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        presented_cert(&m1, &alice).await,
        pem_der(&certs_dir.join("member-1.crt"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.expect("a writer"));
    }
    assert!(
        written.len() > 20,
        "too few writes under rotation: {}",
        written.len()
    );
    let events = pb::all_events(
        &mut tls_client(&m1, &alice),
        pb::ReadConsistency::Linearizable,
    )
    .await
    .expect("events after rotation");
    for name in &written {
        let entity = format!("namespace/{name}");
        assert_eq!(
            events_by(&events, &entity).len(),
            1,
            "{entity} lost or doubled"
        );
    }
    drop(junk);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_is_refused_and_others_are_not() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_dir = dir.path().join("certs");
    let d = certs_dir.to_str().expect("utf-8");
    certs(&[
        "init",
        "--dir",
        d,
        "--members",
        "1",
        "--user",
        "alice",
        "--user",
        "bob",
    ]);
    let listen = format!("127.0.0.1:{}", free_port());
    let spec = cairn_tests::server::ServerSpec {
        initial_members: [(1, listen.clone())].into(),
        tls: Some(TlsFiles::in_dir(&certs_dir, "member-1")),
        extra_toml: "[limits]\nrequests_per_second = 20\nburst = 20\nstreams = 2\n".into(),
        ..cairn_tests::server::ServerSpec::new(
            bin("cairn-server"),
            1,
            listen.clone(),
            dir.path().join("m1"),
        )
    };
    let _server = cairn_tests::server::Server::start_new(spec)
        .await
        .expect("a member with a low rate limit");
    let alice = TlsFiles::in_dir(&certs_dir, "user-alice");
    let bob = TlsFiles::in_dir(&certs_dir, "user-bob");
    let mut a = tls_client(&listen, &alice);
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..100 {
        match a.cluster_status(pb::ClusterStatusRequest {}).await {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(pb::certainly_not_applied(&s), "{s:?}");
                assert!(s.message().contains("user/alice"), "{s:?}");
                limited += 1;
            }
            Err(s) => panic!("unexpected: {s:?}"),
        }
    }
    assert!(
        limited >= 50,
        "100 requests at once, {ok} served, {limited} limited"
    );
    tls_client(&listen, &bob)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("another identity is not held back by alice");
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("alice again once her bucket refilled");

    // Streams: two open tails each, then refused until one closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tail = |files: &TlsFiles| {
        let mut c = tls_client(&listen, files);
        async move {
            c.watch_events(pb::WatchEventsRequest { filter: None })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = tail(&alice).await.expect("a first tail");
    let _second = tail(&alice).await.expect("a second tail");
    let s = tail(&alice).await.expect_err("a third tail is refused");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("stream limit"), "{s:?}");
    let _bobs = tail(&bob).await.expect("bob has places of his own");
    drop(first);
    let start = std::time::Instant::now();
    loop {
        match tail(&alice).await {
            Ok(_) => break,
            Err(s) => assert!(
                start.elapsed() < Duration::from_secs(5),
                "a closed tail's place was not freed: {s:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn plaintext_beyond_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin("cairn-server"))
        .args(["run", "--node-id", "1", "--listen"])
        .arg(format!("0.0.0.0:{}", free_port()))
        .args(["--initial-members", "1=127.0.0.1:1", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("cairn-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "a refused start wrote data"
    );
}
