//! Cairn servers running inside the simulated hosts, one per host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use cairn_proto as pb;
use pb::cairn_client::CairnClient;
use tonic::transport::Channel;

use crate::net::Net;

/// Client port every server listens on (each host has its own address).
pub const PORT: u16 = 7420;

pub struct Server {
    pub id: u64,
    pub addr: String,
    ns: String,
    data: PathBuf,
    log: PathBuf,
    members: String,
    bin: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    /// The loop device the data directory is mounted from (with a disk size).
    disk: Option<Disk>,
}

/// A small ext4 filesystem on a loop device: a disk the nemeses can fill or slow down.
struct Disk {
    image: PathBuf,
    device: String,
    /// `major:minor` of the loop device, for the blkio throttle.
    dev_id: String,
    /// The blkio cgroup that slows this server's writes.
    cgroup: PathBuf,
}

impl Disk {
    fn create(image: &Path, mount: &Path, mb: u32, cgroup: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cgroup)
            .with_context(|| format!("creating the blkio cgroup {}", cgroup.display()))?;
        std::fs::create_dir_all(mount)?;
        let file = std::fs::File::create(image)?;
        file.set_len(u64::from(mb) << 20)?;
        drop(file);
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .context("running losetup")?;
        anyhow::ensure!(
            out.status.success(),
            "losetup {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let disk = Self {
            image: image.to_path_buf(),
            device: device.clone(),
            dev_id: std::fs::read_to_string(format!(
                "/sys/block/{}/dev",
                device.trim_start_matches("/dev/")
            ))?
            .trim()
            .to_string(),
            cgroup,
        };
        // No blocks reserved for root: the server runs as root and must see the disk full.
        crate::net::sh(&["mkfs.ext4", "-q", "-F", "-m", "0", &device])?;
        crate::net::sh(&["mount", &device, &mount.to_string_lossy()])?;
        Ok(disk)
    }

    fn release(&self, mount: &Path) {
        let _ = Command::new("umount")
            .arg(mount)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("losetup")
            .args(["-d", &self.device])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// The root of the blkio hierarchy (cgroup v1), where throttled servers return.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";

impl Server {
    /// Throttle this server's writes to its disk to `iops` operations and `bps` bytes per
    /// second (a slow disk). Only with a disk size.
    pub fn slow_disk(&mut self, iops: u32, bps: u64) -> anyhow::Result<()> {
        let (Some(d), Some(c)) = (&self.disk, &self.child) else {
            anyhow::bail!("node {} has no disk of its own to slow down", self.id);
        };
        std::fs::write(
            d.cgroup.join("blkio.throttle.write_iops_device"),
            format!("{} {iops}", d.dev_id),
        )?;
        std::fs::write(
            d.cgroup.join("blkio.throttle.write_bps_device"),
            format!("{} {bps}", d.dev_id),
        )?;
        std::fs::write(d.cgroup.join("cgroup.procs"), c.id().to_string())?;
        Ok(())
    }

    /// Whether the server has a disk of its own that can be slowed down.
    pub fn can_slow_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Give the server its disk's full speed back.
    pub fn fast_disk(&mut self) {
        if let (Some(d), Some(c)) = (&self.disk, &self.child) {
            let _ = std::fs::write(
                Path::new(BLKIO_ROOT).join("cgroup.procs"),
                c.id().to_string(),
            );
            let _ = std::fs::write(
                d.cgroup.join("blkio.throttle.write_iops_device"),
                format!("{} 0", d.dev_id),
            );
            let _ = std::fs::write(
                d.cgroup.join("blkio.throttle.write_bps_device"),
                format!("{} 0", d.dev_id),
            );
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.bin)
            .args([
                "run",
                "--node-id",
                &self.id.to_string(),
                "--listen",
                &self.addr,
            ])
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--initial-members", &self.members])
            .env("CAIRN_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cairn-server in its namespace")?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Whether the process runs (a server that exited on its own is reaped here).
    pub fn is_running(&mut self) -> bool {
        if let Some(c) = &mut self.child {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
            }
        }
        self.child.is_some()
    }

    /// The server's data directory (on a small loop-device disk when the disk nemeses
    /// are on).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.fast_disk();
        self.resume();
        self.kill();
        match self.disk.take() {
            Some(d) => d.release(&self.data),
            None => {
                let _ = Command::new("umount")
                    .arg(&self.data)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The file that fills a server's disk.
fn filler(data: &Path) -> PathBuf {
    data.join("chaos-filler")
}

/// Fill the filesystem of `data`.
pub fn fill_disk(data: &Path) -> anyhow::Result<()> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(data)
        .output()?;
    let avail: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .context("reading the free space")?;
    // Block rounding keeps the last few KiB out of reach, and the server may write
    // meanwhile: back off a little until it fits. sled writes far larger segments, so
    // the disk is full for it.
    let path = filler(data);
    let mut last = None;
    for margin in [64u64 << 10, 1 << 20, 4 << 20, 16 << 20] {
        let size = avail.saturating_sub(margin);
        if size == 0 {
            // Less than the margin is left: the disk is already full for sled.
            return Ok(());
        }
        let size = size.to_string();
        match crate::net::sh(&["fallocate", "-l", &size, &path.to_string_lossy()]) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("could not fill {}", data.display())))
}

/// Give the space back.
pub fn free_disk(data: &Path) {
    let _ = std::fs::remove_file(filler(data));
}

/// One server per host of `net`; with `disk_mb`, each data directory is an ext4
/// filesystem of that size on a loop device, so a nemesis can fill it or slow it down.
pub fn start_all(net: &Net, settings: &crate::campaign::Settings) -> anyhow::Result<Vec<Server>> {
    let (dir, bin, disk_mb) = (&settings.dir, &settings.server_bin, settings.disk_mb);
    std::fs::create_dir_all(dir)?;
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[raft]\nsnapshot_after_logs = {}\nlogs_kept_after_snapshot = {}\n",
            settings.snapshot_after_logs,
            settings.snapshot_after_logs / 10
        ),
    )?;
    let members: Vec<String> = net
        .hosts
        .iter()
        .map(|h| format!("{}={}:{PORT}", h.index + 1, h.ip))
        .collect();
    let members = members.join(",");
    let mut servers = Vec::new();
    for h in &net.hosts {
        let id = h.index as u64 + 1;
        let mut s = Server {
            id,
            addr: format!("{}:{PORT}", h.ip),
            ns: h.ns.clone(),
            data: dir.join(format!("node{id}")),
            log: dir.join(format!("node{id}.log")),
            members: members.clone(),
            bin: bin.to_path_buf(),
            config: config.clone(),
            child: None,
            paused: false,
            disk: None,
        };
        if disk_mb > 0 {
            let cgroup = Path::new(BLKIO_ROOT).join(format!("{}-node{id}", net.name()));
            let image = dir.join(format!("node{id}.img"));
            match Disk::create(&image, &s.data, disk_mb, cgroup) {
                Ok(d) => s.disk = Some(d),
                Err(e) => {
                    // No loop devices (or no blkio cgroup) here: a tmpfs still fills up,
                    // but it cannot be slowed down.
                    eprintln!(
                        "no loop-device disk ({e:#}); using a tmpfs, without slow-disk faults"
                    );
                    let _ = std::fs::remove_file(&image);
                    std::fs::create_dir_all(&s.data)?;
                    let size = format!("size={disk_mb}m");
                    crate::net::sh(&[
                        "mount",
                        "-t",
                        "tmpfs",
                        "-o",
                        &size,
                        "tmpfs",
                        &s.data.to_string_lossy(),
                    ])?;
                }
            }
        }
        s.start()?;
        servers.push(s);
    }
    Ok(servers)
}

pub fn client(addr: &str, timeout: Duration) -> CairnClient<Channel> {
    let ch = cairn_proto::Dial::new()
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .channel(addr)
        .expect("a valid address");
    CairnClient::new(ch)
}

/// The leader as one server reports it, if it answers.
pub async fn leader_seen_by(addr: &str) -> Option<u64> {
    let r = client(addr, Duration::from_millis(800))
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .ok()?;
    Some(r.into_inner().leader_id).filter(|l| *l != 0)
}
