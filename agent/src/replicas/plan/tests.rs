//! The lifecycle of replicas on a node, step by step, without processes.

use std::time::{Duration, Instant};

use cairn_domain::job::{JobDocument, JobPhase, Placement, ReplicaId, ReplicaPhase, ReplicaStatus};

use super::*;
use crate::replicas::job::PlacedJob;

const NODE: &str = "n0";

/// Times of a test: `at(ms)` is `ms` after its start, on both clocks.
struct Clock {
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Now {
        Now {
            wall_ms: 1_000_000 + ms as i64,
            at: self.base + Duration::from_millis(ms),
        }
    }
}

/// A job with `roles` (name, replicas), every replica placed on this node and pending
/// at attempt 0; `spec` adds to the spec.
fn job(name: &str, framework: &str, roles: &[(&str, u32)], spec: serde_json::Value) -> PlacedJob {
    let mut doc = serde_json::json!({
        "apiVersion": "cairn.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"framework": framework, "roles": {}},
    });
    for (role, n) in roles {
        doc["spec"]["roles"][*role] = serde_json::json!({"replicas": n, "command": ["true"]});
    }
    if let serde_json::Value::Object(extra) = spec {
        for (k, v) in extra {
            doc["spec"][k] = v;
        }
    }
    let doc: JobDocument = serde_json::from_value(doc).unwrap();
    let mut job = PlacedJob {
        name: name.into(),
        phase: JobPhase::Scheduled,
        doc,
        placements: Vec::new(),
        replicas: Default::default(),
    };
    for (role, n) in roles {
        for index in 0..*n {
            let replica = id(role, index);
            job.placements.push(Placement {
                replica: replica.clone(),
                node: NODE.into(),
                gpus: Vec::new(),
                ports: Vec::new(),
                score: 0,
            });
            job.replicas.insert(replica, ReplicaStatus::default());
        }
    }
    job
}

fn id(role: &str, index: u32) -> ReplicaId {
    ReplicaId {
        role: role.into(),
        index,
    }
}

fn key(job: &str, role: &str, index: u32) -> ReplicaKey {
    ReplicaKey::new(job, role, index)
}

fn status(job: &mut PlacedJob, role: &str, index: u32, phase: ReplicaPhase, attempt: u32) {
    let st = job.replicas.get_mut(&id(role, index)).unwrap();
    st.phase = phase;
    st.attempt = attempt;
}

fn here_with(jobs: Vec<PlacedJob>) -> JobsHere {
    JobsHere {
        node: NODE.into(),
        jobs,
        unreadable: Default::default(),
    }
}

/// Plan a step and record it as done, every start succeeding.
fn step(jobs: &JobsHere, here: &mut Here, now: Now) -> Vec<Action> {
    let actions = plan(jobs, here, now);
    for a in &actions {
        match a {
            Action::Start { key, attempt } => here.started(key, *attempt),
            other => here.apply(other, now.at),
        }
    }
    actions
}

fn starts(actions: &[Action]) -> Vec<(ReplicaKey, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { key, attempt } => Some((key.clone(), *attempt)),
            _ => None,
        })
        .collect()
}

/// The actions that change something (no waits, no bookkeeping of jobs).
fn acts(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Action::Track { .. } | Action::WaitBackoff { .. } | Action::WaitDependencies { .. }
            )
        })
        .cloned()
        .collect()
}

fn exited(code: i32, signal: i32) -> Exit {
    Exit { code, signal }
}

// --- starts

#[test]
fn pending_replicas_placed_here_start_at_their_attempt() {
    let t = Clock::new();
    let mut j = job("train", "generic", &[("worker", 3)], serde_json::json!({}));
    j.placements[2].node = "n1".into();
    let jobs = here_with(vec![j]);
    let mut here = Here::default();
    let actions = step(&jobs, &mut here, t.at(0));
    assert_eq!(
        starts(&actions),
        [
            (key("train", "worker", 0), 0),
            (key("train", "worker", 1), 0)
        ],
        "not the replica placed on n1"
    );
    // --- the next step starts nothing again
    assert!(starts(&step(&jobs, &mut here, t.at(500))).is_empty());
}

