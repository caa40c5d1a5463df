//! What the runner does next, decided without doing it: from the jobs placed on this
//! node, what runs and what ended here, and the time, [`plan`] lists the actions of one
//! step. It starts no process, reads no file and no clock, so every rule of the
//! replicas' lifecycle on a node is tested here without processes.
//!
//! The rules, in the order of the actions a step lists:
//! 1. Files: a job that left the node (ended) has its files removed after its TTL.
//! 2. Exits: a process that ended is reported, once, with a check of the kernel's log
//!    when a SIGKILL came from elsewhere.
//! 3. Stops: a replica that should no longer run (its job ended or moved, or a newer
//!    attempt replaced it) gets SIGTERM, then SIGKILL every step after [`STOP_GRACE`].
//! 4. Starts: a pending replica of an active job starts at its current attempt, unless
//!    that attempt already ran here, it is in its restart backoff, or a role it waits
//!    for has a replica that neither runs nor succeeded.
//!
//! A job whose view does not read is left alone: nothing of it starts or stops, and its
//! files stay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_domain::job::{JobDocument, ReplicaId, ReplicaPhase, ReplicaStatus};

use super::job::{JobsHere, ReplicaKey};

/// How long a replica gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Time to wait before attempt `n` (n >= 1): 1, 2, 4, ... at most 60 seconds.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// The time of a step, read once by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, ms since the epoch: compared with the leader's `ended_ms`.
    pub wall_ms: i64,
    /// Monotonic clock: stop grace and file TTLs.
    pub at: Instant,
}

/// How a replica's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that ended it.
    pub code: i32,
    /// The signal that ended it (0: none).
    pub signal: i32,
}

/// A replica process started here and not yet reported as ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub attempt: u32,
    /// When this agent sent it SIGTERM.
    pub stopping_since: Option<Instant>,
    /// How it ended, once reaped.
    pub exit: Option<Exit>,
}

/// What runs and what ended on this node: the runner's record, read by [`plan`] and
/// changed by [`Here::apply`] and the outcome of each start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Here {
    pub running: BTreeMap<ReplicaKey, Running>,
    /// Attempts that ended here, reported or about to be: never started again.
    pub ended: BTreeSet<(ReplicaKey, u32)>,
    /// Jobs seen placed here, with how long their files stay once they end.
    pub known: BTreeMap<String, Option<Duration>>,
    /// Ended jobs whose files go at the given time.
    pub cleanup: BTreeMap<String, Instant>,
}

/// Which signal a stop sends to the replica's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

/// One thing the runner does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Note a job placed here and how long its files stay once it ends.
    Track {
        job: String,
        files_ttl: Option<Duration>,
    },
    /// The job ended: its files go at `at`.
    ScheduleCleanup { job: String, at: Instant },
    /// The job ended and its files stay.
    Forget { job: String },
    /// Remove the files an ended job left (work directories, logs, hostfile).
    RemoveFiles { job: String },
    /// Report that the attempt ended; `check_oom`: a SIGKILL this agent did not send,
    /// which the kernel's log may name as an OOM kill.
    ReportExit {
        key: ReplicaKey,
        attempt: u32,
        exit: Exit,
        check_oom: bool,
    },
    /// Signal the process group of a replica that should no longer run.
    Stop {
        key: ReplicaKey,
        attempt: u32,
        signal: StopSignal,
    },
    /// Start the replica's attempt.
    Start { key: ReplicaKey, attempt: u32 },
    /// The attempt starts once its restart backoff is over, at `until_ms` (wall clock).
    WaitBackoff {
        key: ReplicaKey,
        attempt: u32,
        until_ms: i64,
    },
    /// The attempt starts once every replica of these roles runs or succeeded.
    WaitDependencies {
        key: ReplicaKey,
        attempt: u32,
        roles: Vec<String>,
    },
}

/// A replica that should run here: its attempt and its status in the control plane.
struct Desired<'a> {
    attempt: u32,
    phase: ReplicaPhase,
    ended_ms: i64,
    job: &'a JobDocument,
    statuses: &'a BTreeMap<ReplicaId, ReplicaStatus>,
}

