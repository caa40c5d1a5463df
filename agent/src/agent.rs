//! The agent's loop: register the node, heartbeat, report GPU health changes, renew and
//! enforce port leases, run the replicas placed on the node. Shutdown is a future passed
//! in, so tests and the embedded agent of `cairn-server dev` control it; nothing the
//! loop does blocks the runtime it shares with the server there (NVML and `/proc` scans
//! run on the blocking pool).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cairn_proto as pb;
use cairn_proto::tls::server::{identity_of, ServerTls};
use cairn_proto::tls::{Identity, TlsFiles};
use pb::command::Body;
use rustls::pki_types::pem::PemObject;
use tonic::service::interceptor::InterceptedService;
use tonic::Code;
use tracing::Instrument;

use crate::control::Control;
use crate::gpu::{self, GpuProvider, HealthPolicy, ProviderChoice};
use crate::ports::PortGuard;
use crate::replicas::Runner;
use crate::serving::load::LoadMeter;
use crate::serving::runner::Serving;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's name (default: the host name).
    pub node: String,
    pub endpoints: Vec<String>,
    /// Where the node token is kept.
    pub state_dir: PathBuf,
    pub gpus: ProviderChoice,
    /// Control file of injected faults (simulated GPUs).
    pub sim_faults: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub heartbeat: Duration,
    /// How often GPU health is looked at.
    pub health_every: Duration,
    /// Lease lifetime the agent renews to; it renews every third of it.
    pub lease_ttl: Duration,
    /// How often leased ports are checked on the host.
    pub port_scan_every: Duration,
    pub port_range: (u32, u32),
    pub policy: HealthPolicy,
    /// Where this node's replicas are reached (default: the host name).
    pub address: Option<String>,
    /// How often the replicas placed here are brought in line with the jobs.
    pub replicas_every: Duration,
    /// Where the agent's own service (replica logs) listens.
    pub listen: String,
    /// Mutual TLS as `urn:cairn:agent:<node>`, towards members and on the agent's own
    /// service (none: plaintext).
    pub tls: Option<Arc<TlsFiles>>,
    /// Where Prometheus scrapes the agent's `/metrics` (none: not served here).
    pub metrics_listen: Option<String>,
}

impl AgentConfig {
    pub fn new(node: &str, endpoints: Vec<String>, state_dir: PathBuf) -> Self {
        Self {
            node: node.to_string(),
            endpoints,
            state_dir,
            gpus: ProviderChoice::NvmlOrSim {
                topology: "nvswitch-8".into(),
            },
            sim_faults: None,
            labels: BTreeMap::new(),
            heartbeat: Duration::from_secs(1),
            health_every: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(60),
            port_scan_every: Duration::from_secs(2),
            port_range: (20000, 29999),
            policy: HealthPolicy::default(),
            address: None,
            replicas_every: Duration::from_millis(500),
            listen: "127.0.0.1:0".into(),
            tls: None,
            metrics_listen: None,
        }
    }
}

/// Whether `host:port` is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// That the certificate in `files` names this agent's node (an agent with another
/// node's certificate would be refused on every report).
pub fn check_identity(files: &TlsFiles, node: &str) -> anyhow::Result<()> {
    let certs =
        std::fs::read(&files.cert).with_context(|| format!("reading {}", files.cert.display()))?;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&certs)
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: no certificate", files.cert.display()))?
        .with_context(|| format!("reading {}", files.cert.display()))?;
    match cairn_proto::tls::server::identity_in(&der).map_err(anyhow::Error::msg)? {
        Identity::Agent(n) if n == node => Ok(()),
        other => anyhow::bail!(
            "{} names {other}, not agent/{node} (issue one with `cairn certs issue agent {node}`)",
            files.cert.display()
        ),
    }
}

