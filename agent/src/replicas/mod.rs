//! Running the job replicas placed on this node. Each replica is a process in its own
//! process group, with its framework's wiring in its environment, `CUDA_VISIBLE_DEVICES`
//! set to its GPUs, and its output in a rotating log file. Starts and exits become
//! reports to the control plane; the control plane decides restarts (a new attempt) and
//! the end of the job, and the runner follows: it starts what should run and stops what
//! should not.
//!
//! Each step of the [`Runner`] reads the jobs placed here, reaps the processes that
//! ended, asks the plan what to do, and does it:
//!
//! - `job`: the jobs placed here, read from their views into the domain's types;
//! - `plan`: the pure decision of a step (starts, stops, exit reports, restart backoff,
//!   start order, file cleanup), tested without processes;
//! - `process`: spawning, signals to process groups, reaping, pid files, the OOM check;
//! - `wiring`: the environment of a replica (ranks, `TF_CONFIG`, MPI hostfile, …);
//! - `codesync`: the job's code put in place before a start;
//! - `rotate`: the size-capped log file;
//! - `files`: where all of it lives on the node.
//!
//! Nothing here blocks the runtime: processes (git, dmesg, replicas) are waited on
//! asynchronously, files go through `tokio::fs`, a directory copy runs on the blocking
//! pool. `cairn-server dev` runs the agent inside the server's process.
//!
//! A pid file per replica lets a restarted agent find what its previous run started:
//! those processes are stopped and reported as killed, so an agent restart neither
//! orphans nor duplicates replicas (the restart policy then decides).

mod codesync;
mod files;
mod job;
mod outputs;
mod plan;
mod process;
mod rotate;
mod wiring;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_proto as pb;

pub use files::log_file;
// What the serving replicas share with the job replicas: processes and their logs.
use files::NodeFiles;
use job::{JobsHere, ReplicaKey, UnreadableJob};
use plan::{plan, Action, Exit, Here, Now};
pub(crate) use plan::{StopSignal, STOP_GRACE};
use process::PidRecord;
pub(crate) use process::{Launch, ReplicaProcess};
pub(crate) use rotate::{RotatingLog, LOG_KEEP, LOG_MAX_BYTES};

/// Runs the replicas placed on one node.
pub struct Runner {
    node: String,
    files: NodeFiles,
    /// What runs and what ended here, as the plan sees it.
    here: Here,
    /// The process of each replica in `here.running`.
    processes: BTreeMap<ReplicaKey, ReplicaProcess>,
    /// Jobs placed here whose views do not read, already warned about.
    unreadable: BTreeSet<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a replica could not start: its exit code in the report.
fn start_failure_code(e: &std::io::Error) -> i32 {
    // 126: could not run (its port is taken); 127: no such command, or no code.
    if e.kind() == std::io::ErrorKind::AddrInUse {
        126
    } else {
        127
    }
}

impl Runner {
    pub fn new(node: &str, state_dir: &Path) -> Self {
        Self {
            node: node.to_string(),
            files: NodeFiles::new(state_dir),
            here: Here::default(),
            processes: BTreeMap::new(),
            unreadable: BTreeSet::new(),
        }
    }

    /// Job replicas running here.
    pub fn running(&self) -> usize {
        self.processes.len()
    }

    fn report(&self, key: &ReplicaKey, attempt: u32) -> pb::ReportReplica {
        pb::ReportReplica {
            node: self.node.clone(),
            job: key.job.clone(),
            role: key.replica.role.clone(),
            index: key.replica.index,
            attempt,
            ..Default::default()
        }
    }

    /// Stop what an earlier run of the agent left behind; report each as killed.
    pub async fn reclaim(&mut self) -> Vec<pb::ReportReplica> {
        let mut out = Vec::new();
        for r in process::reclaim(self.files.root()).await {
            tracing::warn!(
                job = %r.key.job,
                replica = %r.key.replica,
                attempt = r.attempt,
                pid = r.pid,
                "stopped a replica left by an earlier agent run"
            );
            let mut report = self.report(&r.key, r.attempt);
            report.exited = true;
            report.signal = 9;
            report.exit_code = 137;
            out.push(report);
        }
        out
    }

