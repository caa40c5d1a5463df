//! Server configuration: one documented struct. Defaults, then a TOML file, then
//! `CAIRN_*` environment variables and command-line flags ([`Overrides`], which the
//! binary fills from both); [`ServerConfig::validate`] reports every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default client port of `cairn-server dev`.
pub const DEV_ADDR: &str = "127.0.0.1:7420";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// This member's Raft node id (> 0, unique in the cluster).
    pub node_id: u64,
    /// Address the gRPC server (client API and Raft transport) binds.
    pub listen: String,
    /// Address other members and clients use to reach this one (default: `listen`).
    pub advertise: Option<String>,
    /// Where the sled database and snapshots live.
    pub data_dir: PathBuf,
    /// The first voters, `id → address`. The member with the lowest id initializes the
    /// cluster when its store is empty; a store that has a log ignores this.
    #[serde(deserialize_with = "members_by_id")]
    pub initial_members: BTreeMap<u64, String>,
    /// Largest client request, in bytes (a larger one is refused, nothing changes).
    pub max_request_bytes: usize,
    /// sled's page cache, in MiB: the largest part of a member's memory once it has
    /// written more than that.
    pub cache_mib: u64,
    /// Address the MLflow-compatible REST facade binds (none: not served).
    pub mlflow_listen: Option<String>,
    /// Address `/metrics` (Prometheus's text format, plain HTTP) binds (none: not
    /// served). The figures hold no secrets and no payloads, so any address is allowed.
    pub metrics_listen: Option<String>,
    pub raft: RaftSettings,
    pub batch: BatchSettings,
    pub nodes: NodeSettings,
    /// Where the leader projects the log as Kubernetes objects (none: nowhere).
    pub kubernetes: Option<KubernetesSettings>,
    /// Mutual TLS on the member's port, for clients, agents and other members alike
    /// (none: plaintext, on loopback only unless `insecure`).
    pub tls: Option<TlsSettings>,
    /// Listen on addresses other than loopback without TLS.
    pub insecure: bool,
    pub limits: LimitSettings,
}

/// What one authenticated identity (a user, a token, an agent; not a member) may ask of
/// a member. Without TLS callers are not identified, and not limited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Requests a second (0: no limit); over it a request is refused
    /// `RESOURCE_EXHAUSTED`, having changed nothing.
    pub requests_per_second: u32,
    /// Requests at once above the rate.
    pub burst: u32,
    /// Streams (event tails, write streams) open at once on a member (0: no limit).
    pub streams: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 5_000,
            burst: 10_000,
            streams: 64,
        }
    }
}

/// The PEM files of a member's identity (`cairn certs` makes development ones).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster CA: the certificates of members, agents and users are checked
    /// against it.
    pub ca: PathBuf,
    /// This member's certificate (naming `urn:cairn:member:<node_id>`).
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsSettings {
    pub fn files(&self) -> cairn_proto::tls::TlsFiles {
        cairn_proto::tls::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// The Kubernetes projection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSettings {
    /// A kubeconfig file; none: the in-cluster configuration (or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// The Kubernetes namespace of the namespaced kinds (created if missing).
    pub namespace: String,
    /// How often everything Kubernetes holds is compared with the log, in seconds.
    pub resync_seconds: u64,
    /// The Gateway (in `namespace`) that deployments' HTTPRoutes attach to.
    pub gateway: String,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            namespace: "cairn".into(),
            resync_seconds: 10,
            gateway: "cairn".into(),
        }
    }
}

/// How the leader watches the GPU nodes' agents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// A node whose agent sent no heartbeat for this long is recorded lost. A new
    /// leader waits this long before declaring anyone lost.
    pub lost_after_ms: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            lost_after_ms: 10_000,
        }
    }
}

/// Raft timing and log compaction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// Entries kept in the log after a snapshot (for followers just behind).
    pub logs_kept_after_snapshot: u64,
    /// Largest Raft message between members, in bytes.
    pub max_message_bytes: usize,
}

