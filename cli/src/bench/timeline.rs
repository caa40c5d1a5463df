//! A write's timeline from the members' own metrics: `/metrics` scraped before and
//! after a round, and each stage's histogram (`cairn_write_stage_duration_seconds`)
//! reduced to what the round added — how many times the stage ran, its mean and its
//! median — on the leader and on the followers.

use std::collections::BTreeMap;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

const STAGE: &str = "cairn_write_stage_duration_seconds";

/// One stage's histogram on one member: the sum, the count and the cumulative buckets.
#[derive(Debug, Clone, Default)]
struct Histogram {
    sum: f64,
    count: f64,
    /// Upper bound → cumulative count.
    buckets: Vec<(f64, f64)>,
}

/// What one scrape of one member says.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    leader: bool,
    stages: BTreeMap<String, Histogram>,
}

/// A stage of a write in one round, on the leader or (averaged) on the followers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFigure {
    pub stage: String,
    /// `leader` or `followers`.
    pub on: String,
    /// Times it ran per write the leader answered (a batch's stages run once for
    /// many writes; `replicate` once per follower; per member for followers).
    pub per_write: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
}

/// Medians over rounds of each stage's figures.
pub fn medians(rounds: &[&[StageFigure]]) -> Vec<StageFigure> {
    let mut by: BTreeMap<(String, String), Vec<&StageFigure>> = BTreeMap::new();
    for f in rounds.iter().flat_map(|r| r.iter()) {
        by.entry((f.on.clone(), f.stage.clone()))
            .or_default()
            .push(f);
    }
    let first: Vec<(String, String)> = rounds
        .iter()
        .flat_map(|r| r.iter().map(|f| (f.on.clone(), f.stage.clone())))
        .collect();
    let mut out = Vec::new();
    for key in first {
        let Some(fs) = by.remove(&key) else { continue };
        let m = |g: fn(&StageFigure) -> f64| super::median(fs.iter().map(|f| g(f)).collect());
        out.push(StageFigure {
            stage: key.1,
            on: key.0,
            per_write: m(|f| f.per_write),
            mean_ms: m(|f| f.mean_ms),
            p50_ms: m(|f| f.p50_ms),
        });
    }
    out
}

/// Scrape each of `urls`.
pub async fn scrape_all(urls: &[String]) -> anyhow::Result<Vec<Scrape>> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let uri: hyper::Uri = url.parse().with_context(|| format!("--metrics {url}"))?;
        let resp = client
            .get(uri)
            .await
            .with_context(|| format!("scraping {url}"))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading {url}"))?
            .to_bytes();
        out.push(parse(&String::from_utf8_lossy(&body)));
    }
    Ok(out)
}

/// The stage histograms and leadership in a member's metrics text.
fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name_labels == "cairn_raft_is_leader" {
            s.leader = value == 1.0;
            continue;
        }
        let Some(rest) = name_labels.strip_prefix(STAGE) else {
            continue;
        };
        let (kind, labels) = rest.split_once('{').unwrap_or((rest, ""));
        let label = |key: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let Some(stage) = label("stage") else {
            continue;
        };
        let h = s.stages.entry(stage).or_default();
        match kind {
            "_sum" => h.sum = value,
            "_count" => h.count = value,
            "_bucket" => {
                let le =
                    label("le").map_or(f64::INFINITY, |le| le.parse().unwrap_or(f64::INFINITY));
                h.buckets.push((le, value));
            }
            _ => {}
        }
    }
    s
}

