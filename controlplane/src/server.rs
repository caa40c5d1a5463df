//! Starting a member: storage, Raft, the gRPC server, and the leader-only workers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use cairn_proto::cairn_server::CairnServer;
use cairn_proto::raft_transport_server::RaftTransportServer;
use openraft::BasicNode;

use crate::api::proposer::{BatchLimits, Proposer};
use crate::api::Api;
use crate::config::ServerConfig;
use crate::raft::network::Network;
use crate::raft::transport::{Local, TransportService};
use crate::raft::Raft;

/// Run a member until `shutdown` resolves. The listener is bound before this returns
/// control to the runtime, so a caller that sees "listening" can connect.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let problems = config.validate();
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    let id = config.node_id;
    let (log, sm) = crate::store::open(&config.data_dir)?;
    let shared = sm.shared();
    let raft_config = Arc::new(config.openraft().map_err(anyhow::Error::msg)?);
    let network = Network {
        id,
        max_message_bytes: config.raft.max_message_bytes,
    };
    let raft = Raft::new(id, raft_config, network, log.clone(), sm)
        .await
        .context("starting Raft")?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(node = id, listen = %config.listen, advertise = %config.advertise(), data_dir = %config.data_dir.display(), "cairn-server listening");

    bootstrap(&raft, &config).await?;

    let local = Local {
        raft: raft.clone(),
        log,
        shared,
    };
    let proposer = Proposer::start(
        raft.clone(),
        BatchLimits {
            max_commands: config.batch.max_commands,
            max_bytes: config.batch.max_bytes,
            max_inflight: config.batch.max_inflight,
        },
    );
    let api = Api::new(local.clone(), proposer, config.max_request_bytes);
    tokio::spawn(api.clone().record_membership_on_leadership());
    tokio::spawn(log_leader_changes(raft.clone()));

    let raft_bytes = config.raft.max_message_bytes;
    let result = tonic::transport::Server::builder()
        .add_service(
            CairnServer::new(api)
                .max_decoding_message_size(config.max_request_bytes)
                .max_encoding_message_size(raft_bytes),
        )
        .add_service(
            RaftTransportServer::new(TransportService { local })
                .max_decoding_message_size(raft_bytes)
                .max_encoding_message_size(raft_bytes),
        )
        .serve_with_incoming_shutdown(
            // Small HTTP/2 frames (trailers) must not wait for delayed ACKs.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not shut down cleanly");
    }
    result.context("serving gRPC")
}

/// Initialize a new cluster: the lowest-id initial member does it, once, on an empty store.
async fn bootstrap(raft: &Raft, config: &ServerConfig) -> anyhow::Result<()> {
    let Some((&first, _)) = config.initial_members.first_key_value() else {
        return Ok(());
    };
    if first != config.node_id || raft.is_initialized().await? {
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = config
        .initial_members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    tracing::info!(members = ?config.initial_members, "initializing a new cluster");
    raft.initialize(members)
        .await
        .context("initializing the cluster")?;
    Ok(())
}

async fn log_leader_changes(raft: Raft) {
    let mut rx = raft.metrics();
    let mut last = None;
    loop {
        let (leader, term) = {
            let m = rx.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if leader != last {
            match leader {
                Some(l) => tracing::info!(leader = l, term, "leader elected"),
                None => tracing::info!(term, "no leader"),
            }
            last = leader;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
