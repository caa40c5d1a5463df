//! The serving replicas placed on this node, and the stable endpoints it routes.
//!
//! Each step reads the deployments (their revisions, replicas, weights and endpoints),
//! and brings the node in line:
//!
//! - a replica placed here runs as a process (its model server) with `CAIRN_PORT`,
//!   `CAIRN_MODEL_NAME`, `CAIRN_MODEL_VERSION`, `CAIRN_MODEL_URI`, `CAIRN_MODEL_PATH`
//!   and `CUDA_VISIBLE_DEVICES` in its environment, and its output in a rotating log
//!   (`<state dir>/serving/logs/<deployment>/r<revision>-<index>.log`); a new attempt
//!   replaces the old one;
//! - it is probed (HTTP GET or TCP connect, the spec's period, initial delay and failure
//!   threshold); becoming ready, failing after being ready, starting and exiting are
//!   reported, and the control plane decides what follows;
//! - a replica no longer placed here is drained first — out of this node's routers, and
//!   after a grace for the other nodes' routers to see the change — then stopped with
//!   SIGTERM (SIGKILL after a grace);
//! - every deployment routed on this node gets a [`Router`] on its port, its table the
//!   revisions with traffic and their ready replicas.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_domain::deployment::{Probe, ServingTemplate};
use cairn_proto as pb;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pb::report_serving::Report;
use tokio::time::Instant;
use tracing::Instrument;

use super::load::Routers;
use super::router::{Route, Router};
use crate::replicas::{
    Launch, ReplicaProcess, RotatingLog, StopSignal, LOG_KEEP, LOG_MAX_BYTES, STOP_GRACE,
};

/// How long a removed replica keeps serving after this node's routers stopped sending
/// it requests: the other nodes' routers see the change within a step or two.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// The longest a drain waits for requests in flight before stopping the replica anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A serving replica: deployment, revision, index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub deployment: String,
    pub revision: u32,
    pub index: u32,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/r{}-{}", self.deployment, self.revision, self.index)
    }
}

/// What one replica placed here should be.
struct Wanted {
    attempt: u32,
    port: u32,
    gpus: Vec<String>,
    /// Its phase as the control plane last recorded it.
    phase: String,
    template: ServingTemplate,
    probe: Probe,
    model: String,
    version: u64,
    uri: String,
}

/// A replica's process and what this agent saw of it.
struct Running {
    attempt: u32,
    port: u32,
    process: ReplicaProcess,
    probe: Probe,
    ready: bool,
    failures: i64,
    next_probe: Instant,
}

