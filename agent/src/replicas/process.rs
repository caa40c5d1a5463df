//! Replica processes: each runs in its own process group, with its output piped through
//! the agent into its rotating log; it is stopped by signalling the group, and reaped
//! without blocking. A pid file per replica outlives the agent, so its next run can
//! stop what this one started. When a SIGKILL came from elsewhere, the kernel's log
//! (`dmesg`) tells whether the OOM killer sent it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::job::ReplicaKey;
use super::plan::{Exit, StopSignal};
use super::rotate::RotatingLog;

/// How a replica's process is started.
pub struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub workdir: &'a Path,
}

/// A started replica's process.
pub struct ReplicaProcess {
    child: tokio::process::Child,
    /// Its pid, also its process group's id (kept: the child forgets it once reaped).
    pid: u32,
}

impl ReplicaProcess {
    /// Start the process in a new process group, its output appended to `log`.
    pub fn spawn(launch: &Launch<'_>, log: RotatingLog) -> std::io::Result<Self> {
        let mut child = tokio::process::Command::new(launch.program)
            .args(launch.args)
            .envs(launch.env)
            .current_dir(launch.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let Some(pid) = child.id() else {
            return Err(std::io::Error::other(
                "the process ended before it was seen",
            ));
        };
        let sink = Arc::new(Mutex::new(log));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, sink.clone()).in_current_span());
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, sink).in_current_span());
        }
        Ok(Self { child, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the process ended, if it did (reaped without waiting).
    pub fn try_exit(&mut self) -> Option<Exit> {
        let status = self.child.try_wait().ok()??;
        let signal = status.signal().unwrap_or(0);
        Some(Exit {
            code: status.code().unwrap_or(128 + signal),
            signal,
        })
    }

    /// Signal the process's group.
    pub fn signal(&self, signal: StopSignal) {
        signal_group(self.pid, signal);
    }

    /// Wait until the process ended.
    pub async fn wait(&mut self) {
        // An error here means it was reaped already.
        let _ = self.child.wait().await;
    }
}

/// Copy a replica's output into its log until the pipe closes.
async fn pump(mut from: impl AsyncRead + Unpin, to: Arc<Mutex<RotatingLog>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Err(e) = to.lock().await.write(&buf[..n]).await {
                    tracing::warn!(error = %e, "cannot write the replica's log; its output is dropped from now on");
                    return;
                }
            }
        }
    }
}

/// Send a signal to the process group `pgid`. One that is gone already is no error.
fn signal_group(pgid: u32, signal: StopSignal) {
    let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let signal = match signal {
        StopSignal::Term => Signal::TERM,
        StopSignal::Kill => Signal::KILL,
    };
    let _ = kill_process_group(pgid, signal);
}

/// What a pid file records: `pid attempt job role index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub attempt: u32,
    pub key: ReplicaKey,
}

impl PidRecord {
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.pid, self.attempt, self.key.job, self.key.replica.role, self.key.replica.index
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let f: Vec<&str> = text.split_whitespace().collect();
        let [pid, attempt, job, role, index] = f[..] else {
            return None;
        };
        Some(Self {
            pid: pid.parse().ok()?,
            attempt: attempt.parse().ok()?,
            key: ReplicaKey::new(job, role, index.parse().ok()?),
        })
    }
}

/// Kill the process group of every replica an earlier run of the agent recorded in
/// `dir`, and remove the pid files. Returns what they recorded.
pub async fn reclaim(dir: &Path) -> Vec<PidRecord> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return out;
    };
    let mut files: Vec<PathBuf> = Vec::new();
    while let Ok(Some(e)) = entries.next_entry().await {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "pid") {
            files.push(path);
        }
    }
    for path in files {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        if let Some(r) = PidRecord::parse(&text) {
            signal_group(r.pid, StopSignal::Kill);
            out.push(r);
        }
        let _ = tokio::fs::remove_file(&path).await;
    }
    out
}

/// Whether the kernel's log says the OOM killer ended `pid`. Unknown (no `dmesg`, or
/// no permission to read it) counts as no.
pub async fn killed_by_oom(pid: u32) -> bool {
    let out = tokio::process::Command::new("dmesg")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) => oom_kill_in(&String::from_utf8_lossy(&o.stdout), pid),
        Err(_) => false,
    }
}

