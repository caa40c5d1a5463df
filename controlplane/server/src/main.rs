//! `cairn-server`: parse flags, load the configuration, start tracing, run.

use std::io::IsTerminal;
use std::path::PathBuf;

use cairn_agent::agent::AgentConfig;
use cairn_agent::gpu::ProviderChoice;
use cairn_controlplane::config::{KubernetesSettings, Overrides, ServerConfig, DEV_ADDR};
use clap::{Parser, Subcommand};

/// Allocation-heavy paths (sled's copy-on-write nodes, protobuf, HTTP/2) run markedly
/// faster with mimalloc than with glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long (ms) mimalloc keeps freed memory before returning it to the kernel. Its
/// default, one second, had a loaded server fault in and zero fresh pages for memory it
/// had just given back (a few percent of the machine's CPU at 128 writers); after ten
/// seconds idle, memory still goes back.
const ALLOCATOR_PURGE_DELAY_MS: &str = "10000";
const ALLOCATOR_PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// mimalloc reads its options from the environment when the process loads, so the
/// server sets its purge delay by starting itself again with the variable set (unless
/// the operator set it). The process keeps its id.
fn apply_allocator_settings() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ALLOCATOR_PURGE_DELAY_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let err = std::process::Command::new(exe)
        .arg0(args.next().unwrap_or_default())
        .args(args)
        .env(ALLOCATOR_PURGE_DELAY_VAR, ALLOCATOR_PURGE_DELAY_MS)
        .exec();
    // Only reached when exec failed: run with the allocator's defaults.
    eprintln!("cairn-server: could not restart with {ALLOCATOR_PURGE_DELAY_VAR} set ({err}); going on without it");
}

#[derive(Parser)]
#[command(
    name = "cairn-server",
    version,
    about = "The Cairn control-plane server"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "CAIRN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A single-node control plane with its data in ./.cairn, on 127.0.0.1:7420.
    Dev {
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
        data_dir: PathBuf,
        #[arg(long, env = "CAIRN_LISTEN", default_value = DEV_ADDR)]
        listen: String,
        /// Do not run the local agent.
        #[arg(long)]
        no_agent: bool,
        /// GPUs of the local agent: NVML when it loads, else simulated (`auto`), or
        /// always simulated (`sim`).
        #[arg(long, default_value = "auto", value_parser = ["auto", "sim"])]
        gpus: String,
        /// Simulated topology: nvswitch-8, cube-mesh-8, pcie-4, or a JSON file.
        #[arg(long, default_value = "nvswitch-8")]
        sim_topology: String,
        /// Host-network ports the local agent leases from (replicas, endpoints).
        #[arg(long, default_value = "20000-29999", value_parser = cairn_agent::ports::parse_range)]
        port_range: (u32, u32),
        /// Project the log into the Kubernetes API server this kubeconfig names.
        #[arg(long, env = "CAIRN_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Where the MLflow-compatible registry API listens (`off`: nowhere).
        #[arg(long, env = "CAIRN_MLFLOW_LISTEN", default_value = "127.0.0.1:5000")]
        mlflow_listen: String,
        /// Where Prometheus scrapes `/metrics` (`off`: nowhere).
        #[arg(long, env = "CAIRN_METRICS_LISTEN", default_value = "127.0.0.1:9420")]
        metrics_listen: String,
    },
    /// A member of a cluster: a configuration file and/or flags.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML configuration file (flags and CAIRN_* variables override it).
    #[arg(long, short = 'c', env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "CAIRN_NODE_ID")]
    node_id: Option<u64>,
    #[arg(long, env = "CAIRN_LISTEN")]
    listen: Option<String>,
    #[arg(long, env = "CAIRN_ADVERTISE")]
    advertise: Option<String>,
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The first voters, `1=host:port,2=host:port,...` (only used to create a new cluster).
    #[arg(long, env = "CAIRN_INITIAL_MEMBERS")]
    initial_members: Option<String>,
    /// Largest client request in bytes.
    #[arg(long, env = "CAIRN_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// sled's page cache in MiB (default 128).
    #[arg(long, env = "CAIRN_CACHE_MIB")]
    cache_mib: Option<u64>,
    /// Serve the MLflow-compatible registry API on this address (`off`: not at all).
    #[arg(long, env = "CAIRN_MLFLOW_LISTEN")]
    mlflow_listen: Option<String>,
    /// Serve Prometheus's `/metrics` on this address (`off`: not at all).
    #[arg(long, env = "CAIRN_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// The cluster CA (PEM): mutual TLS with --tls-cert and --tls-key.
    #[arg(long, env = "CAIRN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This member's certificate (PEM), naming urn:cairn:member:<node id>.
    #[arg(long, env = "CAIRN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// This member's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Listen on addresses other than loopback without TLS.
    #[arg(long, env = "CAIRN_INSECURE")]
    insecure: bool,
    /// Requests a second each authenticated caller may make (0: no limit).
    #[arg(long, env = "CAIRN_REQUESTS_PER_SECOND")]
    requests_per_second: Option<u32>,
    /// Streams (event tails, write streams) each authenticated caller may hold open on
    /// this member (0: no limit).
    #[arg(long, env = "CAIRN_STREAMS_PER_CALLER")]
    streams_per_caller: Option<usize>,
}

