//! A replica's log file, capped in size: `x.log` rotates to `x.log.1`, `x.log.1` to
//! `x.log.2` …, and the oldest beyond the kept count goes.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// A replica's log is rotated past this size; this many older files are kept.
pub const LOG_MAX_BYTES: u64 = 16 << 20;
pub const LOG_KEEP: usize = 3;

/// A log file that rotates past a size.
pub struct RotatingLog {
    path: PathBuf,
    file: tokio::fs::File,
    /// Bytes in the current file.
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingLog {
    /// Open `path` to append to it.
    pub async fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let written = file.metadata().await?.len();
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

    /// Append `buf`, rotating first when it would take the file past its size. A write
    /// is in the file when this returns.
    pub async fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.file.flush().await?;
            for i in (1..self.keep).rev() {
                // An older file that is not there yet: nothing to move.
                let _ = tokio::fs::rename(self.rotated(i), self.rotated(i + 1)).await;
            }
            tokio::fs::rename(&self.path, self.rotated(1)).await?;
            let _ = tokio::fs::remove_file(self.rotated(self.keep + 1)).await;
            *self = Self::open(&self.path, self.max_bytes, self.keep).await?;
        }
        self.file.write_all(buf).await?;
        self.file.flush().await?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_rotate_past_their_size_and_keep_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut log = RotatingLog::open(&path, 100, 2).await.unwrap();
        for i in 0..10u8 {
            log.write(&[b'0' + i; 60]).await.unwrap();
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

    #[tokio::test]
    async fn a_reopened_log_counts_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        std::fs::write(&path, [b'a'; 80]).unwrap();
        let mut log = RotatingLog::open(&path, 100, 1).await.unwrap();
        log.write(&[b'b'; 30]).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [b'b'; 30]);
        assert_eq!(
            std::fs::read(dir.path().join("r.log.1")).unwrap(),
            [b'a'; 80]
        );
    }
}
