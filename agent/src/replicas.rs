//! Running the job replicas placed on this node: each is a process (its own process
//! group) with the framework's wiring in its environment, `CUDA_VISIBLE_DEVICES` set to
//! its GPUs, and its output appended to a log file. Starts and exits become reports to
//! the control plane; the control plane decides restarts (a new attempt) and the end of
//! the job, and the runner follows: it starts what should run and stops what should not.
//!
//! A pid file per replica lets a restarted agent find what its previous run started:
//! those processes are stopped and reported as killed, so an agent restart neither
//! orphans nor duplicates replicas (the restart policy then decides).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_proto as pb;
use serde_json::Value;

/// A replica's log is rotated past this size; this many older files are kept.
pub const LOG_MAX_BYTES: u64 = 16 << 20;
pub const LOG_KEEP: usize = 3;

/// A log file that rotates `x.log` → `x.log.1` → … past a size.
pub struct RotatingLog {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingLog {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            keep,
        })
    }

    fn rotated(&self, i: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    }

    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(i), self.rotated(i + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            let _ = std::fs::remove_file(self.rotated(self.keep + 1));
            *self = Self::open(&self.path, self.max_bytes, self.keep)?;
        }
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

/// Copy a replica's output into its log until the pipe closes.
fn pump(mut from: impl std::io::Read + Send + 'static, to: Arc<Mutex<RotatingLog>>) {
    let _ = std::thread::Builder::new()
        .name("replica-log".into())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut log = to.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = log.write(&buf[..n]) {
                            tracing::warn!(error = %e, "cannot write a replica's log");
                            return;
                        }
                    }
                }
            }
        });
}

/// How long a replica gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// (job, role, index)
type Key = (String, String, u32);

struct Running {
    attempt: u32,
    child: Child,
    stopping_since: Option<Instant>,
}

pub struct Runner {
    node: String,
    dir: PathBuf,
    running: HashMap<Key, Running>,
    /// Attempts that ended here, reported or about to be: not started again.
    ended: HashSet<(Key, u32)>,
    /// Jobs seen placed here, with their `ttlSecondsAfterFinished`.
    seen: HashMap<String, Option<i64>>,
    /// Finished jobs whose files go at the given time.
    cleanup: HashMap<String, Instant>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds to wait before attempt `n` (n >= 1): 1, 2, 4, ... at most 60.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Put the job's code in `<dir>/code` (once per replica directory): a shallow git clone
/// or a copy of a directory. `None` when the job has no code sync.
fn sync_code(spec: &Value, dir: &Path) -> std::io::Result<Option<PathBuf>> {
    if spec.is_null() {
        return Ok(None);
    }
    let code = dir.join("code");
    if code.exists() {
        return Ok(Some(code));
    }
    let staging = dir.join("code.partial");
    let _ = std::fs::remove_dir_all(&staging);
    let status = if let Some(repo) = spec["git"]["repository"].as_str() {
        let mut git = Command::new("git");
        git.args(["clone", "--quiet", "--depth", "1"]);
        if let Some(r) = spec["git"]["ref"].as_str() {
            git.args(["--branch", r]);
        }
        git.arg(repo).arg(&staging).stdin(Stdio::null()).status()?
    } else if let Some(src) = spec["directory"].as_str() {
        std::fs::create_dir_all(&staging)?;
        Command::new("cp")
            .arg("-a")
            .arg(format!("{src}/."))
            .arg(&staging)
            .status()?
    } else {
        return Err(std::io::Error::other("codeSync names no source"));
    };
    if !status.success() {
        return Err(std::io::Error::other(format!("{status}")));
    }
    std::fs::rename(&staging, &code)?;
    Ok(Some(code))
}

/// Whether the kernel's log says the OOM killer ended `pid`.
fn killed_by_oom(pid: u32) -> bool {
    Command::new("dmesg")
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.contains("Out of memory") && l.contains(&format!("process {pid} ")))
                || String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.contains(&format!("Killed process {pid} ")))
        })
        .unwrap_or(false)
}

fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

fn report(node: &str, job: &str, role: &str, index: u32, attempt: u32) -> pb::ReportReplica {
    pb::ReportReplica {
        node: node.to_string(),
        job: job.to_string(),
        role: role.to_string(),
        index,
        attempt,
        ..Default::default()
    }
}

/// Where a replica is reached: its node's address and its first leased port (or the
/// framework's default port).
fn endpoint(
    p: &pb::ReplicaPlacement,
    addresses: &BTreeMap<String, String>,
    default: u32,
) -> String {
    let addr = addresses
        .get(&p.node)
        .cloned()
        .unwrap_or_else(|| p.node.clone());
    format!("{addr}:{}", p.ports.first().copied().unwrap_or(default))
}

/// The environment a replica gets: Cairn's own variables, the framework's wiring, and
/// the spec's `env` (which wins).
pub fn wiring(
    job: &pb::JobView,
    me: &pb::ReplicaPlacement,
    gpu_indexes: &[u32],
    addresses: &BTreeMap<String, String>,
    attempt: u32,
    dir: &Path,
) -> BTreeMap<String, String> {
    let doc: Value = serde_json::from_str(&job.spec_json).unwrap_or_default();
    let roles = doc["spec"]["roles"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut placements = job.placements.clone();
    placements.sort_by(|a, b| (a.role.as_str(), a.index).cmp(&(b.role.as_str(), b.index)));
    let world = placements.len();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("CAIRN_JOB", job.name.clone());
    set("CAIRN_ROLE", me.role.clone());
    set("CAIRN_INDEX", me.index.to_string());
    set("CAIRN_ATTEMPT", attempt.to_string());
    set("CAIRN_NODE", me.node.clone());
    set("CAIRN_WORLD_SIZE", world.to_string());
    set(
        "CAIRN_PORTS",
        me.ports
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    set(
        "CUDA_VISIBLE_DEVICES",
        gpu_indexes
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    match job.framework.as_str() {
        "pytorch" | "xgboost" => {
            // Rank 0 is the master (or worker 0 without one); workers follow.
            let lead = placements.iter().find(|p| p.role == "master").or_else(|| {
                placements
                    .iter()
                    .find(|p| p.role == "worker" && p.index == 0)
            });
            let default_port = if job.framework == "pytorch" {
                23456
            } else {
                9999
            };
            if let Some(lead) = lead {
                let ep = endpoint(lead, addresses, default_port);
                let (host, port) = ep.rsplit_once(':').unwrap_or((ep.as_str(), ""));
                set("MASTER_ADDR", host.to_string());
                set("MASTER_PORT", port.to_string());
            }
            let has_master = placements.iter().any(|p| p.role == "master");
            let rank = match me.role.as_str() {
                "master" => 0,
                _ if has_master => me.index + 1,
                _ => me.index,
            };
            set("WORLD_SIZE", world.to_string());
            set("RANK", rank.to_string());
            set("LOCAL_RANK", "0".into());
        }
        "tensorflow" | "xdl" => {
            let mut cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in &placements {
                cluster.entry(p.role.clone()).or_default().push(endpoint(
                    p,
                    addresses,
                    2222 + p.index,
                ));
            }
            let tf = serde_json::json!({
                "cluster": cluster,
                "task": {"type": me.role, "index": me.index},
            });
            set("TF_CONFIG", tf.to_string());
        }
        "mpi" => {
            let hostfile = dir.join(format!("{}.hostfile", job.name));
            let lines: Vec<String> = placements
                .iter()
                .filter(|p| p.role == "worker")
                .map(|p| {
                    let addr = addresses
                        .get(&p.node)
                        .cloned()
                        .unwrap_or_else(|| p.node.clone());
                    format!("{addr} slots={}", p.gpus.len().max(1))
                })
                .collect();
            let _ = std::fs::write(&hostfile, lines.join("\n") + "\n");
            set(
                "OMPI_MCA_orte_default_hostfile",
                hostfile.display().to_string(),
            );
            set("CAIRN_HOSTFILE", hostfile.display().to_string());
        }
        "mars" => {
            if let Some(s) = placements.iter().find(|p| p.role == "scheduler") {
                set("MARS_SCHEDULER_ADDRESS", endpoint(s, addresses, 11111));
            }
        }
        _ => {}
    }
    if let Some(e) = roles
        .get(&me.role)
        .and_then(|r| r["env"].as_object().cloned())
    {
        for (k, v) in e {
            set(&k, v.as_str().unwrap_or_default().to_string());
        }
    }
    env
}

impl Runner {
    pub fn new(node: &str, state_dir: &Path) -> Self {
        Self {
            node: node.to_string(),
            dir: state_dir.join("replicas"),
            running: HashMap::new(),
            ended: HashSet::new(),
            seen: HashMap::new(),
            cleanup: HashMap::new(),
        }
    }

    /// Files a job leaves on the node: work directories, logs, hostfile.
    fn job_files(&self, job: &str) -> [PathBuf; 3] {
        [
            self.dir.join("work").join(job),
            self.dir.join("logs").join(job),
            self.dir.join(format!("{job}.hostfile")),
        ]
    }

    /// Note which jobs ended (left the list of active jobs placed here) and remove the
    /// files of those past their TTL. The job's history stays in the log.
    fn collect_garbage(&mut self, jobs: &[pb::JobView]) {
        let active: HashSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        for j in jobs {
            let doc: Value = serde_json::from_str(&j.spec_json).unwrap_or_default();
            let policy = &doc["spec"]["runPolicy"];
            let ttl = if policy["cleanPodPolicy"].as_str() == Some("All") {
                Some(0)
            } else {
                policy["ttlSecondsAfterFinished"].as_i64()
            };
            self.seen.insert(j.name.clone(), ttl);
        }
        let ended: Vec<String> = self
            .seen
            .keys()
            .filter(|j| !active.contains(j.as_str()))
            .cloned()
            .collect();
        for j in ended {
            if let Some(Some(ttl)) = self.seen.remove(&j) {
                let at = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
                self.cleanup.insert(j, at);
            }
        }
        let due: Vec<String> = self
            .cleanup
            .iter()
            .filter(|(_, at)| Instant::now() >= **at)
            .map(|(j, _)| j.clone())
            .collect();
        for j in due {
            self.cleanup.remove(&j);
            for path in self.job_files(&j) {
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
            tracing::info!(job = %j, "removed a finished job's files (TTL)");
        }
    }

    fn pid_file(&self, k: &Key) -> PathBuf {
        self.dir.join(format!("{}.{}-{}.pid", k.0, k.1, k.2))
    }

    pub fn log_file(state_dir: &Path, job: &str, role: &str, index: u32) -> PathBuf {
        state_dir
            .join("replicas")
            .join("logs")
            .join(job)
            .join(format!("{role}-{index}.log"))
    }

    /// Stop what an earlier run of the agent left behind; report each as killed.
    pub fn reclaim(&mut self) -> Vec<pb::ReportReplica> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "pid") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let f: Vec<&str> = text.split_whitespace().collect();
            // pid attempt job role index
            if let [pid, attempt, job, role, index] = f[..] {
                let (Ok(pid), Ok(attempt), Ok(index)) = (
                    pid.parse::<u32>(),
                    attempt.parse::<u32>(),
                    index.parse::<u32>(),
                ) else {
                    continue;
                };
                if Path::new(&format!("/proc/{pid}")).exists() {
                    signal_group(pid, "-KILL");
                }
                tracing::warn!(
                    job,
                    role,
                    index,
                    pid,
                    "stopped a replica left by an earlier agent run"
                );
                let mut r = report(&self.node, job, role, index, attempt);
                r.exited = true;
                r.signal = 9;
                r.exit_code = 137;
                out.push(r);
            }
            let _ = std::fs::remove_file(&path);
        }
        out
    }

    /// Bring what runs in line with the jobs: start, stop, and collect exits. Returns the
    /// reports to send.
    pub fn step(
        &mut self,
        jobs: &[pb::JobView],
        gpu_index: &BTreeMap<String, u32>,
        addresses: &BTreeMap<String, String>,
        state_dir: &Path,
    ) -> Vec<pb::ReportReplica> {
        let mut out = Vec::new();
        let _ = std::fs::create_dir_all(&self.dir);
        self.collect_garbage(jobs);
        // What should run here, and at which attempt.
        let mut desired: HashMap<
            Key,
            (u32, &pb::JobView, &pb::ReplicaPlacement, &pb::ReplicaView),
        > = HashMap::new();
        for j in jobs
            .iter()
            .filter(|j| j.phase == "Scheduled" || j.phase == "Running")
        {
            for p in j.placements.iter().filter(|p| p.node == self.node) {
                if let Some(st) = j
                    .replica_status
                    .iter()
                    .find(|r| r.role == p.role && r.index == p.index)
                {
                    desired.insert(
                        (j.name.clone(), p.role.clone(), p.index),
                        (st.attempt, j, p, st),
                    );
                }
            }
        }
        // --- exits, and stopping what should no longer run
        let keys: Vec<Key> = self.running.keys().cloned().collect();
        for k in keys {
            let Some(r) = self.running.get_mut(&k) else {
                continue;
            };
            if let Ok(Some(status)) = r.child.try_wait() {
                let mut rep = report(&self.node, &k.0, &k.1, k.2, r.attempt);
                rep.exited = true;
                rep.exit_code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
                rep.signal = status.signal().unwrap_or(0);
                // A SIGKILL the agent did not send: ask the kernel whether it was OOM.
                rep.oom =
                    rep.signal == 9 && r.stopping_since.is_none() && killed_by_oom(r.child.id());
                self.ended.insert((k.clone(), r.attempt));
                self.running.remove(&k);
                let _ = std::fs::remove_file(self.pid_file(&k));
                out.push(rep);
                continue;
            }
            let wanted = desired.get(&k).is_some_and(|d| d.0 == r.attempt);
            if !wanted {
                let pid = r.child.id();
                match r.stopping_since {
                    None => {
                        tracing::info!(job = %k.0, role = %k.1, index = k.2, pid, "stopping a replica");
                        signal_group(pid, "-TERM");
                        r.stopping_since = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > STOP_GRACE => signal_group(pid, "-KILL"),
                    Some(_) => {}
                }
            }
        }
        // --- starts
        for (k, (attempt, job, p, st)) in desired {
            if self.running.contains_key(&k)
                || self.ended.contains(&(k.clone(), attempt))
                || st.phase != "Pending"
            {
                continue;
            }
            if attempt > 0 && now_ms() < st.ended_ms + backoff(attempt).as_millis() as i64 {
                continue;
            }
            // The start order: every replica of the roles this one waits for runs.
            let waits = job
                .dependencies
                .iter()
                .filter(|d| d.role == k.1)
                .flat_map(|d| d.after.iter())
                .any(|up| {
                    job.replica_status
                        .iter()
                        .filter(|r| r.role == *up)
                        .any(|r| r.phase != "Running" && r.phase != "Succeeded")
                });
            if waits {
                continue;
            }
            let gpus: Vec<u32> = p
                .gpus
                .iter()
                .filter_map(|u| gpu_index.get(u).copied())
                .collect();
            let env = wiring(job, p, &gpus, addresses, attempt, &self.dir);
            match self.start(&k, attempt, job, &env, state_dir) {
                Ok(pid) => {
                    let mut rep = report(&self.node, &k.0, &k.1, k.2, attempt);
                    rep.pid = pid;
                    out.push(rep);
                }
                Err(e) => {
                    tracing::warn!(job = %k.0, role = %k.1, index = k.2, error = %e, "cannot start a replica");
                    self.ended.insert((k.clone(), attempt));
                    let mut rep = report(&self.node, &k.0, &k.1, k.2, attempt);
                    rep.exited = true;
                    // 126: could not run (its port is taken); 127: no such command.
                    rep.exit_code = if e.kind() == std::io::ErrorKind::AddrInUse {
                        126
                    } else {
                        127
                    };
                    out.push(rep);
                }
            }
        }
        out
    }

    fn start(
        &mut self,
        k: &Key,
        attempt: u32,
        job: &pb::JobView,
        env: &BTreeMap<String, String>,
        state_dir: &Path,
    ) -> std::io::Result<u32> {
        let doc: Value = serde_json::from_str(&job.spec_json).unwrap_or_default();
        let role = &doc["spec"]["roles"][&k.1];
        let words = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut argv = words(&role["command"]);
        argv.extend(words(&role["args"]));
        let Some((program, args)) = argv.split_first() else {
            return Err(std::io::Error::other("the role has no command"));
        };
        let log = Self::log_file(state_dir, &k.0, &k.1, k.2);
        if let Some(d) = log.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        use std::io::Write;
        writeln!(
            out,
            "--- cairn: attempt {attempt} of {}/{}-{} ---",
            k.0, k.1, k.2
        )?;
        // A leased port someone else holds: the replica is not started.
        let ports: Vec<u16> = env
            .get("CAIRN_PORTS")
            .map(|p| p.split(',').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        for port in ports {
            if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
                let who = crate::ports::foreign_listeners(port)
                    .iter()
                    .map(|l| format!("{} (pid {})", l.process, l.pid))
                    .collect::<Vec<_>>()
                    .join(", ");
                let why = format!("leased port {port} is taken by {who}; not started");
                writeln!(out, "--- cairn: {why} ---")?;
                return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, why));
            }
        }
        let replica_dir = state_dir
            .join("replicas")
            .join("work")
            .join(&k.0)
            .join(format!("{}-{}", k.1, k.2));
        std::fs::create_dir_all(&replica_dir)?;
        let code = sync_code(&doc["spec"]["codeSync"], &replica_dir).inspect_err(|e| {
            let _ = writeln!(out, "--- cairn: code sync failed: {e} ---");
        })?;
        let workdir = match (role["workingDir"].as_str(), &code) {
            (Some(w), _) => PathBuf::from(w),
            (None, Some(code)) => code.clone(),
            (None, None) => replica_dir.clone(),
        };
        std::fs::create_dir_all(&workdir)?;
        let mut env = env.clone();
        if let Some(code) = &code {
            env.insert("CAIRN_CODE_DIR".into(), code.display().to_string());
        }
        drop(out);
        let mut child = Command::new(program)
            .args(args)
            .envs(&env)
            .current_dir(&workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        // Output goes through the agent into size-capped, rotated files.
        let sink = Arc::new(Mutex::new(RotatingLog::open(
            &log,
            LOG_MAX_BYTES,
            LOG_KEEP,
        )?));
        if let Some(o) = child.stdout.take() {
            pump(o, sink.clone());
        }
        if let Some(e) = child.stderr.take() {
            pump(e, sink);
        }
        let pid = child.id();
        std::fs::write(
            self.pid_file(k),
            format!("{pid} {attempt} {} {} {}\n", k.0, k.1, k.2),
        )?;
        tracing::info!(job = %k.0, role = %k.1, index = k.2, attempt, pid, "replica started");
        self.running.insert(
            k.clone(),
            Running {
                attempt,
                child,
                stopping_since: None,
            },
        );
        Ok(pid)
    }

    /// Stop every replica (the agent is shutting down): SIGTERM, then SIGKILL.
    pub fn stop_all(&mut self) {
        for r in self.running.values() {
            signal_group(r.child.id(), "-TERM");
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline
            && self
                .running
                .values_mut()
                .any(|r| matches!(r.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for r in self.running.values_mut() {
            signal_group(r.child.id(), "-KILL");
            let _ = r.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(framework: &str, roles: &[(&str, u32)]) -> pb::JobView {
        let mut placements = Vec::new();
        let mut spec_roles = serde_json::Map::new();
        for (role, n) in roles {
            spec_roles.insert(
                role.to_string(),
                serde_json::json!({"replicas": n, "command": ["true"], "env": {"EXTRA": "1"}}),
            );
            for i in 0..*n {
                placements.push(pb::ReplicaPlacement {
                    role: role.to_string(),
                    index: i,
                    node: format!("n{i}"),
                    gpus: vec![format!("GPU-{i}")],
                    ports: vec![20000 + i],
                    score: 0,
                });
            }
        }
        pb::JobView {
            name: "j".into(),
            framework: framework.into(),
            spec_json: serde_json::json!({"spec": {"roles": spec_roles}}).to_string(),
            placements,
            ..Default::default()
        }
    }

    fn addresses() -> BTreeMap<String, String> {
        (0..4)
            .map(|i| (format!("n{i}"), format!("10.0.0.{i}")))
            .collect()
    }

    #[test]
    fn pytorch_ranks_put_the_master_first() {
        let j = job("pytorch", &[("master", 1), ("worker", 3)]);
        let worker2 = j
            .placements
            .iter()
            .find(|p| p.role == "worker" && p.index == 2)
            .unwrap();
        let env = wiring(&j, worker2, &[5], &addresses(), 0, Path::new("/tmp"));
        assert_eq!(env["MASTER_ADDR"], "10.0.0.0");
        assert_eq!(env["MASTER_PORT"], "20000");
        assert_eq!(env["WORLD_SIZE"], "4");
        assert_eq!(env["RANK"], "3");
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "5");
        assert_eq!(env["EXTRA"], "1", "the spec's env is kept");
    }

    #[test]
    fn tensorflow_gets_a_tf_config() {
        let j = job("tensorflow", &[("ps", 1), ("worker", 2)]);
        let w1 = j
            .placements
            .iter()
            .find(|p| p.role == "worker" && p.index == 1)
            .unwrap();
        let env = wiring(&j, w1, &[], &addresses(), 0, Path::new("/tmp"));
        let tf: Value = serde_json::from_str(&env["TF_CONFIG"]).unwrap();
        assert_eq!(
            tf["task"],
            serde_json::json!({"type": "worker", "index": 1})
        );
        assert_eq!(tf["cluster"]["ps"], serde_json::json!(["10.0.0.0:20000"]));
        assert_eq!(tf["cluster"]["worker"][1], "10.0.0.1:20001");
    }

    #[test]
    fn mpi_launchers_get_a_hostfile() {
        let dir = tempfile::tempdir().unwrap();
        let j = job("mpi", &[("launcher", 1), ("worker", 2)]);
        let l = j.placements.iter().find(|p| p.role == "launcher").unwrap();
        let env = wiring(&j, l, &[], &addresses(), 0, dir.path());
        let hosts = std::fs::read_to_string(&env["CAIRN_HOSTFILE"]).unwrap();
        assert_eq!(hosts, "10.0.0.0 slots=1\n10.0.0.1 slots=1\n");
    }

    #[test]
    fn logs_rotate_past_their_size_and_keep_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut log = RotatingLog::open(&path, 100, 2).unwrap();
        for i in 0..10u8 {
            log.write(&[b'0' + i; 60]).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size(&path), 60, "the newest chunk");
        assert_eq!(std::fs::read(&path).unwrap()[0], b'9');
        assert_eq!(std::fs::read(dir.path().join("r.log.1")).unwrap()[0], b'8');
        assert_eq!(std::fs::read(dir.path().join("r.log.2")).unwrap()[0], b'7');
        assert!(
            !dir.path().join("r.log.3").exists(),
            "only two old files kept"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