/// What the round added to each stage, from scrapes `before` and `after` (one of each
/// per member, in the same order).
pub fn figures(before: &[Scrape], after: &[Scrape]) -> Vec<StageFigure> {
    let mut by: BTreeMap<(String, &str), Vec<Histogram>> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        let on = if a.leader { "leader" } else { "followers" };
        for (stage, ha) in &a.stages {
            let hb = b.stages.get(stage).cloned().unwrap_or_default();
            let d = delta(&hb, ha);
            if d.count > 0.0 {
                by.entry((stage.clone(), on)).or_default().push(d);
            }
        }
    }
    let order = |s: &str| {
        [
            "edge",
            "forward",
            "queue",
            "raft",
            "to_log",
            "log_flush",
            "to_follower",
            "replicate",
            "follower_append",
            "to_apply",
            "apply",
            "to_reply",
            "total",
        ]
        .iter()
        .position(|x| *x == s)
        .unwrap_or(usize::MAX)
    };
    // Writes as the leader answered them.
    let writes = by
        .get(&("total".to_string(), "leader"))
        .map_or(1.0, |hs| hs.iter().map(|h| h.count).sum::<f64>())
        .max(1.0);
    let mut out: Vec<StageFigure> = by
        .into_iter()
        .map(|((stage, on), hs)| {
            let members = hs.len() as f64;
            let merged = hs
                .iter()
                .fold(Histogram::default(), |acc, h| merge(&acc, h));
            StageFigure {
                stage,
                on: on.to_string(),
                per_write: merged.count / members / writes,
                mean_ms: merged.sum / merged.count * 1000.0,
                p50_ms: quantile(&merged, 0.5) * 1000.0,
            }
        })
        .collect();
    out.sort_by_key(|f| (f.on != "leader", order(&f.stage)));
    out
}

fn delta(before: &Histogram, after: &Histogram) -> Histogram {
    let earlier = |le: f64| {
        before
            .buckets
            .iter()
            .find(|(b, _)| *b == le)
            .map_or(0.0, |(_, c)| *c)
    };
    Histogram {
        sum: after.sum - before.sum,
        count: after.count - before.count,
        buckets: after
            .buckets
            .iter()
            .map(|(le, c)| (*le, c - earlier(*le)))
            .collect(),
    }
}

fn merge(a: &Histogram, b: &Histogram) -> Histogram {
    if a.buckets.is_empty() {
        return b.clone();
    }
    Histogram {
        sum: a.sum + b.sum,
        count: a.count + b.count,
        buckets: a
            .buckets
            .iter()
            .zip(&b.buckets)
            .map(|((le, x), (_, y))| (*le, x + y))
            .collect(),
    }
}

/// The `q` quantile, interpolated linearly within its bucket (as Prometheus's
/// `histogram_quantile` does).
fn quantile(h: &Histogram, q: f64) -> f64 {
    let rank = q * h.count;
    let mut lower = (0.0, 0.0);
    for &(le, c) in &h.buckets {
        if c >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let within = (c - lower.1).max(f64::MIN_POSITIVE);
            return lower.0 + (le - lower.0) * (rank - lower.1) / within;
        }
        lower = (le, c);
    }
    lower.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(leader: bool, count: u64, sum: f64, under_1ms: u64) -> String {
        format!(
            "# TYPE x\ncairn_raft_is_leader {}\n\
             {STAGE}_sum{{stage=\"raft\"}} {sum}\n\
             {STAGE}_count{{stage=\"raft\"}} {count}\n\
             {STAGE}_bucket{{le=\"0.0005\",stage=\"raft\"}} 0\n\
             {STAGE}_bucket{{le=\"0.001\",stage=\"raft\"}} {under_1ms}\n\
             {STAGE}_bucket{{le=\"0.002\",stage=\"raft\"}} {count}\n\
             {STAGE}_bucket{{le=\"+Inf\",stage=\"raft\"}} {count}\n",
            u8::from(leader)
        )
    }

    #[test]
    fn a_round_is_what_it_added_to_each_stage() {
        let before = [parse(&text(true, 10, 0.010, 10))];
        // 100 more, 50 of them under 1 ms and 50 between 1 and 2 ms, 0.12 s in all.
        let after = [parse(&text(true, 110, 0.130, 60))];
        let f = figures(&before, &after);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].stage.as_str(), f[0].on.as_str()), ("raft", "leader"));
        // No `total` stage here: per write is per one.
        assert_eq!(f[0].per_write, 100.0);
        assert!((f[0].mean_ms - 1.2).abs() < 1e-9, "{f:?}");
        // The 50th of 100 is the last one under 1 ms.
        assert!((f[0].p50_ms - 1.0).abs() < 1e-9, "{f:?}");
    }
}