/// The host name as a node name: lowercase, with anything but letters, digits, '-' and
/// '.' replaced by '-'.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The node token: made once, kept in the state directory, sent with every report.
pub fn load_or_create_token(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let tmp = dir.join("node-token.tmp");
    std::fs::write(&tmp, &token).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// What this node registers.
pub fn node_inventory(cfg: &AgentConfig, gpus: &gpu::Inventory) -> pb::NodeInventory {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    pb::NodeInventory {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        labels: cfg.labels.clone().into_iter().collect(),
        cpu_millis: cpus * 1000,
        memory_bytes: host_memory_bytes(),
        gpus: gpus.gpus.clone(),
        links: gpus.links.clone(),
        port_range_start: cfg.port_range.0,
        port_range_end: cfg.port_range.1,
        driver_version: gpus.driver_version.clone(),
        cuda_version: gpus.cuda_version.clone(),
        gpu_provider: gpus.provider.clone(),
        address: cfg.address.clone().unwrap_or_else(default_node_name),
        agent_endpoint: String::new(),
    }
}

/// Run the agent until `shutdown` completes. Errors only for what retrying cannot fix
/// (another agent owns the node, the GPUs cannot be read).
#[tracing::instrument(name = "agent", skip_all, fields(node = %cfg.node))]
pub async fn run(
    mut cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Replicas run in their own directories: every path handed to them must be absolute.
    cfg.state_dir = std::path::absolute(&cfg.state_dir)
        .with_context(|| format!("resolving {}", cfg.state_dir.display()))?;
    let token = load_or_create_token(&cfg.state_dir)?;
    // NVML calls block: the provider is opened and read on the blocking pool.
    let (choice, faults, name) = (cfg.gpus.clone(), cfg.sim_faults.clone(), cfg.node.clone());
    let (provider, inventory) = tokio::task::spawn_blocking(move || {
        let provider = gpu::open(&choice, faults, &name)?;
        let inventory = provider.inventory()?;
        Ok::<_, gpu::GpuError>((provider, inventory))
    })
    .await
    .context("opening the GPU provider")??;
    tracing::info!(
        gpus = inventory.gpus.len(),
        provider = %inventory.provider,
        "cairn-agent starting"
    );
    // The log service: replicas' logs stay here; members read them through it.
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding the agent service on {}", cfg.listen))?;
    let port = listener.local_addr()?.port();
    let logs = crate::logs::LogService {
        state_dir: cfg.state_dir.clone(),
    };
    let tls = match &cfg.tls {
        Some(files) => Some(ServerTls::load(
            files.as_ref().clone(),
            &[cairn_proto::tls::server::H2],
        )?),
        None => None,
    };
    let on = tls.is_some();
    let router = tonic::transport::Server::builder().add_service(InterceptedService::new(
        pb::node_agent_server::NodeAgentServer::new(logs),
        move |req: tonic::Request<()>| {
            if !on {
                return Ok(req);
            }
            // Users (the CLI) and members read logs; another agent may not.
            match identity_of(&req)? {
                Identity::Agent(a) => Err(tonic::Status::permission_denied(format!(
                    "agent/{a} may not read another node's logs"
                ))),
                Identity::Member(_) | Identity::User(_) => Ok(req),
            }
        },
    ));
    match tls {
        Some(tls) => tokio::spawn(
            router
                .serve_with_incoming(cairn_proto::tls::server::incoming(listener, tls))
                .in_current_span(),
        ),
        None => tokio::spawn(
            router
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .in_current_span(),
        ),
    };
    if let Some(addr) = &cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the agent's metrics on {addr}"))?;
        tracing::info!(listen = %addr, "agent metrics on /metrics");
        tokio::spawn(crate::metrics::serve(listener));
    }
    let control = Control::new(cfg.endpoints.clone(), &cfg.node, &token, cfg.tls.clone())?;
    let (node, state_dir) = (cfg.node.clone(), cfg.state_dir.clone());
    let mut node_inv = node_inventory(&cfg, &inventory);
    node_inv.agent_endpoint = format!("{}:{port}", node_inv.address);
    let mut agent = Agent {
        inventory: node_inv,
        cfg,
        provider: Arc::new(Mutex::new(provider)),
        control,
        registered: false,
        reported: None,
        guard: Arc::default(),
        runner: Runner::new(&node, &state_dir),
        serving: Serving::new(&node, &state_dir),
        unsent: Vec::new(),
        unsent_serving: Vec::new(),
        reregister: Default::default(),
    };
    agent.unsent = agent.runner.reclaim().await;
    agent.serving.reclaim().await;
    tokio::pin!(shutdown);
    // Heartbeats run on their own task, so nothing the loop waits for (a slow code sync,
    // a slow control plane) ever delays them into a false `node_lost`.
    let beats = tokio::spawn(
        heartbeats(
            Control::new(
                agent.cfg.endpoints.clone(),
                &agent.cfg.node,
                &token,
                agent.cfg.tls.clone(),
            )?,
            agent.cfg.heartbeat,
            agent.reregister.clone(),
            LoadMeter::new(agent.serving.routers()),
        )
        .in_current_span(),
    );
    let mut health = tokio::time::interval(agent.cfg.health_every);
    let mut renew = tokio::time::interval(agent.cfg.lease_ttl / 3);
    let mut scan = tokio::time::interval(agent.cfg.port_scan_every);
    let mut replicas = tokio::time::interval(agent.cfg.replicas_every);
    for t in [&mut health, &mut renew, &mut scan, &mut replicas] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let step = tokio::select! {
            _ = &mut shutdown => {
                beats.abort();
                agent.runner.stop_all().await;
                agent.serving.stop_all().await;
                return Ok(());
            }
            _ = replicas.tick() => agent.run_replicas().await,
            _ = health.tick() => agent.report_health().await,
            _ = renew.tick() => agent.renew_leases().await,
            _ = scan.tick() => agent.enforce_leases().await,
        };
        match step {
            Ok(()) => {}
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(e)) => tracing::debug!(error = %e, "will retry"),
        }
    }
}

