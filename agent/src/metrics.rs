//! What an agent measures, served in Prometheus's text format on `/metrics`
//! (`--metrics-listen`): replicas running, probes, GPU health and the errors reading it
//! (NVML's), heartbeats, port-lease violations. One set per process.

use std::convert::Infallible;
use std::sync::LazyLock;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// `job` or `serving`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` or `failed`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    pub health: &'static str,
}

/// The agent's instruments.
#[derive(Default)]
pub struct Metrics {
    pub replicas: Family<Kind, Gauge>,
    pub probes: Family<Outcome, Counter>,
    pub heartbeats: Family<Outcome, Counter>,
    pub gpus: Family<Health, Gauge>,
    pub gpu_read_errors: Counter,
    pub port_violations: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

pub fn get() -> &'static Metrics {
    &METRICS
}

/// `ok` or `failed`.
pub fn outcome(ok: bool) -> Outcome {
    Outcome {
        result: if ok { "ok" } else { "failed" },
    }
}

/// The agent's instruments, as a collector: a member's registry takes it too, so
/// `cairn-server dev` reports its embedded agent on its own `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Figures;

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = get();
        let mut one = |name: &str, help: &str, metric: &dyn EncodeMetric| {
            metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        one(
            "agent_replicas",
            "Replicas running here, by kind",
            &m.replicas,
        )?;
        one(
            "agent_probes",
            "Readiness probes of model servers, by result",
            &m.probes,
        )?;
        one(
            "agent_heartbeats",
            "Heartbeats to the leader, by result",
            &m.heartbeats,
        )?;
        one("agent_gpus", "GPUs here by health, as last judged", &m.gpus)?;
        one(
            "agent_gpu_read_errors",
            "Failed reads of GPU health (NVML errors)",
            &m.gpu_read_errors,
        )?;
        one(
            "agent_port_violations",
            "Processes found holding a port leased to someone else",
            &m.port_violations,
        )
    }
}

/// A registry of the agent's instruments, named `cairn_agent_*`.
pub fn registry() -> Registry {
    let mut r = Registry::with_prefix("cairn");
    r.register_collector(Box::new(Figures));
    r
}

/// The registry in Prometheus's text format.
pub fn text(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        text = format!("# encoding the metrics failed: {e}\n");
    }
    text
}

/// Serve `/metrics` on `listener` (every path answers it), until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let registry = std::sync::Arc::new(registry());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        let service = service_fn(move |_req| {
            let body = text(&registry);
            async move {
                let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok::<_, Infallible>(resp)
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_figures_are_named_cairn_agent() {
        get().probes.get_or_create(&outcome(false)).inc();
        get()
            .gpus
            .get_or_create(&Health { health: "healthy" })
            .set(8);
        let t = text(&registry());
        assert!(
            t.contains("cairn_agent_probes_total{result=\"failed\"} 1"),
            "{t}"
        );
        assert!(t.contains("cairn_agent_gpus{health=\"healthy\"} 8"), "{t}");
        assert!(t.contains("cairn_agent_gpu_read_errors_total 0"), "{t}");
    }
}
