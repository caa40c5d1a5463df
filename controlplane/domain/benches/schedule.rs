//! How long `decide` takes to place a 256-GPU gang job on 64 nodes × 8 GPUs while
//! 1,000 jobs are queued. Prints p50/p99/max over many runs.
//!
//! `cargo bench -p cairn-domain --bench schedule`

use std::time::{Duration, Instant};

use cairn_domain::job::{self, JobCommand};
use cairn_domain::node::{GpuInfo, GpuLink, NodeCommand, NodeInventory, PcieLevel};
use cairn_domain::{decide, Command, CommandBody, Position, State};

fn cmd(body: CommandBody) -> Command {
    Command {
        timestamp_ms: 1,
        actor: "bench".into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: "c".into(),
        expected_revision: None,
        body,
    }
}

fn apply(s: &mut State, c: &Command) {
    let pos = Position {
        raft_index: s.last_sequence() + 1,
        raft_term: 1,
    };
    match decide(s, c, pos) {
        Ok(events) => {
            for e in &events {
                s.evolve(e);
            }
        }
        Err(r) => panic!("setup command refused: {r}"),
    }
}

fn node(name: &str) -> NodeInventory {
    let mut links = Vec::new();
    for a in 0..8u32 {
        for b in a + 1..8 {
            let nvlinks = if a / 4 == b / 4 { 2 } else { 0 };
            let pcie = if a / 4 == b / 4 {
                PcieLevel::HostBridge
            } else {
                PcieLevel::CrossSocket
            };
            links.push(GpuLink {
                a,
                b,
                nvlinks,
                pcie,
            });
        }
    }
    NodeInventory {
        hostname: name.into(),
        cpu_millis: 128_000,
        memory_bytes: 1 << 40,
        gpus: (0..8)
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("{name}-{i}"),
                ..GpuInfo::default()
            })
            .collect(),
        links,
        port_range_start: 20000,
        port_range_end: 29999,
        ..NodeInventory::default()
    }
}

fn job(name: &str, replicas: i64, gpus: i64, priority: i64) -> String {
    serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "pytorch",
            "roles": {"worker": {"replicas": replicas, "gpus": gpus, "command": ["train"]}},
            "scheduling": {"priority": priority},
        },
    })
    .to_string()
}

/// A job document as the edge turns it into a command.
fn submit(json: &str) -> CommandBody {
    let doc = job::parse(json).expect("a valid job document");
    CommandBody::Job(JobCommand::Submit { doc: Box::new(doc) })
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} runs)",
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let mut s = State::new();
    for i in 0..64 {
        let name = format!("node-{i:02}");
        apply(
            &mut s,
            &cmd(CommandBody::Node(NodeCommand::Register {
                node: name.clone(),
                inventory: Box::new(node(&name)),
                token_digest: name.into_bytes(),
            })),
        );
    }
    // Half the cluster runs single-node jobs.
    for i in 0..32 {
        apply(&mut s, &cmd(submit(&job(&format!("running-{i}"), 1, 8, 0))));
    }
    // 1,000 queued jobs that do not fit in what is left (38 × 8 GPUs each).
    for i in 0..1000 {
        apply(
            &mut s,
            &cmd(submit(&job(&format!("queued-{i:04}"), 38, 8, 0))),
        );
    }
    assert_eq!(s.queue().len(), 1000);
    let big = cmd(submit(&job("big", 32, 8, 10)));
    let pos = Position {
        raft_index: 1_000_000,
        raft_term: 1,
    };

    // --- submitting the 256-GPU gang job: decide places it at once
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let events = decide(&s, &big, pos).expect("accepted");
        samples.push(t.elapsed());
        assert_eq!(
            events.last().map(|e| e.payload.type_name()),
            Some("job_scheduled")
        );
    }
    report(
        "decide(SubmitJob 256-GPU gang, 1,000 queued, 64x8 GPUs)",
        samples,
    );

    // --- a scheduling pass over the queue with the big job at its head
    let mut waiting = s.clone();
    for i in 0..32 {
        apply(
            &mut waiting,
            &cmd(submit(&job(&format!("filler-{i}"), 1, 8, 0))),
        );
    }
    apply(&mut waiting, &big);
    for i in 0..32 {
        apply(
            &mut waiting,
            &cmd(CommandBody::Job(JobCommand::Cancel {
                name: format!("filler-{i}"),
                reason: String::new(),
            })),
        );
    }
    let pass = cmd(CommandBody::Job(JobCommand::Schedule));
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let events = decide(&waiting, &pass, pos).expect("accepted");
        samples.push(t.elapsed());
        assert!(events
            .iter()
            .any(|e| e.payload.type_name() == "job_scheduled"));
    }
    report(
        "decide(ScheduleJobs: 256-GPU gang first of 1,001 queued)",
        samples,
    );
}
