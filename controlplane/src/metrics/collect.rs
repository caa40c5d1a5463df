//! What every process reports at scrape time (memory, refused handshakes and messages),
//! and the helpers a collector writes its figures with. A member's own collector (Raft,
//! its storage, the applied state) is `api::metrics`, which may read the application
//! layer; this module is used by every layer and uses none.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// What every process reports: memory, and what its edge refused before any handler.
#[derive(Debug)]
pub struct Process;

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        counter(
            &mut e,
            "decode_failures",
            "Messages received that did not decode",
            cairn_proto::codec::DECODE_FAILURES.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "tls_handshake_failures",
            "TLS handshakes refused or timed out (wrong CA, expired, plaintext, half-open)",
            cairn_proto::tls::server::HANDSHAKE_FAILURES.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory of this process",
            rss_bytes() as i64,
        )
    }
}

/// Resident memory of this process, from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One gauge, as a collector writes it.
pub fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One counter, as a collector writes it.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}
