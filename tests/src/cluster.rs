//! A cluster of real server processes on loopback, in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use cairn_proto as pb;

use crate::client::{all_events, client_with_timeout};
use crate::ports::free_port;
use crate::process::bin;
use crate::relay::Relay;
use crate::server::{Server, ServerSpec};
use crate::wait::eventually;

/// Settings of every member of a test cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub snapshot_after_logs: u64,
    pub logs_kept_after_snapshot: u64,
    pub max_request_bytes: usize,
    /// Silence after which the leader records a node lost.
    pub node_lost_after_ms: u64,
    /// Members reach each other through a [`Relay`] per member (clients still connect
    /// directly), so a test can cut one off from its peers.
    pub relayed: bool,
    /// Every member serves the MLflow-compatible registry API (on a port of its own).
    pub mlflow: bool,
    /// Every member serves `/metrics` (on a port of its own).
    pub metrics: bool,
    /// Mutual TLS: member `i` uses `member-<i>.crt` and `.key` of this directory, as
    /// `cairn certs init` writes them.
    pub tls_dir: Option<std::path::PathBuf>,
    /// More TOML tables for every member's configuration (e.g. `[kubernetes]`).
    pub extra_toml: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
            max_request_bytes: 4 * 1024 * 1024,
            node_lost_after_ms: 10_000,
            relayed: false,
            mlflow: false,
            metrics: false,
            tls_dir: None,
            extra_toml: String::new(),
        }
    }
}

/// Servers on loopback, each in its own directory under a temporary one, which goes
/// when the cluster is dropped (after its servers are killed).
pub struct TestCluster {
    pub nodes: Vec<Server>,
    pub settings: Settings,
    /// Where each member's peers reach it, when the cluster is relayed.
    relays: BTreeMap<u64, Relay>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Start `n` voters on loopback; returns once each accepts connections.
    pub async fn start(n: usize, settings: Settings) -> anyhow::Result<Self> {
        let listen: BTreeMap<u64, String> = (1..=n as u64)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut relays = BTreeMap::new();
        if settings.relayed {
            for (id, addr) in &listen {
                relays.insert(*id, Relay::start(addr)?);
            }
        }
        // The addresses members know each other by.
        let members: BTreeMap<u64, String> = listen
            .iter()
            .map(|(id, a)| (*id, relays.get(id).map_or(a.clone(), |r| r.addr.clone())))
            .collect();
        let mut cluster = Self {
            nodes: Vec::new(),
            settings,
            relays,
            dir: tempfile::tempdir()?,
        };
        for (id, addr) in listen {
            cluster.add_node(id, addr, &members).await?;
        }
        Ok(cluster)
    }

    /// Write a node's configuration and start it (`initial` empty: a joining node).
    pub async fn add_node(
        &mut self,
        id: u64,
        addr: String,
        initial: &BTreeMap<u64, String>,
    ) -> anyhow::Result<&mut Server> {
        let s = &self.settings;
        let dir = self.dir.path().join(format!("node{id}"));
        let spec = ServerSpec {
            advertise: initial.get(&id).filter(|a| **a != addr).cloned(),
            initial_members: initial.clone(),
            snapshot_after_logs: s.snapshot_after_logs,
            logs_kept_after_snapshot: s.logs_kept_after_snapshot,
            max_request_bytes: s.max_request_bytes,
            node_lost_after_ms: s.node_lost_after_ms,
            mlflow_listen: s.mlflow.then(|| format!("127.0.0.1:{}", free_port())),
            metrics_listen: s.metrics.then(|| format!("127.0.0.1:{}", free_port())),
            tls: s
                .tls_dir
                .as_ref()
                .map(|d| cairn_proto::tls::TlsFiles::in_dir(d, &format!("member-{id}"))),
            extra_toml: s.extra_toml.clone(),
            ..ServerSpec::new(bin("cairn-server"), id, addr, dir)
        };
        self.nodes.push(Server::start_new(spec).await?);
        Ok(self.nodes.last_mut().expect("just pushed"))
    }

    /// # Panics
    ///
    /// When the cluster has no node `id`.
    pub fn node(&mut self, id: u64) -> &mut Server {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node with that id")
    }

    /// The relay node `id`'s peers reach it through.
    ///
    /// # Panics
    ///
    /// When the cluster is not relayed (`Settings { relayed: true, .. }`).
    pub fn relay(&self, id: u64) -> &Relay {
        self.relays
            .get(&id)
            .expect("a relayed cluster: Settings { relayed: true, .. }")
    }

    /// SIGKILL node `id` and start it again.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.node(id).restart().await
    }

    /// SIGKILL every member, then start them all again.
    pub async fn restart_all(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            n.kill();
        }
        for n in &mut self.nodes {
            n.start().await?;
        }
        Ok(())
    }

    /// The temporary directory the cluster lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.addr.clone())
            .collect()
    }

    /// Wait until a majority of the members agree on a running leader (and its term);
    /// returns its id. One member's word is not enough: a restarted former leader calls
    /// itself leader, in its old term, until it hears from the current one.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let majority = self.nodes.len() / 2 + 1;
        eventually(timeout, "a leader a majority agrees on", || async move {
            let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            for addr in self.endpoints() {
                let status = client_with_timeout(&addr, Duration::from_millis(500))
                    .cluster_status(pb::ClusterStatusRequest {})
                    .await;
                if let Ok(s) = status {
                    let s = s.into_inner();
                    let leader_running = self
                        .nodes
                        .iter()
                        .any(|n| n.id == s.leader_id && n.is_running());
                    if s.leader_id != 0 && leader_running {
                        *votes.entry((s.leader_id, s.term)).or_default() += 1;
                    }
                }
            }
            votes
                .into_iter()
                .find(|(_, n)| *n >= majority)
                .map(|((leader, _), _)| leader)
        })
        .await
    }

    /// Every member's address, member `first`'s first (the one a client tries first).
    pub fn endpoints_from(&self, first: u64) -> Vec<String> {
        let (mut nodes, rest): (Vec<_>, Vec<_>) = self.nodes.iter().partition(|n| n.id == first);
        nodes.extend(rest);
        nodes.into_iter().map(|n| n.addr.clone()).collect()
    }

    /// Every event a member has applied, read from that member alone (stale read).
    pub async fn events_of(&self, id: u64) -> anyhow::Result<Vec<pb::Event>> {
        let n = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        all_events(&mut n.client(), pb::ReadConsistency::Stale).await
    }

    /// Wait until every running member has applied `last_sequence` events.
    pub async fn wait_converged(
        &self,
        last_sequence: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let what = format!("node {} at sequence {last_sequence}", n.id);
            eventually(left, &what, || async {
                let reached = crate::client::last_sequence(&n.addr, Duration::from_secs(2)).await;
                reached.filter(|s| *s >= last_sequence)
            })
            .await?;
        }
        Ok(())
    }
}