/// A deployment's router on this node, and how to stop it.
struct Endpoint {
    port: u32,
    router: Router,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Runs the serving replicas placed on one node and the endpoints routed there.
pub struct Serving {
    node: String,
    root: PathBuf,
    running: BTreeMap<Key, Running>,
    endpoints: BTreeMap<String, Endpoint>,
    /// The endpoints' routers, shared with the heartbeats that report their load.
    routers: Routers,
    /// Replicas being drained and stopped, with their ports: a replica does not start
    /// while its key or its port is still held by one of them.
    stopping: BTreeMap<Key, (u32, tokio::task::JoinHandle<()>)>,
    probes: Client<HttpConnector, Empty<Bytes>>,
    /// util-linux's `setpriv`, when the node has it.
    setpriv: Option<String>,
}

impl Serving {
    pub fn new(node: &str, state_dir: &Path) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_TIMEOUT));
        Self {
            node: node.to_string(),
            root: state_dir.join("serving"),
            running: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            routers: Routers::default(),
            stopping: BTreeMap::new(),
            probes: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            setpriv: ["/usr/bin/setpriv", "/bin/setpriv"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .map(String::from),
        }
    }

    /// Stop what an earlier run of this agent started (its pid files say what), so a
    /// restarted agent neither leaves model servers holding their ports nor runs them
    /// twice; the control plane learns of it through the exits it then reports.
    pub async fn reclaim(&self) {
        let dir = self.root.join("pids");
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let text = tokio::fs::read_to_string(entry.path())
                .await
                .unwrap_or_default();
            if let Some(pid) = text
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                tracing::info!(
                    pid = pid.as_raw_nonzero().get(),
                    "stopping a serving replica an earlier run started"
                );
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
                let deadline = Instant::now() + STOP_GRACE;
                while Instant::now() < deadline
                    && rustix::process::test_kill_process_group(pid).is_ok()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }

    fn pid_file(&self, key: &Key) -> PathBuf {
        self.root.join("pids").join(format!(
            "{}.r{}-{}",
            key.deployment, key.revision, key.index
        ))
    }

    /// The log file of a serving replica.
    pub fn log_file(state_dir: &Path, key: &Key) -> PathBuf {
        state_dir
            .join("serving/logs")
            .join(&key.deployment)
            .join(format!("r{}-{}.log", key.revision, key.index))
    }

    /// One step: the reports it makes (started, ready, not ready, exited).
    pub async fn step(
        &mut self,
        deployments: &[pb::DeploymentView],
        addresses: &BTreeMap<String, String>,
        gpu_index: &BTreeMap<String, u32>,
    ) -> Vec<pb::ReportServing> {
        let wanted = self.wanted(deployments);
        let mut reports = Vec::new();
        self.stopping.retain(|_, (_, h)| !h.is_finished());
        // Reap what ended.
        let mut ended = Vec::new();
        for (key, r) in &mut self.running {
            if let Some(exit) = r.process.try_exit() {
                tracing::info!(replica = %key, code = exit.code, signal = exit.signal, "serving replica exited");
                reports.push(report(
                    &self.node,
                    key,
                    r.attempt,
                    Report::Exited(pb::ServingExited {
                        code: exit.code,
                        signal: exit.signal,
                    }),
                ));
                ended.push(key.clone());
            }
        }
        for key in ended {
            self.running.remove(&key);
            let _ = tokio::fs::remove_file(self.pid_file(&key)).await;
        }
        // Routers first, so that a replica leaving is out of their tables before it stops.
        self.route(deployments, addresses).await;
        // Stop what should not run (drained first), or runs an older attempt.
        let gone: Vec<Key> = self
            .running
            .iter()
            .filter(|(k, r)| wanted.get(*k).is_none_or(|w| w.attempt != r.attempt))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            let Some(r) = self.running.remove(&key) else {
                continue;
            };
            let restart = wanted.contains_key(&key);
            let router = self
                .endpoints
                .get(&key.deployment)
                .map(|e| e.router.clone());
            let r_port = r.port;
            let backend = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), r.port as u16);
            tracing::info!(replica = %key, restart, "stopping serving replica");
            let pid_file = self.pid_file(&key);
            let task = tokio::spawn(
                async move {
                    stop(r.process, router, backend, !restart).await;
                    let _ = tokio::fs::remove_file(pid_file).await;
                }
                .in_current_span(),
            );
            self.stopping.insert(key, (r_port, task));
        }
        // Start what should run and does not (once its port is free again).
        let mut started = Vec::new();
        for (key, w) in &wanted {
            let port_busy = self.stopping.values().any(|(p, _)| *p == w.port);
            if self.running.contains_key(key) || self.stopping.contains_key(key) || port_busy {
                continue;
            }
            match self.start(key, w, gpu_index).await {
                Ok(process) => {
                    let pid = process.pid();
                    let pid_file = self.pid_file(key);
                    if let Some(dir) = pid_file.parent() {
                        let _ = tokio::fs::create_dir_all(dir).await;
                    }
                    if let Err(e) = tokio::fs::write(&pid_file, pid.to_string()).await {
                        tracing::warn!(replica = %key, error = %e, "cannot write the pid file; a restarted agent will not find this process");
                    }
                    tracing::info!(replica = %key, attempt = w.attempt, pid, port = w.port, "serving replica started");
                    reports.push(report(
                        &self.node,
                        key,
                        w.attempt,
                        Report::Started(pb::ServingStarted { pid }),
                    ));
                    started.push(key.clone());
                    let delay = Duration::from_secs(w.probe.initial_delay_seconds.max(0) as u64);
                    self.running.insert(
                        key.clone(),
                        Running {
                            attempt: w.attempt,
                            port: w.port,
                            process,
                            probe: w.probe.clone(),
                            ready: false,
                            failures: 0,
                            next_probe: Instant::now() + delay,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(replica = %key, error = %e, "could not start a serving replica");
                    reports.push(report(
                        &self.node,
                        key,
                        w.attempt,
                        Report::Exited(pb::ServingExited {
                            code: 127,
                            signal: 0,
                        }),
                    ));
                }
            }
        }
        // Probe, and say what changed (again, when the control plane missed it).
        let now = Instant::now();
        let due: Vec<(Key, u32, Probe)> = self
            .running
            .iter()
            .filter(|(_, r)| r.next_probe <= now)
            .map(|(k, r)| (k.clone(), r.port, r.probe.clone()))
            .collect();
        let mut probes = tokio::task::JoinSet::new();
        for (key, port, probe) in due {
            let client = self.probes.clone();
            probes.spawn(async move {
                let result = probe_once(&client, port, &probe).await;
                (key, result)
            });
        }
        while let Some(done) = probes.join_next().await {
            let Ok((key, result)) = done else {
                continue;
            };
            let Some(r) = self.running.get_mut(&key) else {
                continue;
            };
            r.next_probe =
                Instant::now() + Duration::from_secs(r.probe.period_seconds.max(1) as u64);
            let probes = &crate::metrics::get().probes;
            probes
                .get_or_create(&crate::metrics::outcome(result.is_ok()))
                .inc();
            match result {
                Ok(()) => {
                    r.failures = 0;
                    r.ready = true;
                }
                Err(why) => {
                    r.failures += 1;
                    if r.ready && r.failures >= r.probe.failure_threshold.max(1) {
                        r.ready = false;
                        reports.push(report(
                            &self.node,
                            &key,
                            r.attempt,
                            Report::NotReady(pb::ServingNotReady { reason: why }),
                        ));
                    }
                }
            }
        }
        for (key, r) in &self.running {
            let recorded = wanted
                .get(key)
                .map(|w| w.phase.as_str())
                .unwrap_or_default();
            if r.ready && recorded != "Ready" {
                reports.push(report(
                    &self.node,
                    key,
                    r.attempt,
                    Report::Ready(pb::ServingReady {}),
                ));
            } else if recorded == "Pending" && !started.contains(key) {
                let pid = r.process.pid();
                reports.push(report(
                    &self.node,
                    key,
                    r.attempt,
                    Report::Started(pb::ServingStarted { pid }),
                ));
            }
        }
        reports
    }

    /// The replicas placed on this node, from the deployments' views.
    fn wanted(&self, deployments: &[pb::DeploymentView]) -> BTreeMap<Key, Wanted> {
        let mut out = BTreeMap::new();
        for d in deployments.iter().filter(|d| !d.deleted) {
            let spec: serde_json::Value = serde_json::from_str(&d.spec_json).unwrap_or_default();
            let model = spec["spec"]["model"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for r in &d.revisions {
                let mine: Vec<&pb::ServingReplicaView> =
                    r.replicas.iter().filter(|x| x.node == self.node).collect();
                if mine.is_empty() {
                    continue;
                }
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Template {
                    template: ServingTemplate,
                    readiness_probe: Probe,
                }
                let t: Template = match serde_json::from_str(&r.template_json) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(deployment = %d.name, revision = r.revision, error = %e, "cannot read a revision's template; its replicas do not start");
                        continue;
                    }
                };
                for x in mine {
                    let key = Key {
                        deployment: d.name.clone(),
                        revision: r.revision,
                        index: x.index,
                    };
                    out.insert(
                        key,
                        Wanted {
                            attempt: x.attempt,
                            port: x.port,
                            gpus: x.gpus.clone(),
                            phase: x.phase.clone(),
                            template: t.template.clone(),
                            probe: t.readiness_probe.clone(),
                            model: model.clone(),
                            version: r.model_version,
                            uri: r.model_uri.clone(),
                        },
                    );
                }
            }
        }
        out
    }

    async fn start(
        &self,
        key: &Key,
        w: &Wanted,
        gpu_index: &BTreeMap<String, u32>,
    ) -> std::io::Result<ReplicaProcess> {
        let Some((program, first_args)) = w.template.command.split_first() else {
            return Err(std::io::Error::other("the template has no command"));
        };
        let work = self
            .root
            .join("work")
            .join(&key.deployment)
            .join(format!("r{}-{}", key.revision, key.index));
        tokio::fs::create_dir_all(&work).await?;
        let workdir = match &w.template.working_dir {
            Some(d) => PathBuf::from(d),
            None => work,
        };
        let mut env = w.template.env.clone();
        let gpus: Vec<String> = w
            .gpus
            .iter()
            .map(|g| gpu_index.get(g).map_or_else(|| g.clone(), u32::to_string))
            .collect();
        env.insert("CUDA_VISIBLE_DEVICES".into(), gpus.join(","));
        env.insert("CAIRN_PORT".into(), w.port.to_string());
        env.insert("CAIRN_MODEL_NAME".into(), w.model.clone());
        env.insert("CAIRN_MODEL_VERSION".into(), w.version.to_string());
        env.insert("CAIRN_MODEL_URI".into(), w.uri.clone());
        env.insert("CAIRN_MODEL_PATH".into(), local_path(&w.uri));
        env.insert("CAIRN_DEPLOYMENT".into(), key.deployment.clone());
        env.insert("CAIRN_REVISION".into(), key.revision.to_string());
        let mut args: Vec<String> = first_args.to_vec();
        args.extend(w.template.args.iter().cloned());
        // A model server must not outlive its agent (it would hold its port and serve a
        // table no one updates): `setpriv` makes it get SIGTERM when the agent dies.
        let mut program = program.as_str();
        if let Some(setpriv) = &self.setpriv {
            let mut wrapped: Vec<String> = ["--pdeathsig", "TERM", "--", program]
                .map(String::from)
                .to_vec();
            wrapped.append(&mut args);
            args = wrapped;
            program = setpriv;
        }
        let log_path = Self::log_file(self.root.parent().unwrap_or(&self.root), key);
        if let Some(dir) = log_path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut log = RotatingLog::open(&log_path, LOG_MAX_BYTES, LOG_KEEP).await?;
        let banner = format!("--- cairn: attempt {} of {key} ---\n", w.attempt);
        log.write(banner.as_bytes()).await?;
        let launch = Launch {
            program,
            args: &args,
            env: &env,
            workdir: &workdir,
        };
        ReplicaProcess::spawn(&launch, log)
    }

    /// A router for every deployment routed on this node, its table from the views.
    async fn route(
        &mut self,
        deployments: &[pb::DeploymentView],
        addresses: &BTreeMap<String, String>,
    ) {
        let here: BTreeMap<&str, (u32, &pb::DeploymentView)> = deployments
            .iter()
            .filter(|d| !d.deleted)
            .filter_map(|d| Some((d.name.as_str(), (*d.routed_on.get(&self.node)?, d))))
            .collect();
        let gone: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(name, e)| {
                here.get(name.as_str())
                    .is_none_or(|(port, _)| *port != e.port)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(e) = self.endpoints.remove(&name) {
                tracing::info!(deployment = %name, port = e.port, "endpoint stops");
                let _ = e.stop.send(());
            }
        }
        let mut resolved: BTreeMap<String, Option<IpAddr>> = BTreeMap::new();
        for (name, (port, d)) in here {
            if !self.endpoints.contains_key(name) {
                let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port as u16)).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(deployment = %name, port, error = %e, "cannot listen on the endpoint's port; will try again");
                        continue;
                    }
                };
                let router = Router::new();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let serving = router.clone();
                tokio::spawn(
                    async move {
                        serving
                            .serve(listener, async move {
                                let _ = stopped.await;
                            })
                            .await
                    }
                    .in_current_span(),
                );
                tracing::info!(deployment = %name, port, "endpoint serves");
                self.endpoints
                    .insert(name.to_string(), Endpoint { port, router, stop });
            }
            let mut routes = Vec::new();
            for r in &d.revisions {
                let weight = d.weights.get(&r.revision).copied().unwrap_or(0);
                let mut backends = Vec::new();
                for x in r.replicas.iter().filter(|x| x.phase == "Ready") {
                    let ip = if x.node == self.node {
                        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    } else {
                        match resolved.get(&x.node) {
                            Some(ip) => *ip,
                            None => {
                                let host = addresses
                                    .get(&x.node)
                                    .cloned()
                                    .unwrap_or_else(|| x.node.clone());
                                let ip = resolve(&host).await;
                                resolved.insert(x.node.clone(), ip);
                                ip
                            }
                        }
                    };
                    if let Some(ip) = ip {
                        backends.push(SocketAddr::new(ip, x.port as u16));
                    }
                }
                routes.push(Route {
                    revision: u64::from(r.revision),
                    weight,
                    backends,
                });
            }
            if let Some(e) = self.endpoints.get(name) {
                e.router.set_routes(routes);
            }
        }
        let routers = self
            .endpoints
            .iter()
            .map(|(name, e)| (name.clone(), e.router.clone()))
            .collect();
        *self.routers.lock().unwrap_or_else(|p| p.into_inner()) = routers;
    }

    /// The endpoints' routers, kept current by each step.
    /// Model servers running here.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn routers(&self) -> Routers {
        Arc::clone(&self.routers)
    }

    /// Stop every replica and endpoint (the agent is shutting down).
    pub async fn stop_all(&mut self) {
        for (_, e) in std::mem::take(&mut self.endpoints) {
            let _ = e.stop.send(());
        }
        for (key, r) in std::mem::take(&mut self.running) {
            stop(
                r.process,
                None,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                false,
            )
            .await;
            let _ = tokio::fs::remove_file(self.pid_file(&key)).await;
        }
        for (_, (_, h)) in std::mem::take(&mut self.stopping) {
            let _ = h.await;
        }
    }
}

