//! `cairn bench serve`: HTTP load on model servers. `--clients` clients send `POST
//! /predict` back to back, each on its own keep-alive connection, for `--duration`,
//! against each `--target` in turn; the table gives requests per second, latency
//! percentiles, failures, and which revision answered (the router's `x-cairn-revision`
//! header; `direct` where there is none). With `--rounds` above 1 the targets alternate
//! and the figures are the medians of their rounds, so drift on a shared machine falls on
//! all of them alike; every row after the first also shows its p50 and p99 minus the
//! first target's (the latency a router adds, when the first target is a replica and the
//! second the endpoint in front of it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::output::{self, table};

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// `host:port` of a model server or a deployment's endpoint; repeat to compare.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// How long each round of each target lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The request body.
    #[arg(long, default_value = r#"{"inputs": [[1, 2, 3]]}"#)]
    pub body: String,
    #[arg(long, default_value = "/predict")]
    pub path: String,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: output::Format,
}

/// One round against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub target: String,
    pub requests: u64,
    pub failed: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Answers by the revision that gave them (`direct`: no router header).
    pub by_revision: BTreeMap<String, u64>,
    /// The first few failures, as the clients saw them.
    pub errors: Vec<String>,
}

/// One target over all its rounds.
#[derive(Debug, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub rounds: usize,
    pub requests: u64,
    pub failed: u64,
    pub requests_per_sec_median: f64,
    pub p50_us_median: u64,
    pub p99_us_median: u64,
    pub p999_us_median: u64,
    /// p50 and p99 minus the first target's (none for the first).
    pub added_p50_us: Option<i64>,
    pub added_p99_us: Option<i64>,
    pub by_revision: BTreeMap<String, u64>,
    pub errors: Vec<String>,
    pub each_round: Vec<Round>,
}

/// What the clients of one round share.
struct Tally {
    hist: Histogram<u64>,
    failed: u64,
    by_revision: BTreeMap<String, u64>,
    errors: Vec<String>,
}

const ERRORS_KEPT: usize = 5;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.rounds == 0 || args.duration.is_zero() {
        bail!("--clients, --rounds and --duration must be > 0");
    }
    if !args.path.starts_with('/') {
        bail!("--path must start with '/': {}", args.path);
    }
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); args.targets.len()];
    for _ in 0..args.rounds {
        for (i, target) in args.targets.iter().enumerate() {
            rounds[i].push(round(&args, target).await?);
        }
    }
    let summaries = summarise(&args.targets, rounds);
    output::emit(args.output, &summaries, || {
        let mut t = table(&[
            "TARGET",
            "REQUESTS/S",
            "P50 µs",
            "P99 µs",
            "P99.9 µs",
            "ADDED P50/P99 µs",
            "FAILED",
            "BY REVISION",
        ]);
        for s in &summaries {
            let added = match (s.added_p50_us, s.added_p99_us) {
                (Some(a), Some(b)) => format!("{a:+} / {b:+}"),
                _ => "-".into(),
            };
            let by: Vec<String> = s
                .by_revision
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            t.add_row(vec![
                s.target.clone(),
                format!("{:.0}", s.requests_per_sec_median),
                s.p50_us_median.to_string(),
                s.p99_us_median.to_string(),
                s.p999_us_median.to_string(),
                added,
                format!("{} of {}", s.failed, s.requests),
                by.join(", "),
            ]);
        }
        t
    })
}

