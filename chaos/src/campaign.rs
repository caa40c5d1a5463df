//! One campaign: start the cluster in namespaces, run the workloads, inject faults from a
//! seeded schedule, heal, then check everything and report.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_proto as pb;
use cairn_tests::{client_with_timeout, eventually, last_sequence, stored_events};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checker::{self, Register};
use crate::cluster::{self, Member, MemberSettings};
use crate::net::Net;
use crate::workload::{self, Clock, Outcome, RegisterOp, SetOp, SetVerdict, StreamVerdict};

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    /// Quiet time between faults.
    pub calm: Duration,
    /// How long each fault lasts.
    pub fault: Duration,
    pub set_clients: u32,
    pub registers: usize,
    pub clients_per_register: u32,
    /// Where `cairn-server` is.
    pub server_bin: PathBuf,
    /// Data directories and logs.
    pub dir: PathBuf,
    /// Which 10.213.<net>.0/24 the hosts use (`None`: the first free one).
    pub net: Option<u8>,
    /// Size of each server's own disk, MiB (0: no disk of its own, and no disk-full or
    /// slow-disk faults).
    pub disk_mb: u32,
    /// The members' `raft.snapshot_after_logs`.
    pub snapshot_after_logs: u64,
    /// The faults to draw from (empty: all).
    pub faults: Vec<FaultKind>,
}

/// The kinds of fault the nemesis picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    PartitionLeader,
    PartitionHalves,
    PacketLoss,
    KillLeader,
    KillAny,
    /// SIGKILL every member at once (a power cut); all start again at the heal.
    KillAll,
    Pause,
    Bandwidth,
    /// Delay (with jitter) every message between members.
    Delay,
    /// Fill a server's disk; it must fail its writes cleanly, stop, and come back
    /// once space returns.
    DiskFull,
    SlowDisk,
    /// Remove a follower from the membership, then add it back as a learner and
    /// promote it.
    Membership,
}

pub const FAULTS: [FaultKind; 12] = [
    FaultKind::PartitionLeader,
    FaultKind::PartitionHalves,
    FaultKind::PacketLoss,
    FaultKind::KillLeader,
    FaultKind::KillAny,
    FaultKind::KillAll,
    FaultKind::Pause,
    FaultKind::Bandwidth,
    FaultKind::Membership,
    FaultKind::DiskFull,
    FaultKind::SlowDisk,
    FaultKind::Delay,
];

#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub detail: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Set-workload writes acknowledged during the fault, per second.
    pub acked_per_sec_during: f64,
    /// From healing until the next acknowledged write.
    pub recovery_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterVerdict {
    pub key: usize,
    pub operations: usize,
    pub indeterminate: usize,
    pub linearizable: Option<bool>,
    pub witness: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// Per member: (id, last sequence, hash of its whole event log as stored).
    pub members: Vec<(u64, u64, String)>,
    pub identical: bool,
    pub gapless: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub duration_s: f64,
    pub faults: Vec<FaultRecord>,
    pub set: SetVerdict,
    pub registers: Vec<RegisterVerdict>,
    pub streams: Vec<StreamVerdict>,
    pub convergence: Convergence,
    /// From the last heal until the cluster acknowledged a write.
    pub final_recovery_ms: Option<u64>,
    pub ok: bool,
}