#[test]
fn only_active_jobs_start_replicas() {
    let t = Clock::new();
    for (phase, starts_any) in [
        (JobPhase::Scheduled, true),
        (JobPhase::Running, true),
        (JobPhase::Queued, false),
        (JobPhase::Succeeded, false),
        (JobPhase::Failed, false),
        (JobPhase::Cancelled, false),
    ] {
        let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
        j.phase = phase;
        let actions = plan(&here_with(vec![j]), &Here::default(), t.at(0));
        assert_eq!(!starts(&actions).is_empty(), starts_any, "{phase:?}");
    }
}

#[test]
fn a_replica_starts_only_while_pending_and_with_a_status() {
    let t = Clock::new();
    for phase in [
        ReplicaPhase::Running,
        ReplicaPhase::Succeeded,
        ReplicaPhase::Failed,
    ] {
        let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
        status(&mut j, "worker", 0, phase, 0);
        let actions = plan(&here_with(vec![j]), &Here::default(), t.at(0));
        assert!(starts(&actions).is_empty(), "{phase:?}: {actions:?}");
    }
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    j.replicas.clear();
    let actions = plan(&here_with(vec![j]), &Here::default(), t.at(0));
    assert!(starts(&actions).is_empty(), "no status yet: {actions:?}");
}

#[test]
fn an_attempt_that_ended_here_is_not_started_again() {
    let t = Clock::new();
    let jobs = here_with(vec![job(
        "train",
        "generic",
        &[("worker", 1)],
        serde_json::json!({}),
    )]);
    let k = key("train", "worker", 0);
    let mut here = Here::default();
    // --- it could not start (say its port was taken): reported as ended
    assert_eq!(starts(&plan(&jobs, &here, t.at(0))), [(k.clone(), 0)]);
    here.not_started(&k, 0);
    // --- the control plane has not recorded it yet: still pending at attempt 0
    assert!(starts(&step(&jobs, &mut here, t.at(500))).is_empty());
    // --- a process of attempt 0 that exits is reported, and not started again either
    let mut here = Here::default();
    here.started(&k, 0);
    here.exited(&k, exited(1, 0));
    let actions = step(&jobs, &mut here, t.at(1000));
    assert_eq!(
        acts(&actions),
        [Action::ReportExit {
            key: k.clone(),
            attempt: 0,
            exit: exited(1, 0),
            check_oom: false,
        }]
    );
    assert!(here.running.is_empty());
    assert!(acts(&step(&jobs, &mut here, t.at(1500))).is_empty());
}

#[test]
fn a_restart_waits_its_backoff_from_the_end_of_the_last_run() {
    let t = Clock::new();
    let k = key("train", "worker", 0);
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    status(&mut j, "worker", 0, ReplicaPhase::Pending, 3);
    let ended_ms = t.at(0).wall_ms;
    j.replicas.get_mut(&id("worker", 0)).unwrap().ended_ms = ended_ms;
    let jobs = here_with(vec![j]);
    let mut here = Here::default();
    here.ended.insert((k.clone(), 2));
    // --- attempt 3 waits 4 s after the end of attempt 2
    assert_eq!(
        plan(&jobs, &here, t.at(3999)),
        [
            Action::Track {
                job: "train".into(),
                files_ttl: None
            },
            Action::WaitBackoff {
                key: k.clone(),
                attempt: 3,
                until_ms: ended_ms + 4000,
            }
        ]
    );
    assert_eq!(starts(&step(&jobs, &mut here, t.at(4000))), [(k, 3)]);
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(2), Duration::from_secs(2));
    assert_eq!(backoff(3), Duration::from_secs(4));
    assert_eq!(backoff(7), Duration::from_secs(60));
    assert_eq!(backoff(30), Duration::from_secs(60));
    assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
}

#[test]
fn the_first_attempt_has_no_backoff() {
    let t = Clock::new();
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    j.replicas.get_mut(&id("worker", 0)).unwrap().ended_ms = t.at(0).wall_ms;
    assert_eq!(
        starts(&plan(&here_with(vec![j]), &Here::default(), t.at(0))).len(),
        1
    );
}

// --- start order

#[test]
fn workers_wait_for_the_master_to_run() {
    let t = Clock::new();
    let mut j = job(
        "ddp",
        "pytorch",
        &[("master", 1), ("worker", 2)],
        serde_json::json!({}),
    );
    let mut here = Here::default();
    let actions = step(&here_with(vec![j.clone()]), &mut here, t.at(0));
    assert_eq!(starts(&actions), [(key("ddp", "master", 0), 0)]);
    assert!(actions.contains(&Action::WaitDependencies {
        key: key("ddp", "worker", 1),
        attempt: 0,
        roles: vec!["master".into()],
    }));
    // --- the master runs: the workers start
    status(&mut j, "master", 0, ReplicaPhase::Running, 0);
    let actions = step(&here_with(vec![j.clone()]), &mut here, t.at(500));
    assert_eq!(
        starts(&actions),
        [(key("ddp", "worker", 0), 0), (key("ddp", "worker", 1), 0)]
    );
}

