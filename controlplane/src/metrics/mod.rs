//! What a member measures, served in Prometheus's text format on `/metrics`
//! (`metrics_listen`).
//!
//! - The instruments here are updated where things happen: requests by API, method and
//!   code; each stage of a write (the write's timeline); the storage's flushes; snapshot
//!   transfers; leader changes. One set per process (a member is a process), so the
//!   store and the Raft network record without being handed a handle.
//! - What *is* is read at scrape time by collectors, so a gauge is never stale and costs
//!   nothing between scrapes: `collect` (the process) here, a member's (Raft's own
//!   metrics, the applied state) in `api::metrics`. This module uses no other layer.
//! - [`http`]: the `/metrics` endpoint, and the layers that count the gRPC and MLflow
//!   requests.

mod collect;
pub mod http;
mod marks;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use collect::{counter, gauge, rss_bytes};
pub use marks::{marks, Marks};

/// A stage of a write, as the timeline names it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Stage {
    /// The receiving member reads the command into the domain's terms, checks and
    /// stamps it (before it is proposed or forwarded).
    Edge,
    /// A follower forwards the write to the leader and waits for its answer.
    Forward,
    /// The command waits in the leader's proposer queue for its batch.
    Queue,
    /// The batch's Raft write, as the proposer sees it: appended, replicated,
    /// committed, applied and answered (the stages below, some side by side).
    Raft,
    /// From the proposal to Raft appending the batch to the leader's log.
    ToLog,
    /// Appending entries to this member's log until they are on disk (the leader's own
    /// flush, or a follower's).
    LogFlush,
    /// From the leader's append to sending the entries to a follower.
    ToFollower,
    /// From sending entries to a follower to its answer: the network, any wait behind
    /// earlier appends in the replication pipe, the follower's append and flush.
    Replicate,
    /// On a follower: from receiving entries to answering (its Raft's append, and the
    /// flush of these and every earlier append); the rest of `replicate` is the network
    /// and the gRPC stacks.
    FollowerAppend,
    /// From this member's append to applying the entry: its flush, replication and
    /// commit, and the hand-over to the state machine.
    ToApply,
    /// Applying a committed batch to the state and the event store.
    Apply,
    /// From the end of the apply to the proposer holding the answer.
    ToReply,
    /// The whole write, as the receiving member sees it.
    Total,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Edge => "edge",
            Stage::Forward => "forward",
            Stage::Queue => "queue",
            Stage::Raft => "raft",
            Stage::ToLog => "to_log",
            Stage::LogFlush => "log_flush",
            Stage::ToFollower => "to_follower",
            Stage::Replicate => "replicate",
            Stage::FollowerAppend => "follower_append",
            Stage::ToApply => "to_apply",
            Stage::Apply => "apply",
            Stage::ToReply => "to_reply",
            Stage::Total => "total",
        }
    }
}

impl EncodeLabelValue for Stage {
    fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(e, self.name())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: Stage,
}

/// A request: which API (`grpc`, `mlflow`), which method or route, and its code (a
/// gRPC code's name, or an HTTP status).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: &'static str,
    pub method: String,
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub api: &'static str,
    pub method: String,
}

/// The instruments of this process.
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<MethodLabels, Histogram>,
    pub write_stage_seconds: Family<StageLabels, Histogram>,
    pub fsync_seconds: Histogram,
    pub flushed_bytes: Counter,
    pub snapshots_sent: Counter,
    pub snapshots_installed: Counter,
    pub leader_changes: Counter,
}

/// 10 µs to ~21 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 22))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::default(),
    request_seconds: Family::new_with_constructor(latency),
    write_stage_seconds: Family::new_with_constructor(latency),
    fsync_seconds: latency(),
    flushed_bytes: Counter::default(),
    snapshots_sent: Counter::default(),
    snapshots_installed: Counter::default(),
    leader_changes: Counter::default(),
});

/// This process's instruments.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Record that `stage` of a write took `d`.
pub fn stage(stage: Stage, d: Duration) {
    METRICS
        .write_stage_seconds
        .get_or_create(&StageLabels { stage })
        .observe(d.as_secs_f64());
}

/// Record that `stage` of a write has taken the time since `start`.
pub fn stage_since(s: Stage, start: Instant) {
    stage(s, start.elapsed());
}

/// Record a request and how long it took.
pub fn request(api: &'static str, method: &str, code: String, d: Duration) {
    let m = get();
    m.requests
        .get_or_create(&RequestLabels {
            api,
            method: method.to_string(),
            code,
        })
        .inc();
    m.request_seconds
        .get_or_create(&MethodLabels {
            api,
            method: method.to_string(),
        })
        .observe(d.as_secs_f64());
}

/// A registry of this process's instruments and of `collectors` (a member's figures,
/// an embedded agent's), read at scrape time.
pub fn registry(collectors: Vec<Box<dyn prometheus_client::collector::Collector>>) -> Registry {
    let m = get();
    let mut r = Registry::with_prefix("cairn");
    r.register(
        "api_requests",
        "Requests answered, by API, method and code",
        m.requests.clone(),
    );
    r.register(
        "api_request_duration_seconds",
        "Time to answer a request (for a stream: to its first answer)",
        m.request_seconds.clone(),
    );
    r.register(
        "write_stage_duration_seconds",
        "Each stage of a write: edge, forward, queue, raft (to_log, log_flush, to_follower, replicate, follower_append, to_apply, apply, to_reply), total",
        m.write_stage_seconds.clone(),
    );
    r.register(
        "storage_fsync_duration_seconds",
        "One flush of the storage to disk (sled's buffers, then fdatasync)",
        m.fsync_seconds.clone(),
    );
    r.register(
        "storage_flushed_bytes",
        "Bytes the storage wrote to disk in its flushes",
        m.flushed_bytes.clone(),
    );
    r.register(
        "raft_snapshots_sent",
        "Snapshots this member sent to a follower",
        m.snapshots_sent.clone(),
    );
    r.register(
        "raft_snapshots_installed",
        "Snapshots this member installed from a leader",
        m.snapshots_installed.clone(),
    );
    r.register(
        "raft_leader_changes",
        "Times this member saw the leader change",
        m.leader_changes.clone(),
    );
    r.register_collector(Box::new(collect::Process));
    for c in collectors {
        r.register_collector(c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_stage_and_request_with_prometheus_units() {
        stage(Stage::LogFlush, Duration::from_micros(700));
        stage(Stage::LogFlush, Duration::from_micros(900));
        request("grpc", "Submit", "Ok".into(), Duration::from_millis(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry(Vec::new()))
            .expect("encode");
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_string()
        };
        let count = line("cairn_write_stage_duration_seconds_count{stage=\"log_flush\"}");
        let n: u64 = count
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("count");
        assert!(n >= 2, "{count}");
        let sum = line("cairn_write_stage_duration_seconds_sum{stage=\"log_flush\"}");
        let s: f64 = sum
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("sum");
        assert!(s >= 0.0015, "{sum}");
        line("cairn_api_requests_total{api=\"grpc\",method=\"Submit\",code=\"Ok\"}");
        line("cairn_decode_failures_total ");
        line("cairn_tls_handshake_failures_total ");
    }
}
