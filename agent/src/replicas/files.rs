//! Where the replicas' files are on the node, under `<state dir>/replicas`:
//!
//! - `logs/<job>/<role>-<index>.log` (and its rotated files): a replica's output;
//! - `work/<job>/<role>-<index>/`: its working directory, with the synced code in `code/`;
//! - `<job>.<role>-<index>.pid`: the process an agent started for it;
//! - `<job>.hostfile`: an MPI job's hostfile.
//!
//! `cairn job logs` reads a log from the same path when the node's agent is out of
//! reach.

use std::path::{Path, PathBuf};

use super::job::ReplicaKey;

/// The replicas' files under one state directory.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    root: PathBuf,
}

/// A replica's log file.
pub fn log_file(state_dir: &Path, job: &str, role: &str, index: u32) -> PathBuf {
    NodeFiles::new(state_dir).log(&ReplicaKey::new(job, role, index))
}

impl NodeFiles {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join("replicas"),
        }
    }

    /// Where the pid files are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn log(&self, key: &ReplicaKey) -> PathBuf {
        self.root
            .join("logs")
            .join(&key.job)
            .join(format!("{}.log", key.replica))
    }

    pub fn work_dir(&self, key: &ReplicaKey) -> PathBuf {
        self.root
            .join("work")
            .join(&key.job)
            .join(key.replica.to_string())
    }

    pub fn pid_file(&self, key: &ReplicaKey) -> PathBuf {
        self.root.join(format!("{}.{}.pid", key.job, key.replica))
    }

    pub fn hostfile(&self, job: &str) -> PathBuf {
        self.root.join(format!("{job}.hostfile"))
    }

    /// Where a replica's run writes its metrics and parameters (`CAIRN_RUN_OUTPUTS`).
    pub fn outputs(&self, key: &ReplicaKey) -> PathBuf {
        self.root
            .join("outputs")
            .join(&key.job)
            .join(format!("{}.json", key.replica))
    }

    /// Every file a job leaves on the node: work directories, logs, hostfile, outputs.
    pub fn of_job(&self, job: &str) -> [PathBuf; 4] {
        [
            self.root.join("work").join(job),
            self.root.join("logs").join(job),
            self.hostfile(job),
            self.root.join("outputs").join(job),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_one_the_cli_and_earlier_agents_use() {
        let f = NodeFiles::new(Path::new("/s"));
        let k = ReplicaKey::new("train", "worker", 2);
        assert_eq!(f.log(&k), Path::new("/s/replicas/logs/train/worker-2.log"));
        assert_eq!(log_file(Path::new("/s"), "train", "worker", 2), f.log(&k));
        assert_eq!(f.work_dir(&k), Path::new("/s/replicas/work/train/worker-2"));
        assert_eq!(f.pid_file(&k), Path::new("/s/replicas/train.worker-2.pid"));
        assert_eq!(f.hostfile("train"), Path::new("/s/replicas/train.hostfile"));
        assert_eq!(
            f.outputs(&k),
            Path::new("/s/replicas/outputs/train/worker-2.json")
        );
    }
}
