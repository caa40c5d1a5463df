//! Test support: real `cairn-server` processes on loopback, each with its own sled
//! files, driven over real gRPC.
//!
//! The binaries are the ones `cargo test --workspace` builds next to the test
//! executables (`target/<profile>/`); `CAIRN_BIN_DIR` overrides where to look.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cairn_proto as pb;
use pb::cairn_client::CairnClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Where the workspace's binaries are.
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("CAIRN_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries)",
        path.display()
    );
    path
}

/// Run the `cairn` CLI against `endpoints` with `-o json`, as a user would, and parse
/// what it prints; a failed run is an error with its stderr.
pub fn cli_json(endpoints: &[String], args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(bin("cairn"))
        .args(["--endpoints", &endpoints.join(","), "-o", "json"])
        .args(args)
        .output()
        .context("running cairn")?;
    anyhow::ensure!(
        out.status.success(),
        "cairn {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A loopback port free a moment ago, for a server to listen on.
///
/// Ports come from 24000-31999, below the kernel's ephemeral range (32768-60999): a
/// port the kernel handed out from that range could be taken by any outgoing
/// connection before the server binds it, and a cluster whose first member cannot bind
/// never forms. (The agent tests lease ports in 21000-23999.) Each process starts at
/// its own offset and never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LO: u32 = 24_000;
    const SPAN: u32 = 8_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LO + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LO}-{}", LO + SPAN - 1)
}

/// Extra `[raft]` settings for a test cluster's configuration files.
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
            max_request_bytes: 4 * 1024 * 1024,
            node_lost_after_ms: 10_000,
            relayed: false,
        }
    }
}

/// One server process.
pub struct Node {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Where its peers reach it, when the cluster is relayed.
    pub relay: Option<Relay>,
}

impl Node {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("cairn.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(bin("cairn-server"))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("CAIRN_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cairn-server")?;
        self.child = Some(child);
        self.wait_listening(Duration::from_secs(10))
    }

