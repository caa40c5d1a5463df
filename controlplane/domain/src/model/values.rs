//! The model registry's value types and their rules: stages, statuses, what a run wrote,
//! where a version came from; limits on tags, aliases and URIs.

use std::collections::{BTreeMap, BTreeSet};

use crate::validate;

/// A version's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Stage {
    #[default]
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// A stage by name, in any case (MLflow's clients send `production` too).
    pub fn parse(s: &str) -> Option<Stage> {
        Self::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

/// A version's registration status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionStatus {
    #[default]
    Ready,
    Pending,
    Failed,
}

/// Metrics and parameters a run wrote. Metric values are decimal numbers, kept as
/// written so every member records the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOutputs {
    pub metrics: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
}

impl RunOutputs {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.params.is_empty()
    }

    /// `self` with `other`'s entries added where `self` has none.
    pub fn or(mut self, other: &RunOutputs) -> RunOutputs {
        for (k, v) in &other.metrics {
            self.metrics.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.params {
            self.params.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }
}

/// Where a version came from, when a training job produced it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    pub job: String,
    /// The nodes and GPU UUIDs its replicas ran on.
    pub nodes: Vec<String>,
    pub gpus: Vec<String>,
    /// Its code source: `git <repository>[@<ref>]` or `dir <path>`; empty when none.
    pub code: String,
}

/// Longest tag key, in bytes.
pub const MAX_TAG_KEY: usize = 250;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE: usize = 5000;
/// Longest alias, in bytes.
pub const MAX_ALIAS: usize = 255;
/// Most actors one protection names.
pub const MAX_ALLOWED: usize = 64;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 64 * 1024;
/// Longest source URI, in bytes.
pub const MAX_URI: usize = 4096;
/// Most tags on one model or version.
pub const MAX_TAGS: usize = 128;
/// Most metrics and parameters one run records.
pub const MAX_OUTPUTS: usize = 1000;
/// Longest model name, in bytes.
pub const MAX_NAME: usize = 256;

/// A model name: 1-256 bytes of letters, digits and `-`, `_`, `.` (MLflow refuses `/` and
/// `:` and allows the rest; these are the names that are safe in a path, a URI and the
/// CLI's `model/NAME:VERSION`).
pub fn name_problems(field: &str, name: &str, p: &mut Vec<String>) {
    if name.is_empty() || name.len() > MAX_NAME {
        p.push(format!("{field}: must be 1-{MAX_NAME} bytes"));
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        p.push(format!(
            "{field}: {name:?} may only hold letters, digits, '-', '_', '.'"
        ));
    } else if name.starts_with('.') || name.contains("..") {
        p.push(format!(
            "{field}: {name:?} may not start with '.' or hold '..'"
        ));
    }
}

/// Tags: at most [`MAX_TAGS`], keys 1-250 bytes, values up to 5,000 (MLflow's documented limits).
pub fn tags_problems(field: &str, tags: &BTreeMap<String, String>, p: &mut Vec<String>) {
    if tags.len() > MAX_TAGS {
        p.push(format!("{field}: {} tags, at most {MAX_TAGS}", tags.len()));
    }
    for (k, v) in tags {
        tag_problems(&format!("{field}[{k:?}]"), k, Some(v), p);
    }
}

/// One tag (or only its key).
pub fn tag_problems(field: &str, key: &str, value: Option<&str>, p: &mut Vec<String>) {
    if key.is_empty() || key.len() > MAX_TAG_KEY {
        p.push(format!("{field}: the key must be 1-{MAX_TAG_KEY} bytes"));
    } else if key.chars().any(char::is_control) {
        p.push(format!("{field}: the key has control characters"));
    }
    if value.is_some_and(|v| v.len() > MAX_TAG_VALUE) {
        p.push(format!(
            "{field}: the value is longer than {MAX_TAG_VALUE} bytes"
        ));
    }
}

/// An alias: 1-256 bytes of letters, digits, `_` and `-`; `latest` (any case) and
/// `v<digits>` are reserved (MLflow resolves them itself).
/// The actors a protection names: 1-64 of them, each `kind/name` (as events record
/// actors: `user/alice`, `mlflow/anonymous`) of at most 253 bytes.
pub fn actors_problems(field: &str, actors: &BTreeSet<String>, p: &mut Vec<String>) {
    if actors.len() > MAX_ALLOWED {
        p.push(format!("{field}: more than {MAX_ALLOWED} actors"));
    }
    for a in actors {
        let ok = a.len() <= 253
            && matches!(a.split_once('/'), Some((k, n)) if !k.is_empty() && !n.is_empty())
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./@:".contains(c));
        if !ok {
            p.push(format!(
                "{field}: {a:?} is not an actor (`kind/name`, such as user/alice)"
            ));
        }
    }
}

pub fn alias_problems(field: &str, alias: &str, p: &mut Vec<String>) {
    if alias.is_empty() || alias.len() > MAX_ALIAS {
        p.push(format!("{field}: must be 1-{MAX_ALIAS} bytes"));
    } else if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        p.push(format!(
            "{field}: {alias:?} may only hold letters, digits, '_' and '-'"
        ));
    } else if alias.eq_ignore_ascii_case("latest")
        || (alias.len() > 1
            && alias.starts_with(['v', 'V'])
            && alias[1..].chars().all(|c| c.is_ascii_digit()))
    {
        p.push(format!("{field}: {alias:?} is reserved"));
    }
}

/// A free-text description.
pub fn description_problems(field: &str, d: &str, p: &mut Vec<String>) {
    if d.len() > MAX_DESCRIPTION {
        p.push(format!("{field}: longer than {MAX_DESCRIPTION} bytes"));
    }
}

/// A source URI or path: non-empty, at most [`MAX_URI`] bytes, no control characters.
pub fn source_problems(field: &str, s: &str, p: &mut Vec<String>) {
    if s.trim().is_empty() {
        p.push(format!("{field}: must not be empty"));
    } else if s.len() > MAX_URI {
        p.push(format!("{field}: longer than {MAX_URI} bytes"));
    } else if s.chars().any(char::is_control) {
        p.push(format!("{field}: has control characters"));
    }
}

/// What a run wrote: bounded, names like tag keys, metrics finite decimal numbers.
pub fn outputs_problems(field: &str, o: &RunOutputs, p: &mut Vec<String>) {
    if o.metrics.len() + o.params.len() > MAX_OUTPUTS {
        p.push(format!(
            "{field}: more than {MAX_OUTPUTS} metrics and parameters"
        ));
    }
    for (k, v) in &o.metrics {
        tag_problems(&format!("{field}.metrics[{k:?}]"), k, Some(v), p);
        if !v.parse::<f64>().is_ok_and(f64::is_finite) {
            p.push(format!(
                "{field}.metrics[{k:?}]: {v:?} is not a finite number"
            ));
        }
    }
    for (k, v) in &o.params {
        tag_problems(&format!("{field}.params[{k:?}]"), k, Some(v), p);
    }
}

/// Where a version's artifacts are stored: its source when that is a URI, else the
/// path as a `file://` URI on `node` (where the run left it).
pub fn storage_location(source: &str, node: &str) -> String {
    if source.contains("://") || node.is_empty() {
        source.to_string()
    } else {
        format!(
            "file://{node}{}",
            if source.starts_with('/') { "" } else { "/" }
        )
        .to_string()
            + source
    }
}

/// A job name, as a version's `run_id`.
pub fn run_id_problems(field: &str, run_id: &str, p: &mut Vec<String>) {
    if !run_id.is_empty() {
        validate::short_text_problems(field, run_id, p);
    }
}
