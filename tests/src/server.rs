//! One `cairn-server` process: its configuration file, its log, and its life: started
//! (returning once it accepts connections), killed (SIGKILL), paused (SIGSTOP), resumed
//! (SIGCONT) and started again on the same data.
//!
//! A member runs from a configuration file the harness writes; a [`ServerSpec`] says
//! what goes into it. By default the server listens on loopback and keeps its data
//! next to its configuration; a campaign across simulated hosts gives it the host's
//! address, a data directory on a disk of its own, and a command to run it under
//! (`ip netns exec <host>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_proto::cairn_client::CairnClient;
use tonic::transport::Channel;

use crate::client::client;
use crate::process::Process;
use crate::wait::eventually;

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `cairn-server run --config <dir>/cairn.toml`: a member, configured by the spec.
    Member,
    /// `cairn-server dev --gpus sim`: a one-member cluster with an agent on simulated
    /// GPUs in the same process (only the listen address and data directory apply).
    Dev,
}

/// Everything a server is started with.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `cairn-server` binary.
    pub bin: PathBuf,
    pub mode: Mode,
    pub id: u64,
    /// The address it binds; clients reach it there.
    pub listen: String,
    /// The address its peers know it by, when not `listen` (e.g. a relay in front of it).
    pub advertise: Option<String>,
    /// The first voters (empty: a server that joins an existing cluster later).
    pub initial_members: BTreeMap<u64, String>,
    /// Holds its configuration file and its log.
    pub dir: PathBuf,
    /// Holds its sled files and snapshots (by default `dir/data`).
    pub data_dir: PathBuf,
    pub snapshot_after_logs: u64,
    pub logs_kept_after_snapshot: u64,
    pub max_request_bytes: usize,
    /// Silence after which the leader records a node lost.
    pub node_lost_after_ms: u64,
    /// The command the server runs under, if any (e.g. `ip netns exec <ns>`).
    pub prefix: Vec<String>,
    /// Where it serves the MLflow-compatible registry API (none: not at all).
    pub mlflow_listen: Option<String>,
    /// Where it serves `/metrics` (none: not at all).
    pub metrics_listen: Option<String>,
    /// Under `dev`: the ports its agent leases (none: the default), so that two dev
    /// servers on one machine do not route on the same ports.
    pub port_range: Option<(u16, u16)>,
    /// Under `dev`: project into the Kubernetes API server this kubeconfig names.
    pub kubeconfig: Option<PathBuf>,
    /// Mutual TLS with these files (none: plaintext).
    pub tls: Option<cairn_proto::tls::TlsFiles>,
    /// Plaintext on an address other than loopback.
    pub insecure: bool,
    /// More TOML tables for the configuration file (e.g. `[limits]`).
    pub extra_toml: String,
}

impl ServerSpec {
    /// A member with the servers' default settings, its data in `dir/data`.
    pub fn new(bin: PathBuf, id: u64, listen: String, dir: PathBuf) -> Self {
        Self {
            bin,
            mode: Mode::Member,
            id,
            listen,
            advertise: None,
            initial_members: BTreeMap::new(),
            data_dir: dir.join("data"),
            dir,
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
            max_request_bytes: 4 * 1024 * 1024,
            node_lost_after_ms: 10_000,
            prefix: Vec::new(),
            mlflow_listen: None,
            metrics_listen: None,
            port_range: None,
            kubeconfig: None,
            tls: None,
            insecure: false,
            extra_toml: String::new(),
        }
    }

    /// `cairn-server dev` on simulated GPUs, its data in `dir/data`.
    pub fn dev(bin: PathBuf, listen: String, dir: PathBuf) -> Self {
        Self {
            mode: Mode::Dev,
            ..Self::new(bin, 1, listen, dir)
        }
    }