/// Beat to the leader every `every` until aborted. A control plane that does not know
/// the node (a wiped cluster) makes the main loop register again.
async fn heartbeats(
    mut control: Control,
    every: Duration,
    reregister: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut load: LoadMeter,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let req = pb::HeartbeatRequest {
            node: control.node().to_string(),
            serving: load.report(),
        };
        let answer = control
            .call(req, |mut c, r| async move { c.heartbeat(r).await })
            .await;
        let beats = &crate::metrics::get().heartbeats;
        beats
            .get_or_create(&crate::metrics::outcome(answer.is_ok()))
            .inc();
        match answer {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {
                reregister.store(true, std::sync::atomic::Ordering::Relaxed)
            }
            Err(s) => tracing::debug!(error = %s.message(), "heartbeat failed; will retry"),
        }
    }
}

fn replicas_running(kind: &'static str, n: usize) {
    let replicas = &crate::metrics::get().replicas;
    replicas
        .get_or_create(&crate::metrics::Kind { kind })
        .set(n as i64);
}

/// Why a step of the loop failed: retry on the next tick, or stop.
enum Step {
    Retry(tonic::Status),
    Fatal(anyhow::Error),
}

impl From<tonic::Status> for Step {
    fn from(s: tonic::Status) -> Self {
        if s.code() == Code::PermissionDenied {
            Step::Fatal(anyhow::anyhow!(
                "the control plane refused this agent: {} (is another agent running for this node, or was its token file replaced?)",
                s.message()
            ))
        } else {
            Step::Retry(s)
        }
    }
}

struct Agent {
    cfg: AgentConfig,
    inventory: pb::NodeInventory,
    /// Read on the blocking pool (NVML calls block).
    provider: Arc<Mutex<Box<dyn GpuProvider>>>,
    control: Control,
    registered: bool,
    /// The health last accepted by the control plane.
    reported: Option<Vec<pb::GpuHealth>>,
    /// Scans `/proc`: used on the blocking pool.
    guard: Arc<Mutex<PortGuard>>,
    runner: Runner,
    serving: Serving,
    /// Replica reports not yet accepted (the control plane was unreachable).
    unsent: Vec<pb::ReportReplica>,
    unsent_serving: Vec<pb::ReportServing>,
    /// Set by the heartbeat task when the control plane no longer knows the node.
    reregister: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Agent {
    async fn register(&mut self) -> Result<(), Step> {
        if self
            .reregister
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.registered = false;
        }
        if self.registered {
            return Ok(());
        }
        let node = self.control.node().to_string();
        self.control
            .submit(Body::RegisterNode(pb::RegisterNode {
                node,
                inventory: Some(self.inventory.clone()),
            }))
            .await?;
        tracing::info!("node registered");
        self.registered = true;
        self.reported = None;
        Ok(())
    }