#[test]
fn a_role_that_succeeded_no_longer_holds_back_the_ones_after_it() {
    let t = Clock::new();
    let mut j = job(
        "ddp",
        "pytorch",
        &[("master", 1), ("worker", 1)],
        serde_json::json!({}),
    );
    status(&mut j, "master", 0, ReplicaPhase::Succeeded, 0);
    assert_eq!(
        starts(&plan(
            &here_with(vec![j.clone()]),
            &Here::default(),
            t.at(0)
        )),
        [(key("ddp", "worker", 0), 0)]
    );
    status(&mut j, "master", 0, ReplicaPhase::Failed, 0);
    assert!(starts(&plan(&here_with(vec![j]), &Here::default(), t.at(0))).is_empty());
}

#[test]
fn the_mpi_launcher_waits_for_every_worker_even_on_other_nodes() {
    let t = Clock::new();
    let mut j = job(
        "allreduce",
        "mpi",
        &[("launcher", 1), ("worker", 2)],
        serde_json::json!({}),
    );
    // Worker 1 runs elsewhere: its status still counts.
    j.placements
        .iter_mut()
        .filter(|p| p.replica == id("worker", 1))
        .for_each(|p| p.node = "n1".into());
    status(&mut j, "worker", 0, ReplicaPhase::Running, 0);
    let actions = plan(&here_with(vec![j.clone()]), &Here::default(), t.at(0));
    assert_eq!(
        actions.last(),
        Some(&Action::WaitDependencies {
            key: key("allreduce", "launcher", 0),
            attempt: 0,
            roles: vec!["worker".into()],
        })
    );
    status(&mut j, "worker", 1, ReplicaPhase::Running, 0);
    let actions = plan(&here_with(vec![j]), &Here::default(), t.at(0));
    assert_eq!(starts(&actions), [(key("allreduce", "launcher", 0), 0)]);
}

#[test]
fn the_spec_start_order_replaces_the_frameworks_and_an_empty_one_turns_it_off() {
    let t = Clock::new();
    let explicit = job(
        "tf",
        "tensorflow",
        &[("ps", 1), ("worker", 1), ("evaluator", 1)],
        serde_json::json!({"dependsOn": {"evaluator": ["worker"]}}),
    );
    let actions = plan(&here_with(vec![explicit]), &Here::default(), t.at(0));
    assert_eq!(
        starts(&actions),
        [(key("tf", "ps", 0), 0), (key("tf", "worker", 0), 0)],
        "workers no longer wait for the PS; the evaluator waits for the workers"
    );
    let off = job(
        "tf",
        "tensorflow",
        &[("ps", 1), ("worker", 1)],
        serde_json::json!({"dependsOn": {}}),
    );
    let actions = plan(&here_with(vec![off]), &Here::default(), t.at(0));
    assert_eq!(starts(&actions).len(), 2);
}

// --- exits

#[test]
fn a_sigkill_from_elsewhere_is_checked_against_the_kernel_log() {
    let t = Clock::new();
    let jobs = here_with(vec![job(
        "train",
        "generic",
        &[("worker", 2)],
        serde_json::json!({}),
    )]);
    let mut here = Here::default();
    step(&jobs, &mut here, t.at(0));
    here.exited(&key("train", "worker", 0), exited(137, 9));
    here.exited(&key("train", "worker", 1), exited(143, 15));
    let actions = acts(&plan(&jobs, &here, t.at(500)));
    assert_eq!(
        actions,
        [
            Action::ReportExit {
                key: key("train", "worker", 0),
                attempt: 0,
                exit: exited(137, 9),
                check_oom: true,
            },
            Action::ReportExit {
                key: key("train", "worker", 1),
                attempt: 0,
                exit: exited(143, 15),
                check_oom: false,
            },
        ]
    );
}