/// Group commit: how the leader batches commands into Raft entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    pub max_commands: usize,
    pub max_bytes: usize,
    /// Batches proposed but not yet committed, at most.
    pub max_inflight: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen: DEV_ADDR.into(),
            advertise: None,
            data_dir: PathBuf::from(".cairn"),
            initial_members: BTreeMap::new(),
            max_request_bytes: 4 * 1024 * 1024,
            cache_mib: DEFAULT_CACHE_MIB,
            mlflow_listen: None,
            metrics_listen: None,
            kubernetes: None,
            tls: None,
            insecure: false,
            limits: LimitSettings::default(),
            raft: RaftSettings::default(),
            batch: BatchSettings::default(),
            nodes: NodeSettings::default(),
        }
    }
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 125,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 450,
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
            max_message_bytes: 128 * 1024 * 1024,
        }
    }
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_commands: 4096,
            max_bytes: 1024 * 1024,
            max_inflight: 2,
        }
    }
}

/// TOML keys are strings: read `{ "1" = "host:port" }` as node ids.
fn members_by_id<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<u64, String>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<u64>().map(|id| (id, v)).map_err(|_| {
                serde::de::Error::custom(format!("initial_members: node id {k:?} is not a number"))
            })
        })
        .collect()
}

/// Whether `host:port` names a loopback address (`localhost` counts).
fn is_loopback(a: &str) -> bool {
    match a.parse::<std::net::SocketAddr>() {
        Ok(s) => s.ip().is_loopback(),
        Err(_) => a.rsplit_once(':').is_some_and(|(h, _)| h == "localhost"),
    }
}

fn is_host_port(a: &str) -> bool {
    a.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// sled's page cache unless configured (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_MIB: u64 = 128;

/// Settings given on the command line or in `CAIRN_*` variables, over the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub node_id: Option<u64>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The first voters, `1=host:port,2=host:port,...`.
    pub initial_members: Option<String>,
    pub max_request_bytes: Option<usize>,
    pub cache_mib: Option<u64>,
    /// The MLflow facade's address (empty or `off`: not served).
    pub mlflow_listen: Option<String>,
    /// The metrics endpoint's address (empty or `off`: not served).
    pub metrics_listen: Option<String>,
    /// The three TLS files, all or none.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure: bool,
    /// `limits.requests_per_second` (0: no limit).
    pub requests_per_second: Option<u32>,
    /// `limits.streams` (0: no limit).
    pub streams_per_caller: Option<usize>,
}

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}:\n{why}")]
    File { path: PathBuf, why: String },
    #[error("initial members: {0}")]
    Members(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// `1=host:port,2=host:port,...` as a map of ids to addresses.
pub fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (id, addr) = p
                .split_once('=')
                .ok_or_else(|| ConfigError::Members(format!("{p:?} is not id=host:port")))?;
            let id = id
                .trim()
                .parse()
                .map_err(|e| ConfigError::Members(format!("the node id in {p:?}: {e}")))?;
            Ok((id, addr.trim().to_string()))
        })
        .collect()
}