/// Whether a kernel log names `pid` as killed for lack of memory.
fn oom_kill_in(kernel_log: &str, pid: u32) -> bool {
    let process = format!("process {pid} ");
    let killed = format!("Killed process {pid} ");
    kernel_log
        .lines()
        .any(|l| (l.contains("Out of memory") && l.contains(&process)) || l.contains(&killed))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::replicas::rotate::{LOG_KEEP, LOG_MAX_BYTES};

    #[test]
    fn pid_files_read_back_and_reject_anything_else() {
        let r = PidRecord {
            pid: 4242,
            attempt: 3,
            key: ReplicaKey::new("train", "worker", 1),
        };
        assert_eq!(r.line(), "4242 3 train worker 1\n");
        assert_eq!(PidRecord::parse(&r.line()), Some(r));
        assert_eq!(PidRecord::parse(""), None);
        assert_eq!(PidRecord::parse("4242 3 train worker"), None);
        assert_eq!(PidRecord::parse("x 3 train worker 1"), None);
        assert_eq!(PidRecord::parse("4242 3 train worker 1 extra"), None);
    }

    #[test]
    fn the_kernel_log_names_oom_kills_by_pid() {
        let log = "[ 1.0] Out of memory: Killed process 4242 (python3) total-vm:1kB\n\
                   [ 2.0] oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=77\n";
        assert!(oom_kill_in(log, 4242));
        assert!(!oom_kill_in(log, 424));
        assert!(!oom_kill_in(log, 77));
        assert!(oom_kill_in(
            "Memory cgroup out of memory: Killed process 9 (x)",
            9
        ));
        assert!(oom_kill_in(
            "Out of memory: Kill process 12 (x) score 900 or sacrifice child",
            12
        ));
    }

    async fn log_in(dir: &Path) -> RotatingLog {
        RotatingLog::open(&dir.join("r.log"), LOG_MAX_BYTES, LOG_KEEP)
            .await
            .unwrap()
    }

    async fn exit_of(p: &mut ReplicaProcess) -> Exit {
        p.wait().await;
        p.try_exit().unwrap()
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_exit_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("GREETING".to_string(), "hello".to_string())]);
        let args = [
            "-c".to_string(),
            "echo $GREETING; echo oops >&2; exit 3".into(),
        ];
        let launch = Launch {
            program: "sh",
            args: &args,
            env: &env,
            workdir: dir.path(),
        };
        let mut p = ReplicaProcess::spawn(&launch, log_in(dir.path()).await).unwrap();
        assert_eq!(exit_of(&mut p).await, Exit { code: 3, signal: 0 });
        let log = dir.path().join("r.log");
        crate::test_support::eventually(Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("hello\n") && text.contains("oops\n")
        })
        .await;
    }

    #[tokio::test]
    async fn a_stop_signals_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        // The shell waits for a child of its own: both go.
        let args = [
            "-c".to_string(),
            "sleep 300 & echo $! > child.pid; wait".into(),
        ];
        let env = BTreeMap::new();
        let launch = Launch {
            program: "sh",
            args: &args,
            env: &env,
            workdir: dir.path(),
        };
        let mut p = ReplicaProcess::spawn(&launch, log_in(dir.path()).await).unwrap();
        let child_pid = dir.path().join("child.pid");
        crate::test_support::eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&child_pid).is_ok_and(|t| t.ends_with('\n'))
        })
        .await;
        let child: u32 = std::fs::read_to_string(&child_pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(p.try_exit(), None, "still running");
        p.signal(StopSignal::Term);
        assert_eq!(
            exit_of(&mut p).await,
            Exit {
                code: 143,
                signal: 15
            }
        );
        crate::test_support::eventually(Duration::from_secs(5), || {
            !crate::test_support::alive(child)
        })
        .await;
    }

    #[tokio::test]
    async fn reclaim_kills_what_pid_files_name_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let args = ["300".to_string()];
        let launch = Launch {
            program: "sleep",
            args: &args,
            env: &env,
            workdir: dir.path(),
        };
        let mut p = ReplicaProcess::spawn(&launch, log_in(dir.path()).await).unwrap();
        let record = PidRecord {
            pid: p.pid(),
            attempt: 1,
            key: ReplicaKey::new("train", "worker", 0),
        };
        std::fs::write(dir.path().join("train.worker-0.pid"), record.line()).unwrap();
        std::fs::write(dir.path().join("garbage.pid"), "not a record").unwrap();
        assert_eq!(reclaim(dir.path()).await, [record]);
        assert_eq!(
            exit_of(&mut p).await,
            Exit {
                code: 137,
                signal: 9
            }
        );
        assert!(!dir.path().join("train.worker-0.pid").exists());
        assert!(!dir.path().join("garbage.pid").exists());
    }
}