#[test]
fn a_sigkill_this_agent_sent_is_no_oom() {
    let t = Clock::new();
    let k = key("train", "worker", 0);
    let mut here = Here::default();
    here.started(&k, 0);
    // --- the job is gone: stopped, then killed after the grace period
    let gone = here_with(Vec::new());
    step(&gone, &mut here, t.at(0));
    here.exited(&k, exited(137, 9));
    assert_eq!(
        acts(&plan(&gone, &here, t.at(20_000))),
        [Action::ReportExit {
            key: k,
            attempt: 0,
            exit: exited(137, 9),
            check_oom: false,
        }]
    );
}

#[test]
fn the_next_attempt_starts_in_the_step_that_reports_the_last_one_ended() {
    let t = Clock::new();
    let k = key("train", "worker", 0);
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    status(&mut j, "worker", 0, ReplicaPhase::Pending, 1);
    let jobs = here_with(vec![j]);
    let mut here = Here::default();
    here.started(&k, 0);
    // --- attempt 0 still runs: it is stopped, attempt 1 waits for it
    let actions = acts(&step(&jobs, &mut here, t.at(5000)));
    assert_eq!(
        actions,
        [Action::Stop {
            key: k.clone(),
            attempt: 0,
            signal: StopSignal::Term,
        }]
    );
    // --- it exits: reported, and attempt 1 starts
    here.exited(&k, exited(143, 15));
    let actions = acts(&step(&jobs, &mut here, t.at(5500)));
    assert_eq!(
        actions,
        [
            Action::ReportExit {
                key: k.clone(),
                attempt: 0,
                exit: exited(143, 15),
                check_oom: false,
            },
            Action::Start { key: k, attempt: 1 },
        ]
    );
}

// --- stops

#[test]
fn what_should_no_longer_run_gets_sigterm_then_sigkill_after_the_grace() {
    let t = Clock::new();
    let k = key("train", "worker", 0);
    let mut running = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    let mut here = Here::default();
    step(&here_with(vec![running.clone()]), &mut here, t.at(0));
    // --- the job was cancelled
    running.phase = JobPhase::Cancelled;
    let jobs = here_with(vec![running]);
    let stop = |signal| Action::Stop {
        key: k.clone(),
        attempt: 0,
        signal,
    };
    assert_eq!(
        acts(&step(&jobs, &mut here, t.at(1000))),
        [stop(StopSignal::Term)]
    );
    assert_eq!(here.running[&k].stopping_since, Some(t.at(1000).at));
    assert!(acts(&step(&jobs, &mut here, t.at(2000))).is_empty());
    assert!(
        acts(&step(&jobs, &mut here, t.at(11_000))).is_empty(),
        "10 s of grace"
    );
    assert_eq!(
        acts(&step(&jobs, &mut here, t.at(11_001))),
        [stop(StopSignal::Kill)]
    );
    assert_eq!(
        acts(&step(&jobs, &mut here, t.at(11_501))),
        [stop(StopSignal::Kill)],
        "again until it exits"
    );
}

#[test]
fn replicas_of_a_job_that_left_the_node_are_stopped() {
    let t = Clock::new();
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    let mut here = Here::default();
    step(&here_with(vec![j.clone()]), &mut here, t.at(0));
    // --- placed elsewhere (requeued and scheduled again)
    j.placements[0].node = "n1".into();
    let actions = acts(&step(&here_with(vec![j]), &mut here, t.at(500)));
    assert_eq!(
        actions,
        [Action::Stop {
            key: key("train", "worker", 0),
            attempt: 0,
            signal: StopSignal::Term,
        }]
    );
}

#[test]
fn a_running_attempt_the_control_plane_still_wants_is_left_alone() {
    let t = Clock::new();
    let mut j = job("train", "generic", &[("worker", 1)], serde_json::json!({}));
    let mut here = Here::default();
    step(&here_with(vec![j.clone()]), &mut here, t.at(0));
    status(&mut j, "worker", 0, ReplicaPhase::Running, 0);
    j.phase = JobPhase::Running;
    assert!(acts(&step(&here_with(vec![j]), &mut here, t.at(500))).is_empty());
}

#[test]
fn an_unreadable_job_is_left_as_it_is() {
    let t = Clock::new();
    let j = job(
        "train",
        "generic",
        &[("worker", 1)],
        serde_json::json!({"runPolicy": {"ttlSecondsAfterFinished": 0}}),
    );
    let mut here = Here::default();
    step(&here_with(vec![j]), &mut here, t.at(0));
    let mut jobs = here_with(Vec::new());
    jobs.unreadable.insert("train".into());
    assert!(
        step(&jobs, &mut here, t.at(500)).is_empty(),
        "neither stopped nor cleaned up"
    );
    assert!(here.running.contains_key(&key("train", "worker", 0)));
}