    /// Bring what runs here in line with the jobs (`views`, those placed on this node
    /// among them): collect exits, stop, start. `gpu_index` maps this node's GPU UUIDs
    /// to their indexes, `addresses` node names to addresses. Returns the reports to
    /// send.
    pub async fn step(
        &mut self,
        views: &[pb::JobView],
        gpu_index: &BTreeMap<String, u32>,
        addresses: &BTreeMap<String, String>,
    ) -> Vec<pb::ReportReplica> {
        let (jobs, problems) = JobsHere::read(&self.node, views);
        self.note_unreadable(problems);
        for (key, p) in &mut self.processes {
            if let Some(exit) = p.try_exit() {
                self.here.exited(key, exit);
            }
        }
        let now = Now {
            wall_ms: now_ms(),
            at: tokio::time::Instant::now().into_std(),
        };
        let mut out = Vec::new();
        for action in plan(&jobs, &self.here, now) {
            match &action {
                Action::Start { key, attempt } => {
                    let inputs = StepInputs {
                        jobs: &jobs,
                        gpu_index,
                        addresses,
                    };
                    out.push(self.start(key, *attempt, inputs).await);
                }
                Action::Stop {
                    key,
                    attempt,
                    signal,
                } => self.stop(key, *attempt, *signal),
                Action::ReportExit {
                    key,
                    attempt,
                    exit,
                    check_oom,
                } => out.push(self.report_exit(key, *attempt, *exit, *check_oom).await),
                Action::RemoveFiles { job } => self.remove_files(job).await,
                Action::WaitBackoff {
                    key,
                    attempt,
                    until_ms,
                } => {
                    tracing::trace!(job = %key.job, replica = %key.replica, attempt, until_ms, "waiting for the restart backoff")
                }
                Action::WaitDependencies {
                    key,
                    attempt,
                    roles,
                } => {
                    tracing::trace!(job = %key.job, replica = %key.replica, attempt, ?roles, "waiting for the roles it starts after")
                }
                Action::Track { .. } | Action::ScheduleCleanup { .. } | Action::Forget { .. } => {}
            }
            self.here.apply(&action, now.at);
        }
        out
    }

    /// Warn once about each job placed here whose view does not read.
    fn note_unreadable(&mut self, problems: Vec<UnreadableJob>) {
        let mut now = BTreeSet::new();
        for p in problems {
            if !self.unreadable.contains(p.job()) {
                tracing::warn!(error = %p, "cannot read a job placed here; its replicas are left as they are");
            }
            now.insert(p.job().to_string());
        }
        self.unreadable = now;
    }

    /// Start the replica's attempt; the report says it runs, or that it exited when it
    /// could not start.
    #[tracing::instrument(skip_all, fields(job = %key.job, replica = %key.replica, attempt = attempt))]
    async fn start(
        &mut self,
        key: &ReplicaKey,
        attempt: u32,
        inputs: StepInputs<'_>,
    ) -> pb::ReportReplica {
        let mut report = self.report(key, attempt);
        match self.launch(key, attempt, inputs).await {
            Ok(pid) => {
                self.here.started(key, attempt);
                tracing::info!(pid, "replica started");
                report.pid = pid;
            }
            Err(e) => {
                self.here.not_started(key, attempt);
                report.exited = true;
                report.exit_code = start_failure_code(&e);
                tracing::warn!(error = %e, exit_code = report.exit_code, "cannot start the replica; reported as exited");
            }
        }
        report
    }

