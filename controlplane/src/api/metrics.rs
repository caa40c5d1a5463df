//! A member's figures read at scrape time (`/metrics`): Raft (term, leader, indexes, each
//! follower's lag), its data directory, and the applied state — the figures an operator
//! of KubeDL or Kubeflow knows (jobs by framework and phase, restarts, queue wait and
//! launch delay), nodes, GPUs, leases, models and deployments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_domain::job::Framework;
use cairn_domain::model::Stage;
use cairn_domain::State;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;

use crate::app::App;
use crate::metrics::gauge;

/// A member: Raft's metrics, its storage and the applied state, read at each scrape.
pub struct Member {
    pub app: App,
    /// Where its database and snapshots are.
    pub data_dir: PathBuf,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Member({})", self.app.id())
    }
}

impl Collector for Member {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        self.raft(&mut e)?;
        gauge(
            &mut e,
            "storage_size_bytes",
            "Bytes the member's data directory holds (database and snapshots)",
            dir_bytes(&self.data_dir) as i64,
        )?;
        self.app.with_state(|s| domain(s, &mut e))
    }
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

impl Member {
    fn raft(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let m = self.app.raft().metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let last = m.last_log_index.unwrap_or(0);
        gauge(e, "raft_term", "The current term", m.current_term as i64)?;
        let leading = m.state == openraft::ServerState::Leader;
        gauge(e, "raft_is_leader", "1 on the leader", i64::from(leading))?;
        let leader = m.current_leader.unwrap_or(0) as i64;
        gauge(
            e,
            "raft_leader_id",
            "The leader this member knows (0: none)",
            leader,
        )?;
        gauge(
            e,
            "raft_last_log_index",
            "The last entry in the log",
            last as i64,
        )?;
        gauge(
            e,
            "raft_applied_index",
            "The last entry applied",
            applied as i64,
        )?;
        let lag = last.saturating_sub(applied) as i64;
        gauge(
            e,
            "raft_apply_lag_entries",
            "Entries in the log not yet applied",
            lag,
        )?;
        let snapshot = m.snapshot.map_or(0, |l| l.index) as i64;
        gauge(
            e,
            "raft_snapshot_index",
            "The last entry the snapshot holds",
            snapshot,
        )?;
        if let Some(replication) = &m.replication {
            let mut d = e.encode_descriptor(
                "raft_replication_lag_entries",
                "On the leader: entries each follower has not yet acknowledged",
                None,
                MetricType::Gauge,
            )?;
            for (follower, matched) in replication {
                if *follower == m.id {
                    continue;
                }
                let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                let labels = [("follower", follower.to_string())];
                ConstGauge::new(behind as i64).encode(d.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn framework(f: Framework) -> &'static str {
    match f {
        Framework::Pytorch => "pytorch",
        Framework::Tensorflow => "tensorflow",
        Framework::Mpi => "mpi",
        Framework::Xgboost => "xgboost",
        Framework::Mars => "mars",
        Framework::Xdl => "xdl",
        Framework::Generic => "generic",
    }
}

/// The applied state's figures.
fn domain(s: &State, e: &mut DescriptorEncoder) -> std::fmt::Result {
    // Jobs, as KubeDL counts them: by framework and phase, restarts, and the time from
    // submission to being scheduled (queue wait) and to running (launch delay).
    let mut jobs: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut restarts: BTreeMap<&str, u64> = BTreeMap::new();
    let waits = Histogram::new(exponential_buckets(0.1, 2.0, 16));
    let launches = Histogram::new(exponential_buckets(0.1, 2.0, 16));
    for j in s.jobs().values() {
        let fw = framework(j.doc.spec.framework);
        *jobs.entry((fw, j.phase.name())).or_default() += 1;
        *restarts.entry(fw).or_default() += u64::from(j.restarts);
        let first = |kind: &str| j.conditions.iter().find(|c| c.kind == kind);
        if let Some(c) = first("Scheduled") {
            waits.observe((c.at_ms - j.submitted_ms).max(0) as f64 / 1000.0);
        }
        if let Some(c) = first("Running") {
            launches.observe((c.at_ms - j.submitted_ms).max(0) as f64 / 1000.0);
        }
    }
    let mut d = e.encode_descriptor(
        "jobs",
        "Training jobs by framework and phase",
        None,
        MetricType::Gauge,
    )?;
    for ((fw, ph), n) in &jobs {
        let labels = [("framework", *fw), ("phase", *ph)];
        ConstGauge::new(*n).encode(d.encode_family(&labels)?)?;
    }
    let mut d = e.encode_descriptor(
        "job_restarts",
        "Replica restarts of the jobs in the state, by framework",
        None,
        MetricType::Counter,
    )?;
    for (fw, n) in &restarts {
        ConstCounter::new(*n).encode(d.encode_family(&[("framework", *fw)])?)?;
    }
    waits.encode(e.encode_descriptor(
        "job_queue_wait_seconds",
        "From a job's submission to its placement",
        None,
        MetricType::Histogram,
    )?)?;
    launches.encode(e.encode_descriptor(
        "job_launch_delay_seconds",
        "From a job's submission to its replicas running",
        None,
        MetricType::Histogram,
    )?)?;

    // Nodes, GPUs and port leases.
    let (mut ready, mut lost, mut cordoned) = (0, 0, 0);
    let (mut healthy, mut unhealthy, mut allocated, mut leases) = (0, 0, 0, 0);
    for n in s.nodes().values() {
        match (n.lost, n.cordon.is_some()) {
            (true, _) => lost += 1,
            (false, true) => cordoned += 1,
            (false, false) => ready += 1,
        }
        for g in &n.inventory.gpus {
            if n.gpu_health(&g.uuid).healthy {
                healthy += 1;
            } else {
                unhealthy += 1;
            }
        }
        allocated += n.allocated_gpus.len() as i64;
        leases += n.leases.len() as i64;
    }
    let mut d = e.encode_descriptor("nodes", "Nodes by status", None, MetricType::Gauge)?;
    for (status, n) in [("ready", ready), ("lost", lost), ("cordoned", cordoned)] {
        ConstGauge::new(n).encode(d.encode_family(&[("status", status)])?)?;
    }
    let mut d = e.encode_descriptor("gpus", "GPUs by health", None, MetricType::Gauge)?;
    for (health, n) in [("healthy", healthy), ("unhealthy", unhealthy)] {
        ConstGauge::new(n).encode(d.encode_family(&[("health", health)])?)?;
    }
    gauge(e, "gpus_allocated", "GPUs placed jobs hold", allocated)?;
    gauge(e, "port_leases", "Host-network port leases held", leases)?;

    // The registry and serving.
    let mut models = 0;
    let mut versions: BTreeMap<&str, i64> = Stage::ALL.iter().map(|s| (s.name(), 0)).collect();
    for m in s.models().values().filter(|m| !m.deleted) {
        models += 1;
        for (_, v) in m.live_versions() {
            *versions.entry(v.stage.name()).or_default() += 1;
        }
    }
    gauge(e, "models", "Registered models", models)?;
    let mut d = e.encode_descriptor(
        "model_versions",
        "Model versions by stage",
        None,
        MetricType::Gauge,
    )?;
    for (stage, n) in &versions {
        ConstGauge::new(*n).encode(d.encode_family(&[("stage", *stage)])?)?;
    }
    let live = s.deployments().values().filter(|d| !d.deleted);
    let (mut deployments, mut replicas) = (0, 0);
    for d in live {
        deployments += 1;
        replicas += i64::from(d.replica_count());
    }
    gauge(e, "deployments", "Inference deployments", deployments)?;
    gauge(e, "serving_replicas", "Serving replicas placed", replicas)?;
    Ok(())
}
