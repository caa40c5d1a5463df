//! The spec of a model deployment (`apiVersion: cairn.dev/v1`, `kind: ModelDeployment`):
//! the model it serves (a version, or whatever an alias points at), its replicas and
//! their model-server template, the readiness probe, the rollout strategy, canary steps
//! and autoscaling; and its checks, with field paths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::doc::{self, Document, Metadata, Spec};
use crate::model::values as model_values;
use crate::node;

/// A deployment document as users write it.
pub type DeploymentDocument = Document<DeploymentSpec>;

/// Most replicas of one deployment.
pub const MAX_REPLICAS: i64 = 64;
/// Most canary steps.
pub const MAX_STEPS: usize = 16;

/// Parse and check a submitted deployment document (JSON); a problem names the field.
pub fn parse(json: &str) -> Result<DeploymentDocument, Vec<String>> {
    doc::parse(json)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub model: ModelRef,
    pub replicas: i64,
    pub template: ServingTemplate,
    #[serde(default)]
    pub readiness_probe: Probe,
    #[serde(default)]
    pub strategy: Strategy,
    /// Traffic steps to the new revision before it takes everything (none: a rolling
    /// update that moves traffic as new replicas become ready).
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Replicas that follow the load (`replicas` is then the count to start with).
    #[serde(default)]
    pub autoscale: Option<Autoscale>,
}

/// The model served: a fixed version, or the version an alias points at (a deployment
/// that follows an alias rolls out when the alias moves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelRef {
    pub name: String,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub alias: Option<String>,
}

/// How one serving replica runs. The agent adds to its environment: `CAIRN_PORT` (the
/// port to listen on), `CAIRN_MODEL_NAME`, `CAIRN_MODEL_VERSION`, `CAIRN_MODEL_URI`,
/// `CAIRN_MODEL_PATH` and `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServingTemplate {
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub gpus: i64,
    /// CPU request in millicores.
    #[serde(default)]
    pub cpu_millis: i64,
    #[serde(default)]
    pub memory_mib: i64,
}

/// How the agent of a replica's node decides that it is ready: an HTTP GET answered
/// 2xx (`httpGet`), or a TCP connection accepted (`tcpSocket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub initial_delay_seconds: i64,
    #[serde(default = "one")]
    pub period_seconds: i64,
    /// Failed probes in a row after which a ready replica is not ready.
    #[serde(default = "three")]
    pub failure_threshold: i64,
    /// How long a replica may take to become ready the first time (a large model loads
    /// slowly) before it counts as failed and is restarted.
    #[serde(default = "ten_minutes")]
    pub startup_seconds: i64,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            http_get: None,
            tcp_socket: None,
            initial_delay_seconds: 0,
            period_seconds: one(),
            failure_threshold: three(),
            startup_seconds: ten_minutes(),
        }
    }
}

fn one() -> i64 {
    1
}

fn three() -> i64 {
    3
}

fn ten_minutes() -> i64 {
    600
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGet {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocket {}

/// How many replicas a rollout may add above the desired count, and how many of the
/// desired may be unready, while it replaces one revision with another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Strategy {
    #[serde(default = "one")]
    pub max_surge: i64,
    #[serde(default)]
    pub max_unavailable: i64,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            max_surge: one(),
            max_unavailable: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Canary {
    pub steps: Vec<CanaryStep>,
}

/// Send `weight` percent of the traffic to the new revision, then wait `pause` (`30s`,
/// `5m`, `1h`) before the next step; without a pause, wait for `cairn deploy promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanaryStep {
    pub weight: i64,
    #[serde(default)]
    pub pause: Option<String>,
}

impl CanaryStep {
    /// The pause in milliseconds (None: until promoted).
    pub fn pause_ms(&self) -> Option<i64> {
        self.pause
            .as_deref()
            .and_then(|p| parse_duration_ms(p).ok())
    }
}

/// Replicas between `minReplicas` and `maxReplicas`, so that each carries about
/// `targetInFlight` requests at once, as the routers measure it. A higher count is
/// taken at once; a lower one only when it was enough for all of the last
/// `scaleDownDelay` (default `60s`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Autoscale {
    pub min_replicas: i64,
    pub max_replicas: i64,
    pub target_in_flight: i64,
    #[serde(default)]
    pub scale_down_delay: Option<String>,
}

/// The scale-down delay when the spec names none.
pub const SCALE_DOWN_DELAY_MS: i64 = 60_000;

impl Autoscale {
    /// The scale-down delay in milliseconds.
    pub fn scale_down_delay_ms(&self) -> i64 {
        self.scale_down_delay
            .as_deref()
            .and_then(|d| parse_duration_ms(d).ok())
            .unwrap_or(SCALE_DOWN_DELAY_MS)
    }

    /// `replicas` brought within the bounds.
    pub fn clamp(&self, replicas: u32) -> u32 {
        replicas.clamp(self.min_replicas as u32, self.max_replicas as u32)
    }
}

/// `<digits><s|m|h>` in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let unit = s.chars().last().ok_or("empty duration")?;
    let scale = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        _ => return Err(format!("{s:?}: a number with s, m or h (e.g. 30s, 5m)")),
    };
    let n: i64 = s[..s.len() - 1]
        .parse()
        .map_err(|_| format!("{s:?}: a number with s, m or h (e.g. 30s, 5m)"))?;
    if !(0..=7 * 24 * 3600).contains(&n) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(n * scale)
}