    /// Prepare and spawn a replica: its log, its leased ports, its code, its working
    /// directory. Returns its pid.
    async fn launch(
        &mut self,
        key: &ReplicaKey,
        attempt: u32,
        inputs: StepInputs<'_>,
    ) -> std::io::Result<u32> {
        tokio::fs::create_dir_all(self.files.root()).await?;
        let not_here = || std::io::Error::other("the replica is not placed on this node");
        let job = inputs.jobs.job(&key.job).ok_or_else(not_here)?;
        let me = job
            .placement_on(&key.replica, &self.node)
            .ok_or_else(not_here)?;
        let role = job
            .role(&key.replica.role)
            .ok_or_else(|| std::io::Error::other("the job's spec has no such role"))?;
        let gpus: Vec<u32> = me
            .gpus
            .iter()
            .filter_map(|u| inputs.gpu_index.get(u).copied())
            .collect();
        let wiring = wiring::wiring(
            job,
            me,
            &gpus,
            inputs.addresses,
            attempt,
            &self.files.hostfile(&key.job),
        );
        if let Some(h) = &wiring.hostfile {
            if let Err(e) = tokio::fs::write(&h.path, &h.text).await {
                tracing::warn!(error = %e, path = %h.path.display(), "cannot write the MPI hostfile");
            }
        }
        let argv: Vec<String> = role.command.iter().chain(&role.args).cloned().collect();
        let Some((program, args)) = argv.split_first() else {
            return Err(std::io::Error::other("the role has no command"));
        };
        let log_path = self.files.log(key);
        if let Some(d) = log_path.parent() {
            tokio::fs::create_dir_all(d).await?;
        }
        let mut log = RotatingLog::open(&log_path, LOG_MAX_BYTES, LOG_KEEP).await?;
        log.write(format!("--- cairn: attempt {attempt} of {key} ---\n").as_bytes())
            .await?;
        // A leased port someone else holds: the replica is not started.
        for port in me.ports.iter().filter_map(|p| u16::try_from(*p).ok()) {
            if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
                continue;
            }
            let who = tokio::task::spawn_blocking(move || crate::ports::foreign_listeners(port))
                .await
                .unwrap_or_default()
                .iter()
                .map(|l| format!("{} (pid {})", l.process, l.pid))
                .collect::<Vec<_>>()
                .join(", ");
            let why = format!("leased port {port} is taken by {who}; not started");
            log.write(format!("--- cairn: {why} ---\n").as_bytes())
                .await?;
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, why));
        }
        let replica_dir = self.files.work_dir(key);
        tokio::fs::create_dir_all(&replica_dir).await?;
        let code = match codesync::sync_code(job.doc.spec.code_sync.as_ref(), &replica_dir).await {
            Ok(code) => code,
            Err(e) => {
                log.write(format!("--- cairn: code sync failed: {e} ---\n").as_bytes())
                    .await?;
                return Err(e);
            }
        };
        let workdir = match (&role.working_dir, &code) {
            (Some(w), _) => PathBuf::from(w),
            (None, Some(code)) => code.clone(),
            (None, None) => replica_dir,
        };
        tokio::fs::create_dir_all(&workdir).await?;
        let mut env = wiring.env;
        if let Some(code) = &code {
            env.insert("CAIRN_CODE_DIR".into(), code.display().to_string());
        }
        // What the run writes there (metrics, parameters) goes with its exit report.
        let outputs = self.files.outputs(key);
        if let Some(dir) = outputs.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        if let Err(e) = tokio::fs::remove_file(&outputs).await {
            tracing::debug!(error = %e, "no outputs of an earlier attempt to remove");
        }
        env.insert(outputs::ENV.into(), outputs.display().to_string());
        let launch = Launch {
            program,
            args,
            env: &env,
            workdir: &workdir,
        };
        // Output goes through the agent into size-capped, rotated files.
        let process = ReplicaProcess::spawn(&launch, log)?;
        let pid = process.pid();
        self.processes.insert(key.clone(), process);
        let record = PidRecord {
            pid,
            attempt,
            key: key.clone(),
        };
        if let Err(e) = tokio::fs::write(self.files.pid_file(key), record.line()).await {
            tracing::warn!(error = %e, "cannot write the replica's pid file; an agent restart will not stop it");
        }
        Ok(pid)
    }

    /// Signal a replica that should no longer run.
    #[tracing::instrument(skip_all, fields(job = %key.job, replica = %key.replica, attempt = attempt))]
    fn stop(&self, key: &ReplicaKey, attempt: u32, signal: StopSignal) {
        let Some(p) = self.processes.get(key) else {
            return;
        };
        match signal {
            StopSignal::Term => tracing::info!(pid = p.pid(), "stopping the replica"),
            StopSignal::Kill => {
                tracing::debug!(pid = p.pid(), grace = ?STOP_GRACE, "killing the replica after its grace period");
            }
        }
        p.signal(signal);
    }

    /// The report that the attempt ended, and the end of its pid file.
    #[tracing::instrument(skip_all, fields(job = %key.job, replica = %key.replica, attempt = attempt))]
    async fn report_exit(
        &mut self,
        key: &ReplicaKey,
        attempt: u32,
        exit: Exit,
        check_oom: bool,
    ) -> pb::ReportReplica {
        let pid = self.processes.remove(key).map(|p| p.pid());
        // A SIGKILL the agent did not send: ask the kernel whether it was OOM.
        let oom = match pid {
            Some(pid) if check_oom => process::killed_by_oom(pid).await,
            _ => false,
        };
        if let Err(e) = tokio::fs::remove_file(self.files.pid_file(key)).await {
            tracing::debug!(error = %e, "no pid file to remove");
        }
        tracing::info!(
            exit_code = exit.code,
            signal = exit.signal,
            oom,
            "replica exited"
        );
        let mut report = self.report(key, attempt);
        report.exited = true;
        report.exit_code = exit.code;
        report.signal = exit.signal;
        report.oom = oom;
        report.outputs = outputs::read(&self.files.outputs(key)).await;
        report
    }

    /// Remove the files an ended job left; its history stays in the log.
    async fn remove_files(&self, job: &str) {
        for path in self.files.of_job(job) {
            let removed = match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&path).await,
                Ok(_) => tokio::fs::remove_file(&path).await,
                Err(_) => continue,
            };
            if let Err(e) = removed {
                tracing::warn!(job, error = %e, path = %path.display(), "cannot remove a finished job's file");
            }
        }
        tracing::info!(job, "removed a finished job's files (TTL)");
    }

    /// Stop every replica (the agent is shutting down): SIGTERM, then SIGKILL to what
    /// still runs after the grace period. Their pid files stay: the next run of the
    /// agent reports them killed.
    pub async fn stop_all(&mut self) {
        for p in self.processes.values() {
            p.signal(StopSignal::Term);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for p in self.processes.values_mut() {
            // Past the deadline: killed below.
            let _ = tokio::time::timeout_at(deadline, p.wait()).await;
        }
        for p in self.processes.values_mut() {
            p.signal(StopSignal::Kill);
            p.wait().await;
        }
    }
}

/// What a start needs besides the replica: the jobs placed here, this node's GPU
/// indexes by UUID, the nodes' addresses.
#[derive(Clone, Copy)]
struct StepInputs<'a> {
    jobs: &'a JobsHere,
    gpu_index: &'a BTreeMap<String, u32>,
    addresses: &'a BTreeMap<String, String>,
}
