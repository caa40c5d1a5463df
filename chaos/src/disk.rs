//! A server's data on a disk of its own, which the nemeses fill up or slow down: a
//! small ext4 filesystem on a loop device, its writes throttled by a blkio cgroup (cgroup
//! v1) when slowed down. Where there are no loop devices or no blkio cgroup, a tmpfs
//! of the same size, which fills up but cannot be slowed down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::net::sh;

/// The root of the blkio hierarchy (cgroup v1), where throttled servers return.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";

/// A filesystem mounted on a server's data directory. Dropping it unmounts it and
/// releases its loop device.
pub struct Disk {
    mount: PathBuf,
    loop_device: Option<LoopDevice>,
}

/// The loop device behind a disk.
struct LoopDevice {
    image: PathBuf,
    device: String,
    /// `major:minor`, for the blkio throttle.
    dev_id: String,
    /// The blkio cgroup that slows the server's writes.
    cgroup: PathBuf,
}

impl Disk {
    /// Mount a disk of `mb` MiB on `mount`: an ext4 loop device backed by `image`
    /// (throttled through the blkio cgroup `<name>`), or else a tmpfs.
    pub fn create(mount: &Path, image: &Path, mb: u32, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(mount).with_context(|| format!("creating {}", mount.display()))?;
        let cgroup = Path::new(BLKIO_ROOT).join(name);
        match Self::create_loop(mount, image, mb, cgroup) {
            Ok(disk) => Ok(disk),
            Err(e) => {
                eprintln!("no loop-device disk ({e:#}); using a tmpfs, without slow-disk faults");
                let _ = std::fs::remove_file(image);
                let size = format!("size={mb}m");
                sh(&[
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    &size,
                    "tmpfs",
                    &mount.to_string_lossy(),
                ])?;
                Ok(Self {
                    mount: mount.to_path_buf(),
                    loop_device: None,
                })
            }
        }
    }

    fn create_loop(mount: &Path, image: &Path, mb: u32, cgroup: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cgroup)
            .with_context(|| format!("creating the blkio cgroup {}", cgroup.display()))?;
        let file = std::fs::File::create(image)
            .with_context(|| format!("creating {}", image.display()))?;
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
        let mut disk = Self {
            mount: mount.to_path_buf(),
            loop_device: Some(LoopDevice {
                image: image.to_path_buf(),
                device: device.clone(),
                dev_id: String::new(),
                cgroup,
            }),
        };
        let sys = format!("/sys/block/{}/dev", device.trim_start_matches("/dev/"));
        let dev_id = std::fs::read_to_string(&sys).with_context(|| format!("reading {sys}"))?;
        if let Some(l) = &mut disk.loop_device {
            l.dev_id = dev_id.trim().to_string();
        }
        // No blocks reserved for root: the server runs as root and must see the disk full.
        sh(&["mkfs.ext4", "-q", "-F", "-m", "0", &device])?;
        sh(&["mount", &device, &mount.to_string_lossy()])?;
        Ok(disk)
    }

    /// Whether the disk can be slowed down.
    pub fn can_slow_down(&self) -> bool {
        self.loop_device.is_some()
    }

    /// Throttle process `pid`'s writes to this disk to `iops` operations and `bps`
    /// bytes per second.
    pub fn slow_down(&self, pid: u32, iops: u32, bps: u64) -> anyhow::Result<()> {
        let Some(d) = &self.loop_device else {
            anyhow::bail!("{} is not a loop device", self.mount.display());
        };
        std::fs::write(
            d.cgroup.join("blkio.throttle.write_iops_device"),
            format!("{} {iops}", d.dev_id),
        )?;
        std::fs::write(
            d.cgroup.join("blkio.throttle.write_bps_device"),
            format!("{} {bps}", d.dev_id),
        )?;
        std::fs::write(d.cgroup.join("cgroup.procs"), pid.to_string())?;
        Ok(())
    }

    /// Give process `pid` (if it runs) the disk's full speed back.
    pub fn full_speed(&self, pid: Option<u32>) {
        let Some(d) = &self.loop_device else {
            return;
        };
        if let Some(pid) = pid {
            let _ = std::fs::write(Path::new(BLKIO_ROOT).join("cgroup.procs"), pid.to_string());
        }
        let _ = std::fs::write(
            d.cgroup.join("blkio.throttle.write_iops_device"),
            format!("{} 0", d.dev_id),
        );
        let _ = std::fs::write(
            d.cgroup.join("blkio.throttle.write_bps_device"),
            format!("{} 0", d.dev_id),
        );
    }

    /// The file that fills the disk.
    fn filler(&self) -> PathBuf {
        self.mount.join("chaos-filler")
    }

    /// Fill the disk up.
    pub fn fill(&self) -> anyhow::Result<()> {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.mount)
            .output()
            .context("running df")?;
        let avail: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .context("reading the free space")?;
        // Block rounding keeps the last few KiB out of reach, and the server may write
        // meanwhile: back off a little until it fits. sled writes far larger segments, so
        // the disk is full for it.
        let path = self.filler();
        let mut last = None;
        for margin in [64u64 << 10, 1 << 20, 4 << 20, 16 << 20] {
            let size = avail.saturating_sub(margin);
            if size == 0 {
                // Less than the margin is left: the disk is already full for sled.
                return Ok(());
            }
            let size = size.to_string();
            match sh(&["fallocate", "-l", &size, &path.to_string_lossy()]) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("could not fill {}", self.mount.display())))
    }

    /// Give the space back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
        if let Some(d) = &self.loop_device {
            let _ = Command::new("losetup")
                .args(["-d", &d.device])
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(&d.image);
            let _ = std::fs::remove_dir(&d.cgroup);
        }
    }
}