    /// Wait until the server accepts connections: a test that talks to a member right
    /// after starting it would otherwise meet "connection refused", not the server.
    fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let addr: std::net::SocketAddr = self.addr.parse().context("a member address")?;
        let deadline = Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "cairn-server {} exited ({status}) before listening; see {}",
                    self.id,
                    self.log_path().display()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "cairn-server {} is not listening on {addr} after {timeout:?}",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`): the process keeps its sockets and state
    /// but runs no code, as a member stalled by its host would.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the node is not running")?;
        let status = Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {sig} {} failed: {status}", child.id());
        }
        Ok(())
    }

    pub fn client(&self) -> CairnClient<Channel> {
        client(&self.addr)
    }

    /// The relay its peers reach it through (the cluster must be relayed).
    pub fn relay(&self) -> &Relay {
        self.relay
            .as_ref()
            .expect("a relayed cluster: Settings { relayed: true, .. }")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client(addr: &str) -> CairnClient<Channel> {
    client_with_timeout(addr, Duration::from_secs(10))
}

/// A client whose calls give up after `timeout`.
pub fn client_with_timeout(addr: &str, timeout: Duration) -> CairnClient<Channel> {
    let ch = cairn_proto::Dial::new()
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .channel(addr)
        .expect("a valid address");
    CairnClient::new(ch)
}

/// A cluster of real server processes in a temporary directory.
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Start `n` voters on loopback.
    pub fn start(n: usize, settings: Settings) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
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
            .map(|(id, a)| {
                (
                    *id,
                    relays.get(id).map_or(a.clone(), |r: &Relay| r.addr.clone()),
                )
            })
            .collect();
        let mut cluster = Self {
            nodes: Vec::new(),
            settings,
            _dir: dir,
        };
        for (id, addr) in &listen {
            let node = cluster.add_node(*id, addr.clone(), &members)?;
            node.relay = relays.remove(id);
        }
        Ok(cluster)
    }

    /// Write a node's configuration and start it (`initial` empty: a joining node).
    pub fn add_node(
        &mut self,
        id: u64,
        addr: String,
        initial: &BTreeMap<u64, String>,
    ) -> anyhow::Result<&mut Node> {
        let node_dir = self._dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut toml = format!(
            "node_id = {id}\nlisten = \"{addr}\"\ndata_dir = \"{}\"\nmax_request_bytes = {}\n",
            node_dir.join("data").display(),
            self.settings.max_request_bytes
        );
        if let Some(advertise) = initial.get(&id).filter(|a| **a != addr) {
            toml.push_str(&format!("advertise = \"{advertise}\"\n"));
        }
        if !initial.is_empty() {
            toml.push_str("[initial_members]\n");
            for (i, a) in initial {
                toml.push_str(&format!("\"{i}\" = \"{a}\"\n"));
            }
        }
        toml.push_str(&format!(
            "[raft]\nsnapshot_after_logs = {}\nlogs_kept_after_snapshot = {}\n[nodes]\nlost_after_ms = {}\n",
            self.settings.snapshot_after_logs,
            self.settings.logs_kept_after_snapshot,
            self.settings.node_lost_after_ms
        ));
        let mut node = Node {
            id,
            addr,
            dir: node_dir,
            child: None,
            relay: None,
        };
        std::fs::write(node.config_path(), toml)?;
        node.start()?;
        self.nodes.push(node);
        Ok(self.nodes.last_mut().expect("just pushed"))
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node with that id")
    }

    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node(id);
        n.kill();
        n.start()
    }

    /// SIGKILL every member, then start them all again.
    pub fn restart_all(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            n.kill();
        }
        for n in &mut self.nodes {
            n.start()?;
        }
        Ok(())
    }

    /// The temporary directory the cluster lives in.
    pub fn dir(&self) -> &Path {
        self._dir.path()
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
        let deadline = Instant::now() + timeout;
        let majority = self.nodes.len() / 2 + 1;
        loop {
            let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            for addr in self.endpoints() {
                if let Ok(Ok(s)) = tokio::time::timeout(
                    Duration::from_millis(500),
                    client(&addr).cluster_status(pb::ClusterStatusRequest {}),
                )
                .await
                {
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
            if let Some(((leader, _), _)) = votes.iter().find(|(_, n)| **n >= majority) {
                return Ok(*leader);
            }
            if Instant::now() >= deadline {
                bail!("no leader a majority agrees on within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let deadline = Instant::now() + timeout;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            loop {
                let r = n
                    .client()
                    .list_events(pb::ListEventsRequest {
                        filter: None,
                        limit: 1,
                        consistency: pb::ReadConsistency::Stale as i32,
                        raw: false,
                    })
                    .await;
                if let Ok(r) = r {
                    if r.into_inner()
                        .read
                        .is_some_and(|r| r.last_sequence >= last_sequence)
                    {
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    bail!(
                        "node {} did not reach sequence {last_sequence} within {timeout:?}",
                        n.id
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// A `cairn-agent` process with simulated GPUs.
pub struct TestAgent {
    pub node: String,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl TestAgent {
    /// Start an agent for node `node` on a simulated `topology`, leasing ports from
    /// `ports` (inclusive), heartbeating every 200 ms.
    pub fn start(
        dir: &Path,
        node: &str,
        topology: &str,
        ports: (u16, u16),
        endpoints: &[String],
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("agent-{node}"));
        std::fs::create_dir_all(&dir)?;
        let args = vec![
            "--node-name".to_string(),
            node.to_string(),
            "--endpoints".into(),
            endpoints.join(","),
            "--state-dir".into(),
            dir.display().to_string(),
            "--gpu-provider".into(),
            "sim".into(),
            "--sim-topology".into(),
            topology.into(),
            "--sim-faults".into(),
            dir.join("faults.json").display().to_string(),
            "--port-range".into(),
            format!("{}-{}", ports.0, ports.1),
            "--heartbeat".into(),
            "200ms".into(),
            "--address".into(),
            "127.0.0.1".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let mut a = Self {
            node: node.to_string(),
            dir,
            args,
            child: None,
        };
        a.restart()?;
        Ok(a)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))?;
        self.child = Some(
            Command::new(bin("cairn-agent"))
                .args(&self.args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting cairn-agent")?,
        );
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Inject simulated GPU faults (the agent's fault file; `{}` clears them).
    pub fn set_faults(&self, json: &str) -> anyhow::Result<()> {
        let tmp = self.dir.join("faults.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, self.dir.join("faults.json"))?;
        Ok(())
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nodes the first answering member knows.
pub async fn nodes(endpoints: &[String]) -> Vec<pb::NodeView> {
    for addr in endpoints {
        if let Ok(r) = client(addr)
            .list_nodes(pb::ListNodesRequest::default())
            .await
        {
            return r.into_inner().nodes;
        }
    }
    Vec::new()
}

/// Wait until `count` nodes are registered; returns them.
pub async fn wait_nodes(
    endpoints: &[String],
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<pb::NodeView>> {
    eventually(timeout, &format!("{count} nodes registered"), || async {
        let n = nodes(endpoints).await;
        (n.len() == count).then_some(n)
    })
    .await
}

/// Wait until `check` returns `Some`, polling every 50 ms, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Page through every event of one member.
pub async fn all_events(
    c: &mut CairnClient<Channel>,
    consistency: pb::ReadConsistency,
) -> anyhow::Result<Vec<pb::Event>> {
    Ok(pb::all_events(c, consistency).await?)
}

/// A command creating namespace `name`.
pub fn create_ns(name: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(pb::command::Body::CreateNamespace(pb::CreateNamespace {
                name: name.into(),
                labels: Default::default(),
            })),
            ..Default::default()
        }),
    }
}

/// A command adding a note to `namespace/<ns>`.
pub fn note(ns: &str, text: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: "test".into(),
            body: Some(pb::command::Body::AddNote(pb::AddNote {
                entity: Some(pb::EntityRef {
                    kind: "namespace".into(),
                    name: ns.into(),
                }),
                text: text.into(),
            })),
            ..Default::default()
        }),
    }
}

/// The text of a note event, if it is one.
pub fn note_text(e: &pb::Event) -> Option<&str> {
    match &e.payload {
        Some(pb::event::Payload::NoteAdded(n)) => Some(n.text.as_str()),
        _ => None,
    }
}

/// A TCP relay in front of one member, for its peers: while cut, it closes every
/// connection it carries and every one it accepts, so nothing reaches the member, or
/// waits in its socket buffers to arrive later, until it is healed.
pub struct Relay {
    pub addr: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relay a fresh loopback port to `target` (needs a Tokio runtime).
    pub fn start(target: &str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", free_port()))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?.to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (target, c, k) = (target.to_string(), cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = k.lock().unwrap_or_else(|p| p.into_inner());
                conns.retain(|t| !t.is_finished());
                conns.push(task);
            }
        });
        Ok(Self {
            addr,
            cut,
            conns,
            accept,
        })
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Relay again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
