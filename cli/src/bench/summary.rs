//! `cairn bench summary`: the median of several rounds of `cairn bench append`, and
//! Cairn's ratio to etcd, from the JSON files those rounds wrote.
//!
//! On a small shared machine one 10-second round of either system varies by 10-15%
//! from the next, so one round each is a weak comparison. Alternating the systems
//! over several rounds and comparing medians is a fair one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::bench::append::{Api, Backend, Round};
use crate::bench::median;
use crate::output::{self, table};

#[derive(clap::Args, Clone)]
pub struct SummaryArgs {
    /// Files written by `cairn bench append -o json`, any number of rounds and systems.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: output::Format,
}

/// The rounds of one system, API, client count and transport.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub tls: bool,
    pub backend: Backend,
    pub api: Option<Api>,
    pub clients: usize,
    pub rounds: usize,
    pub errors: u64,
    pub appends_per_sec_median: f64,
    pub appends_per_sec_min: f64,
    pub appends_per_sec_max: f64,
    pub p50_ms_median: f64,
    pub p99_ms_median: f64,
    pub p999_ms_median: f64,
    /// The largest RSS of any server after any round, bytes.
    pub rss_max_bytes: u64,
    /// Median appends/s over etcd's median at the same client count and transport
    /// (Cairn rows).
    pub throughput_vs_etcd: Option<f64>,
    /// Median p99 over etcd's median p99 at the same client count (Cairn rows).
    pub p99_vs_etcd: Option<f64>,
    /// A write's timeline, each stage's medians over the rounds (rounds run with
    /// `--metrics`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<crate::bench::timeline::StageFigure>,
}