impl RunArgs {
    fn load(self) -> anyhow::Result<ServerConfig> {
        let overrides = Overrides {
            node_id: self.node_id,
            listen: self.listen,
            advertise: self.advertise,
            data_dir: self.data_dir,
            initial_members: self.initial_members,
            max_request_bytes: self.max_request_bytes,
            cache_mib: self.cache_mib,
            mlflow_listen: self.mlflow_listen,
            metrics_listen: self.metrics_listen,
            tls_ca: self.tls_ca,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            insecure: self.insecure,
            requests_per_second: self.requests_per_second,
            streams_per_caller: self.streams_per_caller,
        };
        Ok(ServerConfig::load(self.config.as_deref(), overrides)?)
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The variable with which an operator sets the number of async worker threads (tokio's
/// own name for it).
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// Async worker threads: [`WORKER_THREADS_VAR`] if the operator set it, else half of
/// `cpus` (the CPUs this process may use), at least one. The rest is left to the threads
/// a write also needs (the storage flusher, sled's IO pool) and to the kernel's network
/// and disk work. A worker that wakes an idle one hands it a task at the cost of a
/// context switch; with fewer workers a single client's write took 7 switches on the
/// leader instead of 16 (decision 0071). A value that is not a whole number above zero
/// is refused at start, where tokio would panic on it.
fn worker_threads(set: Option<std::ffi::OsString>, cpus: usize) -> anyhow::Result<usize> {
    let Some(set) = set else {
        return Ok((cpus / 2).max(1));
    };
    match set.to_str().map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => anyhow::bail!("{WORKER_THREADS_VAR}: must be a whole number above 0, not {set:?}"),
    }
}

fn main() -> anyhow::Result<()> {
    apply_allocator_settings();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(std::env::var_os(WORKER_THREADS_VAR), cpus)?)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let (config, agent) = match cli.command {
        Command::Dev {
            data_dir,
            listen,
            no_agent,
            gpus,
            sim_topology,
            port_range,
            kubeconfig,
            mlflow_listen,
            metrics_listen,
        } => {
            let agent = (!no_agent).then(|| {
                let node = cairn_agent::agent::default_node_name();
                let mut a = AgentConfig::new(&node, vec![listen.clone()], data_dir.join("agent"));
                a.gpus = if gpus == "sim" {
                    ProviderChoice::Sim {
                        topology: sim_topology.clone(),
                    }
                } else {
                    ProviderChoice::NvmlOrSim {
                        topology: sim_topology.clone(),
                    }
                };
                a.sim_faults = Some(data_dir.join("agent").join("gpu-faults.json"));
                // Everything runs on this machine: replicas reach each other on loopback.
                a.address = Some("127.0.0.1".into());
                a.port_range = port_range;
                a
            });
            let mut config = ServerConfig::dev(listen, data_dir, mlflow_listen, metrics_listen);
            config.kubernetes = kubeconfig.map(|k| KubernetesSettings {
                kubeconfig: Some(k),
                ..KubernetesSettings::default()
            });
            (config, agent)
        }
        Command::Run(args) => (args.load()?, None),
    };
    let embedded_agent = agent.is_some();
    // The embedded agent reports to this server as soon as it answers.
    if let Some(agent) = agent {
        tokio::spawn(async move {
            if let Err(e) = cairn_agent::agent::run(agent, std::future::pending()).await {
                tracing::error!(error = %format!("{e:#}"), "the local agent stopped");
            }
        });
    }
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let projection = config
        .kubernetes
        .clone()
        .map(|k| cairn_k8s::projector::Config {
            kubeconfig: k.kubeconfig,
            namespace: k.namespace,
            resync: std::time::Duration::from_secs(k.resync_seconds.max(1)),
            gateway: k.gateway,
        });
    let started = move |app| {
        if let Some(cfg) = projection {
            tracing::info!(namespace = %cfg.namespace, "projecting the log into Kubernetes while leading");
            tokio::spawn(cairn_k8s::projector::run(app, cfg));
        }
    };
    // The embedded agent's figures are the member's too: one `/metrics` in dev.
    let collectors: Vec<Box<dyn prometheus_client::collector::Collector>> = if embedded_agent {
        vec![Box::new(cairn_agent::metrics::Figures)]
    } else {
        Vec::new()
    };
    cairn_controlplane::server::run_with(config, shutdown, started, collectors).await
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn half_the_cpus_run_async_workers_unless_the_operator_says_otherwise() {
        assert_eq!(worker_threads(None, 1).unwrap(), 1);
        assert_eq!(worker_threads(None, 2).unwrap(), 1);
        assert_eq!(worker_threads(None, 16).unwrap(), 8);
        assert_eq!(worker_threads(Some("3".into()), 16).unwrap(), 3);
        assert_eq!(worker_threads(Some(" 2 ".into()), 16).unwrap(), 2);
        for bad in ["0", "-1", "two", ""] {
            let err = worker_threads(Some(bad.into()), 16)
                .unwrap_err()
                .to_string();
            assert!(err.contains("TOKIO_WORKER_THREADS"), "{bad:?}: {err}");
        }
    }
}
