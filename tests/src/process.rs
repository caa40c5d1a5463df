//! Child processes of the harness: where the workspace's binaries are, and one running
//! process with its log, which can be killed (SIGKILL), paused (SIGSTOP) and resumed
//! (SIGCONT).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context;
use rustix::process::{kill_process, Pid, Signal};

/// Where the workspace's binaries are.
///
/// They are the ones `cargo test --workspace` builds next to the test executables
/// (`target/<profile>/`); `CAIRN_BIN_DIR` overrides where to look.
///
/// # Panics
///
/// When the binary is not there: the tests cannot run without it.
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("CAIRN_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries)",
        path.display()
    );
    path
}

/// A running child process whose stderr goes to a log file. Dropping it kills it
/// (SIGKILL) and reaps it.
pub struct Process {
    child: Child,
    paused: bool,
}

impl Process {
    /// Start `command`, appending its stderr to `log` (stdout is discarded).
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        Ok(Self {
            child,
            paused: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited on its own (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGSTOP: the process keeps its sockets and state but runs no code, as a process
    /// stalled by its host would.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::STOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT: it runs again.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::CONT)?;
        self.paused = false;
        Ok(())
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, signal)
            .with_context(|| format!("sending {signal:?} to process {}", self.pid()))
    }
}

impl Drop for Process {
    /// SIGKILL: no shutdown, no flush (a stopped process dies too).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example training jobs in `deploy/examples/` (one YAML file each), sorted.
pub fn example_jobs() -> std::io::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}
