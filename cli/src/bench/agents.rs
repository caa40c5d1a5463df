//! `cairn bench agents`: many simulated agents against one cluster. Each registers an
//! 8-GPU node, heartbeats to the leader every second and changes one GPU's health once
//! a minute (staggered), as real agents would. Reports heartbeat latency, errors, the
//! `node_lost` events the run caused (any is a false alarm: every agent kept beating)
//! and the servers' CPU.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use cairn_proto as pb;
use hdrhistogram::Histogram;
use pb::command::Body;
use serde::Serialize;
use tonic::transport::Channel;

use crate::bench::proc::{cpu_ticks, pid_rss};
use crate::client::Cluster;
use crate::output::{self, table};

#[derive(clap::Args, Clone)]
pub struct AgentsArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 2000)]
    pub agents: usize,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Each agent changes one GPU's health this often.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub health_every: Duration,
    /// TCP connections the agents share.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Server PIDs, in node-id order, whose CPU and RSS to report.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: output::Format,
}

#[derive(Debug, Serialize)]
pub struct AgentsReport {
    pub agents: usize,
    pub seconds: f64,
    pub heartbeats: u64,
    pub heartbeat_errors: u64,
    pub heartbeats_per_sec: f64,
    pub heartbeat_p50_ms: f64,
    pub heartbeat_p99_ms: f64,
    pub heartbeat_max_ms: f64,
    pub health_changes: u64,
    pub health_errors: u64,
    /// `node_lost` events recorded during the run: false alarms.
    pub false_node_lost: u64,
    pub leader_id: u64,
    /// CPU of each server over the run, percent of one core.
    pub cpu_percent: Vec<f64>,
    pub rss_bytes: Vec<u64>,
}

fn inventory() -> pb::NodeInventory {
    pb::NodeInventory {
        hostname: "sim".into(),
        cpu_millis: 64_000,
        memory_bytes: 512 << 30,
        gpus: (0..8)
            .map(|i| pb::GpuInfo {
                index: i,
                uuid: format!("GPU-{i}"),
                name: "bench".into(),
                memory_total_mib: 81_559,
                ..Default::default()
            })
            .collect(),
        port_range_start: 20000,
        port_range_end: 29999,
        gpu_provider: "sim:bench".into(),
        ..Default::default()
    }
}

fn with_token<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(pb::NODE_TOKEN, token.parse()?);
    Ok(r)
}

fn submit(node: &str, body: Body) -> pb::SubmitRequest {
    pb::SubmitRequest {
        command: Some(pb::Command {
            actor: format!("agent/{node}"),
            body: Some(body),
            ..Default::default()
        }),
    }
}