impl Spec for DeploymentSpec {
    const KIND: &'static str = "ModelDeployment";

    fn problems(&self, _: &Metadata) -> Vec<String> {
        let mut p = Vec::new();
        let m = &self.model;
        model_values::name_problems("spec.model.name", &m.name, &mut p);
        match (m.version, &m.alias) {
            (Some(_), Some(_)) | (None, None) => {
                p.push("spec.model: exactly one of version and alias".into())
            }
            (Some(v), None) if v < 1 => p.push("spec.model.version: must be >= 1".into()),
            (None, Some(a)) if a.is_empty() || a.len() > model_values::MAX_ALIAS => {
                p.push(format!(
                    "spec.model.alias: must be 1-{} bytes",
                    model_values::MAX_ALIAS
                ))
            }
            _ => {}
        }
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            p.push(format!("spec.replicas: must be 1-{MAX_REPLICAS}"));
        }
        let t = &self.template;
        if t.command.is_empty() {
            p.push("spec.template.command: the model server to run".into());
        }
        for k in t.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                p.push(format!("spec.template.env[{k:?}]: not a variable name"));
            } else if k.starts_with("CAIRN_") || k == "CUDA_VISIBLE_DEVICES" {
                p.push(format!("spec.template.env[{k:?}]: set by the agent"));
            }
        }
        if !(0..=node::MAX_GPUS as i64).contains(&t.gpus) {
            p.push(format!("spec.template.gpus: must be 0-{}", node::MAX_GPUS));
        }
        if t.cpu_millis < 0 {
            p.push("spec.template.cpuMillis: must be >= 0".into());
        }
        if t.memory_mib < 0 {
            p.push("spec.template.memoryMib: must be >= 0".into());
        }
        let r = &self.readiness_probe;
        match (&r.http_get, &r.tcp_socket) {
            (Some(_), Some(_)) => {
                p.push("spec.readinessProbe: httpGet or tcpSocket, not both".into())
            }
            (Some(h), None) if !h.path.starts_with('/') || h.path.len() > 1024 => {
                p.push("spec.readinessProbe.httpGet.path: a path starting with /".into())
            }
            _ => {}
        }
        for (field, v, lo, hi) in [
            ("initialDelaySeconds", r.initial_delay_seconds, 0, 3600),
            ("periodSeconds", r.period_seconds, 1, 300),
            ("failureThreshold", r.failure_threshold, 1, 100),
            ("startupSeconds", r.startup_seconds, 1, 24 * 3600),
        ] {
            if !(lo..=hi).contains(&v) {
                p.push(format!("spec.readinessProbe.{field}: must be {lo}-{hi}"));
            }
        }
        let s = &self.strategy;
        if !(0..=MAX_REPLICAS).contains(&s.max_surge) {
            p.push(format!("spec.strategy.maxSurge: must be 0-{MAX_REPLICAS}"));
        }
        if !(0..=MAX_REPLICAS).contains(&s.max_unavailable) {
            p.push(format!(
                "spec.strategy.maxUnavailable: must be 0-{MAX_REPLICAS}"
            ));
        }
        if s.max_surge == 0 && s.max_unavailable == 0 {
            p.push("spec.strategy: maxSurge or maxUnavailable must be above 0".into());
        }
        if let Some(c) = &self.canary {
            if c.steps.is_empty() || c.steps.len() > MAX_STEPS {
                p.push(format!("spec.canary.steps: 1-{MAX_STEPS} steps"));
            }
            let mut last = 0;
            for (i, step) in c.steps.iter().enumerate() {
                let at = format!("spec.canary.steps[{i}]");
                if !(1..=99).contains(&step.weight) {
                    p.push(format!("{at}.weight: must be 1-99"));
                } else if step.weight <= last {
                    p.push(format!("{at}.weight: must grow from step to step"));
                }
                last = step.weight;
                if let Some(pause) = &step.pause {
                    if let Err(why) = parse_duration_ms(pause) {
                        p.push(format!("{at}.pause: {why}"));
                    }
                }
            }
        }
        if let Some(a) = &self.autoscale {
            if !(1..=MAX_REPLICAS).contains(&a.min_replicas) {
                p.push(format!(
                    "spec.autoscale.minReplicas: must be 1-{MAX_REPLICAS}"
                ));
            } else if !(a.min_replicas..=MAX_REPLICAS).contains(&a.max_replicas) {
                p.push(format!(
                    "spec.autoscale.maxReplicas: must be minReplicas-{MAX_REPLICAS}"
                ));
            } else if !(a.min_replicas..=a.max_replicas).contains(&self.replicas) {
                p.push(
                    "spec.replicas: must be within spec.autoscale's minReplicas-maxReplicas".into(),
                );
            }
            if !(1..=10_000).contains(&a.target_in_flight) {
                p.push("spec.autoscale.targetInFlight: must be 1-10000".into());
            }
            if let Some(delay) = &a.scale_down_delay {
                if let Err(why) = parse_duration_ms(delay) {
                    p.push(format!("spec.autoscale.scaleDownDelay: {why}"));
                }
            }
        }
        p
    }
}

impl DeploymentSpec {
    /// What a revision runs: a new revision is made when this changes.
    pub fn revision_template(&self) -> (&ServingTemplate, &Probe) {
        (&self.template, &self.readiness_probe)
    }
}