    async fn report_health(&mut self) -> Result<(), Step> {
        self.register().await?;
        let provider = self.provider.clone();
        let observed = tokio::task::spawn_blocking(move || {
            provider.lock().unwrap_or_else(|p| p.into_inner()).observe()
        })
        .await;
        let observed = match observed {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                crate::metrics::get().gpu_read_errors.inc();
                tracing::warn!(error = %e, "cannot read GPU health; will look again");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading GPU health did not finish; will look again");
                return Ok(());
            }
        };
        let health: Vec<pb::GpuHealth> =
            observed.iter().map(|o| self.cfg.policy.judge(o)).collect();
        let healthy = health.iter().filter(|h| h.healthy).count() as i64;
        let gpus = &crate::metrics::get().gpus;
        use crate::metrics::Health;
        gpus.get_or_create(&Health { health: "healthy" })
            .set(healthy);
        let unhealthy = health.len() as i64 - healthy;
        gpus.get_or_create(&Health {
            health: "unhealthy",
        })
        .set(unhealthy);
        if self.reported.as_ref() == Some(&health) {
            return Ok(());
        }
        for h in health.iter().filter(|h| !h.healthy) {
            tracing::warn!(gpu = %h.uuid, reason = %h.reason, "GPU unhealthy");
        }
        self.control
            .submit(Body::ReportGpuHealth(pb::ReportGpuHealth {
                node: self.cfg.node.clone(),
                gpus: health.clone(),
            }))
            .await?;
        self.reported = Some(health);
        Ok(())
    }

    async fn renew_leases(&mut self) -> Result<(), Step> {
        self.register().await?;
        self.control
            .submit(Body::RenewPortLeases(pb::RenewPortLeases {
                node: self.cfg.node.clone(),
                ttl_ms: self.cfg.lease_ttl.as_millis() as u64,
            }))
            .await?;
        Ok(())
    }

    async fn run_replicas(&mut self) -> Result<(), Step> {
        self.register().await?;
        let jobs = self
            .control
            .call(
                pb::ListJobsRequest {
                    name: String::new(),
                    consistency: pb::ReadConsistency::Stale as i32,
                    node: self.cfg.node.clone(),
                },
                |mut c, r| async move { c.list_jobs(r).await },
            )
            .await?
            .jobs;
        let mine = |j: &pb::JobView| j.placements.iter().any(|p| p.node == self.cfg.node);
        let jobs: Vec<pb::JobView> = jobs.into_iter().filter(mine).collect();
        let mut addresses = BTreeMap::new();
        if jobs
            .iter()
            .any(|j| j.placements.iter().any(|p| p.node != self.cfg.node))
        {
            addresses.extend(self.node_addresses().await?);
        }
        addresses.insert(self.cfg.node.clone(), self.inventory.address.clone());
        let gpu_index: BTreeMap<String, u32> = self
            .inventory
            .gpus
            .iter()
            .map(|g| (g.uuid.clone(), g.index))
            .collect();
        let reports = self.runner.step(&jobs, &gpu_index, &addresses).await;
        replicas_running("job", self.runner.running());
        self.unsent.extend(reports);
        while let Some(r) = self.unsent.first().cloned() {
            match self.control.submit(Body::ReportReplica(r.clone())).await {
                Ok(_) => {
                    self.unsent.remove(0);
                }
                // Refused for good (the job is gone): nothing to retry.
                Err(s) if s.code() != Code::Unavailable && s.code() != Code::PermissionDenied => {
                    tracing::warn!(
                        job = %r.job,
                        replica = %format_args!("{}-{}", r.role, r.index),
                        attempt = r.attempt,
                        error = %s.message(),
                        "the control plane refused a replica report; dropped"
                    );
                    self.unsent.remove(0);
                }
                Err(s) => return Err(s.into()),
            }
        }
        self.run_serving(addresses, &gpu_index).await
    }

    /// Every node's address as its agent reported it, by node name.
    async fn node_addresses(&mut self) -> Result<BTreeMap<String, String>, tonic::Status> {
        let nodes = self
            .control
            .call(
                pb::ListNodesRequest {
                    name: String::new(),
                    consistency: pb::ReadConsistency::Stale as i32,
                },
                |mut c, r| async move { c.list_nodes(r).await },
            )
            .await?
            .nodes;
        Ok(nodes
            .into_iter()
            .map(|n| (n.name, n.inventory.map(|i| i.address).unwrap_or_default()))
            .collect())
    }

    /// Serving replicas and endpoints: what the deployments place and route here.
    async fn run_serving(
        &mut self,
        mut addresses: BTreeMap<String, String>,
        gpu_index: &BTreeMap<String, u32>,
    ) -> Result<(), Step> {
        let deployments = self
            .control
            .call(
                pb::ListDeploymentsRequest {
                    name: String::new(),
                    include_deleted: false,
                    consistency: pb::ReadConsistency::Stale as i32,
                },
                |mut c, r| async move { c.list_deployments(r).await },
            )
            .await?
            .deployments;
        let elsewhere = |d: &pb::DeploymentView| {
            d.revisions
                .iter()
                .flat_map(|r| &r.replicas)
                .any(|x| !addresses.contains_key(&x.node))
        };
        if deployments.iter().any(elsewhere) {
            addresses.extend(self.node_addresses().await?);
        }
        let reports = self.serving.step(&deployments, &addresses, gpu_index).await;
        replicas_running("serving", self.serving.running());
        self.unsent_serving.extend(reports);
        while let Some(r) = self.unsent_serving.first().cloned() {
            match self.control.submit(Body::ReportServing(r.clone())).await {
                Ok(_) => {
                    self.unsent_serving.remove(0);
                }
                // Refused for good (the deployment is gone): nothing to retry.
                Err(s) if s.code() != Code::Unavailable && s.code() != Code::PermissionDenied => {
                    tracing::warn!(
                        deployment = %r.name,
                        replica = %format_args!("r{}-{}", r.revision, r.index),
                        error = %s.message(),
                        "the control plane refused a serving report; dropped"
                    );
                    self.unsent_serving.remove(0);
                }
                Err(s) => return Err(s.into()),
            }
        }
        Ok(())
    }

    async fn enforce_leases(&mut self) -> Result<(), Step> {
        self.register().await?;
        let req = pb::ListNodesRequest {
            name: self.cfg.node.clone(),
            consistency: pb::ReadConsistency::Stale as i32,
        };
        let view = self
            .control
            .call(req, |mut c, r| async move { c.list_nodes(r).await })
            .await?;
        // Ports leased to job replicas are handed to the replica: the runner checks them
        // right before it starts one; those of serving replicas and endpoints are the
        // model servers' and the routers'. The guard holds the rest.
        let leased: BTreeSet<u16> = view
            .nodes
            .iter()
            .flat_map(|n| n.leases.iter())
            .filter(|l| !l.holder.starts_with("job/") && !l.holder.starts_with("deploy/"))
            .filter_map(|l| u16::try_from(l.port).ok())
            .collect();
        let guard = self.guard.clone();
        let found = match tokio::task::spawn_blocking(move || {
            guard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enforce(&leased)
        })
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "checking the leased ports did not finish; will check again");
                return Ok(());
            }
        };
        for port in &found.taken_by_unknown {
            tracing::warn!(
                port,
                "a leased port is taken by a process this agent cannot see"
            );
        }
        crate::metrics::get()
            .port_violations
            .inc_by(found.violations.len() as u64);
        for v in found.violations {
            tracing::warn!(port = v.port, pid = v.pid, process = %v.process, "a process holds a port leased to someone else");
            self.control
                .submit(Body::ReportPortViolation(pb::ReportPortViolation {
                    node: self.cfg.node.clone(),
                    port: v.port as u32,
                    pid: v.pid,
                    process: v.process,
                }))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_token(dir.path()).expect("made");
        let b = load_or_create_token(dir.path()).expect("read");
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(a, load_or_create_token(other.path()).expect("made"));
    }
}