pub async fn agents(cluster: &mut Cluster, args: AgentsArgs) -> anyhow::Result<()> {
    if args.agents == 0 || args.connections == 0 {
        bail!("--agents and --connections must be > 0");
    }
    let status = cluster
        .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
        .await?;
    let leader_addr = status
        .members
        .iter()
        .find(|m| m.node_id == status.leader_id)
        .map(|m| m.address.clone())
        .ok_or_else(|| anyhow::anyhow!("no leader known"))?;
    let channels: Vec<Channel> = (0..args.connections)
        .map(|_| cluster.channel(&leader_addr))
        .collect::<anyhow::Result<_>>()?;
    let client_for =
        |i: usize| pb::cairn_client::CairnClient::new(channels[i % channels.len()].clone());

    // --- register every node (64 at a time)
    eprintln!("registering {} nodes at {leader_addr}", args.agents);
    let names: Vec<String> = (0..args.agents).map(|i| format!("bench-{i:05}")).collect();
    for chunk in (0..args.agents).collect::<Vec<_>>().chunks(64) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let mut c = client_for(i);
            let req = with_token(
                submit(
                    &names[i],
                    Body::RegisterNode(pb::RegisterNode {
                        node: names[i].clone(),
                        inventory: Some(inventory()),
                    }),
                ),
                &names[i],
            )?;
            tasks.push(tokio::spawn(async move { c.submit(req).await }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let before = cluster
        .call(|mut c| async move {
            c.list_events(pb::ListEventsRequest {
                limit: 1,
                ..Default::default()
            })
            .await
        })
        .await?
        .read
        .map_or(0, |r| r.last_sequence);

    // --- every agent beats and changes health, staggered
    eprintln!("running {} agents for {:?}", args.agents, args.duration);
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    ));
    let cpu0: Vec<u64> = args.pids.iter().map(|p| cpu_ticks(*p)).collect();
    let start = Instant::now();
    let end = start + args.duration;
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut c = client_for(i);
        let (name, hist) = (name.clone(), hist.clone());
        let n = args.agents as u32;
        let beat = args.heartbeat;
        let health_every = args.health_every;
        tasks.push(tokio::spawn(async move {
            let offset = beat * (i as u32 % 1000) / 1000;
            let mut next_health = start + health_every * (i as u32) / n;
            let mut healthy = true;
            let (mut beats, mut beat_errors, mut changes, mut change_errors) =
                (0u64, 0u64, 0u64, 0u64);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(beat);
            loop {
                tick.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let t0 = Instant::now();
                let Ok(req) = with_token(
                    pb::HeartbeatRequest {
                        node: name.clone(),
                        serving: Vec::new(),
                    },
                    &name,
                ) else {
                    break;
                };
                match c.heartbeat(req).await {
                    Ok(_) => {
                        beats += 1;
                        let us = t0.elapsed().as_micros().max(1) as u64;
                        let _ = hist.lock().unwrap_or_else(|p| p.into_inner()).record(us);
                    }
                    Err(_) => beat_errors += 1,
                }
                if Instant::now() >= next_health {
                    next_health += health_every;
                    healthy = !healthy;
                    let h = pb::GpuHealth {
                        uuid: "GPU-0".into(),
                        healthy,
                        reason: if healthy {
                            String::new()
                        } else {
                            "xid 79".into()
                        },
                        xid: if healthy { 0 } else { 79 },
                    };
                    let body = Body::ReportGpuHealth(pb::ReportGpuHealth {
                        node: name.clone(),
                        gpus: vec![h],
                    });
                    let Ok(req) = with_token(submit(&name, body), &name) else {
                        break;
                    };
                    match c.submit(req).await {
                        Ok(_) => changes += 1,
                        Err(_) => change_errors += 1,
                    }
                }
            }
            (beats, beat_errors, changes, change_errors)
        }));
    }
    let (mut beats, mut beat_errors, mut changes, mut change_errors) = (0, 0, 0, 0);
    for t in tasks {
        if let Ok((b, be, c, ce)) = t.await {
            beats += b;
            beat_errors += be;
            changes += c;
            change_errors += ce;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let ticks_per_sec = 100.0;
    let cpu_percent: Vec<f64> = args
        .pids
        .iter()
        .zip(&cpu0)
        .map(|(p, t0)| (cpu_ticks(*p).saturating_sub(*t0)) as f64 / ticks_per_sec / seconds * 100.0)
        .collect();
    let rss_bytes = args.pids.iter().map(|p| pid_rss(*p)).collect();

    let lost = cluster
        .call(|mut c| async move {
            c.list_events(pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    types: vec!["node_lost".into()],
                    after_sequence: before,
                    ..Default::default()
                }),
                limit: 10_000,
                ..Default::default()
            })
            .await
        })
        .await?
        .events
        .len() as u64;

    let h = hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let report = AgentsReport {
        agents: args.agents,
        seconds,
        heartbeats: beats,
        heartbeat_errors: beat_errors,
        heartbeats_per_sec: beats as f64 / seconds,
        heartbeat_p50_ms: ms(0.5),
        heartbeat_p99_ms: ms(0.99),
        heartbeat_max_ms: h.max() as f64 / 1000.0,
        health_changes: changes,
        health_errors: change_errors,
        false_node_lost: lost,
        leader_id: status.leader_id,
        cpu_percent,
        rss_bytes,
    };
    output::emit(args.output, &report, || {
        let mut t = table(&["FIGURE", "VALUE"]);
        let cpu = report
            .cpu_percent
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mark = if i as u64 + 1 == report.leader_id {
                    "*"
                } else {
                    ""
                };
                format!("{c:.0}%{mark}")
            })
            .collect::<Vec<_>>()
            .join(" / ");
        let rows = [
            ("agents", report.agents.to_string()),
            ("seconds", format!("{:.1}", report.seconds)),
            ("heartbeats/s", format!("{:.0}", report.heartbeats_per_sec)),
            (
                "heartbeat p50 / p99 / max ms",
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    report.heartbeat_p50_ms, report.heartbeat_p99_ms, report.heartbeat_max_ms
                ),
            ),
            ("heartbeat errors", report.heartbeat_errors.to_string()),
            (
                "health changes (errors)",
                format!("{} ({})", report.health_changes, report.health_errors),
            ),
            ("false node_lost", report.false_node_lost.to_string()),
            ("server CPU (* = leader)", cpu),
            (
                "server RSS",
                report
                    .rss_bytes
                    .iter()
                    .map(|b| output::bytes(*b))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_string(), v]);
        }
        t
    })
}