/// Create `name` (retrying through any member until `deadline`); AlreadyExists is fine.
async fn ensure_namespace(
    endpoints: &[String],
    name: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut i = 0;
    loop {
        let req = pb::SubmitRequest {
            command: Some(pb::Command {
                actor: "chaos/setup".into(),
                body: Some(pb::command::Body::CreateNamespace(pb::CreateNamespace {
                    name: name.into(),
                    labels: Default::default(),
                })),
                ..Default::default()
            }),
        };
        match client_with_timeout(&endpoints[i % endpoints.len()], Duration::from_secs(2))
            .submit(req)
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(s) if Instant::now() > deadline => bail!("creating {name}: {}", s.message()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        i += 1;
    }
}

/// Every event of one member as it stores them (stale read: exactly what it has
/// applied), and decoded.
async fn member_log(addr: &str) -> anyhow::Result<(Vec<Vec<u8>>, Vec<pb::Event>)> {
    use prost::Message;
    let mut c = client_with_timeout(addr, Duration::from_secs(10));
    let stored = stored_events(&mut c).await?;
    let events = stored
        .iter()
        .map(|b| pb::Event::decode(b.as_slice()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((stored, events))
}

/// Undo every fault: network rules, full disks, pauses, stopped servers. A server that
/// does not come back is reported here and judged by the checks.
async fn heal(net: &Net, members: &mut [Member]) -> anyhow::Result<()> {
    net.heal()?;
    for m in members.iter_mut() {
        m.free_disk();
        m.fast_disk();
        if m.server.is_paused() {
            m.server.resume()?;
        }
        start(m).await;
    }
    Ok(())
}

/// Start a member's server unless it runs (one that exited on its own counts as
/// stopped); a failure is reported, and the campaign goes on.
async fn start(member: &mut Member) {
    if let Err(e) = member.server.start().await {
        println!("  node {} did not come back: {e:#}", member.server.id);
    }
}

enum Change {
    Remove(u64),
    AddLearner(u64, String),
    Promote(u64),
}

/// One membership change through any member, retried for a while; whether it succeeded.
async fn membership(endpoints: &[String], change: Change) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    while Instant::now() < deadline {
        let mut c = client_with_timeout(&endpoints[i % endpoints.len()], Duration::from_secs(5));
        let r = match &change {
            Change::Remove(id) => {
                c.remove_member(pb::RemoveMemberRequest { node_id: *id })
                    .await
            }
            Change::AddLearner(id, addr) => {
                c.add_learner(pb::AddLearnerRequest {
                    node_id: *id,
                    address: addr.clone(),
                })
                .await
            }
            Change::Promote(id) => c.promote(pb::PromoteRequest { node_id: *id }).await,
        };
        match r {
            Ok(_) => return true,
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    || s.code() == tonic::Code::NotFound =>
            {
                return false
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        i += 1;
    }
    false
}

/// Bring every node back as a voter (after a membership fault).
async fn restore_membership(endpoints: &[String], n: usize) {
    // The leader's view of the membership (a removed node's own view may be stale).
    let mut voters = Vec::new();
    for e in endpoints {
        if let Ok(s) = client_with_timeout(e, Duration::from_secs(2))
            .cluster_status(pb::ClusterStatusRequest {})
            .await
        {
            let s = s.into_inner();
            if s.leader_id != 0 && s.leader_id == s.answered_by {
                voters = s.members.iter().map(|m| m.node_id).collect();
                break;
            }
        }
    }
    for id in 1..=n as u64 {
        if !voters.contains(&id) {
            let addr = endpoints[(id - 1) as usize].clone();
            membership(endpoints, Change::AddLearner(id, addr)).await;
        }
        // Promote is refused for a voter: that is fine.
        membership(endpoints, Change::Promote(id)).await;
    }
}

/// The namespace recovery probes write notes to (not a register: notes bump revisions).
const PROBE: &str = "chaos-probe";

/// Probe with a write until one is acknowledged; the time it took.
async fn time_to_write(endpoints: &[String], tag: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < limit {
        let req = pb::SubmitRequest {
            command: Some(pb::Command {
                actor: "chaos/probe".into(),
                body: Some(pb::command::Body::AddNote(pb::AddNote {
                    entity: Some(pb::EntityRef {
                        kind: "namespace".into(),
                        name: PROBE.into(),
                    }),
                    text: format!("probe {tag}"),
                })),
                ..Default::default()
            }),
        };
        if client_with_timeout(&endpoints[i % endpoints.len()], Duration::from_millis(1000))
            .submit(req)
            .await
            .is_ok()
        {
            return Some(start.elapsed());
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    println!(
        "cairn-chaos: seed {} ({} nodes, {:?})",
        settings.seed, settings.nodes, settings.duration
    );
    // A campaign starts from empty stores: its checks assume so.
    if settings.dir.exists() {
        std::fs::remove_dir_all(&settings.dir)
            .with_context(|| format!("clearing {}", settings.dir.display()))?;
    }
    std::fs::create_dir_all(&settings.dir)?;
    let mut net = Net::create(settings.nodes, settings.net).context("creating the hosts")?;
    println!(
        "hosts: {:?}",
        net.hosts.iter().map(|h| &h.ip).collect::<Vec<_>>()
    );
    let result = campaign(&settings, &net).await;
    net.teardown();
    result
}

async fn campaign(settings: &Settings, net: &Net) -> anyhow::Result<Report> {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let proxy = crate::proxy::DelayProxy::start(net)
        .await
        .context("starting the delay proxy")?;
    let member_settings = MemberSettings {
        server_bin: settings.server_bin.clone(),
        dir: settings.dir.clone(),
        disk_mb: settings.disk_mb,
        snapshot_after_logs: settings.snapshot_after_logs,
    };
    let mut members = cluster::start_all(net, &member_settings)
        .await
        .with_context(|| {
            format!(
                "starting the servers; see the logs in {}",
                settings.dir.display()
            )
        })?;
    let endpoints: Vec<String> = members.iter().map(|m| m.server.addr.clone()).collect();
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    eventually(Duration::from_secs(30), "a leader", || {
        cluster::find_leader(&members)
    })
    .await
    .with_context(|| format!("see the logs in {}", settings.dir.display()))?;
    ensure_namespace(&endpoints, PROBE, setup_deadline).await?;
    for k in 0..settings.registers {
        ensure_namespace(&endpoints, &workload::register_name(k), setup_deadline).await?;
    }

    // --- workloads
    let clock = Clock(Instant::now());
    let until = Instant::now() + settings.duration;
    let set_log: workload::Log<SetOp> = Arc::default();
    let reg_log: workload::Log<RegisterOp> = Arc::default();
    let mut tasks = Vec::new();
    for id in 0..settings.set_clients {
        tasks.push(tokio::spawn(workload::set_client(
            id,
            endpoints.clone(),
            settings.seed,
            clock,
            until,
            set_log.clone(),
        )));
    }
    for key in 0..settings.registers {
        for id in 0..settings.clients_per_register {
            tasks.push(tokio::spawn(workload::register_client(
                key,
                id,
                endpoints.clone(),
                settings.seed,
                clock,
                until,
                reg_log.clone(),
            )));
        }
    }
    let streams: Vec<_> = members
        .iter()
        .map(|m| {
            let s = &m.server;
            tokio::spawn(workload::stream_client(s.id, s.addr.clone(), until))
        })
        .collect();

    // --- nemesis
    let mut faults = Vec::new();
    while Instant::now() + settings.calm + settings.fault * 3 < until {
        tokio::time::sleep(settings.calm).await;
        let menu: &[FaultKind] = if settings.faults.is_empty() {
            &FAULTS
        } else {
            &settings.faults
        };
        let mut kind = menu[rng.gen_range(0..menu.len())];
        if matches!(kind, FaultKind::DiskFull | FaultKind::SlowDisk) && settings.disk_mb == 0
            || kind == FaultKind::SlowDisk && !members.iter().all(Member::can_slow_disk)
        {
            kind = FaultKind::KillAny;
        }
        let leader = cluster::find_leader(&members)
            .await
            .map(|l| (l - 1) as usize);
        let n = members.len();
        let any = rng.gen_range(0..n);
        let start_ms = clock.now() / 1000;
        let detail = match kind {
            FaultKind::PartitionLeader => {
                let l = leader.unwrap_or(any);
                for other in (0..n).filter(|o| *o != l) {
                    net.cut(l, other)?;
                }
                format!("node {} isolated from its peers", l + 1)
            }
            FaultKind::PartitionHalves => {
                let minority: Vec<usize> =
                    (0..n).filter(|_| rng.gen_bool(0.5)).take(n / 2).collect();
                let minority = if minority.is_empty() {
                    vec![any]
                } else {
                    minority
                };
                for a in &minority {
                    for b in (0..n).filter(|b| !minority.contains(b)) {
                        net.cut(*a, b)?;
                    }
                }
                format!(
                    "nodes {:?} cut from the rest",
                    minority.iter().map(|m| m + 1).collect::<Vec<_>>()
                )
            }
            FaultKind::PacketLoss => {
                let p = rng.gen_range(0.1..0.4);
                for h in 0..n {
                    net.lossy(h, p)?;
                }
                format!("{:.0}% packet loss between all members", p * 100.0)
            }
            FaultKind::KillLeader | FaultKind::KillAny => {
                let victim = if kind == FaultKind::KillLeader {
                    leader.unwrap_or(any)
                } else {
                    any
                };
                members[victim].server.kill();
                format!("node {} killed (SIGKILL)", victim + 1)
            }
            FaultKind::KillAll => {
                for m in members.iter_mut() {
                    m.server.kill();
                }
                "every member killed (SIGKILL)".to_string()
            }
            FaultKind::Pause => match members[any].server.pause() {
                Ok(()) => format!("node {} paused (SIGSTOP)", any + 1),
                Err(e) => format!("node {} not paused: {e:#}", any + 1),
            },
            FaultKind::Bandwidth => {
                let kbit = rng.gen_range(256..2048);
                let l = leader.unwrap_or(any);
                net.throttle(l, kbit)?;
                format!("node {} sends at most {kbit} kbit/s", l + 1)
            }
            FaultKind::Delay => {
                let delay = Duration::from_millis(rng.gen_range(10..50));
                let jitter = Duration::from_millis(rng.gen_range(0..20));
                proxy.delay(net, delay, jitter)?;
                format!("{delay:?} +0..{jitter:?} delay between all members")
            }
            FaultKind::DiskFull => {
                members[any].fill_disk()?;
                format!("node {}'s disk is full", any + 1)
            }
            FaultKind::SlowDisk => {
                // The leader half the time: its fsyncs gate every commit.
                let victim = if rng.gen_bool(0.5) {
                    leader.unwrap_or(any)
                } else {
                    any
                };
                let iops = rng.gen_range(5..50);
                members[victim].slow_disk(iops, 1 << 20)?;
                format!("node {}'s disk does {iops} writes/s, 1 MiB/s", victim + 1)
            }
            FaultKind::Membership => {
                let l = leader.unwrap_or(0);
                let victim = (l + 1 + rng.gen_range(0..n - 1)) % n;
                let id = victim as u64 + 1;
                let removed = membership(&endpoints, Change::Remove(id)).await;
                format!(
                    "node {id} removed from the membership ({})",
                    if removed { "done" } else { "refused" }
                )
            }
        };
        println!("  {:>7.1}s  {:?}: {detail}", start_ms as f64 / 1000.0, kind);
        // A full disk bites when the server next needs a new storage segment, which at
        // this load takes a few seconds: hold that fault longer.
        let hold = if kind == FaultKind::DiskFull {
            settings.fault * 3
        } else {
            settings.fault
        };
        tokio::time::sleep(hold).await;
        if kind == FaultKind::Membership {
            restore_membership(&endpoints, n).await;
        }
        proxy.clear(net)?;
        heal(net, &mut members).await?;
        let end_ms = clock.now() / 1000;
        let recovery = time_to_write(
            &endpoints,
            &format!("after fault {}", faults.len()),
            Duration::from_secs(10),
        )
        .await;
        faults.push(FaultRecord {
            kind,
            detail,
            start_ms,
            end_ms,
            acked_per_sec_during: 0.0,
            recovery_ms: recovery.map(|d| d.as_millis() as u64),
        });
    }

    // --- heal everything, then check
    proxy.clear(net)?;
    heal(net, &mut members).await?;
    let final_recovery = time_to_write(&endpoints, "final", Duration::from_secs(30)).await;
    for t in tasks {
        let _ = t.await;
    }
    let mut stream_verdicts = Vec::new();
    for s in streams {
        if let Ok(v) = s.await {
            stream_verdicts.push(v);
        }
    }

    // Convergence: every member reaches the same last sequence. A server that stopped
    // on a full disk may still have been shutting down at the heal: restart it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for m in members.iter_mut() {
            start(m).await;
        }
        let mut seqs = Vec::new();
        for e in &endpoints {
            seqs.push(last_sequence(e, Duration::from_secs(1)).await);
        }
        let first = seqs[0];
        if first.is_some() && seqs.iter().all(|s| *s == first) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every member's log as it stores it: the same bytes on every member, not only
    // the same events.
    let mut logs = Vec::new();
    let mut stored = Vec::new();
    for m in &members {
        let s = &m.server;
        let (bytes, events) = member_log(&s.addr).await.unwrap_or_default();
        logs.push((s.id, events));
        stored.push(bytes);
    }
    let members: Vec<(u64, u64, String)> = logs
        .iter()
        .zip(&stored)
        .map(|((id, events), bytes)| {
            let mut h = DefaultHasher::new();
            bytes.hash(&mut h);
            (
                *id,
                events.last().map_or(0, |e| e.sequence),
                format!("{:016x}", h.finish()),
            )
        })
        .collect();
    let identical =
        stored.windows(2).all(|w| w[0] == w[1]) && members.windows(2).all(|w| w[0].1 == w[1].1);
    let gapless = logs.iter().all(|(_, ev)| {
        ev.iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as u64 + 1)
    });
    let convergence = Convergence {
        members,
        identical,
        gapless,
    };

    // Set: count creations in the final log.
    let reference = &logs[0].1;
    let mut created: HashMap<String, usize> = HashMap::new();
    for e in reference
        .iter()
        .filter(|e| e.type_name() == "namespace_created")
    {
        if let Some(r) = &e.entity {
            *created.entry(r.name.clone()).or_default() += 1;
        }
    }
    let set_ops = set_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let set = workload::check_set(&set_ops, &created);

    // Registers: one linearizability check per key. Values are unique, so the final log
    // says which unanswered writes took effect (and at which revision): those become
    // writes with an unknown completion time, the others are dropped.
    let reg_ops = reg_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut registers = Vec::new();
    for key in 0..settings.registers {
        let name = workload::register_name(key);
        let applied: HashMap<u64, u64> = reference
            .iter()
            .filter(|e| e.entity.as_ref().is_some_and(|r| r.name == name))
            .filter_map(|e| match &e.payload {
                Some(pb::event::Payload::NamespaceLabelsChanged(l)) => l
                    .labels
                    .get("v")
                    .and_then(|v| v.parse().ok())
                    .map(|v| (v, e.entity_revision)),
                _ => None,
            })
            .collect();
        let ops: Vec<&RegisterOp> = reg_ops.iter().filter(|o| o.key == key).collect();
        let calls: Vec<checker::Call> = ops
            .iter()
            .filter_map(|o| o.call.clone())
            .filter_map(|mut c| {
                if c.ret == checker::Ret::Unknown {
                    let value = match c.op {
                        checker::Op::Write(v) | checker::Op::Cas { value: v, .. } => v,
                        checker::Op::Read => return None,
                    };
                    c.ret = checker::Ret::Ok {
                        revision: *applied.get(&value)?,
                    };
                }
                Some(c)
            })
            .collect();
        let unknown = ops.iter().filter(|o| o.end_us.is_none()).count();
        let initial = Register {
            value: None,
            revision: 1,
        };
        let (linearizable, witness) = match checker::check(&calls, initial, 5_000_000) {
            Ok(()) => (Some(true), Vec::new()),
            Err(None) => (None, vec!["search budget exceeded".into()]),
            Err(Some(v)) => {
                let mut w: Vec<String> = v
                    .linearized
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|&i| format!("linearized: {:?}", calls[i]))
                    .collect();
                w.push(format!("state then: {:?}", v.state));
                w.extend(
                    v.stuck
                        .iter()
                        .map(|&i| format!("cannot follow: {:?}", calls[i])),
                );
                (Some(false), w)
            }
        };
        registers.push(RegisterVerdict {
            key,
            operations: calls.len(),
            indeterminate: unknown,
            linearizable,
            witness,
        });
    }

    // Availability during each fault.
    for f in faults.iter_mut() {
        let acked = set_ops
            .iter()
            .filter(|o| {
                o.outcome == Outcome::Ok
                    && o.end_us / 1000 >= f.start_ms
                    && o.end_us / 1000 < f.end_ms
            })
            .count();
        let secs = (f.end_ms.saturating_sub(f.start_ms)).max(1) as f64 / 1000.0;
        f.acked_per_sec_during = acked as f64 / secs;
    }

    let ok = set.ok
        && registers.iter().all(|r| r.linearizable == Some(true))
        && stream_verdicts.iter().all(|s| s.violations.is_empty())
        && convergence.identical
        && convergence.gapless
        && final_recovery.is_some_and(|d| d <= Duration::from_secs(5));
    Ok(Report {
        seed: settings.seed,
        nodes: settings.nodes,
        duration_s: settings.duration.as_secs_f64(),
        faults,
        set,
        registers,
        streams: stream_verdicts,
        convergence,
        final_recovery_ms: final_recovery.map(|d| d.as_millis() as u64),
        ok,
    })
}

/// The report as text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let line = |s: &mut String, t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(
        &mut s,
        format!(
            "seed {}  nodes {}  duration {:.0}s  verdict: {}",
            r.seed,
            r.nodes,
            r.duration_s,
            if r.ok { "PASS" } else { "FAIL" }
        ),
    );
    line(&mut s, format!("faults ({}):", r.faults.len()));
    for f in &r.faults {
        line(
            &mut s,
            format!(
                "  {:>7.1}s-{:>7.1}s  {:<17} {:<40} {:>7.1} acked/s during, recovered in {}",
                f.start_ms as f64 / 1000.0,
                f.end_ms as f64 / 1000.0,
                serde_json::to_value(f.kind)
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .unwrap_or_default(),
                f.detail,
                f.acked_per_sec_during,
                f.recovery_ms.map_or("never".into(), |m| format!("{m} ms"))
            ),
        );
    }
    let st = &r.set;
    line(
        &mut s,
        format!(
            "set: {} attempted, {} acknowledged, {} failed, {} indeterminate; lost {}, duplicated {}, unexpected {}",
            st.attempted, st.acknowledged, st.failed, st.indeterminate, st.lost.len(), st.duplicated.len(), st.unexpected.len()
        ),
    );
    for x in st.lost.iter().take(10) {
        line(&mut s, format!("  LOST acknowledged {x}"));
    }
    for reg in &r.registers {
        line(
            &mut s,
            format!(
                "register {}: {} operations ({} indeterminate): {}",
                reg.key,
                reg.operations,
                reg.indeterminate,
                match reg.linearizable {
                    Some(true) => "linearizable",
                    Some(false) => "NOT linearizable",
                    None => "undecided",
                }
            ),
        );
        for w in &reg.witness {
            line(&mut s, format!("  {w}"));
        }
    }
    for st in &r.streams {
        line(
            &mut s,
            format!(
                "stream from node {}: {} events, {} reconnects, {} violations",
                st.member,
                st.events,
                st.reconnects,
                st.violations.len()
            ),
        );
        for v in st.violations.iter().take(5) {
            line(&mut s, format!("  {v}"));
        }
    }
    let c = &r.convergence;
    line(
        &mut s,
        format!(
            "convergence: {} (gapless: {}); {}",
            if c.identical {
                "identical logs"
            } else {
                "LOGS DIFFER"
            },
            c.gapless,
            c.members
                .iter()
                .map(|(id, seq, h)| format!("node {id}: seq {seq} hash {h}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    line(
        &mut s,
        format!(
            "writes accepted {} after the last fault healed",
            r.final_recovery_ms
                .map_or("never".into(), |m| format!("{m} ms"))
        ),
    );
    s
}