/// Group rounds by system, API and client count; medians and ratios to etcd.
pub fn summarize(rounds: &[Round]) -> Vec<Summary> {
    let mut groups: BTreeMap<(bool, usize, Backend, Option<Api>), Vec<&Round>> = BTreeMap::new();
    for r in rounds {
        groups
            .entry((r.tls, r.clients, r.backend, r.api))
            .or_default()
            .push(r);
    }
    let col = |rs: &[&Round], f: fn(&Round) -> f64| median(rs.iter().map(|r| f(r)).collect());
    let mut out: Vec<Summary> = groups
        .values()
        .map(|rs| {
            let rates: Vec<f64> = rs.iter().map(|r| r.appends_per_sec).collect();
            Summary {
                tls: rs[0].tls,
                backend: rs[0].backend,
                api: rs[0].api,
                clients: rs[0].clients,
                rounds: rs.len(),
                errors: rs.iter().map(|r| r.errors).sum(),
                appends_per_sec_median: median(rates.clone()),
                appends_per_sec_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                appends_per_sec_max: rates.iter().copied().fold(0.0, f64::max),
                p50_ms_median: col(rs, |r| r.p50_ms),
                p99_ms_median: col(rs, |r| r.p99_ms),
                p999_ms_median: col(rs, |r| r.p999_ms),
                rss_max_bytes: rs
                    .iter()
                    .flat_map(|r| r.rss_bytes.iter().copied())
                    .max()
                    .unwrap_or(0),
                throughput_vs_etcd: None,
                p99_vs_etcd: None,
                timeline: crate::bench::timeline::medians(
                    &rs.iter()
                        .filter(|r| !r.timeline.is_empty())
                        .map(|r| r.timeline.as_slice())
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect();
    let etcd: BTreeMap<(bool, usize), (f64, f64)> = out
        .iter()
        .filter(|s| s.backend == Backend::Etcd)
        .map(|s| {
            (
                (s.tls, s.clients),
                (s.appends_per_sec_median, s.p99_ms_median),
            )
        })
        .collect();
    for s in out.iter_mut().filter(|s| s.backend == Backend::Cairn) {
        if let Some(&(rate, p99)) = etcd.get(&(s.tls, s.clients)) {
            s.throughput_vs_etcd = Some(s.appends_per_sec_median / rate);
            s.p99_vs_etcd = Some(s.p99_ms_median / p99);
        }
    }
    out
}

pub fn summary(args: SummaryArgs) -> anyhow::Result<()> {
    let mut rounds = Vec::new();
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mut these: Vec<Round> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not the output of `cairn bench append -o json`",
                f.display()
            )
        })?;
        rounds.append(&mut these);
    }
    let summaries = summarize(&rounds);
    if args.output == output::Format::Table {
        for s in summaries.iter().filter(|s| !s.timeline.is_empty()) {
            println!(
                "a write's timeline{}, {} ({}) clients={}, medians of {} rounds:\n{}",
                if s.tls { " over TLS" } else { "" },
                format!("{:?}", s.backend).to_lowercase(),
                Api::name(s.api),
                s.clients,
                s.rounds,
                crate::bench::append::stages_table(&s.timeline)
            );
        }
    }
    output::emit(args.output, &summaries, || {
        let mut t = table(&[
            "TLS",
            "BACKEND",
            "API",
            "CLIENTS",
            "ROUNDS",
            "APPENDS/S (MEDIAN)",
            "MIN-MAX",
            "P50 MS",
            "P99 MS",
            "P999 MS",
            "X ETCD",
            "P99 X ETCD",
            "MAX RSS",
            "ERRORS",
        ]);
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |x| format!("{x:.2}"));
        for s in &summaries {
            t.add_row(vec![
                if s.tls { "tls" } else { "-" }.to_string(),
                format!("{:?}", s.backend).to_lowercase(),
                Api::name(s.api).to_string(),
                s.clients.to_string(),
                s.rounds.to_string(),
                format!("{:.0}", s.appends_per_sec_median),
                format!("{:.0}-{:.0}", s.appends_per_sec_min, s.appends_per_sec_max),
                format!("{:.2}", s.p50_ms_median),
                format!("{:.2}", s.p99_ms_median),
                format!("{:.2}", s.p999_ms_median),
                ratio(s.throughput_vs_etcd),
                ratio(s.p99_vs_etcd),
                output::bytes(s.rss_max_bytes),
                s.errors.to_string(),
            ]);
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(backend: Backend, api: Option<Api>, clients: usize, rate: f64, p99: f64) -> Round {
        Round {
            backend,
            api,
            clients,
            seconds: 10.0,
            acknowledged: (rate * 10.0) as u64,
            errors: 0,
            first_error: None,
            appends_per_sec: rate,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            rss_bytes: vec![(rate * 1000.0) as u64, 1],
            tls: false,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn medians_and_ratios_to_etcd_per_client_count() {
        let s = Some(Api::Stream);
        let rounds = vec![
            round(Backend::Cairn, s, 128, 20_000.0, 10.0),
            round(Backend::Etcd, None, 128, 10_000.0, 30.0),
            round(Backend::Cairn, s, 128, 16_000.0, 14.0),
            round(Backend::Etcd, None, 128, 13_000.0, 20.0),
            round(Backend::Cairn, s, 128, 30_000.0, 12.0),
            round(Backend::Etcd, None, 128, 11_000.0, 25.0),
            // Only Cairn at one client: no ratio.
            round(Backend::Cairn, s, 1, 700.0, 2.0),
            round(Backend::Cairn, s, 1, 900.0, 3.0),
        ];
        let out = summarize(&rounds);
        assert_eq!(out.len(), 3, "{out:#?}");
        let one = &out[0];
        assert_eq!((one.clients, one.rounds), (1, 2));
        assert_eq!(
            one.appends_per_sec_median, 800.0,
            "even count: mean of the middle two"
        );
        assert_eq!(one.throughput_vs_etcd, None);
        let cairn = out
            .iter()
            .find(|s| s.clients == 128 && s.backend == Backend::Cairn)
            .unwrap();
        assert_eq!(cairn.appends_per_sec_median, 20_000.0);
        assert_eq!(
            (cairn.appends_per_sec_min, cairn.appends_per_sec_max),
            (16_000.0, 30_000.0)
        );
        assert_eq!(cairn.p99_ms_median, 12.0);
        assert_eq!(cairn.rss_max_bytes, 30_000_000);
        assert_eq!(cairn.throughput_vs_etcd, Some(20_000.0 / 11_000.0));
        assert_eq!(cairn.p99_vs_etcd, Some(12.0 / 25.0));
        let etcd = out.iter().find(|s| s.backend == Backend::Etcd).unwrap();
        assert_eq!(etcd.throughput_vs_etcd, None);
    }

    #[test]
    fn tls_rounds_are_compared_with_etcd_over_tls() {
        let s = Some(Api::Unary);
        let tls = |mut r: Round| {
            r.tls = true;
            r
        };
        let rounds = vec![
            round(Backend::Cairn, s, 16, 6_000.0, 9.0),
            round(Backend::Etcd, None, 16, 5_000.0, 9.0),
            tls(round(Backend::Cairn, s, 16, 4_000.0, 9.0)),
            tls(round(Backend::Etcd, None, 16, 2_000.0, 9.0)),
        ];
        let out = summarize(&rounds);
        let ratio = |t: bool| {
            out.iter()
                .find(|x| x.tls == t && x.backend == Backend::Cairn)
                .and_then(|x| x.throughput_vs_etcd)
        };
        assert_eq!(ratio(false), Some(6_000.0 / 5_000.0));
        assert_eq!(ratio(true), Some(4_000.0 / 2_000.0));
    }

    #[test]
    fn unary_and_stream_rounds_are_kept_apart() {
        let rounds = vec![
            round(Backend::Cairn, Some(Api::Unary), 16, 4_000.0, 9.0),
            round(Backend::Cairn, Some(Api::Stream), 16, 5_000.0, 8.0),
            round(Backend::Etcd, None, 16, 5_000.0, 7.0),
        ];
        let out = summarize(&rounds);
        let ratio = |api| {
            out.iter()
                .find(|s| s.api == Some(api))
                .and_then(|s| s.throughput_vs_etcd)
        };
        assert_eq!(ratio(Api::Unary), Some(0.8));
        assert_eq!(ratio(Api::Stream), Some(1.0));
    }
}