fn report(node: &str, key: &Key, attempt: u32, r: Report) -> pb::ReportServing {
    pb::ReportServing {
        node: node.to_string(),
        name: key.deployment.clone(),
        revision: key.revision,
        index: key.index,
        attempt,
        report: Some(r),
    }
}

/// Drain (when asked) and stop a replica's process: SIGTERM, then SIGKILL after a grace.
async fn stop(
    mut process: ReplicaProcess,
    router: Option<Router>,
    backend: SocketAddr,
    drain: bool,
) {
    if drain {
        if let Some(router) = router {
            let _ = tokio::time::timeout(DRAIN_LIMIT, router.drained(backend)).await;
        }
        tokio::time::sleep(DRAIN_GRACE).await;
    }
    process.signal(StopSignal::Term);
    if tokio::time::timeout(STOP_GRACE, process.wait())
        .await
        .is_err()
    {
        process.signal(StopSignal::Kill);
        process.wait().await;
    }
}

/// One probe of a replica on this node: Ok, or why it failed.
async fn probe_once(
    client: &Client<HttpConnector, Empty<Bytes>>,
    port: u32,
    probe: &Probe,
) -> Result<(), String> {
    match &probe.http_get {
        Some(get) => {
            let uri = format!("http://127.0.0.1:{port}{}", get.path);
            let uri: http::Uri = uri.parse().map_err(|e| format!("probe URI {uri}: {e}"))?;
            let answer = tokio::time::timeout(PROBE_TIMEOUT, client.get(uri)).await;
            match answer {
                Err(_) => Err(format!(
                    "no answer to GET {} within {PROBE_TIMEOUT:?}",
                    get.path
                )),
                Ok(Err(e)) => Err(format!("GET {}: {e}", get.path)),
                Ok(Ok(r)) if r.status().is_success() => Ok(()),
                Ok(Ok(r)) => Err(format!("GET {}: {}", get.path, r.status())),
            }
        }
        None => {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", port as u16));
            match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect to port {port}: {e}")),
                Err(_) => Err(format!("connect to port {port}: no answer")),
            }
        }
    }
}

/// A node's address as an IP (the first its name resolves to).
async fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .ok()?
        .next()
        .map(|a| a.ip())
}

/// The local path of a model URI: a plain path, or the path of a `file://[host]/path`
/// (other schemes: empty, the model server fetches them itself).
fn local_path(uri: &str) -> String {
    if let Some(rest) = uri.strip_prefix("file://") {
        match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => String::new(),
        }
    } else if uri.contains("://") {
        String::new()
    } else {
        uri.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_become_local_paths_where_they_are_local() {
        assert_eq!(local_path("/models/m.json"), "/models/m.json");
        assert_eq!(local_path("file:///models/m.json"), "/models/m.json");
        assert_eq!(local_path("file://gpu-1/models/m.json"), "/models/m.json");
        assert_eq!(local_path("s3://bucket/m"), "");
    }

    #[test]
    fn keys_name_the_replica() {
        let k = Key {
            deployment: "svc".into(),
            revision: 2,
            index: 3,
        };
        assert_eq!(k.to_string(), "svc/r2-3");
        assert_eq!(
            Serving::log_file(Path::new("/s"), &k),
            PathBuf::from("/s/serving/logs/svc/r2-3.log")
        );
    }
}