// --- files

#[test]
fn an_ended_jobs_files_go_after_its_ttl() {
    let t = Clock::new();
    let j = job(
        "train",
        "generic",
        &[("worker", 1)],
        serde_json::json!({"runPolicy": {"ttlSecondsAfterFinished": 2}}),
    );
    let mut here = Here::default();
    let actions = step(&here_with(vec![j.clone()]), &mut here, t.at(0));
    assert_eq!(
        actions[0],
        Action::Track {
            job: "train".into(),
            files_ttl: Some(Duration::from_secs(2)),
        }
    );
    assert!(
        !step(&here_with(vec![j]), &mut here, t.at(500))
            .iter()
            .any(|a| matches!(a, Action::Track { .. })),
        "tracked once"
    );
    // --- the job ended: it left the list of active jobs placed here
    let gone = here_with(Vec::new());
    here.running.clear();
    assert_eq!(
        step(&gone, &mut here, t.at(1000)),
        [Action::ScheduleCleanup {
            job: "train".into(),
            at: t.at(3000).at,
        }]
    );
    assert!(step(&gone, &mut here, t.at(2999)).is_empty());
    assert_eq!(
        step(&gone, &mut here, t.at(3000)),
        [Action::RemoveFiles {
            job: "train".into()
        }]
    );
    assert!(step(&gone, &mut here, t.at(3500)).is_empty(), "once");
    assert_eq!(here, Here::default());
}

#[test]
fn a_job_placed_here_again_before_its_ttl_keeps_its_files() {
    let t = Clock::new();
    let j = job(
        "train",
        "generic",
        &[("worker", 1)],
        serde_json::json!({"runPolicy": {"ttlSecondsAfterFinished": 2}}),
    );
    let mut here = Here::default();
    step(&here_with(vec![j.clone()]), &mut here, t.at(0));
    here.running.clear();
    // --- requeued elsewhere: its files are due to go in 2 s
    step(&here_with(Vec::new()), &mut here, t.at(1000));
    assert!(here.cleanup.contains_key("train"));
    // --- placed back here within the TTL, and still here when the TTL has passed
    let back = here_with(vec![j]);
    let actions = step(&back, &mut here, t.at(1500));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Track { .. })),
        "{actions:?}"
    );
    assert!(here.cleanup.is_empty(), "the pending cleanup is cancelled");
    assert!(
        !step(&back, &mut here, t.at(5000))
            .iter()
            .any(|a| matches!(a, Action::RemoveFiles { .. })),
        "its files stay while it runs here"
    );
}

#[test]
fn clean_pod_policy_all_removes_the_files_at_once_and_without_a_ttl_they_stay() {
    let t = Clock::new();
    let all = job(
        "all",
        "generic",
        &[("worker", 1)],
        serde_json::json!({"runPolicy": {"cleanPodPolicy": "All"}}),
    );
    let keep = job("keep", "generic", &[("worker", 1)], serde_json::json!({}));
    let mut here = Here::default();
    step(&here_with(vec![all, keep]), &mut here, t.at(0));
    here.running.clear();
    assert_eq!(
        step(&here_with(Vec::new()), &mut here, t.at(500)),
        [
            Action::Forget { job: "keep".into() },
            Action::RemoveFiles { job: "all".into() },
        ]
    );
    assert_eq!(here, Here::default());
}

#[test]
fn a_step_lists_files_then_exits_and_stops_then_starts() {
    let t = Clock::new();
    let mut here = Here::default();
    here.started(&key("old", "worker", 0), 0);
    here.started(&key("done", "worker", 0), 0);
    here.exited(&key("done", "worker", 0), exited(0, 0));
    here.known.insert("gone".into(), Some(Duration::ZERO));
    let jobs = here_with(vec![job(
        "new",
        "generic",
        &[("worker", 1)],
        serde_json::json!({}),
    )]);
    let kinds: Vec<&str> = plan(&jobs, &here, t.at(0))
        .iter()
        .map(|a| match a {
            Action::Track { .. } => "track",
            Action::RemoveFiles { .. } => "remove files",
            Action::ReportExit { .. } => "report exit",
            Action::Stop { .. } => "stop",
            Action::Start { .. } => "start",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["track", "remove files", "report exit", "stop", "start"]
    );
}
