//! The members of a campaign: one Cairn server per simulated host, run by the test
//! harness's server launcher inside the host's network namespace, on the host's
//! address, with its data on a disk of its own when the disk nemeses are on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cairn_tests::{leader_seen_by, Server, ServerSpec};

use crate::disk::Disk;
use crate::net::{Net, SERVER_PORT};

/// One server and the disk its data lives on.
pub struct Member {
    pub server: Server,
    /// With a disk size: the filesystem on its data directory.
    disk: Option<Disk>,
}

impl Member {
    /// Whether its disk can be slowed down.
    pub fn can_slow_disk(&self) -> bool {
        self.disk.as_ref().is_some_and(Disk::can_slow_down)
    }

    /// Throttle its writes to `iops` operations and `bps` bytes per second.
    pub fn slow_disk(&self, iops: u32, bps: u64) -> anyhow::Result<()> {
        let (Some(disk), Some(pid)) = (&self.disk, self.server.pid()) else {
            anyhow::bail!(
                "node {} has no disk of its own to slow down, or is not running",
                self.server.id
            );
        };
        disk.slow_down(pid, iops, bps)
    }

    /// Give it its disk's full speed back.
    pub fn fast_disk(&self) {
        if let Some(disk) = &self.disk {
            disk.full_speed(self.server.pid());
        }
    }

    /// Fill its disk up.
    pub fn fill_disk(&self) -> anyhow::Result<()> {
        match &self.disk {
            Some(disk) => disk.fill(),
            None => anyhow::bail!("node {} has no disk of its own to fill", self.server.id),
        }
    }

    /// Give its disk's space back.
    pub fn free_disk(&self) {
        if let Some(disk) = &self.disk {
            disk.free();
        }
    }
}

impl Drop for Member {
    /// The server goes before its disk is unmounted.
    fn drop(&mut self) {
        self.fast_disk();
        self.server.kill();
    }
}

/// How the members run.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// The `cairn-server` binary.
    pub server_bin: PathBuf,
    /// Each member's configuration, log and data go in `node<id>/` under it.
    pub dir: PathBuf,
    /// Size of each member's own disk, MiB (0: its data stays in `dir`).
    pub disk_mb: u32,
    /// The members' `raft.snapshot_after_logs` (they keep a tenth of that after one).
    pub snapshot_after_logs: u64,
}

/// Start one server per host of `net`; each returns once it accepts connections.
pub async fn start_all(net: &Net, settings: &MemberSettings) -> anyhow::Result<Vec<Member>> {
    std::fs::create_dir_all(&settings.dir)?;
    let initial: BTreeMap<u64, String> = net
        .hosts
        .iter()
        .map(|h| (h.index as u64 + 1, format!("{}:{SERVER_PORT}", h.ip)))
        .collect();
    let mut members = Vec::new();
    for h in &net.hosts {
        let id = h.index as u64 + 1;
        let listen = format!("{}:{SERVER_PORT}", h.ip);
        let dir = settings.dir.join(format!("node{id}"));
        let spec = ServerSpec {
            initial_members: initial.clone(),
            snapshot_after_logs: settings.snapshot_after_logs,
            logs_kept_after_snapshot: settings.snapshot_after_logs / 10,
            prefix: ["ip", "netns", "exec", &h.ns].map(String::from).to_vec(),
            // Addresses inside namespaces only this campaign reaches.
            insecure: true,
            ..ServerSpec::new(settings.server_bin.clone(), id, listen, dir)
        };
        let server = Server::new(spec)?;
        let disk = match settings.disk_mb {
            0 => None,
            mb => {
                let image = settings.dir.join(format!("node{id}.img"));
                let cgroup = format!("{}-node{id}", net.name());
                Some(Disk::create(server.data_dir(), &image, mb, &cgroup)?)
            }
        };
        let mut member = Member { server, disk };
        member.server.start().await?;
        members.push(member);
    }
    Ok(members)
}

/// The leader as the first running, unpaused member that knows one reports it.
pub async fn find_leader(members: &[Member]) -> Option<u64> {
    let answering = members
        .iter()
        .map(|m| &m.server)
        .filter(|s| s.is_running() && !s.is_paused());
    for s in answering {
        if let Some(l) = leader_seen_by(&s.addr, Duration::from_millis(800)).await {
            return Some(l);
        }
    }
    None
}
