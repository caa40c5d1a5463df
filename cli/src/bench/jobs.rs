//! `cairn bench jobs`: trivial jobs end to end. Submits `--jobs` one-replica jobs whose
//! replica runs `true`, at most `--concurrency` unfinished at a time, and measures the
//! jobs completed per second and each job's time from submission to Succeeded, through
//! placement, the agent starting the process, its exit, and the reports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use cairn_proto as pb;
use hdrhistogram::Histogram;
use pb::command::Body;
use serde::Serialize;

use crate::client::Cluster;
use crate::output::{self, table};

#[derive(clap::Args, Clone)]
pub struct JobsArgs {
    #[arg(long, default_value_t = 300)]
    pub jobs: usize,
    /// Unfinished jobs at a time.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: output::Format,
}

#[derive(Debug, Serialize)]
pub struct JobsReport {
    pub jobs: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub seconds: f64,
    pub jobs_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

fn job(name: &str) -> Body {
    let doc = serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}},
    });
    Body::SubmitJob(pb::SubmitJob {
        spec_json: doc.to_string(),
    })
}

pub async fn jobs(cluster: &mut Cluster, args: JobsArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.concurrency == 0 {
        bail!("--jobs and --concurrency must be > 0");
    }
    let run = format!("{:x}", std::process::id());
    let start = Instant::now();
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 600_000, 3).expect("valid histogram bounds");
    let mut in_flight: HashMap<String, Instant> = HashMap::new();
    let (mut next, mut succeeded, mut failed) = (0usize, 0usize, 0usize);
    while succeeded + failed < args.jobs {
        if start.elapsed() > args.timeout {
            bail!(
                "{} of {} jobs done within {:?}",
                succeeded + failed,
                args.jobs,
                args.timeout
            );
        }
        while in_flight.len() < args.concurrency && next < args.jobs {
            let name = format!("bench-{run}-{next}");
            let cmd = pb::Command {
                actor: "bench".into(),
                body: Some(job(&name)),
                ..Default::default()
            };
            cluster
                .call_write(|mut c| {
                    let cmd = cmd.clone();
                    async move { c.submit(pb::SubmitRequest { command: Some(cmd) }).await }
                })
                .await?;
            in_flight.insert(name, Instant::now());
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let all = cluster
            .call(|mut c| async move {
                c.list_jobs(pb::ListJobsRequest {
                    consistency: pb::ReadConsistency::Stale as i32,
                    ..Default::default()
                })
                .await
            })
            .await?;
        for j in all.jobs {
            let ended = matches!(j.phase.as_str(), "Succeeded" | "Failed" | "Cancelled");
            if !ended {
                continue;
            }
            if let Some(t) = in_flight.remove(&j.name) {
                let _ = hist.record(t.elapsed().as_millis().max(1) as u64);
                if j.phase == "Succeeded" {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = JobsReport {
        jobs: args.jobs,
        succeeded,
        failed,
        seconds,
        jobs_per_sec: (succeeded + failed) as f64 / seconds,
        latency_p50_ms: hist.value_at_quantile(0.5) as f64,
        latency_p99_ms: hist.value_at_quantile(0.99) as f64,
    };
    output::emit(args.output, &report, || {
        let mut t = table(&["FIGURE", "VALUE"]);
        let rows = [
            (
                "jobs (succeeded / failed)",
                format!("{} ({} / {})", report.jobs, report.succeeded, report.failed),
            ),
            ("seconds", format!("{:.1}", report.seconds)),
            (
                "jobs completed per second",
                format!("{:.1}", report.jobs_per_sec),
            ),
            (
                "submit → Succeeded p50 / p99 ms",
                format!(
                    "{:.0} / {:.0}",
                    report.latency_p50_ms, report.latency_p99_ms
                ),
            ),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_string(), v]);
        }
        t
    })
}
