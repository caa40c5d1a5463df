//! `cairn-agent`: the node agent's entry point.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_agent::agent::{self, AgentConfig};
use cairn_agent::gpu::{HealthPolicy, ProviderChoice};
use cairn_proto::tls::TlsFiles;
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GpuProviderArg {
    /// Real GPUs through NVML; the agent stops if NVML does not load.
    Nvml,
    /// Simulated GPUs (see --sim-topology).
    Sim,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Parser)]
#[command(name = "cairn-agent", version, about = "The Cairn node agent")]
struct Cli {
    /// Log format (on stderr).
    #[arg(long, value_enum, env = "CAIRN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Control-plane members to report to, comma-separated host:port.
    #[arg(long, env = "CAIRN_ENDPOINTS", default_value = "127.0.0.1:7420")]
    endpoints: String,
    /// This node's name (default: the host name).
    #[arg(long, env = "CAIRN_NODE_NAME")]
    node_name: Option<String>,
    /// Where the agent keeps its node token.
    #[arg(
        long,
        env = "CAIRN_AGENT_STATE_DIR",
        default_value = "/var/lib/cairn-agent"
    )]
    state_dir: PathBuf,
    #[arg(long, value_enum, env = "CAIRN_GPU_PROVIDER", default_value = "nvml")]
    gpu_provider: GpuProviderArg,
    /// Simulated topology: a preset (nvswitch-8, cube-mesh-8, pcie-4) or a JSON file.
    #[arg(long, default_value = "nvswitch-8")]
    sim_topology: String,
    /// JSON file of faults injected into simulated GPUs, re-read continuously.
    #[arg(long)]
    sim_faults: Option<PathBuf>,
    /// Node labels, key=value, repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Host-network port range leases come from, e.g. 20000-29999.
    #[arg(long, default_value = "20000-29999", value_parser = cairn_agent::ports::parse_range)]
    port_range: (u32, u32),
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// XIDs that do not make a GPU unhealthy (comma-separated; default: the
    /// application XIDs 13, 31, 43, 45, 68, 109).
    #[arg(long, value_delimiter = ',')]
    ignore_xids: Option<Vec<u32>>,
    /// Where the agent's own service (replica logs, read by `cairn job logs`) listens
    /// (default: 0.0.0.0:7431 with TLS, 127.0.0.1:7431 without).
    #[arg(long, env = "CAIRN_AGENT_LISTEN")]
    listen: Option<String>,
    /// Serve Prometheus's `/metrics` on this address (plain HTTP; default: not served).
    #[arg(long, env = "CAIRN_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Where this node's replicas are reached by others (default: the host name).
    #[arg(long, env = "CAIRN_NODE_ADDRESS")]
    address: Option<String>,
    /// Print what the GPU provider reports (inventory, topology, health) as JSON and
    /// exit: the record a real-GPU fixture is made from.
    #[arg(long)]
    inspect: bool,
    /// The cluster CA (PEM): mutual TLS with --tls-cert and --tls-key, towards members
    /// and on the agent's own service.
    #[arg(long, env = "CAIRN_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This agent's certificate (PEM), naming urn:cairn:agent:<node name>.
    #[arg(long, env = "CAIRN_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Serve the agent's own service on an address other than loopback without TLS.
    #[arg(long, env = "CAIRN_INSECURE")]
    insecure: bool,
    /// A GPU unhealthy by an XID recovers after this long without another.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    xid_recovery: Duration,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Logs go to stderr (stdout carries `--inspect`'s JSON), filtered by `CAIRN_LOG` (or
/// `RUST_LOG`; default `info`).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let node = cli
        .node_name
        .clone()
        .unwrap_or_else(agent::default_node_name);
    let endpoints = cli
        .endpoints
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut cfg = AgentConfig::new(&node, endpoints, cli.state_dir.clone());
    cfg.gpus = match cli.gpu_provider {
        GpuProviderArg::Nvml => ProviderChoice::Nvml,
        GpuProviderArg::Sim => ProviderChoice::Sim {
            topology: cli.sim_topology.clone(),
        },
    };
    cfg.sim_faults = cli.sim_faults.clone();
    cfg.labels = cli.labels.iter().cloned().collect::<BTreeMap<_, _>>();
    cfg.heartbeat = cli.heartbeat;
    cfg.port_range = cli.port_range;
    cfg.lease_ttl = cli.lease_ttl;
    let mut policy = HealthPolicy {
        xid_recovery: cli.xid_recovery,
        ..HealthPolicy::default()
    };
    if let Some(x) = &cli.ignore_xids {
        policy.ignored_xids = x.iter().copied().collect();
    }
    cfg.policy = policy;
    cfg.address = cli.address.clone();
    cfg.metrics_listen = cli.metrics_listen.clone();
    let tls_on = cli.tls_ca.is_some();
    cfg.listen = cli.listen.clone().unwrap_or_else(|| {
        if tls_on {
            "0.0.0.0:7431"
        } else {
            "127.0.0.1:7431"
        }
        .to_string()
    });
    if let (Some(ca), Some(cert), Some(key)) = (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        let files = TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        if let Err(e) = agent::check_identity(&files, &node) {
            eprintln!("cairn-agent: {e:#}");
            std::process::exit(2);
        }
        cfg.tls = Some(Arc::new(files));
    } else if !cli.insecure && !cli.inspect && !agent::is_loopback(&cfg.listen) {
        eprintln!(
            "cairn-agent: --listen {} is not a loopback address and no TLS is configured: pass --tls-ca/--tls-cert/--tls-key (`cairn certs issue agent {node}`) or --insecure",
            cfg.listen
        );
        std::process::exit(2);
    }
    if cli.inspect {
        match cairn_agent::gpu::inspect(&cfg.gpus, cfg.sim_faults.clone(), &node, &cfg.policy) {
            Ok(json) => {
                println!("{json}");
                return;
            }
            Err(e) => {
                eprintln!("cairn-agent: {e}");
                std::process::exit(1);
            }
        }
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = agent::run(cfg, shutdown).await {
        let hint = if cli.gpu_provider == GpuProviderArg::Nvml
            && e.to_string().contains("NVML is not available")
        {
            "\n(on a machine without NVIDIA GPUs, run with --gpu-provider=sim)"
        } else {
            ""
        };
        eprintln!("cairn-agent: {e:#}{hint}");
        std::process::exit(1);
    }
}