/// `--clients` clients against `target` for `--duration`.
async fn round(args: &ServeArgs, target: &str) -> anyhow::Result<Round> {
    let uri: hyper::Uri = format!("http://{target}{}", args.path)
        .parse()
        .with_context(|| format!("--target {target}"))?;
    let tally = Arc::new(Mutex::new(Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?,
        failed: 0,
        by_revision: BTreeMap::new(),
        errors: Vec::new(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let body = Bytes::from(args.body.clone());
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        // One connection per client: `pool_max_idle_per_host(1)` on a client of its own.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        let (uri, body, stop, tally) = (uri.clone(), body.clone(), stop.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = hyper::Request::post(uri.clone())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body.clone()));
                let sent = Instant::now();
                let outcome = match request {
                    Ok(r) => call(&client, r).await,
                    Err(e) => Err(e.to_string()),
                };
                let took = sent.elapsed();
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(revision) => {
                        let _ = t.hist.record((took.as_micros() as u64).max(1));
                        *t.by_revision.entry(revision).or_default() += 1;
                    }
                    Err(e) => {
                        t.failed += 1;
                        if t.errors.len() < ERRORS_KEPT {
                            t.errors.push(e);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.context("a load client panicked")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let requests = t.hist.len() + t.failed;
    Ok(Round {
        target: target.to_string(),
        requests,
        failed: t.failed,
        seconds,
        requests_per_sec: t.hist.len() as f64 / seconds,
        p50_us: t.hist.value_at_quantile(0.5),
        p99_us: t.hist.value_at_quantile(0.99),
        p999_us: t.hist.value_at_quantile(0.999),
        by_revision: t.by_revision.clone(),
        errors: t.errors.clone(),
    })
}

/// One request, its body read to the end: the revision that answered, or why it failed
/// (any status but 200 is a failure).
async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<String, String> {
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let revision = response
        .headers()
        .get("x-cairn-revision")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "direct".to_string(), String::from);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(revision)
}

fn median<T: Copy + PartialOrd>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs[xs.len() / 2]
}

fn summarise(targets: &[String], rounds: Vec<Vec<Round>>) -> Vec<TargetSummary> {
    let mut out: Vec<TargetSummary> = Vec::new();
    for (target, rs) in targets.iter().zip(rounds) {
        let mut by_revision = BTreeMap::new();
        for r in &rs {
            for (rev, n) in &r.by_revision {
                *by_revision.entry(rev.clone()).or_default() += n;
            }
        }
        let p50 = median(rs.iter().map(|r| r.p50_us).collect());
        let p99 = median(rs.iter().map(|r| r.p99_us).collect());
        let (added_p50_us, added_p99_us) = match out.first() {
            Some(first) => (
                Some(p50 as i64 - first.p50_us_median as i64),
                Some(p99 as i64 - first.p99_us_median as i64),
            ),
            None => (None, None),
        };
        out.push(TargetSummary {
            target: target.clone(),
            rounds: rs.len(),
            requests: rs.iter().map(|r| r.requests).sum(),
            failed: rs.iter().map(|r| r.failed).sum(),
            requests_per_sec_median: median(rs.iter().map(|r| r.requests_per_sec).collect()),
            p50_us_median: p50,
            p99_us_median: p99,
            p999_us_median: median(rs.iter().map(|r| r.p999_us).collect()),
            added_p50_us,
            added_p99_us,
            by_revision,
            errors: rs
                .iter()
                .flat_map(|r| r.errors.clone())
                .take(ERRORS_KEPT)
                .collect(),
            each_round: rs,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(target: &str, p50: u64, p99: u64, rps: f64) -> Round {
        Round {
            target: target.into(),
            requests: 100,
            failed: 1,
            seconds: 1.0,
            requests_per_sec: rps,
            p50_us: p50,
            p99_us: p99,
            p999_us: p99 * 2,
            by_revision: BTreeMap::from([("1".to_string(), 99)]),
            errors: vec!["502".into()],
        }
    }

    #[test]
    fn targets_are_summarised_by_medians_and_compared_with_the_first() {
        let targets = vec!["direct".to_string(), "endpoint".to_string()];
        let rounds = vec![
            vec![
                round("direct", 100, 300, 900.0),
                round("direct", 120, 900, 1000.0),
                round("direct", 110, 320, 800.0),
            ],
            vec![
                round("endpoint", 150, 400, 700.0),
                round("endpoint", 130, 350, 600.0),
                round("endpoint", 900, 9000, 100.0),
            ],
        ];
        let s = summarise(&targets, rounds);
        assert_eq!((s[0].p50_us_median, s[0].p99_us_median), (110, 320));
        assert_eq!((s[0].added_p50_us, s[0].added_p99_us), (None, None));
        assert_eq!((s[1].p50_us_median, s[1].p99_us_median), (150, 400));
        assert_eq!((s[1].added_p50_us, s[1].added_p99_us), (Some(40), Some(80)));
        assert_eq!(s[1].requests_per_sec_median, 600.0);
        assert_eq!((s[1].requests, s[1].failed), (300, 3));
        assert_eq!(s[1].by_revision["1"], 297);
    }
}