impl ServerConfig {
    /// The defaults, then `file` (TOML) if given, then `overrides`. Not yet validated.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|why| ConfigError::File {
                    path: path.to_path_buf(),
                    why,
                })?
            }
            None => Self::default(),
        };
        let Overrides {
            node_id,
            listen,
            advertise,
            data_dir,
            initial_members,
            max_request_bytes,
            cache_mib,
            mlflow_listen,
            metrics_listen,
            tls_ca,
            tls_cert,
            tls_key,
            insecure,
            requests_per_second,
            streams_per_caller,
        } = overrides;
        cfg.node_id = node_id.unwrap_or(cfg.node_id);
        cfg.listen = listen.unwrap_or(cfg.listen);
        cfg.advertise = advertise.or(cfg.advertise);
        cfg.data_dir = data_dir.unwrap_or(cfg.data_dir);
        if let Some(m) = initial_members {
            cfg.initial_members = parse_members(&m)?;
        }
        cfg.max_request_bytes = max_request_bytes.unwrap_or(cfg.max_request_bytes);
        cfg.cache_mib = cache_mib.unwrap_or(cfg.cache_mib);
        if let Some(m) = mlflow_listen {
            cfg.mlflow_listen = (!m.is_empty() && m != "off").then_some(m);
        }
        if let Some(m) = metrics_listen {
            cfg.metrics_listen = (!m.is_empty() && m != "off").then_some(m);
        }
        match (tls_ca, tls_cert, tls_key) {
            (None, None, None) => {}
            (Some(ca), Some(cert), Some(key)) => cfg.tls = Some(TlsSettings { ca, cert, key }),
            _ => {
                return Err(ConfigError::Tls(
                    "--tls-ca, --tls-cert and --tls-key go together".into(),
                ))
            }
        }
        cfg.insecure |= insecure;
        if let Some(r) = requests_per_second {
            cfg.limits.requests_per_second = r;
        }
        if let Some(s) = streams_per_caller {
            cfg.limits.streams = s;
        }
        Ok(cfg)
    }

    /// `cairn-server dev`: a single-member cluster on `listen`, data in `data_dir`, the
    /// MLflow facade on `mlflow_listen` and the metrics on `metrics_listen` (empty or
    /// `off`: none).
    pub fn dev(
        listen: String,
        data_dir: PathBuf,
        mlflow_listen: String,
        metrics_listen: String,
    ) -> Self {
        let on = |a: String| (!a.is_empty() && a != "off").then_some(a);
        Self {
            node_id: 1,
            initial_members: BTreeMap::from([(1, listen.clone())]),
            listen,
            data_dir,
            mlflow_listen: on(mlflow_listen),
            metrics_listen: on(metrics_listen),
            ..Self::default()
        }
    }

    /// Parse a TOML configuration file's text (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn advertise(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// Every problem with this configuration, one line each.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.node_id == 0 {
            p.push("node_id: must be > 0".into());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "listen: {:?} is not an ip:port socket address",
                self.listen
            ));
        }
        if let Some(a) = &self.advertise {
            if !is_host_port(a) {
                p.push(format!("advertise: {a:?} is not host:port"));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            p.push("data_dir: must not be empty".into());
        }
        for (id, addr) in &self.initial_members {
            if *id == 0 {
                p.push("initial_members: node ids must be > 0".into());
            }
            if !is_host_port(addr) {
                p.push(format!("initial_members.{id}: {addr:?} is not host:port"));
            }
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.node_id) {
            p.push(format!(
                "initial_members: does not contain this node ({}); a joining node starts with none and is added with `cairn cluster add-learner`",
                self.node_id
            ));
        }
        if let Some(m) = &self.mlflow_listen {
            if !is_host_port(m) {
                p.push(format!("mlflow_listen: {m:?} is not host:port"));
            }
        }
        if let Some(m) = &self.metrics_listen {
            if !is_host_port(m) {
                p.push(format!("metrics_listen: {m:?} is not host:port"));
            }
        }
        if let Some(t) = &self.tls {
            for (field, path) in [
                ("tls.ca", &t.ca),
                ("tls.cert", &t.cert),
                ("tls.key", &t.key),
            ] {
                if let Err(e) = std::fs::metadata(path) {
                    p.push(format!("{field}: {}: {e}", path.display()));
                }
            }
        }
        if !self.insecure {
            let beyond_loopback = self
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback());
            if self.tls.is_none() && beyond_loopback {
                p.push(format!(
                    "listen: {} is not a loopback address and no [tls] is configured: configure TLS (`cairn certs init`) or start with --insecure",
                    self.listen
                ));
            }
            // Without TLS the MLflow facade speaks plain HTTP.
            if let Some(m) = self
                .mlflow_listen
                .as_deref()
                .filter(|m| self.tls.is_none() && is_host_port(m) && !is_loopback(m))
            {
                p.push(format!(
                    "mlflow_listen: {m} is not a loopback address and no [tls] is configured (the facade would serve plain HTTP): configure TLS or start with --insecure"
                ));
            }
        }
        if self.max_request_bytes < 1024 {
            p.push("max_request_bytes: must be at least 1024".into());
        }
        if !(8..=1 << 20).contains(&self.cache_mib) {
            p.push("cache_mib: must be between 8 and 1048576".into());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 {
            p.push("raft.heartbeat_ms: must be > 0".into());
        }
        if r.election_timeout_min_ms <= r.heartbeat_ms {
            p.push("raft.election_timeout_min_ms: must exceed raft.heartbeat_ms".into());
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            p.push("raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms".into());
        }
        if r.snapshot_after_logs == 0 {
            p.push("raft.snapshot_after_logs: must be > 0".into());
        }
        if r.max_message_bytes < self.max_request_bytes * 2 {
            p.push("raft.max_message_bytes: must be at least twice max_request_bytes".into());
        }
        let b = &self.batch;
        if b.max_commands == 0 {
            p.push("batch.max_commands: must be > 0".into());
        }
        if b.max_bytes == 0 {
            p.push("batch.max_bytes: must be > 0".into());
        }
        if b.max_inflight == 0 {
            p.push("batch.max_inflight: must be > 0".into());
        }
        if self.nodes.lost_after_ms < 500 {
            p.push("nodes.lost_after_ms: must be at least 500".into());
        }
        p
    }

    /// openraft's configuration for this server.
    pub fn openraft(&self) -> Result<openraft::Config, String> {
        let r = &self.raft;
        openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_after_logs),
            max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_config_lists_every_problem() {
        let text = r#"
            node_id = 0
            listen = "nowhere"
            cache_mib = 4
            [initial_members]
            1 = "127.0.0.1"
            [raft]
            heartbeat_ms = 500
            election_timeout_min_ms = 400
        "#;
        let cfg = ServerConfig::from_toml(text).expect("parses");
        let p = cfg.validate();
        assert!(p.iter().any(|s| s.starts_with("node_id")), "{p:?}");
        assert!(p.iter().any(|s| s.starts_with("listen")), "{p:?}");
        assert!(
            p.iter().any(|s| s.starts_with("initial_members.1")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("initial_members: does not contain")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("raft.election_timeout_min_ms")),
            "{p:?}"
        );
        assert!(p.iter().any(|s| s.starts_with("cache_mib")), "{p:?}");
        assert_eq!(p.len(), 6, "{p:?}");
    }

    #[test]
    fn plaintext_beyond_loopback_needs_insecure_and_tls_files_must_exist() {
        let wide = ServerConfig {
            listen: "0.0.0.0:7420".into(),
            initial_members: BTreeMap::from([(1, "10.0.0.1:7420".into())]),
            ..ServerConfig::default()
        };
        let p = wide.validate();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("not a loopback address"), "{p:?}");
        let insecure = ServerConfig {
            insecure: true,
            ..wide.clone()
        };
        assert_eq!(insecure.validate(), Vec::<String>::new());
        let tls = ServerConfig {
            tls: Some(TlsSettings {
                ca: "/nonexistent/ca.crt".into(),
                cert: "/nonexistent/m.crt".into(),
                key: "/nonexistent/m.key".into(),
            }),
            mlflow_listen: Some("0.0.0.0:5000".into()),
            ..wide
        };
        let p = tls.validate();
        assert!(
            p.iter().any(|s| s.starts_with("tls.ca: /nonexistent")),
            "{p:?}"
        );
        // With TLS the facade serves HTTPS, on any address.
        assert!(!p.iter().any(|s| s.starts_with("mlflow_listen")), "{p:?}");
        assert!(!p.iter().any(|s| s.starts_with("listen")), "{p:?}");
        let plain_mlflow = ServerConfig {
            mlflow_listen: Some("0.0.0.0:5000".into()),
            ..ServerConfig::default()
        };
        let p = plain_mlflow.validate();
        assert!(
            p.iter()
                .any(|s| s.starts_with("mlflow_listen: 0.0.0.0:5000")),
            "{p:?}"
        );
        let half = Overrides {
            tls_ca: Some("ca.crt".into()),
            ..Overrides::default()
        };
        assert!(ServerConfig::load(None, half).is_err());
    }

    #[test]
    fn flags_override_the_file_and_bad_members_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, "node_id = 3\nlisten = \"127.0.0.1:1\"\n").expect("write");
        let cfg = ServerConfig::load(
            Some(&file),
            Overrides {
                listen: Some("127.0.0.1:2".into()),
                initial_members: Some("3=127.0.0.1:2, 4=127.0.0.1:5".into()),
                streams_per_caller: Some(0),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!((cfg.node_id, cfg.listen.as_str()), (3, "127.0.0.1:2"));
        assert_eq!(cfg.limits.streams, 0, "the flag lifts the stream limit");
        assert_eq!(cfg.initial_members.len(), 2);
        let bad = Overrides {
            initial_members: Some("x=127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let err = ServerConfig::load(None, bad).unwrap_err().to_string();
        assert!(err.contains("the node id in \"x=127.0.0.1:2\""), "{err}");
        let missing = ServerConfig::load(Some(&dir.path().join("nope.toml")), Overrides::default());
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = ServerConfig::from_toml("node_idd = 2").unwrap_err();
        assert!(err.contains("unknown field `node_idd`"), "{err}");
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ServerConfig::default().validate(), Vec::<String>::new());
        assert!(ServerConfig::default().openraft().is_ok());
    }
}
