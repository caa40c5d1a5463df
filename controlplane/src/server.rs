//! Starting a member: storage, Raft, the application layer, the leader's workers and
//! the gRPC adapter, wired together; and stopping it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use cairn_proto::tls::server::{ServerTls, H2, HTTP1};
use openraft::BasicNode;

use crate::api::grpc::{self, Limits};
use crate::app::{App, BatchLimits, Proposer, Settings};
use crate::config::ServerConfig;
use crate::raft::network::Network;
use crate::raft::Raft;

/// How long in-flight requests may take to finish once the server stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Run a member until `shutdown` resolves. The listener is bound before this returns
/// control to the runtime, so a caller that sees "listening" can connect.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, shutdown, |_| {}, Vec::new()).await
}

/// [`run`], calling `started` with the application layer once it exists (to start
/// workers that live outside this crate, such as the Kubernetes projector), and
/// reporting the figures of `collectors` (an embedded agent's) with the member's.
pub async fn run_with(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(App),
    collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> anyhow::Result<()> {
    let problems = config.validate();
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    let id = config.node_id;
    let (log, sm) = crate::store::open(&config.data_dir, id, config.cache_mib << 20)?;
    // Entries a crash left below the purge point.
    log.collect_purged();
    let shared = sm.shared();
    let raft_config = Arc::new(config.openraft().map_err(anyhow::Error::msg)?);
    let tls_files = config.tls.as_ref().map(|t| Arc::new(t.files()));
    let server_tls = match &tls_files {
        Some(files) => Some(ServerTls::load(files.as_ref().clone(), &[H2])?),
        None => None,
    };
    let network = Network::new(id, config.raft.max_message_bytes, tls_files.clone());
    let raft = Raft::new(id, raft_config, network, log.clone(), sm)
        .await
        .context("starting Raft")?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(node = id, listen = %config.listen, advertise = %config.advertise(), data_dir = %config.data_dir.display(), tls = server_tls.is_some(), "cairn-server listening");
    if server_tls.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "no TLS: plaintext, and every caller is trusted to name itself; for loopback use (configure [tls] for anything else)"
        );
    }

    bootstrap(&raft, &config).await?;

    let proposer = Proposer::start(
        raft.clone(),
        BatchLimits {
            max_commands: config.batch.max_commands,
            max_bytes: config.batch.max_bytes,
            max_inflight: config.batch.max_inflight,
        },
    );
    let app = App::new(
        id,
        raft.clone(),
        log,
        shared,
        proposer,
        Settings {
            max_message_bytes: config.max_request_bytes,
            lost_after_ms: config.nodes.lost_after_ms,
            tls: tls_files.clone(),
        },
    );
    tokio::spawn(crate::leader::record_membership(app.clone()));
    tokio::spawn(crate::leader::run(app.clone()));
    tokio::spawn(log_leader_changes(raft.clone()));
    started(app.clone());

    // A storage error stops Raft for good (a replica must not go on after a failed
    // write): then the process exits, for its supervisor to restart it.
    let (fatal_tx, mut fatal_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(watch_for_fatal(raft.clone(), fatal_tx));
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    // Once stopping, in-flight requests get a grace period; event streams never end on
    // their own, so they are cut after it.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stopped_rx => {}
        }
        stopping_tx.send_replace(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(addr) = &config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        tracing::info!(listen = %addr, "metrics on /metrics");
        let member = crate::api::metrics::Member {
            app: app.clone(),
            data_dir: config.data_dir.clone(),
        };
        let mut all: Vec<Box<dyn prometheus_client::collector::Collector>> = vec![Box::new(member)];
        all.extend(collectors);
        let registry = crate::metrics::registry(all);
        let until = stopped(stopping.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::http::serve(registry, listener, until).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    tokio::spawn(count_leader_changes(raft.clone()));
    let rate = Arc::new(crate::auth::limit::RateLimits::new(
        config.limits.requests_per_second,
        config.limits.burst,
    ));
    if let Some(addr) = &config.mlflow_listen {
        let mlflow = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the MLflow facade on {addr}"))?;
        let mlflow_tls = match &tls_files {
            Some(files) => Some(ServerTls::load(files.as_ref().clone(), &[HTTP1])?),
            None => None,
        };
        tracing::info!(listen = %addr, https = mlflow_tls.is_some(), "MLflow-compatible registry API listening");
        let (app, rate, until) = (app.clone(), rate.clone(), stopped(stopping.clone()));
        tokio::spawn(async move {
            if let Err(e) = crate::api::mlflow::serve(app, mlflow, mlflow_tls, rate, until).await {
                tracing::error!(error = %e, "the MLflow facade stopped");
            }
        });
    }
    let fatal_to_shutdown = async move {
        if let Ok(fatal) = (&mut fatal_rx).await {
            let _ = stopped_tx.send(());
            return Some(fatal);
        }
        None
    };
    let fatal_task = tokio::spawn(fatal_to_shutdown);
    let limits = Limits {
        max_request_bytes: config.max_request_bytes,
        max_message_bytes: config.raft.max_message_bytes,
        rate,
        streams_per_caller: config.limits.streams,
    };
    let serve = grpc::serve(app, listener, server_tls, limits, stopped(stopping.clone()));
    let grace = async {
        stopped(stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = serve => r,
        _ = grace => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "closing the requests still open after the grace period");
            Ok(())
        }
    };
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not shut down cleanly");
    }
    if fatal_task.is_finished() {
        if let Ok(Some(fatal)) = fatal_task.await {
            anyhow::bail!(
                "the Raft node stopped: {fatal}; restart the server once the cause is fixed"
            );
        }
    } else {
        fatal_task.abort();
    }
    result.context("serving gRPC")
}

/// Resolve with Raft's fatal error, if it ever stops on one.
async fn watch_for_fatal(raft: Raft, tx: tokio::sync::oneshot::Sender<String>) {
    let mut rx = raft.metrics();
    loop {
        if let Err(fatal) = &rx.borrow_and_update().running_state {
            if matches!(fatal, openraft::error::Fatal::Stopped) {
                return;
            }
            tracing::error!(error = %fatal, "Raft stopped on a fatal error");
            let _ = tx.send(fatal.to_string());
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
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

/// Count each change of the leader this member knows, for its metrics.
async fn count_leader_changes(raft: Raft) {
    let mut m = raft.metrics();
    let mut leader = m.borrow_and_update().current_leader;
    while m.changed().await.is_ok() {
        let now = m.borrow_and_update().current_leader;
        if now.is_some() && now != leader {
            crate::metrics::get().leader_changes.inc();
        }
        leader = now;
    }
}