    /// The configuration file of a member.
    fn config_toml(&self) -> String {
        let mut toml = format!(
            "node_id = {}\nlisten = \"{}\"\ndata_dir = \"{}\"\nmax_request_bytes = {}\n",
            self.id,
            self.listen,
            self.data_dir.display(),
            self.max_request_bytes
        );
        if let Some(advertise) = &self.advertise {
            toml.push_str(&format!("advertise = \"{advertise}\"\n"));
        }
        if let Some(mlflow) = &self.mlflow_listen {
            toml.push_str(&format!("mlflow_listen = \"{mlflow}\"\n"));
        }
        if let Some(metrics) = &self.metrics_listen {
            toml.push_str(&format!("metrics_listen = \"{metrics}\"\n"));
        }
        if self.insecure {
            toml.push_str("insecure = true\n");
        }
        if let Some(t) = &self.tls {
            toml.push_str(&format!(
                "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
        }
        if !self.initial_members.is_empty() {
            toml.push_str("[initial_members]\n");
            for (id, addr) in &self.initial_members {
                toml.push_str(&format!("\"{id}\" = \"{addr}\"\n"));
            }
        }
        toml.push_str(&format!(
            "[raft]\nsnapshot_after_logs = {}\nlogs_kept_after_snapshot = {}\n[nodes]\nlost_after_ms = {}\n",
            self.snapshot_after_logs, self.logs_kept_after_snapshot, self.node_lost_after_ms
        ));
        toml.push_str(&self.extra_toml);
        toml
    }

    /// The command line that runs the server.
    fn command(&self, config: &Path) -> Command {
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        match self.mode {
            Mode::Member => command.arg("run").arg("--config").arg(config),
            // As a user runs it: in its own directory, with a relative data directory.
            Mode::Dev => command
                .current_dir(&self.dir)
                .args([
                    "dev",
                    "--gpus",
                    "sim",
                    "--listen",
                    &self.listen,
                    "--mlflow-listen",
                    self.mlflow_listen.as_deref().unwrap_or("off"),
                    "--metrics-listen",
                    self.metrics_listen.as_deref().unwrap_or("off"),
                    "--data-dir",
                ])
                .arg(
                    self.data_dir
                        .strip_prefix(&self.dir)
                        .unwrap_or(&self.data_dir),
                )
                .args(
                    self.port_range
                        .iter()
                        .flat_map(|(a, b)| ["--port-range".to_string(), format!("{a}-{b}")]),
                )
                .args(
                    self.kubeconfig
                        .iter()
                        .flat_map(|k| ["--kubeconfig".to_string(), k.display().to_string()]),
                ),
        };
        command.env("CAIRN_LOG", "info,openraft=warn");
        command
    }
}

/// One server process (or none, while it is stopped).
pub struct Server {
    pub id: u64,
    /// Where clients reach it.
    pub addr: String,
    /// Its configuration file and log.
    pub dir: PathBuf,
    spec: ServerSpec,
    process: Option<Process>,
}

impl Server {
    /// Write the server's configuration and start it; returns once it accepts
    /// connections.
    pub async fn start_new(spec: ServerSpec) -> anyhow::Result<Self> {
        let mut server = Self::new(spec)?;
        server.start().await?;
        Ok(server)
    }

    /// Write the server's configuration without starting it.
    pub fn new(spec: ServerSpec) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("creating {}", spec.dir.display()))?;
        let server = Self {
            id: spec.id,
            addr: spec.listen.clone(),
            dir: spec.dir.clone(),
            spec,
            process: None,
        };
        if server.spec.mode == Mode::Member {
            std::fs::write(server.config_path(), server.spec.config_toml())
                .with_context(|| format!("writing {}", server.config_path().display()))?;
        }
        Ok(server)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("cairn.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Where it serves the MLflow-compatible registry API, if it does.
    pub fn mlflow_addr(&self) -> Option<&str> {
        self.spec.mlflow_listen.as_deref()
    }

    /// Where it serves `/metrics`, if it does.
    pub fn metrics_addr(&self) -> Option<&str> {
        self.spec.metrics_listen.as_deref()
    }

    /// Where its sled files and snapshots are.
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// Whether it was started and has been neither killed nor found exited on its own
    /// (which [`Server::start`] looks for).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Whether it is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.process.as_ref().is_some_and(Process::is_paused)
    }

    /// A process that exited on its own counts as stopped.
    fn reap_exited(&mut self) {
        if self.process.as_mut().and_then(Process::exited).is_some() {
            self.process = None;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Start it (unless it runs) and wait until it accepts connections: a caller that
    /// talks to it right after starting it would otherwise meet "connection refused",
    /// not the server.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.reap_exited();
        if self.process.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.spec.data_dir)
            .with_context(|| format!("creating {}", self.spec.data_dir.display()))?;
        let command = self.spec.command(&self.config_path());
        self.process = Some(Process::spawn(command, &self.log_path())?);
        self.wait_listening().await
    }

    /// SIGKILL, then start it again on the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start().await
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let (id, addr, log) = (self.id, self.addr.clone(), self.log_path());
        let what = format!("cairn-server {id} listening on {addr}");
        let process = &mut self.process;
        let outcome = eventually(START_TIMEOUT, &what, || {
            let exited = process.as_mut().and_then(Process::exited);
            let addr = addr.clone();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let connect = tokio::net::TcpStream::connect(&addr);
                match tokio::time::timeout(Duration::from_millis(200), connect).await {
                    Ok(Ok(_)) => Some(Ok(())),
                    _ => None,
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => {
                self.process = None;
                bail!(
                    "cairn-server {id} exited ({status}) before listening; see {}",
                    log.display()
                )
            }
            Err(e) => Err(e.context(format!("see {}", log.display()))),
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// SIGSTOP: it keeps its sockets and state but runs no code, as a member stalled by
    /// its host would.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.running()?.pause()
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.running()?.resume()
    }

    fn running(&mut self) -> anyhow::Result<&mut Process> {
        let id = self.id;
        self.process
            .as_mut()
            .with_context(|| format!("cairn-server {id} is not running"))
    }

    pub fn client(&self) -> CairnClient<Channel> {
        client(&self.addr)
    }
}