/// The actions of one step, in the order they are to be done.
pub fn plan(jobs: &JobsHere, here: &Here, now: Now) -> Vec<Action> {
    let mut out = Vec::new();
    files(jobs, here, now, &mut out);
    // Every replica of an active job placed here that has a status: it should run, at
    // the status's attempt.
    let mut desired: BTreeMap<ReplicaKey, Desired> = BTreeMap::new();
    for j in jobs.jobs.iter().filter(|j| j.phase.active()) {
        for p in j.placements.iter().filter(|p| p.node == jobs.node) {
            if let Some(st) = j.replicas.get(&p.replica) {
                desired.insert(
                    ReplicaKey {
                        job: j.name.clone(),
                        replica: p.replica.clone(),
                    },
                    Desired {
                        attempt: st.attempt,
                        phase: st.phase,
                        ended_ms: st.ended_ms,
                        job: &j.doc,
                        statuses: &j.replicas,
                    },
                );
            }
        }
    }
    // --- exits, and stopping what should no longer run
    for (key, r) in &here.running {
        if let Some(exit) = r.exit {
            out.push(Action::ReportExit {
                key: key.clone(),
                attempt: r.attempt,
                exit,
                check_oom: exit.signal == 9 && r.stopping_since.is_none(),
            });
            continue;
        }
        let wanted = desired.get(key).is_some_and(|d| d.attempt == r.attempt);
        if wanted || jobs.unreadable.contains(&key.job) {
            continue;
        }
        let signal = match r.stopping_since {
            None => Some(StopSignal::Term),
            Some(t) if now.at.saturating_duration_since(t) > STOP_GRACE => Some(StopSignal::Kill),
            Some(_) => None,
        };
        if let Some(signal) = signal {
            out.push(Action::Stop {
                key: key.clone(),
                attempt: r.attempt,
                signal,
            });
        }
    }
    // --- starts
    for (key, d) in &desired {
        // A process still runs for the replica (an exit reported in this step does not
        // count), or this attempt already ran here.
        let running = here.running.get(key);
        if running.is_some_and(|r| r.exit.is_none())
            || running.is_some_and(|r| r.attempt == d.attempt)
            || here.ended.contains(&(key.clone(), d.attempt))
            || d.phase != ReplicaPhase::Pending
        {
            continue;
        }
        if d.attempt > 0 {
            let until_ms = d
                .ended_ms
                .saturating_add(i64::try_from(backoff(d.attempt).as_millis()).unwrap_or(i64::MAX));
            if now.wall_ms < until_ms {
                out.push(Action::WaitBackoff {
                    key: key.clone(),
                    attempt: d.attempt,
                    until_ms,
                });
                continue;
            }
        }
        // The start order: every replica of the roles this one waits for runs.
        let waits_for: Vec<String> = d
            .job
            .spec
            .dependencies()
            .remove(&key.replica.role)
            .unwrap_or_default()
            .into_iter()
            .filter(|up| {
                d.statuses.iter().any(|(id, st)| {
                    id.role == *up
                        && !matches!(st.phase, ReplicaPhase::Running | ReplicaPhase::Succeeded)
                })
            })
            .collect();
        if !waits_for.is_empty() {
            out.push(Action::WaitDependencies {
                key: key.clone(),
                attempt: d.attempt,
                roles: waits_for,
            });
            continue;
        }
        out.push(Action::Start {
            key: key.clone(),
            attempt: d.attempt,
        });
    }
    out
}

/// Note the jobs placed here, and the files of those that left: removed at once, later
/// (their TTL), or never.
fn files(jobs: &JobsHere, here: &Here, now: Now, out: &mut Vec<Action>) {
    for j in &jobs.jobs {
        let files_ttl = j.files_ttl();
        if here.known.get(&j.name) != Some(&files_ttl) {
            out.push(Action::Track {
                job: j.name.clone(),
                files_ttl,
            });
        }
    }
    // A job placed here again before its files went keeps them.
    let mut due: BTreeSet<&String> = here
        .cleanup
        .iter()
        .filter(|(job, at)| now.at >= **at && !jobs.contains(job))
        .map(|(job, _)| job)
        .collect();
    for (job, ttl) in here.known.iter().filter(|(j, _)| !jobs.contains(j)) {
        match ttl {
            None => out.push(Action::Forget { job: job.clone() }),
            Some(ttl) if ttl.is_zero() => {
                due.insert(job);
            }
            Some(ttl) => out.push(Action::ScheduleCleanup {
                job: job.clone(),
                at: now.at + *ttl,
            }),
        }
    }
    out.extend(
        due.into_iter()
            .map(|job| Action::RemoveFiles { job: job.clone() }),
    );
}

impl Here {
    /// Record what an action did, when its outcome does not matter; a start's outcome
    /// is recorded by [`Here::started`] or [`Here::not_started`].
    pub fn apply(&mut self, action: &Action, now: Instant) {
        match action {
            Action::Track { job, files_ttl } => {
                self.known.insert(job.clone(), *files_ttl);
                self.cleanup.remove(job);
            }
            Action::ScheduleCleanup { job, at } => {
                self.known.remove(job);
                self.cleanup.insert(job.clone(), *at);
            }
            Action::Forget { job } => {
                self.known.remove(job);
            }
            Action::RemoveFiles { job } => {
                self.known.remove(job);
                self.cleanup.remove(job);
            }
            Action::ReportExit { key, attempt, .. } => {
                self.running.remove(key);
                self.ended.insert((key.clone(), *attempt));
            }
            Action::Stop {
                key,
                signal: StopSignal::Term,
                ..
            } => {
                if let Some(r) = self.running.get_mut(key) {
                    r.stopping_since = Some(now);
                }
            }
            Action::Stop { .. }
            | Action::Start { .. }
            | Action::WaitBackoff { .. }
            | Action::WaitDependencies { .. } => {}
        }
    }

    /// The attempt's process runs.
    pub fn started(&mut self, key: &ReplicaKey, attempt: u32) {
        self.running.insert(
            key.clone(),
            Running {
                attempt,
                stopping_since: None,
                exit: None,
            },
        );
    }

    /// The attempt could not start: it ended here.
    pub fn not_started(&mut self, key: &ReplicaKey, attempt: u32) {
        self.ended.insert((key.clone(), attempt));
    }

    /// The replica's process was reaped.
    pub fn exited(&mut self, key: &ReplicaKey, exit: Exit) {
        if let Some(r) = self.running.get_mut(key) {
            r.exit = Some(exit);
        }
    }
}

#[cfg(test)]
mod tests;
